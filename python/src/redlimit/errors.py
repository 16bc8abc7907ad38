"""Exceptions. Every backend failure is a :class:`RateLimitError` carrying the server's
message; a refused request is a :class:`Decision`, never an exception (except for a
lease, see :class:`LimitExceeded`)."""

from __future__ import annotations

from ._types import Decision


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
