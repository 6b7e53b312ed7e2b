#!/usr/bin/env bash
#   RabbitMQ with Web-STOMP, the broker the benchmark compares parley with on
#   the same machine: Debian's rabbitmq-server, run as a private node whose
#   files, ports, Erlang cookie and epmd are all its own, on loopback only.
#       tests/rabbitmq.sh install          Debian's rabbitmq-server, leaving
#                                          no system-wide broker or epmd
#                                          running or enabled (idempotent)
#       tests/rabbitmq.sh start DIR [--web-stomp-port P]
#                                          everything under DIR; once a STOMP
#                                          CONNECT over Web-STOMP has worked,
#                                          writes DIR/rabbitmq.env
#                                          (RABBITMQ_WS_URL, RABBITMQ_PID, ...)
#                                          and prints the URL
#       tests/rabbitmq.sh stop DIR         stops the node and its epmd
#       tests/rabbitmq.sh ctl DIR ARGS...  rabbitmqctl ARGS against that node
#   Sourced (`. tests/rabbitmq.sh`) it only defines its functions, all named
#   rabbitmq_*, for bin/parley's deps to call rabbitmq_install.
set -euo pipefail

#   The Debian package's real scripts. /usr/sbin/rabbitmq-server and
#   rabbitmqctl are a wrapper that, run as root, re-runs them as user
#   rabbitmq through `su` from /var/lib/rabbitmq: the system node's cookie
#   and files, and our environment lost on the way.
rabbitmq_bin=/usr/lib/rabbitmq/bin
rabbitmq_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

#   ------------------------------------------------------------------------
#   Install

#   rabbitmq-server's postinst ends with `invoke-rc.d rabbitmq-server start
#   || exit 1`. Without systemd as PID 1 that runs /etc/init.d/rabbitmq-server:
#   a broker for user rabbitmq on 0.0.0.0:5672 and a system epmd on
#   0.0.0.0:4369, left running, and the whole install failing if that broker
#   does not come up. invoke-rc.d (and deb-systemd-invoke, where systemd
#   runs) first asks /usr/sbin/policy-rc.d, and its exit status 101 means
#   "not allowed", which invoke-rc.d reports and then treats as success. So
#   a policy-rc.d that forbids every start for the length of the install (a
#   Docker-style image may have one already, which is kept; one that allows
#   starts is set aside and put back). Then the init links and systemd units
#   that the install enabled (the broker's, and erlang-base's epmd.service
#   and epmd.socket) are disabled, so no boot or later upgrade starts them:
#   upgrades keep update-rc.d's K links, and deb-systemd-helper, finding the
#   unit links it made gone, takes the units for disabled by the admin.
#   (deb-systemd-helper itself refuses to run outside dpkg; systemctl
#   disable works without systemd running.)
rabbitmq_install () {
    if dpkg-query -W -f='${Status}' rabbitmq-server 2>/dev/null | grep -q "install ok installed" \
        && [ -x "$rabbitmq_bin/rabbitmq-server" ]; then
        return 0
    fi
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    (
        policy=/usr/sbin/policy-rc.d
        saved=""
        log=$(mktemp)
        if [ -e "$policy" ]; then
            status=0
            "$policy" rabbitmq-server start >/dev/null 2>&1 || status=$?
            if [ "$status" -ne 101 ]; then
                saved=$($sudo mktemp /usr/sbin/policy-rc.d.saved.XXXXXX)
                $sudo mv "$policy" "$saved"
            fi
        fi
        trap 'rm -f "$log"' EXIT
        if [ ! -e "$policy" ]; then
            #   Ours goes on every way out of this subshell, failure included
            trap 'rm -f "$log"; $sudo rm -f "$policy"; [ -z "$saved" ] || $sudo mv "$saved" "$policy"' EXIT
            printf '#!/bin/sh\n# tests/rabbitmq.sh: no service starts during this install\nexit 101\n' \
                | $sudo tee "$policy" >/dev/null
            $sudo chmod 755 "$policy"
        fi
        if ! { $sudo apt-get update -qq \
               && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                      rabbitmq-server; } >"$log" 2>&1; then
            cat "$log" >&2
            echo "rabbitmq.sh: installing rabbitmq-server failed" >&2
            exit 1
        fi
    ) || return 1
    $sudo update-rc.d rabbitmq-server disable >/dev/null 2>&1 || true
    if command -v systemctl >/dev/null; then
        #   Works without systemd running too: it only removes the links
        $sudo systemctl disable rabbitmq-server.service epmd.service epmd.socket >/dev/null 2>&1 || true
        if [ -d /run/systemd/system ]; then
            $sudo systemctl stop rabbitmq-server.service epmd.socket epmd.service >/dev/null 2>&1 || true
        fi
    fi
    if pgrep -u rabbitmq >/dev/null 2>&1 || pgrep -u epmd >/dev/null 2>&1; then
        echo "rabbitmq.sh: a system RabbitMQ or epmd runs after the install (processes of user rabbitmq or epmd)" >&2
    fi
}

