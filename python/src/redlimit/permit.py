"""Outbound calls: one call charged against several limits at once, each with its own
cost (1 request and N tokens), and the :class:`Permit` (:class:`AsyncPermit`) that
corrects the charges once the real cost is known.

``admit`` (on both clients) is ``RL.ALL ... COSTS ... MAXWAIT`` over token buckets: the
server picks the instant every bucket can take its cost, charges them all as of that
instant, and ``admit`` sleeps until then. ``settle`` is ``RL.ADJUST key delta policy
SINCE ms`` for each limit whose real cost differs. This module holds what the sync and
asyncio clients share; it does no I/O of its own.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Coroutine, Generator, Sequence
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Optional, Union

from . import _protocol as p
from ._protocol import Key
from ._types import AllDecision, AllPolicy, Decision, Fixed, Sliding, TokenBucket
from .errors import NotAdmitted, RateLimitError, UnavailableError, UnexpectedReplyError

if TYPE_CHECKING:
    from .aio import AsyncRateLimiter
    from .client import RateLimiter

log = logging.getLogger("redlimit")

AdmitFailure = Literal["error", "open", "closed"]
"""What ``admit`` answers when the server cannot decide (unreachable, no module, a
reply of another shape): ``"error"`` raises the error (as every other call does),
``"open"`` admits with nothing counted (nothing to settle), ``"closed"`` raises
:class:`NotAdmitted` with ``unavailable`` set."""

Source = Literal["server", "failed_open"]
"""Who admitted a permit: the server, or the ``"open"`` failure policy (nothing counted)."""

Charge = tuple[Key, AllPolicy, int]
"""One limit of a call: key, policy, cost."""

MaxWait = Union[float, timedelta]
"""How long ``admit`` may wait: seconds, or a ``timedelta``."""


def charges(limits: Sequence[tuple[Key, AllPolicy, int]]) -> list[Charge]:
    """``limits`` after the checks the server would make (1 to 32, no throttle)."""
    if not limits or len(limits) > p.MAX_ALL_KEYS:
        raise ValueError(
            f"a call is admitted against 1 to {p.MAX_ALL_KEYS} limits, not {len(limits)}"
        )
    out: list[Charge] = []
    for index, (key, policy, cost) in enumerate(limits, 1):
        if not isinstance(policy, (TokenBucket, Sliding, Fixed)):
            raise TypeError(
                f"limit {index} is {policy!r}: a call is admitted against token buckets and windows"
            )
        if isinstance(cost, bool) or not isinstance(cost, int) or not 0 <= cost <= p.MAX_COUNT:
            raise ValueError(f"cost {index} must be an integer from 0 to {p.MAX_COUNT}: {cost!r}")
        out.append((key, policy, cost))
    return out


def max_wait_ms(max_wait: MaxWait) -> int:
    """``max_wait`` in whole ms (rounded down), at most the module's 10^13 ms."""
    seconds = max_wait.total_seconds() if isinstance(max_wait, timedelta) else float(max_wait)
    if not seconds >= 0:
        raise ValueError(f"max_wait must be at least 0 s: {max_wait!r}")
    if math.isinf(seconds):
        return p.MAX_DURATION_MS
    return min(int(seconds * 1000), p.MAX_DURATION_MS)


def reserves(limits: Sequence[Charge]) -> bool:
    """Only token buckets reserve a later instant (windows refuse ``MAXWAIT``)."""
    return all(isinstance(policy, TokenBucket) for _, policy, _ in limits)


def act_wait_ms(decision: AllDecision) -> int:
    """An admitted reservation's wait before acting: the same in every decision."""
    return max((d.retry_after_ms or 0 for d in decision.decisions), default=0)


def retry_ms(decision: AllDecision) -> Optional[int]:
    """When a refused call can be admitted: the longest wait of the refusing limits
    (``None``: never)."""
    refused = [d for d in decision.decisions if not d.allowed] or list(decision.decisions)
    waits = [d.retry_after_ms for d in refused]
    if any(w is None for w in waits):
        return None
    return max((w for w in waits if w is not None), default=0)


def is_backend_failure(error: RateLimitError) -> bool:
    """The server could not decide (not: it refused the arguments)."""
    return isinstance(error, (UnavailableError, UnexpectedReplyError))


