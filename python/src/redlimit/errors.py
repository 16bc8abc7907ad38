"""Exceptions. Every backend failure is a :class:`RateLimitError` carrying the server's
message; a refused request is a :class:`Decision`, never an exception (except for a
lease, see :class:`LimitExceeded`, and of ``admit``, see :class:`NotAdmitted`)."""

from __future__ import annotations

from typing import Optional

from ._types import AllDecision, Decision


class RateLimitError(Exception):
    """The limiter could not decide: the base of every backend error."""

    kind = "error"


class ArgumentError(RateLimitError):
    """The server refused the arguments (``ERR capacity must be a positive integer``)."""

    kind = "argument"


class WrongTypeError(RateLimitError):
    """The key holds another type, or a limiter of another algorithm (``WRONGTYPE``)."""

    kind = "wrong_type"


class CommandError(RateLimitError):
    """Any other error reply (``OOM``, ``CROSSSLOT``, ``TRYAGAIN``, internal error)."""

    kind = "command"


class UnavailableError(RateLimitError):
    """No answer: connection refused or lost, or the timeout passed."""

    kind = "unavailable"


class ModuleNotLoadedError(UnavailableError):
    """The server answered ``unknown command 'RL.…'``: the module is not loaded there.

    A subclass of :class:`UnavailableError`: for a failure policy it is an outage,
    never "no limits"."""

    kind = "module_not_loaded"


class UnexpectedReplyError(RateLimitError):
    """The reply has a shape no redlimit command answers (never read as "allowed")."""

    kind = "unexpected_reply"


class LimitExceeded(Exception):
    """A lease (:meth:`RateLimiter.lease`) was refused; ``decision`` says until when."""

    def __init__(self, key: str, decision: Decision) -> None:
        wait = decision.retry_after_ms
        super().__init__(
            f"no free slot for {key!r}"
            + ("" if wait is None else f"; the earliest lease ends in {wait} ms")
        )
        self.key = key
        self.decision = decision


class NotAdmitted(Exception):
    """``admit`` could not admit the call within its ``max_wait``: nothing was counted
    anywhere. ``decision`` holds what each limit alone answered; ``retry_after_ms`` is
    when a retry with the same wait could be admitted (``None``: never, a cost above a
    limit, or the server could not decide under ``failure="closed"``: then
    ``unavailable`` holds the error)."""

    def __init__(
        self,
        decision: AllDecision,
        retry_after_ms: Optional[int],
        unavailable: Optional[RateLimitError] = None,
    ) -> None:
        if unavailable is not None:
            reason = f"the limits cannot be checked now ({unavailable})"
        elif retry_after_ms is None:
            reason = "a cost is above its limit: it never fits"
        else:
            reason = f"a retry with the same wait can be admitted in {retry_after_ms} ms"
        super().__init__(f"not admitted: {reason}")
        self.decision = decision
        self.retry_after_ms = retry_after_ms
        self.unavailable = unavailable
