#!/usr/bin/env bash
# Runs every test: formatting, lints, unit and property tests, and the live tests
# against Redis 7.0, Redis 8.2 and Valkey 9.1 with the module loaded.
# Installs what is missing first (scripts/install-deps.sh). Long fuzz runs are opt-in:
# REDLIMIT_FUZZ_CASES=100000 scripts/test.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-deps.sh

echo "== format and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
# The client without its optional features (no tracing, metrics or axum).
cargo clippy -p redlimit --lib --no-default-features --locked -- -D warnings

# The Dockerfile's invariants are tests/docker.rs; hadolint (installed by install-deps.sh)
# lints it.
.servers/tools/hadolint --failure-threshold style Dockerfile examples/Dockerfile.api

echo "== build (the live tests load target/debug/libredlimit.so; tests/bounds.rs measures the release build)"
cargo build --workspace --all-targets --locked
cargo build --release -p redlimit-module --locked
export REDLIMIT_RELEASE_MODULE="${CARGO_TARGET_DIR:-$PWD/target}/release/libredlimit.so"

echo "== tests"
# A missing server fails the live tests anyway; this also overrides a
# REDLIMIT_SKIP_MISSING_SERVERS=1 left in the environment: the full suite never skips.
export REDLIMIT_REQUIRE_ALL_SERVERS=1
# The build above is the one to test, even if a release build is newer.
export REDLIMIT_MODULE="${CARGO_TARGET_DIR:-$PWD/target}/debug/libredlimit.so"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
  cargo test --workspace --doc --locked
  # The client and middleware suites again on servers without the module, through the
  # Lua script engine (ServerEngine::Scripts, then Auto): about a minute each.
  for engine in scripts auto; do
    echo "== client + middleware suites, REDLIMIT_TEST_ENGINE=$engine"
    REDLIMIT_TEST_ENGINE=$engine cargo nextest run --locked --no-fail-fast --test client --test middleware
  done
else
  cargo test --workspace --locked --no-fail-fast
fi

# ---- python package (python/): ruff, mypy --strict, pytest on the three servers + uvicorn ----
echo "== python (python/: ruff, mypy --strict, pytest against the three servers and a real uvicorn)"
PY_VENV=.servers/python-venv
PY_PINS=(redis==8.2.0 fastapi==0.165.0 pytest==9.2.0 httpx==0.29.0 uvicorn==0.55.0 ruff==0.17.6 mypy==2.4.1)
[[ -x "$PY_VENV/bin/python" ]] || python3 -m venv "$PY_VENV"
"$PY_VENV/bin/pip" install -q --disable-pip-version-check "./python[fastapi]" "${PY_PINS[@]}"
(
  cd python
  "../$PY_VENV/bin/ruff" check .
  "../$PY_VENV/bin/ruff" format --check .
  "../$PY_VENV/bin/mypy"
  "../$PY_VENV/bin/pytest" -q -p no:cacheprovider
  # The suites again on servers started without the module, deciding through the Lua
  # scripts (engine="scripts", then "auto"), as the Rust suites above. The differential
  # test (module against scripts) is engine-independent: it ran above.
  for engine in scripts auto; do
    echo "== python suites, REDLIMIT_TEST_ENGINE=$engine"
    REDLIMIT_TEST_ENGINE=$engine "../$PY_VENV/bin/pytest" -q -p no:cacheprovider \
      --ignore=tests/test_differential.py
  done
)
# ---- end python package ----

echo "== fuzz (short: each target 20 s; long runs: REDLIMIT_FUZZ_SECONDS=N scripts/fuzz.sh)"
scripts/fuzz.sh --short

echo "== valgrind (short: the module under memcheck on every server; full: scripts/valgrind.sh --full)"
scripts/valgrind.sh

# --- examples/node (Express + node-redis / ioredis against the three servers) ---
echo "== examples/node (npm ci, node --test: real 429s, headers, 503 without the module, cluster routing)"
(
  cd examples/node
  npm ci --no-audit --no-fund
  node --test
)
# --- end examples/node ---
