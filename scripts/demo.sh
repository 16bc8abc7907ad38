#!/usr/bin/env bash
# The demo: builds everything, starts a redis-server with the redlimit module, runs the
# quickstart and the outbound LLM example (about 3 s), then the example API
# (examples/axum_api.rs) behind the middleware, sends a burst that shows 200s turning
# into 429s with their headers, and keeps serving until Ctrl-C.
# Installs what is missing first (scripts/install-deps.sh).
# DEMO_EXIT=1 stops after the burst (for scripted runs).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-deps.sh >/dev/null
echo "== building the module and the example API"
cargo build --quiet -p redlimit-module
cargo build --quiet --example axum_api --example quickstart --example llm_outbound

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
REDIS_PORT=$(free_port)
API_PORT=$(free_port)
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo; echo "stopping"; exit 0' INT TERM

echo "== redis-server with the module on 127.0.0.1:$REDIS_PORT"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$WORK" --save '' --appendonly no \
  --loadmodule "$PWD/target/debug/libredlimit.so" >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 50); do
  redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
  sleep 0.1
done

echo "== the module's own commands (examples/quickstart.rs)"
REDIS_URL="redis://127.0.0.1:$REDIS_PORT" target/debug/examples/quickstart

echo
echo "== outbound calls to LLM providers, requests and tokens per minute (examples/llm_outbound.rs)"
REDIS_URL="redis://127.0.0.1:$REDIS_PORT" target/debug/examples/llm_outbound

echo
echo "== the example API on 127.0.0.1:$API_PORT (GET /api/hello: 10 at once, then 1 per second per IP)"
REDIS_URL="redis://127.0.0.1:$REDIS_PORT" LISTEN="127.0.0.1:$API_PORT" \
  target/debug/examples/axum_api >"$WORK/api.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$API_PORT/health" >/dev/null 2>&1 && break
  sleep 0.1
done

echo "== a burst of 12 requests"
for i in $(seq 1 12); do
  curl -s -o /dev/null -D "$WORK/headers" "http://127.0.0.1:$API_PORT/api/hello"
  status=$(head -1 "$WORK/headers" | tr -d '\r')
  limit=$(grep -i '^ratelimit:' "$WORK/headers" | tr -d '\r' || true)
  retry=$(grep -i '^retry-after:' "$WORK/headers" | tr -d '\r' || true)
  printf '%2d  %-30s %-32s %s\n' "$i" "$status" "$limit" "$retry"
done
echo
echo "== the last answer in full"
curl -si "http://127.0.0.1:$API_PORT/api/hello"
echo
echo
if [[ "${DEMO_EXIT:-0}" == "1" ]]; then
  exit 0
fi
echo "Serving until Ctrl-C. Try:"
echo "  curl -i http://127.0.0.1:$API_PORT/api/hello"
echo "  curl -i -X POST http://127.0.0.1:$API_PORT/api/login      # 5 per minute"
echo "  curl -s http://127.0.0.1:$API_PORT/metrics"
wait
