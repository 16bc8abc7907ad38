#!/usr/bin/env bash
# Instructions per call, counted by callgrind: a figure of the server's work that does not
# move with the machine's load (unlike requests per second on a shared 2-core machine).
#
#   scripts/instructions.sh            # every server, cache-only and propagating
#   REDLIMIT_SERVERS=redis-8.2 REDLIMIT_INSTR_CALLS=5000 scripts/instructions.sh
#
# For each server found (Redis 7.0, Redis 8.2, Valkey 9.1) and each mode, one server runs
# under `valgrind --tool=callgrind` with redlimit, the bench's floor module and redis-cell
# (when built at $REDIS_CELL_SO or /tmp/redis-cell/target/release/libredis_cell.so).
# Per command: a warm-up, `callgrind_control --zero`, `redis-benchmark -n $CALLS -P 16
# -c 10 -r 1000` (random keys among 1,000, so most calls find their key), then
# `callgrind_control --dump`: the server's user-space instructions over those calls,
# divided by the calls. That includes reading the request, parsing it, the command,
# propagation and writing the reply (not the kernel's share).
#
# **The server's time events are excluded** (the first columns): `serverCron` runs on
# wall-clock time, not per call, and a callgrind run lasts seconds, so its work (jemalloc
# statistics, resizing, client cron: from a few hundred to ~2,700 instructions per call on
# Redis 8.2, more on a loaded machine) moved the totals from run to run. Each dump is read
# with `callgrind_annotate --inclusive=yes` and the inclusive cost of `processTimeEvents`
# (or of `serverCron` where the former is inlined, as in the Redis 7.0 and Valkey 9.1
# builds) is subtracted. A server binary whose symbols callgrind cannot read would show
# "n/a" (its total still includes the cron). The old totals stay in the "with cron"
# columns. Dumps are written uncompressed (`--compress-strings=no`) so that each one
# names its own functions.
#
# REDLIMIT_INSTR_ONLY=<regex> keeps the rows whose label matches (and the floor's), e.g.
# `REDLIMIT_INSTR_ONLY='^RL\.'`.
#
# REDLIMIT_INSTR_KEEP=<dir> keeps every dump there (`<server>-<mode>-<n>.out`, n as the
# rows' order) for `callgrind_annotate --inclusive=yes --auto=yes` (a release module built
# with `CARGO_PROFILE_RELEASE_DEBUG=true` shows its source lines).
#
# Modes: `cache-only` (no save point, AOF or replica: redlimit skips RedisModule_Replicate,
# see docs/commands.md) and `propagating` (a save point that never fires in a run: every
# write is propagated, as with replicas, AOF or snapshots). The floor module always
# replicates.
#
# The script engine's rows (client/lua through EVALSHA, what ServerEngine::Scripts sends
# where the module cannot be loaded) run in the same server: their keys are plain strings,
# always propagated by the server itself (scripts replicate their effects).
#
# Needs valgrind and redis-benchmark; builds the release module and the floor module
# first (`cargo bench --bench server` builds the floor; set REDLIMIT_FLOOR_SO otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

calls=${REDLIMIT_INSTR_CALLS:-10000}
module=${REDLIMIT_MODULE:-$root/target/release/libredlimit.so}
floor=${REDLIMIT_FLOOR_SO:-$root/target/bench-floor/target/release/libredlimit_floor.so}
cell=${REDIS_CELL_SO:-/tmp/redis-cell/target/release/libredis_cell.so}
work=$(mktemp -d /tmp/redlimit-instructions.XXXXXX)
trap 'rm -rf "$work"' EXIT

if [[ -z ${REDLIMIT_MODULE:-} ]]; then
    cargo build --release -p redlimit-module >&2
fi
[[ -f $floor ]] || {
    echo "no floor module at $floor: run 'cargo bench --bench server' once, or set REDLIMIT_FLOOR_SO" >&2
    exit 1
}
for tool in valgrind callgrind_control redis-benchmark redis-cli; do
    command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 1; }
