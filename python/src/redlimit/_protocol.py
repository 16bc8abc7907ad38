"""Arguments and replies of the RL.* commands, shared by the sync and asyncio clients.

Nothing here does I/O. Every parser checks the reply's shape and raises
:class:`UnexpectedReplyError` for anything else: a reply is never guessed to be "allowed".
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Optional, Union

import redis.exceptions

from ._types import (
    AllDecision,
    AllPolicy,
    Decision,
    Fixed,
    Policy,
    Sliding,
    Status,
    Throttle,
    TokenBucket,
)
from .errors import (
    ArgumentError,
    CommandError,
    ModuleNotLoadedError,
    RateLimitError,
    UnavailableError,
    UnexpectedReplyError,
    WrongTypeError,
)

Key = Union[str, bytes]
Arg = Union[str, bytes, int]
Command = tuple[Arg, ...]

MAX_ALL_KEYS = 32
"""``RL.ALL`` takes at most 32 keys (the module's ``numkeys`` bound)."""

MAX_COUNT = 1 << 62
"""The largest count (cost, delta) a command takes."""

MAX_DURATION_MS = 10**13
"""The longest duration (``MAXWAIT``, ``SINCE``) a command takes, in ms."""


def _options(cost: int, peek: bool) -> list[Arg]:
    out: list[Arg] = []
    if cost != 1:
        out += ["COST", cost]
    if peek:
        out.append("PEEK")
    return out


def token_bucket(
    key: Key,
    capacity: int,
    refill_tokens: int,
    refill_ms: int,
    cost: int,
    peek: bool,
    max_wait_ms: Optional[int],
) -> Command:
    args: list[Arg] = ["RL.TOKENBUCKET", key, capacity, refill_tokens, refill_ms]
    args += _options(cost, peek)
    if max_wait_ms is not None:
        args += ["MAXWAIT", max_wait_ms]
    return tuple(args)


def sliding(key: Key, limit: int, window_ms: int, cost: int, peek: bool, approx: bool) -> Command:
    args: list[Arg] = ["RL.SLIDING", key, limit, window_ms, *_options(cost, peek)]
    if approx:
        args.append("APPROX")
    return tuple(args)


def fixed(key: Key, limit: int, window_ms: int, cost: int, peek: bool) -> Command:
    return ("RL.FIXED", key, limit, window_ms, *_options(cost, peek))


def throttle(
    key: Key, max_burst: int, count_per_period: int, period_s: int, quantity: int
) -> Command:
    return ("RL.THROTTLE", key, max_burst, count_per_period, period_s, quantity)


def all_of(
    limits: Sequence[tuple[Key, AllPolicy]],
    cost: int,
    peek: bool,
    costs: Optional[Sequence[int]] = None,
    max_wait_ms: Optional[int] = None,
) -> Command:
    """``RL.ALL``; ``costs`` (one per key) sends ``COSTS`` instead of ``COST``."""
    if not limits:
        raise ValueError("RL.ALL needs at least one (key, policy)")
    if len(limits) > MAX_ALL_KEYS:
        raise ValueError(f"RL.ALL takes at most {MAX_ALL_KEYS} limits, got {len(limits)}")
    args: list[Arg] = ["RL.ALL", len(limits)]
    args += [key for key, _ in limits]
    for _, policy in limits:
        if not isinstance(policy, (TokenBucket, Sliding, Fixed)):
            raise TypeError(f"RL.ALL takes TokenBucket, Sliding or Fixed, not {policy!r}")
        args += policy.args()
    if costs is None:
        args += _options(cost, peek)
    else:
        if cost != 1:
            raise ValueError("cost and costs together (costs gives each key its own cost)")
        if len(costs) != len(limits):
            raise ValueError(
                f"costs needs one cost per key ({len(limits)} keys, {len(costs)} costs)"
            )
        args += ["COSTS", *costs]
        if peek:
            args.append("PEEK")
    if max_wait_ms is not None:
        args += ["MAXWAIT", max_wait_ms]
    return tuple(args)


def adjust(key: Key, delta: int, policy: Optional[Policy], since_ms: Optional[int]) -> Command:
    """``RL.ADJUST key delta [policy] [SINCE ms]``."""
    args: list[Arg] = ["RL.ADJUST", key, delta]
    if policy is not None:
        if not isinstance(policy, (TokenBucket, Sliding, Fixed, Throttle)):
            raise TypeError(f"not a policy: {policy!r}")
        args += policy.args()
    if since_ms is not None:
        args += ["SINCE", since_ms]
    return tuple(args)


def check(key: Key, policy: Policy, cost: int, peek: bool) -> Command:
    """The one command deciding ``policy`` for ``key``."""
    if isinstance(policy, TokenBucket):
        c = policy
        return token_bucket(key, c.capacity, c.refill_tokens, c.refill_ms, cost, peek, None)
    if isinstance(policy, Sliding):
        return sliding(key, policy.limit, policy.window_ms, cost, peek, policy.approx)
    if isinstance(policy, Fixed):
        return fixed(key, policy.limit, policy.window_ms, cost, peek)
    if isinstance(policy, Throttle):
        if peek:
            raise ValueError("RL.THROTTLE has no PEEK")
        return throttle(key, policy.max_burst, policy.count_per_period, policy.period_s, cost)
    raise TypeError(f"not a policy: {policy!r}")


def check_parser(policy: Policy) -> Callable[[Any], Decision]:
    return throttle_decision if isinstance(policy, Throttle) else decision


def acquire(key: Key, limit: int, lease_ms: int, lease_id: Key) -> Command:
    return ("RL.ACQUIRE", key, limit, lease_ms, lease_id)


def release(key: Key, lease_id: Key) -> Command:
    return ("RL.RELEASE", key, lease_id)


def reset(keys: Sequence[Key]) -> Command:
    if not keys:
        raise ValueError("RL.RESET needs at least one key")
    return ("RL.RESET", *keys)


def status(key: Key) -> Command:
    return ("RL.STATUS", key)


def routed_by_hand(command: Command) -> bool:
    """Whether a cluster client must be given the key's node (``target_nodes``): redis-py's
    cluster client refuses a command name with two dots (``RL.USAGE.ADD``: "Wrong command
    or module name") before sending it, as it looks up its routing by module prefix."""
    name = command[0]
    return isinstance(name, str) and name.count(".") > 1


# ---------------------------------------------------------------------------- replies


def _int(value: Any, what: str) -> int:
    # bool is an int subclass; RESP3 booleans are not what the module answers.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise UnexpectedReplyError(f"{what}: expected an integer, got {value!r}")


def _text(value: Any, what: str) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    raise UnexpectedReplyError(f"{what}: expected a string, got {value!r}")


def decision(reply: Any) -> Decision:
    """The five-integer decision reply (same under RESP2 and RESP3)."""
    if not isinstance(reply, (list, tuple)) or len(reply) != 5:
        raise UnexpectedReplyError(f"expected a decision (5 integers), got {reply!r}")
    allowed, limit, remaining, retry, reset_after = (_int(v, "decision") for v in reply)
    if allowed not in (0, 1):
        raise UnexpectedReplyError(f"decision: allowed must be 0 or 1, got {allowed}")
    return Decision(
        allowed=allowed == 1,
        limit=limit,
        remaining=remaining,
        retry_after_ms=None if retry < 0 else retry,
        reset_after_ms=reset_after,
    )


def throttle_decision(reply: Any) -> Decision:
    """redis-cell's reply ``[limited, limit, remaining, retry_after_s, reset_after_s]``,
    as a :class:`Decision` in milliseconds (whole seconds, as the server rounded them)."""
    if not isinstance(reply, (list, tuple)) or len(reply) != 5:
        raise UnexpectedReplyError(f"expected a throttle reply (5 integers), got {reply!r}")
    limited, limit, remaining, retry_s, reset_s = (_int(v, "throttle") for v in reply)
    if limited not in (0, 1):
        raise UnexpectedReplyError(f"throttle: limited must be 0 or 1, got {limited}")
    allowed = limited == 0
    retry: Optional[int] = 0 if allowed else (None if retry_s < 0 else retry_s * 1000)
    return Decision(allowed, limit, remaining, retry, max(reset_s, 0) * 1000)


def all_decision(reply: Any, expected: int) -> AllDecision:
    """``[allowed, [5 ints], ...]`` with one decision per key."""
    if not isinstance(reply, (list, tuple)) or len(reply) != expected + 1:
        raise UnexpectedReplyError(
            f"expected RL.ALL's reply (1 + {expected} decisions), got {reply!r}"
        )
    allowed = _int(reply[0], "RL.ALL")
    if allowed not in (0, 1):
        raise UnexpectedReplyError(f"RL.ALL: allowed must be 0 or 1, got {allowed}")
    return AllDecision(allowed == 1, tuple(decision(d) for d in reply[1:]))


def adjusted(reply: Any) -> Optional[Decision]:
    """``RL.ADJUST``: nil (an absent or idle key and no policy: nothing changed) or the
    decision a ``PEEK`` of cost 1 would answer after the adjustment."""
    return None if reply is None else decision(reply)


_DECISION_FIELDS = ("allowed", "limit", "remaining", "retry_after_ms", "reset_after_ms")


def status_reply(reply: Any) -> Optional[Status]:
    """RESP2: a flat field/value array; RESP3: a map. ``None`` for a missing key."""
    if reply is None:
        return None
    items: list[tuple[Any, Any]]
    if isinstance(reply, Mapping):
        items = list(reply.items())
    elif isinstance(reply, (list, tuple)) and len(reply) % 2 == 0:
        items = list(zip(reply[0::2], reply[1::2]))
    else:
        raise UnexpectedReplyError(f"expected RL.STATUS's fields, got {reply!r}")
    fields: dict[str, Union[str, int]] = {}
    for name, value in items:
        key = _text(name, "RL.STATUS field")
        if key == "allowed" and isinstance(value, bool):
            value = int(value)  # RESP3 answers a boolean here (the map is read by name)
        fields[key] = _text(value, key) if isinstance(value, (str, bytes)) else _int(value, key)
    algorithm = fields.get("algorithm")
    if not isinstance(algorithm, str):
        raise UnexpectedReplyError(f"RL.STATUS without an algorithm: {reply!r}")
    missing = [f for f in _DECISION_FIELDS if not isinstance(fields.get(f), int)]
    if missing:
        raise UnexpectedReplyError(f"RL.STATUS without {', '.join(missing)}: {reply!r}")
    found = decision([fields[f] for f in _DECISION_FIELDS])
    policy = {
        k: v
        for k, v in fields.items()
        if (isinstance(v, int) and k not in _DECISION_FIELDS) or k == "limit"
    }
    return Status(algorithm, {k: int(v) for k, v in policy.items()}, found, fields)


def count(reply: Any, what: str) -> int:
    return _int(reply, what)


# ---------------------------------------------------------------------------- errors

_ARGUMENT_MARKERS = (
    "wrong number of arguments",
    "must be",
    "syntax error",
    "needs one policy",
    "numkeys",
)


def translate(exc: BaseException) -> RateLimitError:
    """A redis-py (or timeout) exception as the matching :class:`RateLimitError`."""
    if isinstance(exc, RateLimitError):
        return exc
    message = str(exc)
    if isinstance(
        exc,
        (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
            asyncio.TimeoutError,
            builtins.TimeoutError,
            ConnectionError,
        ),
    ):
        return UnavailableError(message or type(exc).__name__)
    if isinstance(exc, redis.exceptions.ResponseError):
        lowered = message.lower()
        if "unknown command" in lowered and "rl." in lowered:
            return ModuleNotLoadedError(
                f"the redlimit module is not loaded (the server answered: {message}); "
                "load libredlimit.so there (--loadmodule or MODULE LOAD)"
            )
        if message.startswith("WRONGTYPE"):
            return WrongTypeError(message)
        if any(marker in lowered for marker in _ARGUMENT_MARKERS):
            return ArgumentError(message)
        return CommandError(message)
    if isinstance(exc, redis.exceptions.SlotNotCoveredError) or (
        isinstance(exc, redis.exceptions.RedisClusterException) and "cannot be connected" in message
    ):
        return UnavailableError(message)  # no node reachable, or none serving the slot
    if isinstance(exc, redis.exceptions.RedisClusterException):
        # redis-py refuses keys of several slots itself ("RL.ALL - all keys must map to
        # the same key slot"): named like the server's error, which it stands for.
        if "same key slot" in message or "same slot" in message:
            return CommandError(f"CROSSSLOT {message} (refused by the cluster client)")
        return CommandError(message or type(exc).__name__)
    if isinstance(exc, redis.exceptions.RedisError):
        return CommandError(message or type(exc).__name__)
    raise exc
