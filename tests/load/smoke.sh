#!/usr/bin/env bash
#   tests/load/smoke.sh BUILD_DIR [--full]
#
#   parley-load against a real parley host: starts Redis and a MongoDB
#   store (tests/servers.sh), one host (bin/parley up, the actors of
#   BUILD_DIR, no rate limits), creates the group rooms over HTTP, and runs
#       (a) 2 connections, one room, 100 messages each at 50/s, under
#           valgrind
#       (b) 200 connections in rooms of 2, 20 messages each at 4/s, 2 threads
#   --full adds the larger runs of issue 11:
#       (b) 1000 connections in rooms of 2, 20 messages at 4/s, 2 threads
#       (c) 100 connections in rooms of 50, 20 messages at 5/s
#   Each run's JSON goes to stdout. Exits non-zero when a run lost or
#   duplicated a message or saw an error. Everything started is stopped on
#   exit; the work folder (BUILD_DIR/load-smoke: logs, JSON) is removed
#   after a pass and kept after a failure. Its tools (valgrind, Redis,
#   FerretDB) come from bin/parley deps, as every dependency does; ctest
#   runs it as load.smoke after bin/parley test installed them.
set -euo pipefail
build=$(cd "${1:?usage: tests/load/smoke.sh BUILD_DIR [--full]}" && pwd)
full=${2:-}
top=$(cd "$(dirname "$0")/../.." && pwd)
work=$build/load-smoke
load=$build/parley-load
ctl=$build/parleyctl
[ -x "$load" ] && [ -x "$ctl" ] || { echo "smoke.sh: build parley-load and parleyctl in $build first" >&2; exit 2; }

say () { printf 'smoke.sh: %s\n' "$*" >&2; }

host_pid=""
passed=0
cleanup () {
    if [ -n "$host_pid" ]; then
        kill -TERM "$host_pid" 2>/dev/null || true
        wait "$host_pid" 2>/dev/null || true
    fi
    "$top/tests/servers.sh" stop "$work/servers" 2>/dev/null || true
    if [ $passed = 1 ]; then
        rm -rf "$work"
    else
        say "failed; logs and JSON kept in $work"
        [ -f "$work/host.log" ] && tail -n 20 "$work/host.log" >&2
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$work"
mkdir -p "$work"
"$top/tests/servers.sh" start "$work/servers" >&2
# shellcheck disable=SC1091
. "$work/servers/servers.env"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
#   From the environment: the actors and parley-load both read it, and ps
#   does not show it
PARLEY_JWT_SECRET=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
export PARLEY_JWT_SECRET
prefix=loadsmoke$$
PARLEY_BUILD_DIR=$build PARLEY_HTTP_RATE=0 PARLEY_SEND_RATE=0 PARLEY_MAX_IN_FLIGHT=1000000 \
    "$top/bin/parley" up --port "$port" --redis "$PARLEY_TEST_REDIS_URL" --mongo "$PARLEY_TEST_MONGO_URL" \
    --runtime-dir "$work/run" --key-prefix "$prefix" --mongo-db "$prefix" >"$work/host.log" 2>&1 &
host_pid=$!
for _ in $(seq 600); do
    curl -fs -o /dev/null "http://127.0.0.1:$port/readyz" && break
    kill -0 "$host_pid" 2>/dev/null || { say "the host exited"; exit 1; }
    sleep 0.1
done
curl -fs -o /dev/null "http://127.0.0.1:$port/readyz" || { say "the host is not ready after 60 s"; exit 1; }
say "host up on port $port"

#   make_rooms NAME CONNS ROOM: group rooms of ROOM users load-<i>, each
#   made by its first member; their ids, one a line, into $work/NAME.rooms
make_rooms () {
    local name=$1 conns=$2 room=$3 file=$work/$1.rooms
    : >"$file"
    for ((k = 0; k < conns / room; k++)); do
        local members="" token answer id
        for ((i = k * room; i < (k + 1) * room; i++)); do
            members+="${members:+,}\"load-$i\""
        done
        token=$("$ctl" token --user "load-$((k * room))")
        answer=$(curl -sS -X POST -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
                 -d "{\"kind\":\"group\",\"name\":\"$name-$k\",\"members\":[$members]}" \
                 -w '\n%{http_code}' "http://127.0.0.1:$port/api/rooms")
        #   No pipes: under pipefail, a head that quits early fails the line
        id=""
        [[ $answer =~ \"id\":\"([^\"]+)\" ]] && id=${BASH_REMATCH[1]}
        if [ "${answer##*$'\n'}" != 201 ] || [ -z "$id" ]; then
            say "POST /api/rooms for room $k of $name: $answer"
            return 1
        fi
        echo "$id" >>"$file"
    done
}

#   run_load NAME CONNS ROOM [PARLEY-LOAD OPTIONS...]: fresh rooms (a
#   clientMsgId is delivered once per room and sender), then the run
failures=0
run_load () {
    local name=$1 conns=$2 room=$3
    shift 3
    make_rooms "$name" "$conns" "$room"
    say "run $name: $conns connections, rooms of $room, $*"
    local rc=0
    "$@" --url "ws://127.0.0.1:$port/ws" --target parley --conns "$conns" --room "$room" \
        --rooms "$work/$name.rooms" >"$work/$name.json" 2>"$work/$name.log" || rc=$?
    printf '%s %s\n' "$name" "$(cat "$work/$name.json")"
    if [ $rc != 0 ]; then
        say "run $name failed (exit $rc):"
        tail -n 20 "$work/$name.log" >&2
        failures=$((failures + 1))
    fi
}

#   Run (a) under valgrind, always (a missing valgrind fails the run)
valgrind=(valgrind --quiet --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite)
run_load a 2 2 "${valgrind[@]}" "$load" --msgs 100 --rate 50
run_load b200 200 2 "$load" --msgs 20 --rate 4 --threads 2
if [ "$full" = --full ]; then
    run_load b 1000 2 "$load" --msgs 20 --rate 4 --threads 2
    run_load c 100 50 "$load" --msgs 20 --rate 5
fi
[ $failures = 0 ] || exit 1
passed=1
say "passed"
