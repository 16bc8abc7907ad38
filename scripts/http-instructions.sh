#!/usr/bin/env bash
# Instructions per request of the http bench's apps, counted by callgrind: the client's
# and the layer's work per request, a figure that does not move with the machine's load
# (unlike `cargo bench --bench http`'s CPU µs per request on a shared machine).
#
#   scripts/http-instructions.sh                       # incr, redis, memory
#   REDLIMIT_HTTP_VARIANTS=none,incr,redis,governor,memory,redis2,memory2 scripts/http-instructions.sh
#   REDLIMIT_HTTP_REQUESTS=4000 REDLIMIT_HTTP_KEEP=/tmp/cg scripts/http-instructions.sh
#
# Starts one redis-server (/usr/bin/redis-server, the http bench's first server; or
# $REDLIMIT_HTTP_SERVER) with the release module, not under valgrind. For each variant,
# runs benches/http_instructions.rs (the bench's router driven directly: no TCP, one
# request at a time, the answer's body read) under `valgrind --tool=callgrind` twice,
# with N and 2N requests after the same warm-up: (I(2N) - I(N)) / N is the app's
# user-space instructions per request (every thread: the app's runtime and redis-rs's
# connection task), with set-up, connection and warm-up cancelled out. A current-thread
# runtime by default (counts repeat exactly, but tower_governor's, which move by up to
# ~2,000); REDLIMIT_BENCH_APP_THREADS=2 runs the
# bench's multi-thread runtime (counts move by ~1,000 from run to run). Not counted:
# redis-server's work and the kernel's.
#
# Variants: none (a), redis (b), governor (c), memory (d), incr (e: one bare INCR per
# request through redis-rs), redis2 (f: two limits, one RL.ALL), memory2 (g).
# REDLIMIT_HTTP_KEEP=<dir> keeps the callgrind outputs there (for callgrind_annotate).
# Needs valgrind; builds the release module and the driver first.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

requests=${REDLIMIT_HTTP_REQUESTS:-2000}
variants=${REDLIMIT_HTTP_VARIANTS:-incr,redis,memory}
server=${REDLIMIT_HTTP_SERVER:-/usr/bin/redis-server}
module=${REDLIMIT_MODULE:-$root/target/release/libredlimit.so}
work=${REDLIMIT_HTTP_KEEP:-}
if [[ -z $work ]]; then
    work=$(mktemp -d /tmp/redlimit-http-instructions.XXXXXX)
    trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
else
    mkdir -p "$work"
    trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true' EXIT
fi
for tool in valgrind redis-cli; do
    command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 1; }
done

if [[ -z ${REDLIMIT_MODULE:-} ]]; then
    cargo build --release -p redlimit-module >&2
fi
driver=$(cargo build --release --bench http_instructions --message-format=json 2>/dev/null \
    | grep -o '"executable":"[^"]*"' | grep http_instructions | tail -1 | cut -d'"' -f4)
[[ -x $driver ]] || { echo "could not build benches/http_instructions.rs" >&2; exit 1; }

port=$((20000 + RANDOM % 20000))
"$server" --port "$port" --dir "$work" --save "" --appendonly no --loadmodule "$module" \
    >"$work/server.log" 2>&1 &
for _ in $(seq 100); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.1
done
export REDLIMIT_HTTP_URL=redis://127.0.0.1:$port

# Instructions of one run: every thread's total, summed.
count() {
    local variant=$1 n=$2 out=$work/$1-$2
    valgrind --tool=callgrind --separate-threads=no --callgrind-out-file="$out.cg" \
        "$driver" --bench "$variant" "$n" >"$out.log" 2>&1 || {
        cat "$out.log" >&2
        exit 1
    }
    awk '/^(summary|totals):/ {print $2; exit}' "$out.cg"
}

echo "Instructions per request (callgrind, the app's user space; (I(2N) - I(N)) / N, N = $requests; $(git rev-parse --short HEAD))"
echo
echo "| variant | instructions per request |"
echo "|---|---:|"
for variant in ${variants//,/ }; do
    once=$(count "$variant" "$requests")
    twice=$(count "$variant" $((2 * requests)))
    echo "| $variant | $(((twice - once) / requests)) |"
done