#   ------------------------------------------------------------------------
#   Start and stop a private node

#   N distinct free loopback ports: all bound at once, so none repeats
rabbitmq_free_ports () {   # count
    python3 -c 'import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

rabbitmq_wait_port () {   # port seconds
    local port=$1 tries=$(( $2 * 20 ))
    while ! python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null; do
        tries=$((tries - 1))
        [ $tries -gt 0 ] || { echo "rabbitmq.sh: nothing listens on port $port" >&2; return 1; }
        sleep 0.05
    done
}

#   Running and not a zombie. The shell script that ran the broker and the
#   epmd are reaped by PID 1 once this script has gone, which on this
#   machine may take seconds: a zombie counts as gone.
rabbitmq_alive () {   # pid
    local state
    state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ $state != Z* ]]
}

#   Ready means that what a benchmark client does works: a WebSocket upgrade
#   with subprotocol v12.stomp, then CONNECT as guest answered by CONNECTED.
#   A listening port is not enough (and may be someone else's). One node
#   process tries every 50 ms, and gives up when the broker has exited.
rabbitmq_wait_stomp () {   # url pid seconds
    local ws=$rabbitmq_here/node/node_modules/ws
    [ -d "$ws" ] || { echo "rabbitmq.sh: $ws missing: run bin/parley deps" >&2; return 1; }
    # shellcheck disable=SC2016   # JavaScript, not shell
    node -e '
        const WebSocket = require(process.argv[1]);
        const [url, pid, seconds] = process.argv.slice(2);
        const deadline = Date.now() + seconds * 1000;
        const attempt = () => new Promise((resolve) => {
            const socket = new WebSocket(url, ["v12.stomp"]);
            const done = (ok) => { clearTimeout(timer); socket.terminate(); resolve(ok); };
            const timer = setTimeout(() => done(false), 2000);
            socket.on("open", () => socket.send(
                "CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\nheart-beat:0,0\n\n\0"));
            socket.on("message", (data) => done(String(data).startsWith("CONNECTED")));
            socket.on("error", () => done(false));
            socket.on("close", () => done(false));
        });
        (async () => {
            for (;;) {
                if (await attempt()) process.exit(0);
                try { process.kill(Number(pid), 0); } catch { console.error("rabbitmq.sh: the broker exited"); process.exit(1); }
                if (Date.now() > deadline) { console.error(`rabbitmq.sh: no STOMP CONNECT at ${url}`); process.exit(1); }
                await new Promise((r) => setTimeout(r, 50));
            }
        })();' "$ws" "$1" "$2" "$3"
}

#   The node's rabbitmq.conf, and why each line is there
rabbitmq_write_config () {   # dir amqp_port web_stomp_port
    local dir=$1
    cat >"$dir/rabbitmq.conf" <<CONF
# Loopback only, on ports chosen for this run. The benchmark doesn't use
# AMQP, but it stays on (on loopback) for a look with an AMQP client. The
# plain STOMP listener (61613 on every interface by default) is off:
# Web-STOMP uses rabbitmq_stomp's frame processing, not its listener.
listeners.tcp.1 = 127.0.0.1:$2
stomp.listeners.tcp = none
web_stomp.tcp.ip = 127.0.0.1
web_stomp.tcp.port = $3
web_stomp.ws_path = /ws

# STOMP frames in WebSocket text frames, as parley sends them (3.10's
# default, spelled out: earlier releases differed)
web_stomp.ws_frame = text

# Cowboy closes a WebSocket that has *received* nothing for 60 s, whatever
# the broker sent on it. The harness's clients negotiate heart-beat 0,0 (so
# will the benchmark's), so a client that only subscribes would be dropped
# a minute into a run (seen here: close code 1000 at 60.0 s). parley drops
# nobody for that, so here it is an hour.
web_stomp.ws_opts.idle_timeout = 3600000

# Warnings and errors only, to a file. At the default level (info) the
# broker logs every connection opened and closed: with thousands of
# benchmark clients that's work parley isn't doing. Nothing is logged per
# message at any level. PARLEY_RABBITMQ_LOG_LEVEL=debug for a look.
log.console = false
log.file.level = ${PARLEY_RABBITMQ_LOG_LEVEL:-warning}

# The disk alarm blocks every publisher while the free space where the node
# keeps its files is under the limit (50 MB by default), so in a small tmp
# directory a run would hang instead of measuring anything. The
# benchmark's messages are transient and stay in memory: 1 MB.
disk_free_limit.absolute = 1MB

# The memory alarm (which blocks publishers the same way) stays at
# RabbitMQ's default, 40 % of the machine's memory (about 10 GB of 24):
# that is the broker's own flow control, and a run that reaches it should
# show it.
vm_memory_high_watermark.relative = 0.4

# User guest/guest stays as RabbitMQ makes it: allowed to log in over
# loopback only (loopback_users.guest = true), which is where every client
# is. Web-STOMP checks the WebSocket's peer address, 127.0.0.1 here.
CONF
    #   Only Web-STOMP, which brings rabbitmq_stomp and cowboy along. No
    #   management plugin: its statistics cost CPU for every connection and
    #   queue, and the benchmark reads nothing from it.
    echo '[rabbitmq_web_stomp].' >"$dir/enabled_plugins"
    #   Empty, read instead of the package's /etc/rabbitmq/rabbitmq-env.conf
    : >"$dir/rabbitmq-env.conf"
}

