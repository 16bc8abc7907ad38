"""redlimit: typed Python access to the redlimit Redis module's RL.* commands, or to the
same algorithms as Lua scripts on a Redis that cannot load modules (``engine="scripts"``
or ``"auto"``).

Sync (:class:`RateLimiter`) and asyncio (:class:`AsyncRateLimiter`) clients over redis-py,
RESP2 and RESP3, standalone or cluster; a Starlette/FastAPI middleware and route
dependency in :mod:`redlimit.starlette` (``pip install ./python[fastapi]``).
"""

from ._engine import BackendInfo, Engine, NodeInfo
from ._types import AllDecision, Decision, Fixed, Policy, Sliding, Status, Throttle, TokenBucket
from ._usage import UsageBucket, UsageShape
from .aio import AsyncRateLimiter
from .client import RateLimiter
from .errors import (
    ArgumentError,
    CommandError,
    LimitExceeded,
    ModuleNotLoadedError,
    NotAdmitted,
    RateLimitError,
    UnavailableError,
    UnexpectedReplyError,
    WrongTypeError,
)
from .permit import AdmitFailure, Admitting, AsyncPermit, Permit

__all__ = [
    "AdmitFailure",
    "Admitting",
    "AllDecision",
    "ArgumentError",
    "AsyncPermit",
    "AsyncRateLimiter",
    "BackendInfo",
    "CommandError",
    "Decision",
    "Engine",
    "Fixed",
    "LimitExceeded",
    "ModuleNotLoadedError",
    "NodeInfo",
    "NotAdmitted",
    "Permit",
    "Policy",
    "RateLimitError",
    "RateLimiter",
    "Sliding",
    "Status",
    "Throttle",
    "TokenBucket",
    "UnavailableError",
    "UnexpectedReplyError",
    "UsageBucket",
    "UsageShape",
    "WrongTypeError",
]
__version__ = "0.1.0"