def on_failure(limits: Sequence[Charge], failure: AdmitFailure, error: RateLimitError) -> None:
    """Raises what ``failure`` answers for ``error``; returns when it admits (open)."""
    if failure == "error" or not is_backend_failure(error):
        raise error
    if failure == "closed":
        refused = tuple(Decision(False, pol.quota, 0, None, 0) for _, pol, _ in limits)
        raise NotAdmitted(AllDecision(False, refused), None, error) from error


def admitted_open(limits: Sequence[Charge]) -> AllDecision:
    """The decision of a call the ``"open"`` policy admits: nothing counted."""
    return AllDecision(
        True, tuple(Decision(True, pol.quota, max(pol.quota - c, 0), 0, 0) for _, pol, c in limits)
    )


class _PermitState:
    """What both permits hold: the charges, the decision, when the charges counted."""

    def __init__(
        self,
        limits: Sequence[Charge],
        decision: AllDecision,
        source: Source,
        failure: AdmitFailure,
        sent_at: float,
        act_wait_ms: int,
    ) -> None:
        self._charges = list(limits)
        self._decision = decision
        self._source: Source = source
        self._failure: AdmitFailure = failure
        self._sent_at = sent_at
        self._act_wait_ms = act_wait_ms
        self._waited = timedelta(milliseconds=act_wait_ms)
        self._done = False

    @property
    def decision(self) -> AllDecision:
        """The decisions that admitted the call, one per limit, in the order given."""
        return self._decision

    @property
    def costs(self) -> tuple[int, ...]:
        """The costs charged, one per limit, in the order given."""
        return tuple(cost for _, _, cost in self._charges)

    @property
    def source(self) -> Source:
        """``"server"``, or ``"failed_open"``: nothing was counted (nothing to settle)."""
        return self._source

    @property
    def waited(self) -> timedelta:
        """How long ``admit`` waited (for the reserved instant, or retries over windows)."""
        return self._waited

    @property
    def done(self) -> bool:
        """Settled or cancelled."""
        return self._done

    def since_ms(self) -> int:
        """At least the time since the charges counted, in ms: since the request was
        sent (rounded up), less the act wait the server answered (itself rounded up)."""
        elapsed = math.ceil((time.monotonic() - self._sent_at) * 1000)
        return min(max(0, elapsed - max(0, self._act_wait_ms - 1)), p.MAX_DURATION_MS)

    def _corrections(self, actual: Sequence[int]) -> list[tuple[Key, p.Command]]:
        """The ``RL.ADJUST`` of each limit whose real cost differs; marks the permit done."""
        if self._done:
            raise RuntimeError("this permit was already settled or cancelled")
        if len(actual) != len(self._charges) or not all(
            isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= p.MAX_COUNT for c in actual
        ):
            raise ValueError(
                f"settle takes {len(self._charges)} costs (one per limit), each an integer "
                f"from 0 to {p.MAX_COUNT}: {list(actual)!r}"
            )
        self._done = True
        if self._source != "server":
            return []
        since = self.since_ms()
        return [
            (key, p.adjust(key, real - cost, policy, since))
            for (key, policy, cost), real in zip(self._charges, actual)
            if real != cost
        ]

    def _give_back(self) -> list[tuple[Key, p.Command]]:
        """Refunds of a reservation whose instant never came (the charges count from a
        later instant: ``SINCE 0``). The server drops them on a bucket in debt, where
        other reservations may be queued behind this one."""
        self._done = True
        if self._source != "server":
            return []
        return [
            (key, p.adjust(key, -cost, policy, 0)) for key, policy, cost in self._charges if cost
        ]

    def _dropped(self, error: RateLimitError) -> None:
        """A correction failed: raised under ``"error"`` (and for any error that is not
        an outage); otherwise dropped (a lost refund only under-admits)."""
        if self._failure == "error" or not is_backend_failure(error):
            raise error
        log.warning("redlimit: a settle correction was dropped: %s", error)

    def __repr__(self) -> str:
        state = "done" if self._done else "open"
        return f"<{type(self).__name__} costs={self.costs} source={self._source} {state}>"