rabbitmq_start () {   # dir [web_stomp_port]
    local dir=$1 web_stomp_port=${2:-}
    rabbitmq_stop "$dir" 2>/dev/null || true
    rm -rf "${dir:?}/mnesia" "${dir:?}/log" "${dir:?}/home" "${dir:?}/conf.d" "${dir:?}/rabbitmq.env"
    mkdir -p "$dir/mnesia" "$dir/log" "$dir/home" "$dir/conf.d"

    local epmd_port dist_port amqp_port port nodename started
    started=$(date +%s%N)
    read -r epmd_port dist_port amqp_port port <<<"$(rabbitmq_free_ports 4)"
    if [ -z "$web_stomp_port" ]; then
        web_stomp_port=$port
    elif ! python3 -c "import socket; socket.socket().bind(('127.0.0.1', $web_stomp_port))" 2>/dev/null; then
        #   Else the readiness check would be answered by whoever has it
        echo "rabbitmq.sh: port $web_stomp_port is in use" >&2
        return 1
    fi
    rabbitmq_write_config "$dir" "$amqp_port" "$web_stomp_port"
    #   Unique, so that the nodes of two runs are never taken for each
    #   other or for the system's rabbit@HOST
    nodename=parley-$$-$RANDOM@localhost

    #   Its own Erlang cookie: erl reads $HOME/.erlang.cookie, and its HOME
    #   is DIR/home. (RABBITMQ_ERLANG_COOKIE works too but is deprecated.)
    head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$dir/home/.erlang.cookie"
    chmod 400 "$dir/home/.erlang.cookie"

    #   From here on, a failure leaves nothing running
    trap 'rabbitmq_stop "'"$dir"'"' EXIT

    #   Its own epmd on a free loopback port, not the machine's 4369 (which
    #   another run or a system RabbitMQ would share), in the foreground so
    #   its pid is known. Left to itself erl would start `epmd -daemon`
    #   listening on every interface, and nothing would ever stop it.
    nohup epmd -address 127.0.0.1 -port "$epmd_port" >"$dir/log/epmd.log" 2>&1 </dev/null &
    echo $! >"$dir/epmd.pid"
    rabbitmq_wait_port "$epmd_port" 10

    #   RabbitMQ sizes its connection limit by the descriptor limit it starts
    #   with (20000 here gives about 17900 sockets)
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    [ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge 16384 ] \
        || echo "rabbitmq.sh: only $(ulimit -n) file descriptors: few connections" >&2

    (
        export HOME=$dir/home
        export ERL_EPMD_PORT=$epmd_port ERL_EPMD_ADDRESS=127.0.0.1
        export RABBITMQ_NODENAME=$nodename RABBITMQ_USE_LONGNAME=false
        #   Every file under DIR: nothing read from /etc/rabbitmq (the
        #   package's rabbitmq-env.conf, conf.d/) or written to /var/lib
        export RABBITMQ_CONF_ENV_FILE=$dir/rabbitmq-env.conf
        export RABBITMQ_CONFIG_FILE=$dir/rabbitmq.conf
        export RABBITMQ_CONFIG_FILES=$dir/conf.d
        export RABBITMQ_ADVANCED_CONFIG_FILE=$dir/advanced.config
        export RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins
        export RABBITMQ_MNESIA_BASE=$dir/mnesia
        export RABBITMQ_LOG_BASE=$dir/log
        export RABBITMQ_PID_FILE=$dir/rabbitmq.pid
        #   Distribution (what rabbitmqctl talks over) on a free port, and on
        #   loopback only
        export RABBITMQ_DIST_PORT=$dist_port
        export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
        #   Not tuned, on purpose: the Erlang schedulers' busy-waiting is
        #   already off in 3.10's defaults (+sbwt none, +sbwtdcpu none,
        #   +sbwtdio none), which matters on 2 cores shared with the load
        #   generator; the rest (+stbt db, allocators) is as shipped.
        cd "$dir"   # where an erl_crash.dump would go
        exec nohup "$rabbitmq_bin/rabbitmq-server" >"$dir/log/stdout.log" 2>&1 </dev/null
    ) &
    #   That pid is the shell script that runs erl and waits for it. The
    #   beam.smp that does the work (RABBITMQ_PID, what a benchmark measures)
    #   writes its own pid file early in its boot.
    echo $! >"$dir/rabbitmq-server.pid"

    local url=ws://127.0.0.1:$web_stomp_port/ws pid ready
    if ! rabbitmq_wait_stomp "$url" "$(cat "$dir/rabbitmq-server.pid")" 120 \
        || ! pid=$(cat "$dir/rabbitmq.pid" 2>/dev/null) || ! rabbitmq_alive "$pid"; then
        #   The first errors say why; the end of the log is a crash report
        grep -h -m 12 '\[error\]' "$dir/log/stdout.log" >&2 || tail -n 20 "$dir/log/stdout.log" >&2 || true
        echo "rabbitmq.sh: RabbitMQ did not start; logs in $dir/log" >&2
        return 1
    fi
    trap - EXIT
    ready=$(( ($(date +%s%N) - started) / 1000000 ))
    cat >"$dir/rabbitmq.env" <<ENV
RABBITMQ_WS_URL=$url
RABBITMQ_PID=$pid
RABBITMQ_AMQP_URL=amqp://guest:guest@127.0.0.1:$amqp_port
RABBITMQ_NODENAME=$nodename
RABBITMQ_EPMD_PORT=$epmd_port
RABBITMQ_READY_MS=$ready
ENV
    echo "rabbitmq.sh: RabbitMQ $(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null)" \
         "Web-STOMP at $url (pid $pid, ready in $ready ms)" >&2
    echo "$url"
}

