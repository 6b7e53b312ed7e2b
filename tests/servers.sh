#!/usr/bin/env bash
#   Start or stop the test servers: a throwaway redis-server and FerretDB
#   (MongoDB wire protocol, SQLite) on free loopback ports in DIR.
#       tests/servers.sh start DIR     writes DIR/servers.env
#       tests/servers.sh stop DIR
set -euo pipefail
action=${1:?start or stop}
dir=${2:?directory}
here=$(cd "$(dirname "$0")" && pwd)
ferretdb=${PARLEY_FERRETDB:-${PARLEY_TOOLS:-$HOME/.cache/parley}/bin/ferretdb}

free_port () {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port () {   # port seconds
    local port=$1 tries=$(( $2 * 10 ))
    while ! python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null; do
        tries=$((tries - 1))
        [ $tries -gt 0 ] || { echo "servers.sh: nothing listens on port $port" >&2; return 1; }
        sleep 0.1
    done
}

case "$action" in
start)
    "$0" stop "$dir" 2>/dev/null || true
    rm -rf "$dir"; mkdir -p "$dir/redis" "$dir/ferretdb"
    redis_port=$(free_port)
    redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$dir/redis" --save "" \
        --appendonly yes --appendfsync everysec --daemonize yes \
        --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
    mongo_port=$(free_port)
    debug_port=$(free_port)
    [ -x "$ferretdb" ] || { echo "servers.sh: $ferretdb missing: run bin/parley deps" >&2; exit 1; }
    nohup "$ferretdb" --handler=sqlite --sqlite-url="file:$dir/ferretdb/" \
        --listen-addr="127.0.0.1:$mongo_port" --debug-addr="127.0.0.1:$debug_port" \
        --state-dir="$dir/ferretdb" --telemetry=disable --log-level=warn >"$dir/ferretdb.log" 2>&1 &
    echo $! >"$dir/ferretdb.pid"
    wait_port "$redis_port" 10
    wait_port "$mongo_port" 30
    cat >"$dir/servers.env" <<ENV
PARLEY_TEST_REDIS_URL=redis://127.0.0.1:$redis_port
PARLEY_TEST_MONGO_URL=mongodb://127.0.0.1:$mongo_port
ENV
    echo "servers.sh: redis on $redis_port, FerretDB on $mongo_port"
    ;;
stop)
    for name in redis ferretdb; do
        if [ -f "$dir/$name.pid" ]; then
            kill "$(cat "$dir/$name.pid")" 2>/dev/null || true
            rm -f "$dir/$name.pid"
        fi
    done
    ;;
*)
    echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
