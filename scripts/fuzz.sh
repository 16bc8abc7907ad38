#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz + libFuzzer) of the state decoder, `decide` and the
# module's argument parsers; targets in fuzz/fuzz_targets/, committed seeds in
# fuzz/seeds/, minimised past findings in fuzz/regressions/ (replayed on every run).
#
#   scripts/fuzz.sh --short                     each target 20 s (CI; ≤ 2 min with the build)
#   REDLIMIT_FUZZ_SECONDS=300 scripts/fuzz.sh   each target 300 s (default 300)
#   scripts/fuzz.sh [--short] decode args       only these targets
#
# Stable Rust is enough: RUSTC_BOOTSTRAP=1 lets stable rustc take cargo-fuzz's -Z flags.
# Installs cargo-fuzz (and a C++ compiler for libFuzzer, as root) when missing. A finding
# fails the run; its input is in fuzz/artifacts/<target>/ (replay it with
# `RUSTC_BOOTSTRAP=1 cargo fuzz run -s none <target> <file>` in fuzz/).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"

seconds="${REDLIMIT_FUZZ_SECONDS:-300}"
if [[ "${1:-}" == "--short" ]]; then
  seconds=20
  shift
fi
targets=(decode decide args)
if [[ $# -gt 0 ]]; then
  targets=("$@")
fi

if ! command -v c++ >/dev/null 2>&1; then
  [[ $(id -u) -eq 0 ]] || { echo "fuzz: a C++ compiler is needed (apt-get install g++)" >&2; exit 1; }
  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y g++
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
# No sanitizer: the code under test is safe Rust, and the targets run with overflow checks
# and debug assertions (cargo-fuzz's default), which is what finds our bugs; ASan would
# halve the executions.
flags=(--sanitizer none)
for target in "${targets[@]}"; do
  cargo fuzz build "${flags[@]}" "$target"
done
for target in "${targets[@]}"; do
  echo "== fuzz $target: ${seconds}s"
  mkdir -p "corpus/$target" "regressions/$target"
  # The first directory gathers what the run finds (not committed); seeds and regressions
  # are read only.
  cargo fuzz run "${flags[@]}" "$target" "corpus/$target" "seeds/$target" "regressions/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 2>&1 |
    grep -vE '^#[0-9]+\s+(NEW|REDUCE|pulse)' || { echo "fuzz: $target FAILED" >&2; exit 1; }
done
echo "fuzz: OK (${targets[*]}, ${seconds}s each)"
