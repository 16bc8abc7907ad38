#!/usr/bin/env bash
# The demo: builds the module, starts a redis-server with it on a free port, shows a
# burst of RL.TOKENBUCKET decisions going from allowed to denied, and stops the server.
# Installs what is missing first (scripts/install-deps.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-deps.sh >/dev/null
cargo build --quiet -p redlimit-module
cargo run --quiet --example quickstart
