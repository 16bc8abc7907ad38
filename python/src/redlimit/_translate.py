"""The translation of an ``RL.*`` command, as :mod:`redlimit._protocol` builds it, into
the script call that decides the same way: a port of the Rust client's reference
translation (``client/src/engine/translate.rs``, ``adjust.rs``; ``client/lua/README.md``
lists the layouts).

One function per command in :data:`TRANSLATORS`: a new script operation is one more
entry. Each returns the original key names, the limiter keys in the script namespace,
and ``ARGV``; :func:`translate` adds the guards (the original names, when they share
their limiter key's slot). A malformed command raises :class:`ArgumentError` naming
what is wrong, as the module's error reply would; a command the scripts do not have
raises :class:`CommandError`.
"""

from __future__ import annotations

from typing import Callable, Optional

from ._protocol import Arg, Command
from ._scripts import ScriptCall, script_key, slot
from .errors import ArgumentError, CommandError

Translated = tuple[list[bytes], list[bytes]]
"""The original key names and ``ARGV`` (from the operation on)."""

Translator = Callable[[list[bytes], bytes], Translated]
"""The command's arguments after its name, and the time override: what it translates to."""


def word(arg: Arg) -> bytes:
    """One argument as redis-py sends it (``str`` as UTF-8, integers in base 10)."""
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, str):
        return arg.encode("utf-8")
    if isinstance(arg, bool) or not isinstance(arg, int):
        raise ArgumentError(f"an argument must be a string, bytes or an integer: {arg!r}")
    return str(arg).encode()


class _Options:
    """``COST n``, ``COSTS n1 ... nk`` (``RL.ALL``), ``PEEK``, ``MAXWAIT ms``, ``APPROX``."""

    def __init__(self, words: list[bytes], numkeys: int = 0) -> None:
        self.cost: Optional[bytes] = None
        self.costs: Optional[list[bytes]] = None
        self.peek = False
        self.max_wait: Optional[bytes] = None
        self.approx = False
        i = 0
        while i < len(words):
            option = words[i].upper()
            i += 1
            if option in (b"COST", b"MAXWAIT"):
                if i >= len(words):
                    raise ArgumentError(f"syntax error: {option.decode()} without its value")
                if option == b"COST":
                    self.cost = words[i]
                else:
                    self.max_wait = words[i]
                i += 1
            elif option == b"PEEK":
                self.peek = True
            elif option == b"APPROX":
                self.approx = True
            elif option == b"COSTS" and numkeys > 0:
                costs = words[i : i + numkeys]
                if len(costs) < numkeys:
                    raise ArgumentError(
                        f"COSTS needs one cost per key ({numkeys} keys, {len(costs)} costs)"
                    )
                self.costs = costs
                i += numkeys
            else:
                shown = option.decode("utf-8", "replace")
                raise ArgumentError(f"syntax error: unknown option {shown}")
        if self.cost is not None and self.costs is not None:
            raise ArgumentError("COST and COSTS together (COSTS gives each key its own cost)")

    def request(self) -> list[bytes]:
        """cost, peek (``1``/``0``), max_wait."""
        return [self.cost or b"1", b"1" if self.peek else b"0", self.max_wait or b"0"]


def _decide(name: str, three: bool) -> Translator:
    """``RL.TOKENBUCKET`` (three numbers), ``RL.SLIDING`` and ``RL.FIXED`` (two)."""

    def translate(rest: list[bytes], now: bytes) -> Translated:
        count = 3 if three else 2
        if len(rest) < 1 + count:
            raise ArgumentError(f"{name} needs a key and {count} policy numbers")
        options = _Options(rest[1 + count :])
        if name == "RL.TOKENBUCKET":
            algorithm = b"tokenbucket"
        elif name == "RL.FIXED":
            algorithm = b"fixed"
        else:
            algorithm = b"sliding-approx" if options.approx else b"sliding"
        args = [b"decide", now, algorithm, *rest[1 : 1 + count], *options.request()]
        return [rest[0]], args

    return translate


def _throttle(rest: list[bytes], now: bytes) -> Translated:
    if len(rest) < 4:
        raise ArgumentError("RL.THROTTLE needs a key and its policy")
    quantity = rest[4] if len(rest) > 4 else b"1"
    return [rest[0]], [b"decide", now, b"throttle", *rest[1:4], quantity, b"0", b"0"]


_ALL_POLICIES = {
    b"TOKENBUCKET": (b"tokenbucket", 3),
    b"FIXED": (b"fixed", 2),
    b"SLIDING": (b"sliding", 2),
}


def _all(rest: list[bytes], now: bytes) -> Translated:
    """``RL.ALL numkeys key... policy... [COST n | COSTS n1 ... nk] [PEEK] [MAXWAIT ms]``."""
    if not rest or not rest[0].isdigit():
        raise ArgumentError("RL.ALL numkeys must be a number")
    numkeys = int(rest[0])
    keys = rest[1 : 1 + numkeys]
    if len(keys) < numkeys:
        raise ArgumentError("RL.ALL has fewer keys than numkeys")
    words = rest[1 + numkeys :]
    policies: list[list[bytes]] = []
    for _ in range(numkeys):
        if not words:
            raise ArgumentError("RL.ALL needs one policy per key")
        kind = words[0].upper()
        if kind not in _ALL_POLICIES:
            raise ArgumentError(f"RL.ALL has no policy {kind.decode('utf-8', 'replace')}")
        algorithm, count = _ALL_POLICIES[kind]
        numbers = words[1 : 1 + count]
        if len(numbers) < count:
            raise ArgumentError("RL.ALL policy is short")
        words = words[1 + count :]
        if kind == b"SLIDING" and words and words[0].upper() == b"APPROX":
            algorithm, words = b"sliding-approx", words[1:]
        policies.append([algorithm, *numbers, *([b"0"] if count == 2 else [])])
    options = _Options(words, numkeys)
    cost, peek, max_wait = options.request()
    args = [b"all", now, peek, b"COSTS" if options.costs is not None else b"COST", max_wait]
    for index, policy in enumerate(policies):
        own = options.costs[index] if options.costs is not None else cost
        args += [*policy, own]
    return keys, args


