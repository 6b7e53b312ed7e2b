#!/usr/bin/env bash
#   Start or stop a redis-server and a MongoDB-compatible server on free
#   loopback ports with their data in DIR: a real mongod when one is on the
#   machine (PARLEY_STORE=mongod|ferretdb chooses), else FerretDB on SQLite.
#       tests/servers.sh start DIR [--keep]  writes DIR/servers.env; --keep
#                                            keeps the data of an earlier start
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

start_mongo () {   # port
    local port=$1
    if [ "${PARLEY_STORE:-}" = mongod ] || { [ -z "${PARLEY_STORE:-}" ] && command -v mongod >/dev/null; }; then
        mkdir -p "$dir/mongod"
        #   A one-node replica set where mongosh can initiate it, so write
        #   concern "majority" means what it means in production
        local replica=()
        command -v mongosh >/dev/null && replica=(--replSet parley)
        mongod --dbpath "$dir/mongod" --port "$port" --bind_ip 127.0.0.1 "${replica[@]}" \
            --fork --logpath "$dir/mongod.log" --pidfilepath "$dir/mongod.pid" >/dev/null
        wait_port "$port" 30
        if [ ${#replica[@]} -gt 0 ]; then
            mongosh --quiet --port "$port" --eval \
                'try { rs.status() } catch (e) { rs.initiate({_id: "parley", members: [{_id: 0, host: "127.0.0.1:'"$port"'"}]}) }' \
                >/dev/null
            echo "mongodb://127.0.0.1:$port/?replicaSet=parley&directConnection=true"
        else
            echo "mongodb://127.0.0.1:$port"
        fi
        return
    fi
    local debug_port
    debug_port=$(free_port)
    [ -x "$ferretdb" ] || { echo "servers.sh: $ferretdb missing: run bin/parley deps" >&2; exit 1; }
    mkdir -p "$dir/ferretdb"
    nohup "$ferretdb" --handler=sqlite --sqlite-url="file:$dir/ferretdb/" \
        --listen-addr="127.0.0.1:$port" --debug-addr="127.0.0.1:$debug_port" \
        --state-dir="$dir/ferretdb" --telemetry=disable --log-level=warn >"$dir/ferretdb.log" 2>&1 &
    echo $! >"$dir/ferretdb.pid"
    wait_port "$port" 30
    echo "mongodb://127.0.0.1:$port"
}

case "$action" in
start)
    "$0" stop "$dir" 2>/dev/null || true
    [ "${3:-}" = --keep ] || rm -rf "$dir"
    mkdir -p "$dir/redis"
    redis_port=$(free_port)
    redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$dir/redis" --save "" \
        --appendonly yes --appendfsync everysec --daemonize yes \
        --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
    wait_port "$redis_port" 10
    mongo_url=$(start_mongo "$(free_port)")
    cat >"$dir/servers.env" <<ENV
PARLEY_TEST_REDIS_URL=redis://127.0.0.1:$redis_port
PARLEY_TEST_MONGO_URL=$mongo_url
ENV
    echo "servers.sh: Redis at redis://127.0.0.1:$redis_port, MongoDB protocol at $mongo_url"
    ;;
stop)
    for name in redis ferretdb mongod; do
        if [ -f "$dir/$name.pid" ]; then
            kill "$(cat "$dir/$name.pid")" 2>/dev/null || true
            rm -f "$dir/$name.pid"
        fi
    done
    ;;
*)
    echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
