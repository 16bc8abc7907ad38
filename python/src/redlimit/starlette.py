"""Starlette / FastAPI: an ASGI middleware and a route dependency.

Same semantics as the Rust layer (``docs/middleware.md``) where they overlap: per client
IP behind trusted proxies (rightmost untrusted ``X-Forwarded-For`` entry, IPv6 per /64),
per key via a callable, draft-11 ``RateLimit-Policy`` / ``RateLimit`` headers (and the
legacy ``X-RateLimit-*`` trio), 429 with ``Retry-After`` and an RFC 9457 problem body,
exemptions, fail-open / fail-closed with a timeout and a circuit breaker, several limits
per request decided all-or-nothing in one ``RL.ALL``.

Needs ``starlette`` (``pip install "./python[fastapi]"`` or ``[starlette]``).
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional, Union

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._types import AllDecision, Decision, Policy, Throttle, ceil_seconds
from .aio import AsyncRateLimiter
from .errors import RateLimitError

log = logging.getLogger("redlimit")

QUOTA_EXCEEDED = "https://iana.org/assignments/http-problem-types#quota-exceeded"
TEMPORARY_REDUCED_CAPACITY = (
    "https://iana.org/assignments/http-problem-types#temporary-reduced-capacity"
)

HeaderStyle = Literal["draft11", "legacy", "both", "none"]
FailurePolicy = Literal["open", "closed"]
KeyFunc = Callable[[HTTPConnection], Optional[str]]
IpNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


@dataclass(frozen=True)
class Limit:
    """One named limit of a rule (the name appears in headers, bodies and Redis keys)."""

    name: str
    policy: Policy

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in '{}",;'):
            raise ValueError(f'limit name {self.name!r} must be non-empty, without {{}}",;')


@dataclass(frozen=True)
class Rule:
    """What is limited: requests matching ``path`` (and ``methods``) count, per caller,
    against every limit in ``limits`` (all or nothing).

    ``key`` returns the caller's identity (an API key, a user id) or ``None`` for the
    client IP; it is hashed before it reaches Redis. ``cost`` may depend on the request.
    ``failure`` overrides the middleware's failure policy for this rule.
    """

    name: str
    limits: Sequence[Limit]
    path: str = "/**"
    methods: Optional[Iterable[str]] = None
    key: Optional[KeyFunc] = None
    cost: Union[int, Callable[[HTTPConnection], int]] = 1
    failure: Optional[FailurePolicy] = None
    _segments: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _methods: Optional[frozenset[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.name or "{" in self.name or "}" in self.name:
            raise ValueError(f"rule name {self.name!r} must be non-empty, without braces")
        if not self.limits:
            raise ValueError(f"rule {self.name!r} has no limit")
        names = [limit.name for limit in self.limits]
        if len(set(names)) != len(names):
            raise ValueError(f"rule {self.name!r}: duplicate limit names {names}")
        if len(self.limits) > 1 and any(isinstance(x.policy, Throttle) for x in self.limits):
            raise ValueError(f"rule {self.name!r}: a throttle cannot be combined")
        if len(self.limits) > 32:
            raise ValueError(f"rule {self.name!r}: at most 32 limits")
        segments = _segments(self.path)
        if "**" in segments[:-1]:
            raise ValueError(f"rule {self.name!r}: '**' only at the end of {self.path!r}")
        object.__setattr__(self, "_segments", segments)
        methods = None if self.methods is None else frozenset(m.upper() for m in self.methods)
        if methods is not None and "GET" in methods:
            methods = methods | {"HEAD"}
        object.__setattr__(self, "_methods", methods)

    def matches(self, method: str, path: str) -> bool:
        if self._methods is not None and method.upper() not in self._methods:
            return False
        return _match(self._segments, _segments(path))


def _segments(path: str) -> tuple[str, ...]:
    return tuple(s for s in path.strip("/").split("/")) if path.strip("/") else ()


def _match(pattern: tuple[str, ...], path: tuple[str, ...]) -> bool:
    if pattern and pattern[-1] == "**":
        head = pattern[:-1]
        return len(path) >= len(head) and _match(head, path[: len(head)])
    if len(pattern) != len(path):
        return False
    return all(p == s or (p == "*" and s != "") for p, s in zip(pattern, path))


def path_matches(pattern: str, path: str) -> bool:
    """Segment patterns as in the Rust layer: ``*`` one segment, a final ``**`` any rest."""
    return _match(_segments(pattern), _segments(path))


# ------------------------------------------------------------------------ client IP


class ClientIp:
    """Who is asking: the peer, or behind ``trusted_proxies`` the rightmost entry of
    ``X-Forwarded-For`` that is not itself a trusted proxy (never the leftmost, which
    the client writes). IPv6 clients count per ``ipv6_prefix`` (one /64 is one line)."""

    def __init__(
        self,
        trusted_proxies: Iterable[str] = (),
        *,
        ipv6_prefix: int = 64,
        forwarded_header: str = "x-forwarded-for",
    ) -> None:
        if not 0 <= ipv6_prefix <= 128:
            raise ValueError("ipv6_prefix must be from 0 to 128")
        self.trusted: tuple[IpNetwork, ...] = tuple(
            ipaddress.ip_network(p, strict=False) for p in trusted_proxies
        )
        self.ipv6_prefix = ipv6_prefix
        self.header = forwarded_header.lower()

    def _trusted(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(ip.version == net.version and ip in net for net in self.trusted)

    def resolve(self, peer: Optional[str], headers: Headers) -> Optional[str]:
        """The client's address (IPv6 as ``prefix/len``), or ``None`` without a peer."""
        ip = _parse_ip(peer) if peer else None
        if ip is None:
            return None
        if self.trusted and self._trusted(ip):
            entries = [e for v in headers.getlist(self.header) for e in v.split(",")]
            for entry in reversed(entries):
                hop = _parse_ip(entry)
                if hop is None:
                    break
                ip = hop
                if not self._trusted(hop):
                    break
        return self._group(ip)

    def _group(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
        if ip.version == 6 and self.ipv6_prefix < 128:
            net = ipaddress.ip_network(f"{ip}/{self.ipv6_prefix}", strict=False)
            return f"{net.network_address}/{self.ipv6_prefix}"
        return str(ip)


def _parse_ip(text: str) -> Optional[Union[ipaddress.IPv4Address, ipaddress.IPv6Address]]:
    text = text.strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:
        text = text.split(":")[0]  # IPv4 with a port
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


# ------------------------------------------------------------------------ headers


def _t(decision: Decision) -> int:
    wait = decision.retry_after_ms
    if decision.remaining == 0 and wait is not None and wait > 0:
        return ceil_seconds(wait)
    return ceil_seconds(decision.reset_after_ms)


def rate_limit_headers(
    limits: Sequence[Limit], decisions: Sequence[Decision], style: HeaderStyle
) -> list[tuple[str, str]]:
    """The draft-11 fields (``q``/``w`` per policy, ``r``/``t`` per decision, rounded up)
    and/or the legacy trio for the limit closest to exhaustion."""
    out: list[tuple[str, str]] = []
    if style in ("draft11", "both"):
        policy = ", ".join(f'"{x.name}";q={x.policy.quota};w={x.policy.window_s}' for x in limits)
        state = ", ".join(
            f'"{x.name}";r={d.remaining};t={_t(d)}' for x, d in zip(limits, decisions)
        )
        out += [("RateLimit-Policy", policy), ("RateLimit", state)]
    if style in ("legacy", "both"):
        d = min(decisions, key=lambda d: (d.remaining, d.limit))
        out += [
            ("X-RateLimit-Limit", str(d.limit)),
            ("X-RateLimit-Remaining", str(d.remaining)),
            ("X-RateLimit-Reset", str(_t(d))),
        ]
    return out


def _problem(status: int, body: dict[str, Any], headers: list[tuple[str, str]]) -> Response:
    content = json.dumps(body, sort_keys=True, separators=(",", ":"))
    response = Response(content, status_code=status, media_type="application/problem+json")
    for name, value in headers:
        response.headers.append(name, value)
    return response


@dataclass(frozen=True)
class Limited:
    """A refusal: the rule, the violated limits and the wait (``None``: never fits);
    ``unavailable`` for a fail-closed 503 (nothing was violated)."""

    rule: str
    violated_policies: tuple[str, ...]
    retry_after_s: Optional[int]
    unavailable: bool = False
    headers: tuple[tuple[str, str], ...] = ()

    def response(self) -> Response:
        headers = list(self.headers)
        if self.retry_after_s is not None:
            headers.append(("Retry-After", str(self.retry_after_s)))
        if self.unavailable:
            return _problem(
                503,
                {
                    "detail": f"Limits cannot be checked now; retry in {self.retry_after_s} s.",
                    "retry-after": self.retry_after_s,
                    "status": 503,
                    "title": "Request cannot be satisfied as the rate limits cannot be checked now",
                    "type": TEMPORARY_REDUCED_CAPACITY,
                },
                headers,
            )
        detail = (
            "This request is larger than the limit allows."
            if self.retry_after_s is None
            else f"Too many requests; retry in {self.retry_after_s} s."
        )
        return _problem(
            429,
            {
                "detail": detail,
                "retry-after": self.retry_after_s,
                "status": 429,
                "title": "Request cannot be satisfied as assigned quota has been exceeded",
                "type": QUOTA_EXCEEDED,
                "violated-policies": list(self.violated_policies),
            },
            headers,
        )


class RateLimitExceeded(HTTPException):
    """Raised by :class:`RateLimit` (the dependency). With :func:`install` (or
    ``app.add_exception_handler(RateLimitExceeded, rate_limit_exceeded_handler)``) the
    answer is the problem+json body; without it FastAPI's default handler still answers
    the status with ``Retry-After`` and the rate-limit headers."""

    def __init__(self, limited: Limited) -> None:
        response = limited.response()
        super().__init__(
            response.status_code,
            detail=json.loads(bytes(response.body)).get("detail"),
            headers={k: v for k, v in response.headers.items() if k != "content-length"},
        )
        self.limited = limited


async def rate_limit_exceeded_handler(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, RateLimitExceeded):
        raise exc
    return exc.limited.response()


def install(app: Any) -> None:
    """Registers the problem+json handler for :class:`RateLimitExceeded` on ``app``."""
    app.add_exception_handler(RateLimitExceeded, rate_limit_exceeded_handler)


# ------------------------------------------------------------------------ deciding


@dataclass
class _Breaker:
    failures_to_open: int = 3
    cool_down_s: float = 1.0
    failures: int = 0
    open_until: float = 0.0

    def closed(self) -> bool:
        return time.monotonic() >= self.open_until

    def failed(self) -> None:
        self.failures += 1
        if self.failures >= self.failures_to_open:
            self.open_until = time.monotonic() + self.cool_down_s
            self.failures = 0

    def succeeded(self) -> None:
        self.failures = 0


@dataclass(frozen=True)
class Outcome:
    """What the limiter says about one request."""

    rule: Rule
    allowed: bool
    headers: tuple[tuple[str, str], ...]
    limited: Optional[Limited] = None
    decisions: tuple[Decision, ...] = ()


class Limiter:
    """Decides requests against rules; shared by :class:`RateLimitMiddleware` and
    :class:`RateLimit`. One Redis round trip per request (``RL.ALL`` for several limits).

    ``failure``: ``"closed"`` (refuse with 503) or ``"open"`` (serve, no headers) when
    Redis cannot decide within ``timeout`` s, or answers an error (a server without the
    module included). After ``breaker_failures`` consecutive failures Redis is left
    alone for ``cool_down`` s. Failures are logged once when they begin or change kind,
    and once when decisions are made again.

    On a managed Redis that cannot load the module, give it
    ``AsyncRateLimiter(client, engine="auto")`` (or ``"scripts"``): the Lua scripts
    decide, with the same answers and headers.
    """

    def __init__(
        self,
        limiter: AsyncRateLimiter,
        *,
        client_ip: Optional[ClientIp] = None,
        key_prefix: str = "rl",
        headers: HeaderStyle = "draft11",
        failure: FailurePolicy = "closed",
        timeout: float = 0.1,
        cool_down: float = 1.0,
        breaker_failures: int = 3,
    ) -> None:
        self.limiter = limiter
        self.client_ip = client_ip or ClientIp()
        self.key_prefix = key_prefix
        self.headers = headers
        self.failure = failure
        self.timeout = timeout
        self.breaker = _Breaker(breaker_failures, cool_down)
        self._failing: Optional[str] = None

    def identity(self, rule: Rule, conn: HTTPConnection) -> str:
        if rule.key is not None:
            key = rule.key(conn)
            if key:
                return "custom:" + hashlib.sha256(key.encode()).hexdigest()[:32]
        peer = conn.client.host if conn.client else None
        ip = self.client_ip.resolve(peer, conn.headers)
        return f"ip:{ip or 'unknown'}"

    def keys(self, rule: Rule, identity: str) -> list[str]:
        return [f"{self.key_prefix}:{{{rule.name}:{identity}}}:{x.name}" for x in rule.limits]

    async def _decide(self, rule: Rule, keys: list[str], cost: int) -> AllDecision:
        if len(rule.limits) == 1:
            d = await self.limiter.check(keys[0], rule.limits[0].policy, cost=cost)
            return AllDecision(d.allowed, (d,))
        pairs = [(k, x.policy) for k, x in zip(keys, rule.limits)]
        return await self.limiter.all(pairs, cost=cost)  # type: ignore[arg-type]

    def _report(self, error: Optional[RateLimitError]) -> None:
        kind = None if error is None else error.kind
        if kind == self._failing:
            return
        if error is not None:
            log.warning("redlimit: backend error (%s): %s; the failure policy answers", kind, error)
        else:
            log.info("redlimit: the server decides again")
        self._failing = kind

    async def check(self, rule: Rule, conn: HTTPConnection) -> Outcome:
        cost = rule.cost(conn) if callable(rule.cost) else rule.cost
        keys = self.keys(rule, self.identity(rule, conn))
        try:
            if not self.breaker.closed():
                raise _BreakerOpen("circuit breaker open")
            try:
                result = await asyncio.wait_for(self._decide(rule, keys, cost), self.timeout)
            except asyncio.TimeoutError as exc:
                raise _Timeout(f"no answer within {self.timeout} s") from exc
        except RateLimitError as error:
            if not isinstance(error, _BreakerOpen):
                self.breaker.failed()
                self._report(error)
            return self._on_failure(rule)
        self.breaker.succeeded()
        self._report(None)
        headers = tuple(rate_limit_headers(rule.limits, result.decisions, self.headers))
        if result.allowed:
            return Outcome(rule, True, headers, None, result.decisions)
        refused = [(x, d) for x, d in zip(rule.limits, result.decisions) if not d.allowed] or list(
            zip(rule.limits, result.decisions)
        )
        waits = [d.retry_after_ms for _, d in refused]
        retry = None if any(w is None for w in waits) else max(w or 0 for w in waits)
        limited = Limited(
            rule.name,
            tuple(x.name for x, _ in refused),
            None if retry is None else max(1, ceil_seconds(retry)),
            headers=headers,
        )
        return Outcome(rule, False, headers, limited, result.decisions)

    def _on_failure(self, rule: Rule) -> Outcome:
        if (rule.failure or self.failure) == "open":
            return Outcome(rule, True, ())
        wait = max(1, ceil_seconds(int(self.breaker.cool_down_s * 1000)))
        return Outcome(rule, False, (), Limited(rule.name, (), wait, unavailable=True))


class _BreakerOpen(RateLimitError):
    kind = "breaker_open"


class _Timeout(RateLimitError):
    kind = "timeout"


# ------------------------------------------------------------------------ middleware


class RateLimitMiddleware:
    """ASGI middleware: the first rule matching the method and path applies.

    >>> app.add_middleware(RateLimitMiddleware, limiter=Limiter(AsyncRateLimiter(r)),
    ...                    rules=[Rule("api", [Limit("burst", TokenBucket(10, 1, 1000))])])

    Exempt: ``exempt_paths`` (patterns; ``/health`` and ``/metrics`` by default) and
    requests for which ``exempt(conn)`` is true; they get no headers and touch no key.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: Limiter,
        rules: Sequence[Rule],
        exempt_paths: Iterable[str] = ("/health", "/metrics"),
        exempt: Optional[Callable[[HTTPConnection], bool]] = None,
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.rules = list(rules)
        names = [r.name for r in self.rules]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate rule names: {names}")
        self.exempt_paths = [_segments(p) for p in exempt_paths]
        self.exempt = exempt

    def _rule(self, conn: HTTPConnection, method: str) -> Optional[Rule]:
        path = _segments(conn.url.path)
        if any(_match(p, path) for p in self.exempt_paths):
            return None
        if self.exempt is not None and self.exempt(conn):
            return None
        return next((r for r in self.rules if r.matches(method, conn.url.path)), None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        rule = self._rule(conn, scope["method"])
        if rule is None:
            await self.app(scope, receive, send)
            return
        outcome = await self.limiter.check(rule, conn)
        if outcome.limited is not None:
            await outcome.limited.response()(scope, receive, send)
            return
        extra = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in outcome.headers]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start" and extra:
                message = dict(message)
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


# ------------------------------------------------------------------------ dependency


class RateLimit:
    """A FastAPI route dependency deciding one rule (path and methods are the route's):

    >>> per_user = RateLimit(limiter, Rule("search", [Limit("m", Sliding(10, 60000))],
    ...                                     key=lambda c: c.headers.get("x-user")))
    >>> @app.get("/search", dependencies=[Depends(per_user)])

    ``rule`` may be a function of the request (a tier picks its rule).
    Allowed: the rate-limit headers are added to the response and the outcome returned.
    Refused: raises :class:`RateLimitExceeded` (429, or 503 when failing closed).
    """

    def __init__(self, limiter: Limiter, rule: Union[Rule, Callable[[Request], Rule]]) -> None:
        self.limiter = limiter
        self.rule = rule

    async def __call__(self, request: Request, response: Response) -> Outcome:
        rule = self.rule if isinstance(self.rule, Rule) else self.rule(request)
        outcome = await self.limiter.check(rule, request)
        if outcome.limited is not None:
            raise RateLimitExceeded(outcome.limited)
        for name, value in outcome.headers:
            response.headers[name] = value
        return outcome


__all__ = [
    "ClientIp",
    "Limit",
    "Limited",
    "Limiter",
    "Outcome",
    "RateLimit",
    "RateLimitExceeded",
    "RateLimitMiddleware",
    "Rule",
    "install",
    "path_matches",
    "rate_limit_exceeded_handler",
    "rate_limit_headers",
]
