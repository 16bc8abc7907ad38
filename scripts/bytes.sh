#!/usr/bin/env bash
# Bytes per key: a module token bucket, the script engine's token bucket (client/lua, what
# ServerEngine::Scripts stores where the module cannot be loaded) and a plain string with
# a TTL, on every server; a quick, load-independent figure next to the bench's memory
# section (`cargo bench --bench server`).
#
#   scripts/bytes.sh                  # REDLIMIT_SERVERS and REDLIMIT_BYTES_KEYS narrow it
#
# Each row is measured on a fresh server (so no row pays for a hash-table growth caused
# by an earlier one): `used_memory` before and after writing the keys (through
# `redis-cli --pipe`), divided by the keys. Policies refill slowly: no key expires
# during the run.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
keys=${REDLIMIT_BYTES_KEYS:-100000}
module=${REDLIMIT_MODULE:-$root/target/release/libredlimit.so}
[[ -n ${REDLIMIT_MODULE:-} ]] || cargo build --release -p redlimit-module >&2

declare -A binaries=(
    [redis-7.0]=/usr/bin/redis-server
    [redis-8.2]=$root/.servers/redis-8.2/redis-server
    [valkey-9.1]=$root/.servers/valkey-9.1/valkey-server
)
servers=${REDLIMIT_SERVERS:-redis-7.0,redis-8.2,valkey-9.1}
source_of_scripts() { (cd "$root/client/lua" && cat $(cat ORDER)); }
sha=$(source_of_scripts | sha1sum | cut -d' ' -f1)
work=$(mktemp -d /tmp/redlimit-bytes.XXXXXX)
trap 'rm -rf "$work"' EXIT

# Writes `keys` commands in RESP: $1 is a Python expression of the argument list for i.
commands() {
    python3 -c "
import sys
out = sys.stdout.buffer
for i in range($keys):
    a = [x if isinstance(x, bytes) else str(x).encode() for x in $1]
    out.write(b'*%d\r\n' % len(a) + b''.join(b'\$%d\r\n%s\r\n' % (len(x), x) for x in a))
"
}

rows=(
    "RL.TOKENBUCKET key 100 1 60000 (module)|[b'RL.TOKENBUCKET', b'tb:%d' % i, 100, 1, 60000]"
    "script token bucket 100 1 60000 (EVALSHA)|[b'EVALSHA', b'$sha', 1, b'{tb:%d}|rls' % i, b'decide', 0, b'tokenbucket', 100, 1, 60000, 1, 0, 0]"
    "SET key <19 digits> PX 60000 (reference)|[b'SET', b'tb:%d' % i, b'1763927000123456789', b'PX', 60000]"
)

echo "| server | keys written with | bytes per key |"
echo "|---|---|---:|"
for name in ${servers//,/ }; do
    binary=${binaries[$name]:-}
    [[ -x $binary ]] || { echo "skipped $name: not installed" >&2; continue; }
    for row in "${rows[@]}"; do
        port=$((20000 + RANDOM % 20000))
        "$binary" --port "$port" --dir "$work" --save "" --appendonly no \
            --loadmodule "$module" --daemonize yes --logfile "$work/$name.log" >/dev/null
        for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
        source_of_scripts | redis-cli -p "$port" -x SCRIPT LOAD >/dev/null
        used() { redis-cli -p "$port" info memory | tr -d '\r' | awk -F: '/^used_memory:/ {print $2}'; }
        before=$(used)
        commands "${row#*|}" | redis-cli -p "$port" --pipe >/dev/null
        after=$(used)
        count=$(redis-cli -p "$port" dbsize)
        [[ $count == "$keys" ]] || { echo "$name: $count keys written, not $keys" >&2; exit 1; }
        printf '| %s | %s | %.1f |\n' "$name" "${row%%|*}" "$(echo "($after - $before) / $keys" | bc -l)"
        redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
    done
done