class Permit(_PermitState):
    """An admitted call (:meth:`RateLimiter.admit`): every limit counted its cost.

    Once the call is done, :meth:`settle` it with what it really cost, or :meth:`cancel`
    it if it was never made. Not settled, the charges stay as they are (keeping them
    never over-admits). As a context manager, a block that raises before settling
    cancels the permit (the call is taken as not made: settle in your own ``except``
    when it may have reached the provider).
    """

    def __init__(
        self,
        limiter: RateLimiter,
        limits: Sequence[Charge],
        decision: AllDecision,
        source: Source,
        failure: AdmitFailure,
        sent_at: float,
        act_wait_ms: int,
    ) -> None:
        super().__init__(limits, decision, source, failure, sent_at, act_wait_ms)
        self._limiter = limiter

    def settle(self, actual: Sequence[int]) -> None:
        """Corrects every limit to the call's real cost, ``actual[i]`` for limit ``i``:
        less gives the difference back (never above full, never more than charging less
        at the act time would have left), more charges it (into the bounded debt of
        ``RL.ADJUST``). One round trip per limit that changes."""
        for key, command in self._corrections(actual):
            try:
                self._limiter._call(key, command, p.adjusted)
            except RateLimitError as error:
                self._dropped(error)

    def cancel(self) -> None:
        """The call was not made: gives every charge back."""
        self.settle([0] * len(self._charges))

    def _abandon(self) -> None:
        for key, command in self._give_back():
            try:
                self._limiter._call(key, command, p.adjusted)
            except RateLimitError as error:  # best effort: the reservation stays counted
                log.warning("redlimit: an abandoned reservation was not given back: %s", error)

    def __enter__(self) -> Permit:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if exc_type is not None and not self._done:
            try:
                self.cancel()
            except RateLimitError as error:  # the block's exception is the one to see
                log.warning("redlimit: the permit could not be cancelled: %s", error)


_BACKGROUND: set[asyncio.Task[None]] = set()
"""Give-backs of cancelled ``admit`` calls, kept alive until they finish."""


class AsyncPermit(_PermitState):
    """:class:`Permit` for :class:`AsyncRateLimiter`: ``await permit.settle(actual)``,
    ``await permit.cancel()``; ``async with`` cancels it when the block raises first."""

    def __init__(
        self,
        limiter: AsyncRateLimiter,
        limits: Sequence[Charge],
        decision: AllDecision,
        source: Source,
        failure: AdmitFailure,
        sent_at: float,
        act_wait_ms: int,
    ) -> None:
        super().__init__(limits, decision, source, failure, sent_at, act_wait_ms)
        self._limiter = limiter

    async def settle(self, actual: Sequence[int]) -> None:
        """As :meth:`Permit.settle`."""
        for key, command in self._corrections(actual):
            try:
                await self._limiter._call(key, command, p.adjusted)
            except RateLimitError as error:
                self._dropped(error)

    async def cancel(self) -> None:
        """The call was not made: gives every charge back."""
        await self.settle([0] * len(self._charges))

    def _abandon(self) -> None:
        """The ``admit`` task was cancelled while waiting: give back in the background."""
        corrections = self._give_back()
        if not corrections:
            return

        async def give_back() -> None:
            for key, command in corrections:
                try:
                    await self._limiter._call(key, command, p.adjusted)
                except RateLimitError as error:
                    log.warning("redlimit: an abandoned reservation was not given back: %s", error)

        task = asyncio.get_running_loop().create_task(give_back())
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)

    async def __aenter__(self) -> AsyncPermit:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if exc_type is not None and not self._done:
            try:
                await self.cancel()
            except RateLimitError as error:
                log.warning("redlimit: the permit could not be cancelled: %s", error)


class Admitting(Coroutine[Any, Any, AsyncPermit]):
    """What :meth:`AsyncRateLimiter.admit` returns: a coroutine (``await`` it,
    ``asyncio.create_task`` it) of the permit, and an async context manager
    (``async with limiter.admit(...) as permit:``) that cancels the permit when the
    block raises before settling."""

    def __init__(self, admit: Coroutine[Any, Any, AsyncPermit]) -> None:
        self._admit = admit
        self._permit: Optional[AsyncPermit] = None

    def send(self, value: Any) -> Any:
        return self._admit.send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        if val is None and tb is None:
            return self._admit.throw(typ)
        return self._admit.throw(typ, val, tb)

    def close(self) -> None:
        self._admit.close()

    def __await__(self) -> Generator[Any, None, AsyncPermit]:
        return self._admit.__await__()

    async def __aenter__(self) -> AsyncPermit:
        self._permit = await self._admit
        return self._permit

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if self._permit is not None:
            await self._permit.__aexit__(exc_type, exc, tb)