_ADJUST_POLICIES = {
    b"TOKENBUCKET": (b"tokenbucket", 3),
    b"THROTTLE": (b"throttle", 3),
    b"FIXED": (b"fixed", 2),
    b"SLIDING": (b"sliding", 2),
}


def _adjust(rest: list[bytes], now: bytes) -> Translated:
    """``RL.ADJUST key delta [policy] [SINCE ms]``: delta, since (``0`` when not given),
    then the policy when given (name and three numbers, the third ``0`` for two)."""
    if len(rest) < 2:
        raise ArgumentError("RL.ADJUST needs key delta")
    since: Optional[bytes] = None
    policy: Optional[list[bytes]] = None
    words = rest[2:]
    while words:
        upper = words[0].upper()
        if upper == b"SINCE":
            if since is not None:
                raise ArgumentError("RL.ADJUST: SINCE given twice")
            if len(words) < 2:
                raise ArgumentError("SINCE needs a value (SINCE ms)")
            since, words = words[1], words[2:]
            continue
        if policy is not None:
            near = words[0].decode("utf-8", "replace")
            raise ArgumentError(f"RL.ADJUST: syntax error near {near}")
        if upper not in _ADJUST_POLICIES:
            shown = words[0].decode("utf-8", "replace")
            raise ArgumentError(f"RL.ADJUST has no policy {shown}")
        algorithm, count = _ADJUST_POLICIES[upper]
        numbers = words[1 : 1 + count]
        if len(numbers) < count:
            raise ArgumentError("RL.ADJUST policy is short")
        words = words[1 + count :]
        if algorithm == b"sliding" and words and words[0].upper() == b"APPROX":
            algorithm, words = b"sliding-approx", words[1:]
        policy = [algorithm, *numbers, *([b"0"] if count == 2 else [])]
    return [rest[0]], [b"adjust", now, rest[1], since or b"0", *(policy or [])]


def _acquire(rest: list[bytes], now: bytes) -> Translated:
    if len(rest) != 4:
        raise ArgumentError("RL.ACQUIRE needs key limit lease_ms lease_id")
    return [rest[0]], [b"acquire", now, *rest[1:]]


def _release(rest: list[bytes], now: bytes) -> Translated:
    if len(rest) != 2:
        raise ArgumentError("RL.RELEASE needs key lease_id")
    return [rest[0]], [b"release", now, rest[1]]


def _usage_add(rest: list[bytes], now: bytes) -> Translated:
    """``RL.USAGE.ADD key amount bucket_ms buckets``: the script checks the numbers."""
    if len(rest) != 4:
        raise ArgumentError("RL.USAGE.ADD needs key amount bucket_ms buckets")
    return [rest[0]], [b"usage_add", now, *rest[1:]]


def _usage(rest: list[bytes], now: bytes) -> Translated:
    if len(rest) != 1:
        raise ArgumentError("RL.USAGE needs one key")
    return [rest[0]], [b"usage", now]


def _keys_only(op: bytes) -> Translator:
    """``RL.RESET key...`` and ``RL.STATUS key``: the keys, and their count."""

    def translate(rest: list[bytes], now: bytes) -> Translated:
        if not rest:
            raise ArgumentError("wrong number of arguments: no key")
        return list(rest), [op, now, str(len(rest)).encode()]

    return translate


TRANSLATORS: dict[str, Translator] = {
    "RL.TOKENBUCKET": _decide("RL.TOKENBUCKET", three=True),
    "RL.SLIDING": _decide("RL.SLIDING", three=False),
    "RL.FIXED": _decide("RL.FIXED", three=False),
    "RL.THROTTLE": _throttle,
    "RL.ALL": _all,
    "RL.ADJUST": _adjust,
    "RL.ACQUIRE": _acquire,
    "RL.RELEASE": _release,
    "RL.USAGE.ADD": _usage_add,
    "RL.USAGE": _usage,
    "RL.RESET": _keys_only(b"reset"),
    "RL.STATUS": _keys_only(b"status"),
}
"""Every ``RL.*`` command the scripts decide, by name."""


def translate(command: Command, now_us: int = 0) -> ScriptCall:
    """The script call deciding as ``command`` would, at the server's time (``now_us``
    0) or at ``now_us`` microseconds since the epoch (tests only)."""
    if not command:
        raise ArgumentError("an empty command")
    name = word(command[0]).decode("utf-8", "replace").upper()
    translator = TRANSLATORS.get(name)
    if translator is None:
        raise CommandError(f"the script engine has no {name}")
    originals, args = translator([word(arg) for arg in command[1:]], str(now_us).encode())
    keys = [script_key(key) for key in originals]
    if all(slot(original) == slot(key) for original, key in zip(originals, keys)):
        keys += originals
    return ScriptCall(tuple(keys), tuple(args))
