"""Usage counters for reporting (``RL.USAGE.ADD``, ``RL.USAGE``): their shape, their
buckets, the commands and the replies, shared by the sync and asyncio clients. Nothing
here does I/O.

Reporting is not admission: a counter never refuses anything, and a record that cannot
reach the server raises (no failure policy answers for it, nothing is kept in memory).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from ._protocol import MAX_COUNT, Command, Key, count
from .errors import ArgumentError, UnexpectedReplyError

MAX_USAGE_BUCKETS = 1_440
"""The most buckets one counter keeps (a day of minutes)."""

MAX_USAGE_SPAN_MS = 10**13
"""The longest ring (``bucket_ms * buckets``) a counter covers, in ms."""

MAX_USAGE_RECORD = MAX_COUNT
"""The largest amount one call records (2^62, as any cost)."""


def _positive(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ArgumentError(f"{name} must be a positive integer")
    return value


@dataclass(frozen=True)
class UsageShape:
    """The shape of a usage counter: a ring of ``buckets`` buckets of ``bucket_ms``
    each, aligned to the Unix epoch. The shape is the key's: recording with another
    one is refused, naming both (``RL.RESET`` the key to change it).

    Checked as the server checks it: ``bucket_ms`` and ``buckets`` positive, ``buckets``
    at most 1,440, ``bucket_ms * buckets`` at most 10^13 ms; anything else raises
    :class:`ArgumentError` naming the argument.

    >>> UsageShape.hourly(24)
    UsageShape(bucket_ms=3600000, buckets=24)
    >>> UsageShape.hourly(24).span_ms
    86400000
    """

    bucket_ms: int
    buckets: int

    def __post_init__(self) -> None:
        bucket_ms = _positive(self.bucket_ms, "bucket_ms")
        if bucket_ms > MAX_USAGE_SPAN_MS:
            raise ArgumentError(f"bucket_ms must be at most {MAX_USAGE_SPAN_MS}")
        buckets = _positive(self.buckets, "buckets")
        if buckets > MAX_USAGE_BUCKETS:
            raise ArgumentError(f"buckets must be at most {MAX_USAGE_BUCKETS}")
        if bucket_ms * buckets > MAX_USAGE_SPAN_MS:
            raise ArgumentError(
                f"bucket_ms must be such that bucket_ms * buckets is at most {MAX_USAGE_SPAN_MS}"
            )

    @classmethod
    def hourly(cls, hours: int) -> UsageShape:
        """``hours`` buckets of one hour."""
        return cls(3_600_000, hours)

    @classmethod
    def per_minute(cls, minutes: int) -> UsageShape:
        """``minutes`` buckets of one minute."""
        return cls(60_000, minutes)

    @classmethod
    def daily(cls, days: int) -> UsageShape:
        """``days`` buckets of one day (UTC days: buckets are aligned to the epoch)."""
        return cls(86_400_000, days)

    @property
    def span_ms(self) -> int:
        """The time the ring covers: ``bucket_ms * buckets``."""
        return self.bucket_ms * self.buckets


@dataclass(frozen=True)
class UsageBucket:
    """One bucket of a usage counter, as ``RL.USAGE`` answers it."""

    start_ms: int
    """When the bucket starts, in Unix milliseconds (aligned to the epoch)."""
    amount: int
    """The amount recorded in it (0 when nothing was)."""

    @property
    def start(self) -> datetime:
        """When the bucket starts, as an aware UTC datetime."""
        return datetime.fromtimestamp(0, timezone.utc) + timedelta(milliseconds=self.start_ms)


def record(key: Key, amount: int, shape: UsageShape) -> Command:
    """``RL.USAGE.ADD key amount bucket_ms buckets``; the amount checked as the server
    checks it (``0..=2^62``)."""
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
        raise ArgumentError("amount must be a non-negative integer")
    if amount > MAX_USAGE_RECORD:
        raise ArgumentError(f"amount must be at most {MAX_USAGE_RECORD}")
    if not isinstance(shape, UsageShape):
        raise TypeError(f"not a UsageShape: {shape!r}")
    return ("RL.USAGE.ADD", key, amount, shape.bucket_ms, shape.buckets)


def read(key: Key) -> Command:
    """``RL.USAGE key``."""
    return ("RL.USAGE", key)


def total(reply: Any) -> int:
    """``RL.USAGE.ADD``'s reply: the total over the ring, a non-negative integer."""
    value = count(reply, "RL.USAGE.ADD")
    if value < 0:
        raise UnexpectedReplyError(f"RL.USAGE.ADD: a negative total {value}")
    return value


def buckets(reply: Any) -> list[UsageBucket]:
    """``RL.USAGE``'s reply: a flat array of ``bucket_start_ms, amount`` pairs (RESP2
    and RESP3 alike), oldest first; anything else is :class:`UnexpectedReplyError`."""
    if not isinstance(reply, (list, tuple)) or len(reply) % 2 != 0:
        raise UnexpectedReplyError(f"expected bucket_start_ms, amount pairs, got {reply!r}")
    out = []
    for start, amount in zip(reply[0::2], reply[1::2]):
        start_ms, amount = count(start, "RL.USAGE"), count(amount, "RL.USAGE")
        if start_ms < 0 or amount < 0:
            raise UnexpectedReplyError(f"RL.USAGE: a negative start or amount in {reply!r}")
        out.append(UsageBucket(start_ms, amount))
    return out