done

declare -A binaries=(
    [redis-7.0]=/usr/bin/redis-server
    [redis-8.2]=$root/.servers/redis-8.2/redis-server
    [valkey-9.1]=$root/.servers/valkey-9.1/valkey-server
)
servers=${REDLIMIT_SERVERS:-redis-7.0,redis-8.2,valkey-9.1}

rows=(
    "INCR|INCR k:__rand_int__"
    "FLOOR.CALL (module-API floor)|FLOOR.CALL f:__rand_int__ 1 2 60000"
    "RL.TOKENBUCKET 100 1 1000|RL.TOKENBUCKET tb:__rand_int__ 100 1 1000"
    "RL.THROTTLE 15 30 60|RL.THROTTLE th:__rand_int__ 15 30 60 1"
    "RL.FIXED 100 60000|RL.FIXED fx:__rand_int__ 100 60000"
    "RL.SLIDING 100 60000 APPROX|RL.SLIDING ap:__rand_int__ 100 60000 APPROX"
    "RL.SLIDING 100 60000 (exact)|RL.SLIDING sl:__rand_int__ 100 60000"
)
if [[ -f $cell ]]; then
    rows+=("redis-cell CL.THROTTLE 15 30 60|CL.THROTTLE cl:__rand_int__ 15 30 60 1")
fi
# The client's script engine (client/lua, for servers without the module): the same
# policies through EVALSHA, as redlimit::ServerEngine::Scripts sends them (no guard key).
script_sha=$( (cd client/lua && cat $(cat ORDER)) | sha1sum | cut -d' ' -f1)
rows+=(
    "scripts: token bucket 100 1 1000|EVALSHA $script_sha 1 {stb:__rand_int__}|rls decide 0 tokenbucket 100 1 1000 1 0 0"
    "scripts: throttle 15 30 60|EVALSHA $script_sha 1 {sth:__rand_int__}|rls decide 0 throttle 15 30 60 1 0 0"
    "scripts: fixed 100 60000|EVALSHA $script_sha 1 {sfx:__rand_int__}|rls decide 0 fixed 100 60000 1 0 0"
    "scripts: sliding 100 60000 APPROX|EVALSHA $script_sha 1 {sap:__rand_int__}|rls decide 0 sliding-approx 100 60000 1 0 0"
    "scripts: sliding 100 60000 (exact)|EVALSHA $script_sha 1 {ssl:__rand_int__}|rls decide 0 sliding 100 60000 1 0 0"
)

