#!/usr/bin/env bash
#   Run a command with the test servers' URLs in its environment.
#       tests/with-servers.sh DIR command args...
set -euo pipefail
dir=$1; shift
set -a; . "$dir/servers.env"; set +a
exec "$@"
