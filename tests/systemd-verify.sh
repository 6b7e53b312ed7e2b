#!/usr/bin/env bash
#   Install into a throwaway prefix and let systemd check every unit:
#   directives, dependencies, and that each ExecStart is executable.
#       tests/systemd-verify.sh BUILD_DIR
set -euo pipefail
build=${1:?build dir}
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
units=$prefix/lib/systemd/system
[ -f "$units/parley.target" ] || { echo "no units installed in $units" >&2; exit 1; }
#   Templates are checked through an instance of each
for template in "$units"/*@.service; do
    ln -s "$(basename "$template")" "${template%@.service}@0.service"
done
status=0
for unit in "$units"/parley.target "$units"/*.service; do
    case "$unit" in *@.service) continue ;; esac
    grep -q '^Type=notify' "$unit" || [ "${unit##*.}" = target ] \
        || { echo "$(basename "$unit"): not Type=notify" >&2; status=1; }
    #   Any word from systemd-analyze (unknown key, bad value) is a failure
    output=$(cd "$units" && systemd-analyze verify "./$(basename "$unit")" 2>&1) || status=1
    if [ -n "$output" ]; then
        echo "$output" >&2
        status=1
    fi
    echo "verified $(basename "$unit")"
done
[ -f "$prefix/etc/parley/parley.conf.example" ] || { echo "example configuration not installed" >&2; status=1; }
exit $status
