"""Decisions, statuses and policies: plain values, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Optional, Union


@dataclass(frozen=True)
class Decision:
    """One limiter's answer (the module's five-integer decision reply).

    ``retry_after_ms`` is ``None`` when the request can never succeed (the server's
    ``-1``: its cost is above the limit). ``bool(decision)`` is ``decision.allowed``.
    """

    allowed: bool
    limit: int
    remaining: int
    retry_after_ms: Optional[int]
    reset_after_ms: int
    replicas_acked: Optional[int] = None
    """With :meth:`RateLimiter.replicated`: how many replicas acknowledged the write."""

    def __bool__(self) -> bool:
        return self.allowed

    @property
    def retry_after(self) -> Optional[timedelta]:
        """How long to wait before retrying (``None``: never; zero when allowed now)."""
        if self.retry_after_ms is None:
            return None
        return timedelta(milliseconds=self.retry_after_ms)

    @property
    def reset_after(self) -> timedelta:
        """How long until the limiter is fully available again."""
        return timedelta(milliseconds=self.reset_after_ms)

    @property
    def retry_after_s(self) -> Optional[int]:
        """``retry_after_ms`` in whole seconds rounded **up** (for ``Retry-After``)."""
        if self.retry_after_ms is None:
            return None
        return ceil_seconds(self.retry_after_ms)


@dataclass(frozen=True)
class AllDecision:
    """The answer of ``RL.ALL``: the overall verdict and each key's decision, in order."""

    allowed: bool
    decisions: tuple[Decision, ...]
    replicas_acked: Optional[int] = None

    def __bool__(self) -> bool:
        return self.allowed


@dataclass(frozen=True)
class Status:
    """``RL.STATUS``: the stored policy and what a ``PEEK`` of cost 1 would answer now."""

    algorithm: str
    policy: dict[str, int]
    decision: Decision
    fields: dict[str, Union[str, int]] = field(repr=False)


@dataclass(frozen=True)
class TokenBucket:
    """``capacity`` tokens at most, ``refill_tokens`` more every ``refill_ms``."""

    capacity: int
    refill_tokens: int
    refill_ms: int

    def args(self) -> list[Union[str, int]]:
        return ["TOKENBUCKET", self.capacity, self.refill_tokens, self.refill_ms]

    @property
    def quota(self) -> int:
        return self.capacity

    @property
    def window_s(self) -> int:
        """Time to refill from empty, in seconds rounded up, at least 1."""
        ms = -(-self.capacity * self.refill_ms // self.refill_tokens)
        return max(1, ceil_seconds(ms))


@dataclass(frozen=True)
class Sliding:
    """At most ``limit`` in any ``window_ms``; ``approx`` for the two-window estimate."""

    limit: int
    window_ms: int
    approx: bool = False

    def args(self) -> list[Union[str, int]]:
        out: list[Union[str, int]] = ["SLIDING", self.limit, self.window_ms]
        if self.approx:
            out.append("APPROX")
        return out

    @property
    def quota(self) -> int:
        return self.limit

    @property
    def window_s(self) -> int:
        return max(1, ceil_seconds(self.window_ms))


@dataclass(frozen=True)
class Fixed:
    """At most ``limit`` per epoch-aligned window of ``window_ms``."""

    limit: int
    window_ms: int

    def args(self) -> list[Union[str, int]]:
        return ["FIXED", self.limit, self.window_ms]

    @property
    def quota(self) -> int:
        return self.limit

    @property
    def window_s(self) -> int:
        return max(1, ceil_seconds(self.window_ms))


@dataclass(frozen=True)
class Throttle:
    """redis-cell's GCRA (``RL.THROTTLE``); cannot be combined in ``RL.ALL``."""

    max_burst: int
    count_per_period: int
    period_s: int

    def args(self) -> list[Union[str, int]]:
        """The policy as ``RL.ADJUST`` takes it (``RL.THROTTLE`` itself has no keyword)."""
        return ["THROTTLE", self.max_burst, self.count_per_period, self.period_s]

    @property
    def quota(self) -> int:
        return self.max_burst + 1

    @property
    def window_s(self) -> int:
        return max(1, -(-(self.max_burst + 1) * self.period_s // self.count_per_period))


Policy = Union[TokenBucket, Sliding, Fixed, Throttle]
"""Any policy; ``RL.ALL`` takes all but :class:`Throttle`."""

AllPolicy = Union[TokenBucket, Sliding, Fixed]


def ceil_seconds(ms: int) -> int:
    """Milliseconds to whole seconds, rounded up (``835`` -> ``1``)."""
    return -(-ms // 1000)