#   SIGTERM, then up to 30 s to go before SIGKILL
rabbitmq_stop_pid () {   # pid-file
    local file=$1 pid tries=300
    [ -f "$file" ] || return 0
    pid=$(cat "$file")
    if kill -TERM "$pid" 2>/dev/null; then
        while rabbitmq_alive "$pid" && [ $tries -gt 0 ]; do
            sleep 0.1
            tries=$((tries - 1))
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
}

#   SIGTERM makes the Erlang VM stop the node in order (init:stop, about a
#   second); its helpers (erl_child_setup, inet_gethost) exit with it, and
#   the shell script that ran it exits then. When the node never wrote its
#   pid file, SIGTERM to that script stops it as well. Then the epmd.
rabbitmq_stop () {   # dir
    local dir=$1
    rabbitmq_stop_pid "$dir/rabbitmq.pid"
    rabbitmq_stop_pid "$dir/rabbitmq-server.pid"
    rabbitmq_stop_pid "$dir/epmd.pid"
}

#   rabbitmqctl against the private node (list_queues, status, environment,
#   eval ...): it finds the node through its epmd and needs its cookie, so
#   the same HOME and ERL_EPMD_PORT
rabbitmq_ctl () {   # dir args...
    local dir=$1 node epmd_port
    shift
    [ -f "$dir/rabbitmq.env" ] || { echo "rabbitmq.sh: no node started in $dir" >&2; return 1; }
    node=$(sed -n 's/^RABBITMQ_NODENAME=//p' "$dir/rabbitmq.env")
    epmd_port=$(sed -n 's/^RABBITMQ_EPMD_PORT=//p' "$dir/rabbitmq.env")
    HOME=$dir/home ERL_EPMD_PORT=$epmd_port RABBITMQ_CONF_ENV_FILE=$dir/rabbitmq-env.conf \
        "$rabbitmq_bin/rabbitmqctl" -n "$node" "$@"
}

#   ------------------------------------------------------------------------

[ "${BASH_SOURCE[0]}" = "$0" ] || return 0

usage="usage: $0 install | start DIR [--web-stomp-port P] | stop DIR | ctl DIR ARGS..."
action=${1:?$usage}
case "$action" in
install)
    rabbitmq_install ;;
start)
    mkdir -p "${2:?$usage}"
    port=""
    if [ $# -gt 2 ]; then
        [ "$3" = --web-stomp-port ] || { echo "$usage" >&2; exit 2; }
        port=${4:?$usage}
    fi
    rabbitmq_start "$(cd "$2" && pwd)" "$port" ;;
stop)
    [ -d "${2:?$usage}" ] || exit 0
    rabbitmq_stop "$(cd "$2" && pwd)" ;;
ctl)
    dir=$(cd "${2:?$usage}" && pwd)
    shift 2
    rabbitmq_ctl "$dir" "$@" ;;
*)
    echo "$usage" >&2; exit 2 ;;
esac