# Instructions of the server's time events (cron) in one dump: the inclusive cost of
# `processTimeEvents`, else of `serverCron`; empty when the binary has neither symbol.
cron_instructions() {
    local dump=$1 name
    local annotated
    annotated=$(callgrind_annotate --inclusive=yes --threshold=100 "$dump" 2>/dev/null || true)
    for name in processTimeEvents serverCron; do
        local ir
        ir=$(awk -v f=":$name" '
            { for (i = 2; i <= NF; i++) if ($i ~ f "$" || index($i, f " ") ) { gsub(",", "", $1); print $1; exit } }
        ' <<<"$annotated")
        if [[ -n $ir ]]; then
            echo "$ir"
            return
        fi
    done
}
if [[ -n ${REDLIMIT_INSTR_ONLY:-} ]]; then
    # Keeps the rows whose label matches this extended regex (and the floor's).
    kept=()
    for row in "${rows[@]}"; do
        label=${row%%|*}
        [[ $label =~ $REDLIMIT_INSTR_ONLY || $label == FLOOR* ]] && kept+=("$row")
    done
    rows=("${kept[@]}")
fi

# Counts one server in one mode; prints "server|mode|label|instructions per call excluding
# the time events (or n/a)|instructions per call in all".
measure() {
    local name=$1 mode=$2 binary=${binaries[$1]}
    local port=$((20000 + RANDOM % 20000)) out=$work/$name-$mode
    local args=(--port "$port" --dir "$work" --appendonly no --loadmodule "$module"
        --loadmodule "$floor")
    [[ -f $cell ]] && args+=(--loadmodule "$cell")
    if [[ $mode == propagating ]]; then args+=(--save "86400 1"); else args+=(--save ""); fi
    valgrind --tool=callgrind --compress-strings=no --callgrind-out-file="$out.%p" "$binary" "${args[@]}" \
        >"$out.log" 2>&1 &
    local pid=$!
    for _ in $(seq 200); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    (cd client/lua && cat $(cat ORDER)) | redis-cli -p "$port" -x SCRIPT LOAD >/dev/null
    local shown
    shown=$(redis-cli -p "$port" info redlimit | tr -d '\r' | grep propagation || true)
    echo "$name $mode: $shown" >&2
    local index=0 row label command
    for row in "${rows[@]}"; do
        label=${row%%|*}
        read -r -a command <<<"${row#*|}"
        # A script call costs ~40 times a command: a tenth of the calls is as steady.
        local n=$calls
        [[ $label == scripts:* ]] && n=$(((calls + 9) / 10))
        redis-benchmark -p "$port" -c 10 -P 16 -r 1000 -n 2000 -q "${command[@]}" >/dev/null 2>&1
        callgrind_control --zero "$pid" >/dev/null 2>&1
        redis-benchmark -p "$port" -c 10 -P 16 -r 1000 -n "$n" -q "${command[@]}" >/dev/null 2>&1
        callgrind_control --dump "$pid" >/dev/null 2>&1
        index=$((index + 1))
        local ir cron dump=$out.$pid.$index excluded=n/a
        ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")
        cron=$(cron_instructions "$dump")
        [[ -n $cron ]] && excluded=$(((ir - cron) / n))
        [[ -n ${REDLIMIT_INSTR_KEEP:-} ]] && mkdir -p "$REDLIMIT_INSTR_KEEP" &&
            cp "$dump" "$REDLIMIT_INSTR_KEEP/$name-$mode-$index.out"
        echo "$name|$mode|$label|$excluded|$((ir / n))"
    done
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
    wait "$pid" || true
}

results=$work/results
: >"$results"
for name in ${servers//,/ }; do
    [[ -x ${binaries[$name]:-} ]] || { echo "skipped $name: not installed" >&2; continue; }
    for mode in cache-only propagating; do
        measure "$name" "$mode" | tee -a "$results" >&2
    done
done

echo
echo "Instructions per call (callgrind, server user space, the server's time events excluded; $calls calls of each command, a tenth of that for script calls; -P 16, 1,000 random keys)"
echo
echo "| server | command | cache-only | × floor | propagating | × floor | cache-only with cron | propagating with cron |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
for name in ${servers//,/ }; do
    grep -q "^$name|" "$results" || continue
    # One column of the results: field 4 (time events excluded) or 5 (in all).
    value() { awk -F'|' -v s="$name" -v m="$1" -v l="$2" -v f="$3" '$1==s && $2==m && $3==l {print $f}' "$results"; }
    ratio() { [[ $1 == n/a || $2 == n/a || -z $1 || -z $2 ]] && echo n/a || printf '%.2f×' "$(echo "$1 / $2" | bc -l)"; }
    floor_label="FLOOR.CALL (module-API floor)"
    for row in "${rows[@]}"; do
        label=${row%%|*}
        cache=$(value cache-only "$label" 4)
        prop=$(value propagating "$label" 4)
        printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$label" \
            "$cache" "$(ratio "$cache" "$(value cache-only "$floor_label" 4)")" \
            "$prop" "$(ratio "$prop" "$(value propagating "$floor_label" 4)")" \
            "$(value cache-only "$label" 5)" "$(value propagating "$label" 5)"
    done
done
