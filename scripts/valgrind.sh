#!/usr/bin/env bash
# Leak and undefined-behaviour check: each server runs under valgrind (memcheck) with the
# module loaded, over a mixed workload (every RL.* command and its error paths, RDB
# save/load, AOF rewrite with and without the RDB preamble, DUMP/RESTORE including
# corrupted payloads, COPY/RENAME/MOVE, expiry, lazy and async frees, FLUSHALL), then a
# clean SHUTDOWN so valgrind checks for leaks. Its short mode is the last step of scripts/test.sh; --full is opt-in.
#
#   scripts/valgrind.sh [--short|--full] [--debug] [--module PATH] [--keep] [SERVER...]
#
#   SERVER     redis-7.0 (/usr/bin/redis-server), redis-8.2, valkey-9.1 (from .servers/,
#              see scripts/install-deps.sh); default: all three, one after the other.
#   --short    the CI size (default): about 10 s per server, 35 s for all three (2 cores).
#   --full     a larger workload (more rounds, bigger states, more corrupted payloads)
#              and --track-origins=yes: 50-130 s per server, about 4.5 minutes for all three.
#   --debug    load target/debug/libredlimit.so (exact stacks with file:line, slower)
#              instead of the release build (what users run; the default).
#   --module P load this .so as is (no cargo build).
#   --keep     keep the work directories (valgrind logs, server log, AOF/RDB files).
#
# Attribution: an error (or a definitely lost block) is the module's when any frame of
# any of its stacks is in libredlimit.so or is a Rust symbol of redlimit/redlimit_core/
# redis_module. Those fail the run; errors wholly inside the server are listed but do
# not. Exit status: 0 = nothing attributed to the module and the workload ran as
# expected; 1 = an error or definite leak in the module, or the workload failed (a
# command that must succeed failed, the server crashed or did not exit cleanly).
#
# Coverage differs by server allocator: Valkey 9.1 (libc malloc) and Redis 7.0 (jemalloc
# as a shared library, intercepted with --soname-synonyms) give memcheck every heap
# block, so leaks and heap overruns are seen. Redis 8.2 links jemalloc statically with
# the je_ prefix: memcheck cannot see its heap blocks (no leak or heap-overrun checks for
# memory from RedisModule_Alloc), only uses of uninitialised values and wild accesses.
#
# scripts/valgrind.supp suppresses server-only noise (see the comments in it).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SUPP="$REPO_ROOT/scripts/valgrind.supp"

die() {
    echo "valgrind.sh: error: $*" >&2
    exit 2
}

mode=short
build=release
module=""
keep=0
servers=()
while (($#)); do
    case "$1" in
    --short) mode=short ;;
    --full) mode=full ;;
    --debug) build=debug ;;
    --release) build=release ;;
    --module)
        shift
        [[ $# -gt 0 ]] || die "--module needs a path"
        module="$1"
        ;;
    --keep) keep=1 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    redis-7.0 | redis-8.2 | valkey-9.1) servers+=("$1") ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done
((${#servers[@]})) || servers=(redis-7.0 redis-8.2 valkey-9.1)

server_binary() {
    case "$1" in
    redis-7.0) echo /usr/bin/redis-server ;;
    redis-8.2) echo "$REPO_ROOT/.servers/redis-8.2/redis-server" ;;
    valkey-9.1) echo "$REPO_ROOT/.servers/valkey-9.1/valkey-server" ;;
    esac
}

# --- prerequisites -----------------------------------------------------------------------
if ! command -v valgrind >/dev/null 2>&1; then
    [[ $(id -u) -eq 0 ]] || die "valgrind is missing: run as root (apt-get install -y valgrind)"
    echo "valgrind.sh: apt-get install valgrind"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y valgrind
fi
command -v python3 >/dev/null 2>&1 || die "python3 is needed (standard library only)"
for s in "${servers[@]}"; do
    [[ -x "$(server_binary "$s")" ]] || die "$s: $(server_binary "$s") missing (run scripts/install-deps.sh)"
done

if [[ -z "$module" ]]; then
    flag=()
    [[ $build == release ]] && flag=(--release)
    (cd "$REPO_ROOT" && cargo build -q "${flag[@]}" -p redlimit-module) || die "cargo build failed"
    module="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/$build/libredlimit.so"
fi
[[ -f "$module" ]] || die "module $module not found"

echo "valgrind.sh: $(valgrind --version), mode $mode, module $module ($build)"

# --- the workload: a RESP client on the standard library ----------------------------------
read -r -d '' WORKLOAD <<'PY' || true
import glob, os, random, socket, struct, sys, time

port, mode, workdir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
FULL = mode == "full"
SIZE = dict(
    rounds=60 if FULL else 20,
    bulk_keys=5000 if FULL else 1000,
    log_entries=3000 if FULL else 1000,
    leases=1000 if FULL else 300,
    dump_mutations=400 if FULL else 150,
    state_mutations=400 if FULL else 150,
)
HOUR = 3600000
rng = random.Random(12)


class Failure(Exception):
    pass


class ServerError:
    def __init__(self, msg):
        self.msg = msg

    def __repr__(self):
        return "-" + self.msg


def encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, int):
            a = str(a).encode()
        elif isinstance(a, str):
            a = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Conn:
    def __init__(self, timeout=600):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.sent = 0

    def _fill(self):
        data = self.s.recv(1 << 16)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buf += data

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2:]
                return line
            self._fill()

    def _bulk(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def read(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return ServerError(rest.decode(errors="replace"))
        if t in (b":", b"("):
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self._bulk(n)
        if t in (b"*", b"~", b">"):
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        if t == b"%":
            return [(self.read(), self.read()) for _ in range(int(rest))]
        if t == b"|":
            for _ in range(2 * int(rest)):
                self.read()
            return self.read()
        if t == b"_":
            return None
        if t == b"#":
            return rest == b"t"
        if t == b",":
            return float(rest)
        if t in (b"=", b"!"):
            data = self._bulk(int(rest))
            return data if t == b"=" else ServerError(data.decode(errors="replace"))
        raise Failure("unexpected RESP type byte %r" % line[:20])

    def call(self, *args):
        self.s.sendall(encode(args))
        self.sent += 1
        return self.read()

    def pipeline(self, commands):
        self.s.sendall(b"".join(encode(c) for c in commands))
        self.sent += len(commands)
        return [self.read() for _ in commands]


def show(args):
    text = " ".join(a.decode(errors="backslashreplace") if isinstance(a, bytes) else str(a) for a in args)
    return text if len(text) < 160 else text[:160] + "..."


def ok(c, *args):
    r = c.call(*args)
    if isinstance(r, ServerError):
        raise Failure("%s -> unexpected error %s" % (show(args), r.msg))
    return r


def err(c, *args, prefix=None):
    r = c.call(*args)
    if not isinstance(r, ServerError):
        raise Failure("%s -> %r, expected an error" % (show(args), r))
    if prefix and not r.msg.startswith(prefix):
        raise Failure("%s -> %s, expected %s..." % (show(args), r.msg, prefix))
    return r


def anyreply(c, *args):
    """Any reply or error will do: the server must only stay up."""
    return c.call(*args)


def decision(c, *args):
    r = ok(c, *args)
    if not (isinstance(r, list) and len(r) == 5 and all(isinstance(x, int) for x in r)):
        raise Failure("%s -> %r, expected five integers" % (show(args), r))
    return r


def expect(what, got, want):
    if got != want:
        raise Failure("%s: got %r, expected %r" % (what, got, want))


counts = {"commands": 0}


def section(name):
    print("  workload: " + name, flush=True)


def key(name, i=0):
    # Binary, not UTF-8.
    return b"\x00\xff\xfe{rl}:" + name.encode() + b":%d" % i


# --- sections --------------------------------------------------------------------------------
def every_command(c):
    section("every RL.* command, %d rounds" % SIZE["rounds"])
    for i in range(SIZE["rounds"]):
        j = i % 5
        tb = key("tb", j)
        decision(c, "RL.TOKENBUCKET", tb, 5, 1, 1000)
        decision(c, "RL.TOKENBUCKET", tb, 5, 1, 1000, "COST", 2)
        decision(c, "RL.TOKENBUCKET", tb, 5, 1, 1000, "PEEK")
        decision(c, "RL.TOKENBUCKET", tb, 5, 1, 1000, "COST", 0)
        decision(c, "RL.TOKENBUCKET", tb, 5, 1, 1000, "MAXWAIT", 2000)
        decision(c, "RL.TOKENBUCKET", tb, 5, 1, 1000, "COST", 3, "PEEK", "MAXWAIT", 500)
        decision(c, "RL.TOKENBUCKET", tb, 5, 1, 1000, "COST", 9, "MAXWAIT", 1)  # never: -1
        # Policy change; refills slowly, so the key cannot go idle before RL.STATUS below
        # reads it (under valgrind on a loaded machine a round can take seconds).
        decision(c, "RL.TOKENBUCKET", tb, 10, 1, 600000)
        th = key("th", j)
        decision(c, "RL.THROTTLE", th, 15, 1, 600)
        decision(c, "RL.THROTTLE", th, 15, 1, 600, 3)
        decision(c, "RL.THROTTLE", th, 15, 1, 600, 0)
        decision(c, "RL.THROTTLE", th, 2, 1, 1, 5)  # policy change, denied
        sl = key("sl", j)
        decision(c, "RL.SLIDING", sl, 3, 10000)
        decision(c, "RL.SLIDING", sl, 3, 10000, "COST", 2)
        decision(c, "RL.SLIDING", sl, 3, 10000, "PEEK")
        decision(c, "RL.SLIDING", sl, 3, 10000)  # denied
        decision(c, "RL.SLIDING", sl, 5, 20000, "COST", 1)
        sa = key("sa", j)
        decision(c, "RL.SLIDING", sa, 1000000, 60000, "APPROX")
        decision(c, "RL.SLIDING", sa, 1000000, 60000, "COST", 5, "APPROX")
        decision(c, "RL.SLIDING", sa, 1000000, 60000, "APPROX", "PEEK")
        decision(c, "RL.SLIDING", sa, 10, 600000, "APPROX", "COST", 11)
        fx = key("fx", j)
        # Day and half-day windows: an epoch-aligned window that ended between the write
        # and RL.STATUS below would leave no key (a minute's did, once in CI).
        decision(c, "RL.FIXED", fx, 10, 86400000)
        decision(c, "RL.FIXED", fx, 10, 86400000, "COST", 3)
        decision(c, "RL.FIXED", fx, 10, 86400000, "PEEK")
        decision(c, "RL.FIXED", fx, 4, 43200000, "COST", 4)
        a1, a2, a3 = key("all1", j), key("all2", j), key("all3", j)
        for extra in ([], ["PEEK"], ["COST", 2], ["COST", 0], ["COST", 50]):
            r = ok(c, "RL.ALL", 4, a1, a2, a1, a3, "SLIDING", 10, 60000, "TOKENBUCKET", 5, 1, 1000,
                   "SLIDING", 10, 60000, "FIXED", 7, 86400000, *extra)
            if not (isinstance(r, list) and len(r) == 5 and r[0] in (0, 1)
                    and all(isinstance(d, list) and len(d) == 5 for d in r[1:])):
                raise Failure("RL.ALL reply %r" % (r,))
        ok(c, "RL.ALL", 1, key("all4", j), "SLIDING", 100, 60000, "APPROX")
        ls = key("ls", j)
        lease = bytes([i % 256, 0, 0xff]) + b"job"
        decision(c, "RL.ACQUIRE", ls, 3, 30000, lease)
        decision(c, "RL.ACQUIRE", ls, 3, 30000, lease)  # renewal
        decision(c, "RL.ACQUIRE", ls, 3, 30000, b"\xff" * 200)
        decision(c, "RL.ACQUIRE", ls, 3, 30000, b"other")
        decision(c, "RL.ACQUIRE", ls, 3, 30000, b"fourth")  # denied when full
        expect("RL.RELEASE held", ok(c, "RL.RELEASE", ls, lease), 1)
        expect("RL.RELEASE again", ok(c, "RL.RELEASE", ls, lease), 0)
        expect("RL.RELEASE unknown", ok(c, "RL.RELEASE", key("nolease"), b"x"), 0)
        for k in (tb, th, sl, sa, fx, a1, a3, ls):
            r = ok(c, "RL.STATUS", k)
            if not isinstance(r, list):
                raise Failure("RL.STATUS %r -> %r" % (k, r))
        expect("RL.STATUS missing", ok(c, "RL.STATUS", key("missing")), None)
        if i % 2:
            ok(c, "RL.RELEASE", ls, b"\xff" * 200)
            ok(c, "RL.RELEASE", ls, b"other")
            ok(c, "RL.RELEASE", ls, b"fourth")  # last lease: the key goes
            expect("RL.RESET", ok(c, "RL.RESET", tb, th, key("missing")), 2)
    one = key("lease-once")
    decision(c, "RL.ACQUIRE", one, 2, 30000, b"a\x00")
    decision(c, "RL.ACQUIRE", one, 2, 30000, b"b\xff")
    expect("RL.RELEASE", ok(c, "RL.RELEASE", one, b"a\x00"), 1)
    expect("RL.RELEASE the last lease", ok(c, "RL.RELEASE", one, b"b\xff"), 1)
    expect("EXISTS after the last lease is released", ok(c, "EXISTS", one), 0)


def resp3(c3):
    section("RESP3")
    ok(c3, "HELLO", 3)
    decision(c3, "RL.TOKENBUCKET", key("r3"), 5, 1, 1000)
    r = ok(c3, "RL.STATUS", key("r3"))
    if not (isinstance(r, list) and r and isinstance(r[0], tuple)):
        raise Failure("RL.STATUS under RESP3 should be a map, got %r" % (r,))
    expect("RL.STATUS missing (RESP3)", ok(c3, "RL.STATUS", key("missing")), None)
    ok(c3, "RL.ALL", 2, key("r3"), key("r3b"), "TOKENBUCKET", 5, 1, 1000, "FIXED", 3, 1000)
    err(c3, "RL.TOKENBUCKET", key("r3"), "x", 1, 1000, prefix="ERR")


def errors(c):
    section("error paths")
    k = key("e")
    huge = "18446744073709551617"
    for args in [
        ("RL.TOKENBUCKET",), ("RL.TOKENBUCKET", k), ("RL.TOKENBUCKET", k, 5, 1),
        ("RL.TOKENBUCKET", k, 5, 1, "x"), ("RL.TOKENBUCKET", k, -5, 1, 1000),
        ("RL.TOKENBUCKET", k, 5, 1, "1.5"), ("RL.TOKENBUCKET", k, 5, 1, " 1"),
        ("RL.TOKENBUCKET", k, huge, 1, 1000), ("RL.TOKENBUCKET", k, 5, 1, "10000000000001"),
        ("RL.TOKENBUCKET", k, 5, 1, 1000, "COST"), ("RL.TOKENBUCKET", k, 5, 1, 1000, "COST", 1, "COST", 1),
        ("RL.TOKENBUCKET", k, 5, 1, 1000, "COST", "4611686018427387905"),
        ("RL.TOKENBUCKET", k, 5, 1, 1000, "COST", -1), ("RL.TOKENBUCKET", k, 5, 1, 1000, "APROX"),
        ("RL.TOKENBUCKET", k, 5, 1, 1000, b"\xff\x00" * 40), ("RL.TOKENBUCKET", k, 5, 1, 1000, "MAXWAIT"),
        ("RL.TOKENBUCKET", k, "4611686018427388", 1, 1000),
        ("RL.THROTTLE", k, 15, 30), ("RL.THROTTLE", k, 15, 30, 60, -1), ("RL.THROTTLE", k, 15, 30, 60, 1, 2),
        ("RL.THROTTLE", k, 15, "x", 60), ("RL.THROTTLE", k, huge, 30, 60),
        ("RL.SLIDING", k, 3), ("RL.SLIDING", k, 2000000, 1000), ("RL.SLIDING", k, 3, 1000, "APPROX", "APPROX"),
        ("RL.SLIDING", k, 3, 1000, "PEEK", "PEEK"), ("RL.SLIDING", k, 3, "99999999999999"),
        ("RL.FIXED", k, 10), ("RL.FIXED", k, 10, 1000, "APPROX"), ("RL.FIXED", k, "x", 1000),
        ("RL.ALL",), ("RL.ALL", 0), ("RL.ALL", "x", k), ("RL.ALL", -1, k), ("RL.ALL", 1, k),
        ("RL.ALL", 2, k, k, "SLIDING", 10, 60000), ("RL.ALL", 1, k, "SLIDNG", 1, 2),
        ("RL.ALL", 1, k, "TOKENBUCKET", 1), ("RL.ALL", 1, k, "FIXED", 1, 1000, "COST"),
        ("RL.ALL", 1, k, "FIXED", 1, 1000, "FIXED", 1, 1000), ("RL.ALL", 5, k),
        ("RL.ALL", 33, *[b"k%d" % n for n in range(33)], *(["FIXED", 1, 1000] * 33)),
        ("RL.ALL", huge, k, "FIXED", 1, 1000),
        ("RL.ACQUIRE", k, 3, 30000), ("RL.ACQUIRE", k, 100001, 1000, "id"), ("RL.ACQUIRE", k, 3, 1000, b"i" * 1025),
        ("RL.ACQUIRE", k, 3, "x", "id"), ("RL.RELEASE", k), ("RL.RELEASE", k, "a", "b"),
        ("RL.STATUS",), ("RL.STATUS", k, k), ("RL.RESET",), ("RL.SETSTATE", k),
        ("RL.SETSTATE", k, b""), ("RL.SETSTATE", k, b"\xff" * 64), ("RL.SETSTATE", k, "state", "x"),
    ]:
        err(c, *args)
    # Inputs whose verdict is the module's choice: the server must only survive them.
    for args in [
        ("RL.TOKENBUCKET", k, 0, 1, 1000), ("RL.TOKENBUCKET", k, 5, 0, 1000), ("RL.TOKENBUCKET", k, 5, 1, 0),
        ("RL.TOKENBUCKET", k, 5, 1, 1000, "MAXWAIT", "4611686018427387904"), ("RL.THROTTLE", k, 0, 0, 0),
        ("RL.THROTTLE", k, 0, 1, 1), ("RL.SLIDING", k + b"s", 0, 0), ("RL.SLIDING", k + b"a", 0, 0, "APPROX"),
        ("RL.FIXED", k + b"f", 0, 1), ("RL.ACQUIRE", k + b"l", 0, 1, ""), ("RL.ALL", 32, *[k + b"%d" % n for n in range(32)],
        *(["TOKENBUCKET", 1, 1, 1] * 32)), ("RL.THROTTLE", k + b"t", "9223372036854775807", 1, 1),
        ("RL.SLIDING", k + b"a2", "1099511627776", "1099511627776", "APPROX"),
    ]:
        anyreply(c, *args)
    # WRONGTYPE: a key of another type, and a limiter of another algorithm.
    s = key("string")
    ok(c, "SET", s, "v")
    ok(c, "LPUSH", key("list"), "v")
    for args in [
        ("RL.TOKENBUCKET", s, 5, 1, 1000), ("RL.THROTTLE", s, 1, 1, 1), ("RL.SLIDING", s, 1, 1000),
        ("RL.SLIDING", s, 1, 1000, "APPROX"), ("RL.FIXED", s, 1, 1000), ("RL.ACQUIRE", s, 1, 1000, "i"),
        ("RL.RELEASE", s, "i"), ("RL.STATUS", s), ("RL.STATUS", key("list")),
        ("RL.ALL", 2, key("tb", 0), s, "TOKENBUCKET", 5, 1, 1000, "FIXED", 1, 1000),
        ("RL.RESET", key("sl", 0), s),
    ]:
        err(c, *args, prefix="WRONGTYPE")
    expect("RL.RESET refused deletes nothing", ok(c, "EXISTS", key("sl", 0)), 1)
    decision(c, "RL.TOKENBUCKET", key("alg"), 5, 1, 1000)
    for args in [("RL.SLIDING", key("alg"), 3, 1000), ("RL.SLIDING", key("alg"), 3, 1000, "APPROX"),
                 ("RL.FIXED", key("alg"), 3, 1000), ("RL.THROTTLE", key("alg"), 1, 1, 1),
                 ("RL.ACQUIRE", key("alg"), 1, 1000, "i"), ("RL.RELEASE", key("alg"), "i"),
                 ("RL.ALL", 1, key("alg"), "FIXED", 1, 1000)]:
        err(c, *args, prefix="WRONGTYPE")
    for args in [("GET", key("alg")), ("LPUSH", key("alg"), "x"), ("INCR", key("alg"))]:
        err(c, *args, prefix="WRONGTYPE")


def clock_offset(c):
    section("clock offset: keys expire on the module clock")
    for bad in ("-1", "10000000000001", "abc", ""):
        err(c, "CONFIG", "SET", "redlimit.clock-offset-ms", bad)
    ks = [key("off", n) for n in range(6)]
    decision(c, "RL.TOKENBUCKET", ks[0], 2, 1, 1000, "COST", 2)
    decision(c, "RL.THROTTLE", ks[1], 1, 1, 1, 2)
    decision(c, "RL.SLIDING", ks[2], 2, 1000, "COST", 2)
    decision(c, "RL.SLIDING", ks[3], 2, 1000, "APPROX", "COST", 2)
    decision(c, "RL.FIXED", ks[4], 2, 1000, "COST", 2)
    decision(c, "RL.ACQUIRE", ks[5], 1, 1000, "held")
    ok(c, "CONFIG", "SET", "redlimit.clock-offset-ms", 3600000)
    expect("offset read back", ok(c, "CONFIG", "GET", "redlimit.clock-offset-ms")[1], b"3600000")
    for k in ks:
        expect("RL.STATUS of a key expired on the module clock", ok(c, "RL.STATUS", k), None)
    r = decision(c, "RL.TOKENBUCKET", ks[0], 2, 1, 1000, "COST", 2)
    expect("a key past its moment is a fresh limiter", r[0], 1)
    decision(c, "RL.SLIDING", ks[0] + b"x", 2, 1000)
    decision(c, "RL.ACQUIRE", ks[5], 1, 1000, "new")
    ok(c, "CONFIG", "SET", "redlimit.clock-offset-ms", 0)  # the clock moves back
    for k in ks:
        anyreply(c, "RL.STATUS", k)
    decision(c, "RL.TOKENBUCKET", ks[0], 2, 1, 1000)
    decision(c, "RL.ACQUIRE", ks[5], 1, 1000, "third")


def scripts_and_transactions(c):
    section("MULTI/EXEC, EVAL, INFO, COMMAND")
    ok(c, "MULTI")
    ok(c, "RL.TOKENBUCKET", key("mx"), 5, 1, 1000)
    ok(c, "RL.SLIDING", key("mx2"), 3, 1000)
    ok(c, "RL.ALL", 2, key("mx"), key("mx3"), "TOKENBUCKET", 5, 1, 1000, "FIXED", 1, 1000)
    r = ok(c, "EXEC")
    expect("EXEC replies", len(r), 3)
    r = ok(c, "EVAL", "return redis.call('RL.TOKENBUCKET', KEYS[1], 5, 1, 1000)", 1, key("ev"))
    expect("EVAL decision length", len(r), 5)
    anyreply(c, "EVAL", "return redis.pcall('RL.TOKENBUCKET', KEYS[1], 5, 1, 1000)", 1, key("string"))
    anyreply(c, "EVAL", "return redis.call('RL.STATUS', KEYS[1])", 1, key("ev"))
    if b"redlimit" not in ok(c, "INFO", "redlimit"):
        raise Failure("INFO redlimit has no redlimit section")
    ok(c, "INFO", "everything")
    anyreply(c, "COMMAND", "DOCS", "rl.tokenbucket", "rl.all")
    ok(c, "COMMAND", "INFO", "rl.all", "rl.status")
    anyreply(c, "COMMAND", "GETKEYS", "RL.ALL", 2, "a", "b", "SLIDING", 1, 1000, "FIXED", 1, 1000)
    anyreply(c, "COMMAND", "GETKEYSANDFLAGS", "RL.ALL", 2, "a", "b", "SLIDING", 1, 1000, "FIXED", 1, 1000)


def volume(c):
    section("volume: %(bulk_keys)d keys, a %(log_entries)d-entry log, %(leases)d leases" % SIZE)
    n = SIZE["bulk_keys"]
    cmds = []
    for i in range(n):
        alg = i % 5
        k = key("bulk", i)
        cmds.append([
            ("RL.TOKENBUCKET", k, 100, 1, HOUR),
            ("RL.THROTTLE", k, 100, 1, 3600),
            ("RL.SLIDING", k, 100, HOUR, "COST", 1 + i % 3),
            ("RL.SLIDING", k, 100, HOUR, "APPROX"),
            ("RL.FIXED", k, 100, HOUR),
        ][alg])
    for r in c.pipeline(cmds):
        if isinstance(r, ServerError):
            raise Failure("bulk command failed: " + r.msg)
    # The documented maxima may move (issue 12): a refusal naming a bound is an answer too.
    def tally(what, replies):
        allowed = sum(1 for r in replies if isinstance(r, list) and r[0] == 1)
        refused = [r for r in replies if isinstance(r, ServerError)]
        print("  workload: %s: %d allowed, %d denied, %d refused%s" % (
            what, allowed, len(replies) - allowed - len(refused), len(refused),
            " (%s)" % refused[0].msg if refused else ""), flush=True)
        if any(not r.msg.startswith("ERR") for r in refused) or not allowed:
            raise Failure("%s: unexpected replies" % what)

    big = key("biglog")
    tally("a %d-call exact log" % SIZE["log_entries"],
          c.pipeline([("RL.SLIDING", big, 10000, HOUR)] * SIZE["log_entries"]))
    leases = key("biglease")
    tally("%d leases" % SIZE["leases"],
          c.pipeline([("RL.ACQUIRE", leases, 1000, HOUR, b"lease-%06d-" % i + b"\xab" * 90)
                      for i in range(SIZE["leases"])]))
    many = [key("all32", i) for i in range(32)]
    for _ in range(3):
        ok(c, "RL.ALL", 32, *many, *(["SLIDING", 1000, HOUR] * 16), *(["TOKENBUCKET", 100, 1, HOUR] * 16))
    same = [key("all32same")] * 32
    ok(c, "RL.ALL", 32, *same, *(["SLIDING", 1000, HOUR] * 32))
    ok(c, "RL.ALL", 32, *same, *(["SLIDING", 1000, HOUR] * 32), "PEEK")


def durable_keys(c):
    """Long-lived keys of every algorithm whose value digests must survive persistence."""
    ks = {}
    for n in range(3):
        ks["tb%d" % n] = key("d-tb", n)
        decision(c, "RL.TOKENBUCKET", ks["tb%d" % n], 100, 1, HOUR, "COST", 7 + n)
        decision(c, "RL.TOKENBUCKET", ks["tb%d" % n], 100, 1, HOUR, "MAXWAIT", HOUR, "COST", 95)
        ks["th%d" % n] = key("d-th", n)
        decision(c, "RL.THROTTLE", ks["th%d" % n], 100, 1, 3600, 5 + n)
        ks["sl%d" % n] = key("d-sl", n)
        for m in range(20 + n):
            decision(c, "RL.SLIDING", ks["sl%d" % n], 1000, HOUR, "COST", 1 + m % 4)
        ks["sa%d" % n] = key("d-sa", n)
        decision(c, "RL.SLIDING", ks["sa%d" % n], 1000, HOUR, "APPROX", "COST", 9 + n)
        ks["fx%d" % n] = key("d-fx", n)
        decision(c, "RL.FIXED", ks["fx%d" % n], 1000, HOUR, "COST", 11 + n)
        ks["ls%d" % n] = key("d-ls", n)
        for m in range(5 + n):
            decision(c, "RL.ACQUIRE", ks["ls%d" % n], 100, HOUR, b"\x00lease\xff%d" % m)
    ks["biglog"] = key("biglog")
    ks["biglease"] = key("biglease")
    return ks


def digests(c, ks):
    out = {}
    for name, k in ks.items():
        out[name] = ok(c, "DEBUG", "DIGEST-VALUE", k)
        if not isinstance(ok(c, "MEMORY", "USAGE", k), int):
            raise Failure("MEMORY USAGE of %s" % name)
    return out


def info_field(c, section_name, field):
    text = ok(c, "INFO", section_name).decode()
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    return None


def wait_for(c, what, section_name, busy_fields, limit=600):
    deadline = time.time() + limit
    while time.time() < deadline:
        if all(info_field(c, section_name, f) in ("0", None) for f in busy_fields):
            return
        time.sleep(0.2)
    raise Failure("%s did not finish in %d s" % (what, limit))


def persistence(c, ks):
    before = digests(c, ks)
    size = ok(c, "DBSIZE")

    def check(step):
        after = digests(c, ks)
        for name in ks:
            expect("DEBUG DIGEST-VALUE of %s after %s" % (name, step), after[name], before[name])

    section("SAVE + DEBUG RELOAD (%d keys)" % size)
    ok(c, "SAVE")
    ok(c, "DEBUG", "RELOAD")
    check("DEBUG RELOAD")
    section("BGSAVE (forked child) + DEBUG RELOAD NOSAVE")
    ok(c, "BGSAVE")
    wait_for(c, "BGSAVE", "persistence", ["rdb_bgsave_in_progress"])
    expect("BGSAVE status", info_field(c, "persistence", "rdb_last_bgsave_status"), "ok")
    ok(c, "DEBUG", "RELOAD", "NOSAVE")
    check("DEBUG RELOAD NOSAVE")
    for preamble in ("no", "yes"):
        section("BGREWRITEAOF (aof-use-rdb-preamble %s) + DEBUG LOADAOF" % preamble)
        ok(c, "CONFIG", "SET", "aof-use-rdb-preamble", preamble)
        wait_for(c, "an earlier AOF rewrite", "persistence", ["aof_rewrite_in_progress", "aof_rewrite_scheduled"])
        ok(c, "BGREWRITEAOF")
        wait_for(c, "BGREWRITEAOF", "persistence", ["aof_rewrite_in_progress", "aof_rewrite_scheduled"])
        expect("BGREWRITEAOF status", info_field(c, "persistence", "aof_last_bgrewrite_status"), "ok")
        decision(c, "RL.TOKENBUCKET", key("after-rewrite"), 5, 1, HOUR)  # lands in the new incr file
        ok(c, "DEBUG", "LOADAOF")
        check("BGREWRITEAOF + DEBUG LOADAOF (preamble %s)" % preamble)


CRC_TABLE = []
for _b in range(256):
    _crc = _b
    for _ in range(8):
        _crc = (_crc >> 1) ^ 0x95AC9329AC4BC9B5 if _crc & 1 else _crc >> 1
    CRC_TABLE.append(_crc)


def crc64(data):
    crc = 0
    for b in data:
        crc = CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


def mutate(data, start):
    data = bytearray(data)
    kind = rng.randrange(5)
    if kind == 0 and len(data) > start:  # flip bits of one byte
        data[rng.randrange(start, len(data))] ^= 1 << rng.randrange(8)
    elif kind == 1 and len(data) > start:  # random byte
        data[rng.randrange(start, len(data))] = rng.randrange(256)
    elif kind == 2 and len(data) > start:  # truncate
        del data[rng.randrange(start, len(data)):]
    elif kind == 3:  # insert bytes
        at = rng.randrange(start, len(data) + 1)
        data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
    else:  # extreme values in a run of bytes
        if len(data) > start:
            at = rng.randrange(start, len(data))
            fill = rng.choice([b"\xff", b"\x00", b"\x80", b"\x7f"])
            data[at:at + rng.randrange(1, 10)] = fill * rng.randrange(1, 10)
    return bytes(data)


def exercise(c, k):
    """What a client or the server may do to a value that came from outside."""
    anyreply(c, "RL.STATUS", k)
    anyreply(c, "DEBUG", "DIGEST-VALUE", k)
    anyreply(c, "MEMORY", "USAGE", k)
    anyreply(c, "DUMP", k)
    anyreply(c, "COPY", k, k + b":copy", "REPLACE")
    for args in [("RL.TOKENBUCKET", k, 5, 1, 1000), ("RL.THROTTLE", k, 5, 1, 1), ("RL.SLIDING", k, 5, 1000),
                 ("RL.SLIDING", k, 5, 1000, "APPROX"), ("RL.FIXED", k, 5, 1000), ("RL.ACQUIRE", k, 5, 1000, "x"),
                 ("RL.RELEASE", k, "x")]:
        anyreply(c, *args)
    anyreply(c, "DEL", k, k + b":copy")


def dump_restore(c, ks):
    section("DUMP/RESTORE, COPY, RENAME, MOVE, SWAPDB")
    payloads = {}
    for name, k in ks.items():
        p = ok(c, "DUMP", k)
        body, trailer = p[:-8], p[-8:]
        expect("DUMP payload CRC64 of %s" % name, crc64(body), struct.unpack("<Q", trailer)[0])
        payloads[name] = p
        r = k + b":restored"
        # Same absolute expiry as the original: a value's digest notes whether it expires.
        at = ok(c, "PEXPIRETIME", k)
        ttl = [at, "ABSTTL"] if at > 0 else [0]
        ok(c, "RESTORE", r, ttl[0], p, *ttl[1:])
        err(c, "RESTORE", r, ttl[0], p, *ttl[1:], prefix="BUSYKEY")
        ok(c, "RESTORE", r, ttl[0], p, "REPLACE", *ttl[1:])
        expect("digest of %s after RESTORE" % name, ok(c, "DEBUG", "DIGEST-VALUE", r), ok(c, "DEBUG", "DIGEST-VALUE", k))
        ok(c, "RESTORE", r + b"ttl", 100000, p)
        expect("COPY", ok(c, "COPY", k, k + b":copy"), 1)
        expect("COPY onto an existing key", ok(c, "COPY", k, k + b":copy"), 0)
        expect("COPY REPLACE", ok(c, "COPY", k, k + b":copy", "REPLACE"), 1)
        ok(c, "RENAME", k + b":copy", k + b":renamed")
        expect("digest of %s after COPY+RENAME" % name, ok(c, "DEBUG", "DIGEST-VALUE", k + b":renamed"),
               ok(c, "DEBUG", "DIGEST-VALUE", k))
        expect("MOVE", ok(c, "MOVE", k + b":renamed", 1), 1)
        ok(c, "UNLINK", r + b"ttl")
    ok(c, "SWAPDB", 0, 1)
    ok(c, "SWAPDB", 0, 1)
    ok(c, "SELECT", 1)
    ok(c, "RENAME", key("d-sl", 0) + b":renamed", key("moved"))
    decision(c, "RL.SLIDING", key("moved"), 1000, HOUR)
    ok(c, "FLUSHDB")
    ok(c, "SELECT", 0)
    err(c, "RESTORE", key("bad"), 0, payloads["tb0"][:-1])  # bad checksum
    section("RESTORE of %d corrupted payloads (valid checksums)" % SIZE["dump_mutations"])
    names = sorted(payloads)
    accepted = 0
    for n in range(SIZE["dump_mutations"]):
        p = payloads[names[n % len(names)]]
        body, version = p[:-10], p[-10:-8]
        # Byte 0 is the RDB type and 1..9 the module type id: keep them, so that the
        # module's rdb_load is what reads the corrupted bytes.
        body = mutate(body, 10)
        forged = body + version + struct.pack("<Q", crc64(body + version))
        if not isinstance(anyreply(c, "RESTORE", key("mut"), 0, forged, "REPLACE"), ServerError):
            accepted += 1
            exercise(c, key("mut"))
    print("  workload: %d of %d corrupted payloads accepted" % (accepted, SIZE["dump_mutations"]), flush=True)


def parse_aof_commands(data):
    """The commands of an AOF file in RESP (stops at an RDB preamble or a partial tail)."""
    out, i = [], 0
    while i < len(data) and data[i:i + 1] == b"*":
        try:
            j = data.index(b"\r\n", i)
            n = int(data[i + 1:j])
            i, args = j + 2, []
            for _ in range(n):
                j = data.index(b"\r\n", i)
                ln = int(data[i + 1:j])
                args.append(data[j + 2:j + 2 + ln])
                i = j + 2 + ln + 2
            out.append(args)
        except ValueError:
            break
    return out


def setstate(c):
    section("RL.SETSTATE with states from the AOF and %d corrupted ones" % SIZE["state_mutations"])
    states = []
    for path in sorted(glob.glob(os.path.join(workdir, "appendonlydir", "*.aof"))):
        with open(path, "rb") as f:
            for args in parse_aof_commands(f.read()):
                if args and args[0].upper() == b"RL.SETSTATE" and len(args) == 3:
                    states.append(args[2])
    # One of each distinct (version, algorithm) prefix first, then the rest.
    seen, ordered = set(), []
    for s in states:
        if s[:2] not in seen:
            seen.add(s[:2])
            ordered.append(s)
    ordered += [s for s in states if s not in ordered][:200]
    if not ordered:
        raise Failure("no RL.SETSTATE found in the AOF (%s)" % os.path.join(workdir, "appendonlydir"))
    print("  workload: %d states from the AOF, %d algorithms" % (len(states), len(seen)), flush=True)
    accepted = 0
    for s in ordered[:100]:
        if ok(c, "RL.SETSTATE", key("ss"), s) == "OK":
            accepted += 1
        exercise(c, key("ss"))
    if not accepted:
        raise Failure("RL.SETSTATE accepted none of the states the module wrote itself")
    for n in range(SIZE["state_mutations"]):
        s = mutate(ordered[n % len(ordered)], 0)
        if not isinstance(anyreply(c, "RL.SETSTATE", key("ssm"), s), ServerError):
            exercise(c, key("ssm"))
    for junk in (b"\x00", b"\x01", b"\x01\x00", b"\xff" * 4096, bytes(range(256)),
                 bytes(rng.randrange(256) for _ in range(64))):
        if not isinstance(anyreply(c, "RL.SETSTATE", key("ssj"), junk), ServerError):
            exercise(c, key("ssj"))
    err(c, "RL.SETSTATE", key("string"), ordered[0], prefix="WRONGTYPE")


def expiry(c):
    section("expiry: lazy and active, natural and PEXPIRE")
    ok(c, "DEBUG", "SET-ACTIVE-EXPIRE", 0)
    lazy = [key("lazy", n) for n in range(6)]
    decision(c, "RL.TOKENBUCKET", lazy[0], 1, 1, 1)  # full again after 1 ms: expires itself
    decision(c, "RL.SLIDING", lazy[1], 1, 1)
    decision(c, "RL.FIXED", lazy[2], 5, 1)
    decision(c, "RL.ACQUIRE", lazy[3], 1, 1, "short")
    decision(c, "RL.SLIDING", lazy[4], 1000, HOUR)
    ok(c, "PEXPIRE", lazy[4], 1)
    decision(c, "RL.THROTTLE", lazy[5], 10, 1, 3600)
    ok(c, "PEXPIRE", lazy[5], 1)
    time.sleep(0.2)
    for k in lazy:
        expect("RL.STATUS of an expired key", ok(c, "RL.STATUS", k), None)
        expect("EXISTS of an expired key", ok(c, "EXISTS", k), 0)
    ok(c, "DEBUG", "SET-ACTIVE-EXPIRE", 1)
    before = int(info_field(c, "stats", "expired_keys"))
    active = [key("active", n) for n in range(50)]
    for n, k in enumerate(active):
        decision(c, "RL.SLIDING", k, 1000, HOUR, "COST", n + 1)
        ok(c, "PEXPIRE", k, 1 + n % 5)
    decision(c, "RL.TOKENBUCKET", key("active-natural"), 1, 1, 1)
    deadline = time.time() + 60
    while time.time() < deadline and int(info_field(c, "stats", "expired_keys")) < before + len(active):
        time.sleep(0.2)
    expired = int(info_field(c, "stats", "expired_keys")) - before
    if expired < len(active):
        raise Failure("active expiry removed %d of %d keys in 60 s" % (expired, len(active)))


def flushes(c):
    section("UNLINK, FLUSHALL ASYNC, FLUSHALL")
    ok(c, "UNLINK", key("biglog"), key("biglease"))
    ok(c, "FLUSHALL", "ASYNC")
    for n in range(100):
        decision(c, "RL.SLIDING", key("after-flush", n), 100, HOUR, "COST", 1 + n % 7)
        decision(c, "RL.ACQUIRE", key("after-flush-lease", n % 3), 1000, HOUR, b"id%d" % n)
    ok(c, "FLUSHALL")
    expect("DBSIZE after FLUSHALL", ok(c, "DBSIZE"), 0)


def main():
    c = Conn()
    started = time.time()
    failure = None
    try:
        every_command(c)
        resp3(Conn())
        errors(c)
        clock_offset(c)
        scripts_and_transactions(c)
        volume(c)
        setstate(c)  # reads the AOF written so far: before any rewrite
        ks = durable_keys(c)
        persistence(c, ks)
        dump_restore(c, ks)
        expiry(c)
        flushes(c)
        expect("PING", ok(c, "PING"), "PONG")
    except (Failure, OSError, ValueError) as e:
        failure = e
    print("  workload: %d commands in %.1f s" % (c.sent, time.time() - started), flush=True)
    try:
        c2 = Conn(timeout=600)
        c2.s.sendall(encode(["SHUTDOWN"]))
        r = c2.read()  # the server closes the connection; a reply is a refusal
        print("  workload: SHUTDOWN refused: %r" % (r,), flush=True)
        failure = failure or Failure("SHUTDOWN refused")
    except (ConnectionError, OSError):
        pass
    if failure:
        print("  workload: FAILED: %s: %s" % (type(failure).__name__, failure), flush=True)
        sys.exit(1)
    print("  workload: OK", flush=True)


main()
PY

# --- the valgrind logs: one text log per process (the server and its forked children) ------
# Text, not --xml: valgrind 3.19 does not reopen an XML file for a forked child, so the
# children of BGSAVE/BGREWRITEAOF would write into the server's file.
read -r -d '' PARSE <<'PY' || true
import glob, os, re, sys

workdir, main_pid, summary_path = sys.argv[1], sys.argv[2], sys.argv[3]
MODULE_OBJ = re.compile(r"libredlimit[^/]*\.so$")
MODULE_FN = re.compile(r"redlimit|redis_module")
LINE = re.compile(r"^==(\d+)== ?(.*)$")
FRAME = re.compile(r"^\s+(?:at|by) (0x[0-9A-Fa-f]+): (.*) \((?:in )?(.*)\)$")
CONTEXT = re.compile(r"^([\d,]+) errors? in context \d+ of \d+:$")
LEAK = re.compile(r"^([\d,]+) (?:\([^)]*\) )?bytes in ([\d,]+) blocks are (definitely|indirectly|possibly) lost")
TOTAL = re.compile(r"^\s*(definitely|indirectly|possibly) lost: ([\d,]+) bytes in ([\d,]+) blocks")


def num(text):
    return int(text.replace(",", ""))


def blocks(path):
    """The blank-line separated blocks of one process's log, without the ==pid== prefix."""
    out, cur = [], []
    for raw in open(path, encoding="utf-8", errors="replace"):
        m = LINE.match(raw.rstrip("\n"))
        if not m:
            continue  # --gen-suppressions text and the like
        text = m.group(2)
        if text.strip():
            cur.append(text)
        elif cur:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


def frames(block):
    return [FRAME.match(l).groups() for l in block if FRAME.match(l)]


def is_module(block):
    return any(MODULE_OBJ.search(where) or MODULE_FN.search(fn) for _, fn, where in frames(block))


def signature(block):
    return (block[0], tuple(fn for _, fn, _ in frames(block)))


def short(block):
    fns = [fn for _, fn, _ in frames(block)]
    return "%s at %s" % (block[0], " < ".join(fns[:6]))


errors = {}  # signature -> [count, block, pid]
leak_records = []  # (pid, kind, bytes, blocks, block)
totals = {"definitely": [0, 0], "indirectly": [0, 0], "possibly": [0, 0]}
complete = True
logs = sorted(glob.glob(os.path.join(workdir, "vg.*.log")))
if not any(p.endswith(".%s.log" % main_pid) for p in logs):
    print("    no valgrind log for the server process %s" % main_pid)
    complete = False
for path in logs:
    pid = path.rsplit(".", 2)[-2]
    bl = blocks(path)
    finished = any(l.startswith("ERROR SUMMARY:") for b in bl for l in b)
    if pid == main_pid and not finished:
        print("    %s: no ERROR SUMMARY (the server did not exit cleanly)" % os.path.basename(path))
        complete = False
    listed = {}  # the error list at exit (--show-error-list=yes), with counts
    streamed = {}  # errors as they happened (all there is if the process died)
    for b in bl:
        m = CONTEXT.match(b[0])
        if m and len(b) > 1:
            body = b[1:]
            if not LEAK.match(body[0]):
                listed[signature(body)] = [num(m.group(1)), body]
            continue
        m = LEAK.match(b[0])
        if m:
            leak_records.append((pid, m.group(3), num(m.group(1)), num(m.group(2)), b))
            continue
        if frames(b):
            streamed.setdefault(signature(b), [1, b])
        for l in b:
            t = TOTAL.match(l)
            if t and pid == main_pid:
                totals[t.group(1)] = [num(t.group(2)), num(t.group(3))]
    # A forked child inherits the errors found before the fork: count each error once, at
    # the largest count any process reports.
    for sig, (count, b) in (listed or streamed).items():
        if sig not in errors or errors[sig][0] < count:
            errors[sig] = [count, b, pid]

module_errors = module_leaks = server_errors = 0
module_possible = 0
server_lines = []
for count, b, pid in errors.values():
    if is_module(b):
        module_errors += count
        print("  MODULE error (x%d, pid %s):" % (count, pid))
        print("\n".join("    " + l for l in b))
    else:
        server_errors += count
        server_lines.append("    [pid %s] x%d %s" % (pid, count, short(b)))
seen_leaks = set()
child_definite = [0, 0]
for pid, kind, size, nblocks, b in leak_records:
    if kind == "definitely" and pid != main_pid:
        child_definite[0] += size
        child_definite[1] += nblocks
    if is_module(b):
        if kind == "definitely":
            sig = signature(b[1:])
            if sig not in seen_leaks:
                seen_leaks.add(sig)
                module_leaks += 1
                print("  MODULE definite leak (pid %s):" % pid)
                print("\n".join("    " + l for l in b))
        elif kind == "possibly" and pid == main_pid:
            module_possible += 1
    elif kind == "definitely":
        server_lines.append("    [pid %s] %s" % (pid, short(b)))
if server_lines:
    print("  server-only findings (not the module's):")
    print("\n".join(server_lines[:40]))
    if len(server_lines) > 40:
        print("    ... %d more (see the logs)" % (len(server_lines) - 40))


def fmt(kind):
    return "%d B in %d blocks" % tuple(totals[kind])


print("  module: %d errors, %d definite leaks (%d possibly-lost records through module frames)"
      % (module_errors, module_leaks, module_possible))
print("  server: %d errors (%d findings listed); server process leaks: definite %s, indirect %s, possible %s;"
      " forked children: definite %d B in %d blocks"
      % (server_errors, len(server_lines), fmt("definitely"), fmt("indirectly"), fmt("possibly"), *child_definite))
with open(summary_path, "w") as f:
    f.write("module errors %d, module definite leaks %d; server errors %d; leaks definite %s, indirect %s, possible %s\n"
            % (module_errors, module_leaks, server_errors, fmt("definitely"), fmt("indirectly"), fmt("possibly")))
sys.exit(0 if complete and module_errors == 0 and module_leaks == 0 else 1)
PY

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# No --error-exitcode: a forked child (BGSAVE, BGREWRITEAOF) inherits the error count of
# the server at the fork and would exit with that code, which the server reads as a failed
# save. The verdict comes from the logs instead.
vg_opts=(
    --tool=memcheck --leak-check=full --show-leak-kinds=definite,indirect,possible
    --errors-for-leak-kinds=definite --num-callers=40 --show-error-list=yes
    --soname-synonyms=somalloc=*jemalloc* --gen-suppressions=all
)
[[ $mode == full ]] && vg_opts+=(--track-origins=yes)
[[ -s "$SUPP" ]] && vg_opts+=(--suppressions="$SUPP")

overall=0
results=()
for s in "${servers[@]}"; do
    bin=$(server_binary "$s")
    work=$(mktemp -d "${TMPDIR:-/tmp}/redlimit-valgrind-$s.XXXXXX")
    # Others may rebuild the module meanwhile: load a private copy.
    cp "$module" "$work/libredlimit.so"
    port=$(free_port)
    echo "== $s ($("$bin" --version | sed 's/ sha=.*//'), port $port, $work)"
    start=$(date +%s)
    nice -n 10 valgrind "${vg_opts[@]}" --log-file="$work/vg.%p.log" \
        "$bin" --port "$port" --bind 127.0.0.1 --dir "$work" --logfile "$work/server.log" \
        --save "" --appendonly yes --appendfsync no --enable-debug-command yes \
        --daemonize no --loadmodule "$work/libredlimit.so" &
    vg_pid=$!
    up=0
    for _ in $(seq 1 600); do
        if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then
            up=1
            break
        fi
        kill -0 "$vg_pid" 2>/dev/null || break
        sleep 0.2
    done
    status=ok
    if ((up)); then
        python3 -c "$WORKLOAD" "$port" "$mode" "$work" || status="workload failed"
    else
        status="server did not start"
        tail -n 20 "$work/server.log" 2>/dev/null || true
    fi
    # SHUTDOWN was sent; leak checking takes a while under valgrind.
    for _ in $(seq 1 1800); do
        kill -0 "$vg_pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$vg_pid" 2>/dev/null; then
        status="server did not exit (killed)"
        kill -TERM "$vg_pid" 2>/dev/null || true
        sleep 5
        kill -KILL "$vg_pid" 2>/dev/null || true
    fi
    rc=0
    wait "$vg_pid" || rc=$?
    if [[ $rc -ne 0 && $status == ok ]]; then
        status="server exited with status $rc"
    fi
    secs=$(($(date +%s) - start))
    parse_rc=0
    python3 -c "$PARSE" "$work" "$vg_pid" "$work/summary" || parse_rc=$?
    summary=$(cat "$work/summary" 2>/dev/null || echo "no summary")
    if [[ $status != ok ]]; then
        echo "  FAILED: $status (server log: $work/server.log)"
        tail -n 15 "$work/server.log" 2>/dev/null | sed 's/^/    /'
    fi
    if [[ $status != ok ]] || ((parse_rc)); then
        overall=1
        verdict=FAIL
    else
        verdict=ok
    fi
    note=""
    [[ $status == ok ]] || note=" ($status)"
    results+=("$s: $verdict, ${secs}s, $summary$note")
    if ((keep)) || [[ $verdict == FAIL ]]; then
        echo "  logs kept in $work"
    else
        rm -rf "$work"
    fi
done

echo "== summary ($(valgrind --version), $mode, $build build)"
printf '  %s\n' "${results[@]}"
exit "$overall"
