"""The sync and asyncio clients against real servers, RESP2 and RESP3."""

from __future__ import annotations

import asyncio

import pytest
import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.retry import Retry

from conftest import Server, async_limiter, free_port, sync_limiter
from redlimit import (
    ArgumentError,
    Fixed,
    LimitExceeded,
    ModuleNotLoadedError,
    RateLimiter,
    Sliding,
    Throttle,
    TokenBucket,
    UnavailableError,
    UnexpectedReplyError,
    WrongTypeError,
)
from redlimit import _protocol as p
from redlimit._types import AllPolicy


@pytest.fixture
def limiter(server: Server, protocol: int) -> RateLimiter:
    return sync_limiter(server.client(protocol), server)


def test_token_bucket_timeline(limiter: RateLimiter, server: Server, key: str) -> None:
    for remaining in (2, 1, 0):
        d = limiter.token_bucket(key, 3, 1, 1000)
        assert (d.allowed, d.limit, d.remaining, d.retry_after_ms) == (True, 3, remaining, 0)
    denied = limiter.token_bucket(key, 3, 1, 1000)
    assert not denied
    assert denied.remaining == 0
    assert denied.retry_after_ms is not None and 900 < denied.retry_after_ms <= 1000
    assert denied.retry_after_s == 1
    server.advance(denied.retry_after_ms)
    assert limiter.token_bucket(key, 3, 1, 1000).allowed
    peek = limiter.token_bucket(key, 3, 1, 1000, peek=True)
    assert not peek.allowed
    never = limiter.token_bucket(key, 3, 1, 1000, cost=4)
    assert never.retry_after_ms is None and never.retry_after is None
    reserved = limiter.token_bucket(key, 3, 1, 1000, max_wait_ms=2000)
    assert reserved.allowed and reserved.retry_after_ms is not None
    assert 900 < reserved.retry_after_ms <= 1000


def test_sliding_fixed_throttle(limiter: RateLimiter, server: Server, key: str) -> None:
    assert limiter.sliding(key + "s", 2, 10_000, cost=2).remaining == 0
    d = limiter.sliding(key + "s", 2, 10_000)
    assert not d.allowed and d.retry_after_ms is not None and d.retry_after_ms > 9000
    a = limiter.sliding(key + "a", 1_000_000, 60_000, approx=True)
    assert (a.allowed, a.remaining) == (True, 999_999)
    f = limiter.fixed(key + "f", 1, 3_600_000)
    assert f.allowed and 0 < f.reset_after_ms <= 3_600_000
    f2 = limiter.fixed(key + "f", 1, 3_600_000)
    assert not f2 and f2.retry_after_ms == f2.reset_after_ms
    # redis-cell's reply: limit = max_burst + 1, seconds (here as ms).
    t = limiter.throttle(key + "t", 1, 1, 60)
    assert (t.allowed, t.limit, t.remaining, t.retry_after_ms) == (True, 2, 1, 0)
    limiter.throttle(key + "t", 1, 1, 60)
    t3 = limiter.throttle(key + "t", 1, 1, 60)
    assert not t3.allowed and t3.retry_after_ms == 60_000
    assert limiter.check(key + "t", Throttle(1, 1, 60)).allowed is False
    assert limiter.check(key + "c", Fixed(5, 1000)).remaining == 4


def test_all_is_all_or_nothing(limiter: RateLimiter, key: str) -> None:
    limits: list[tuple[str, AllPolicy]] = [
        (f"{{{key}}}:m", Sliding(2, 60_000)),
        (f"{{{key}}}:h", TokenBucket(1, 1, 60_000)),
    ]
    first = limiter.all(limits)
    assert first.allowed and [d.remaining for d in first.decisions] == [1, 0]
    second = limiter.all(limits)
    assert not second.allowed
    assert [d.allowed for d in second.decisions] == [True, False]
    # Nothing was counted on the minute window by the refused call.
    assert limiter.sliding(f"{{{key}}}:m", 2, 60_000, peek=True).remaining == 0
    assert limiter.sliding(f"{{{key}}}:m", 2, 60_000).allowed
    with pytest.raises(ValueError, match="at most 32"):
        limiter.all([(f"k{i}", Fixed(1, 1000)) for i in range(33)])


def test_leases(limiter: RateLimiter, key: str) -> None:
    with limiter.lease(key, 1, 30_000, "job-1") as d:
        assert (d.allowed, d.remaining) == (True, 0)
        with pytest.raises(LimitExceeded) as refused:
            limiter.lease(key, 1, 30_000, "job-2").__enter__()
        assert refused.value.decision.retry_after_ms is not None
        assert 29_000 < refused.value.decision.retry_after_ms <= 30_001
    assert limiter.release(key, "job-1") is False  # released on exit
    assert limiter.acquire(key, 1, 30_000, b"\xff\x00bin").allowed
    assert limiter.release(key, b"\xff\x00bin") is True


def test_status_and_reset(limiter: RateLimiter, key: str) -> None:
    assert limiter.status(key) is None
    limiter.token_bucket(key, 5, 1, 1000, cost=5)
    s = limiter.status(key)
    assert s is not None and s.algorithm == "tokenbucket"
    assert s.policy["capacity"] == 5 and s.policy["refill_ms"] == 1000
    assert not s.decision.allowed and s.decision.remaining == 0
    limiter.fixed(key + "f", 3, 60_000)
    s2 = limiter.status(key + "f")
    assert s2 is not None and (s2.algorithm, s2.policy["window_ms"]) == ("fixed", 60_000)
    assert s2.decision.allowed and s2.decision.remaining == 1
    assert limiter.reset(key, key + "f", key + "missing") == 2
    assert limiter.status(key) is None


def test_errors(limiter: RateLimiter, server: Server, key: str) -> None:
    with pytest.raises(ArgumentError, match="capacity must be a positive integer"):
        limiter.token_bucket(key, 0, 1, 1000)
    limiter.fixed(key, 1, 1000)
    with pytest.raises(WrongTypeError, match="fixed limiter"):
        limiter.sliding(key, 1, 1000)
    server.client().set(key + "s", "x")
    with pytest.raises(WrongTypeError, match="WRONGTYPE"):
        limiter.reset(key + "s")
    with pytest.raises(ArgumentError, match="COST must be a non-negative integer"):
        limiter.fixed(key + "z", 1, 1000, cost=-1)


def test_without_module(bare_server: Server, protocol: int, key: str) -> None:
    limiter = RateLimiter(bare_server.client(protocol))
    with pytest.raises(ModuleNotLoadedError, match="unknown command") as info:
        limiter.sliding(key, 1, 1000)
    assert isinstance(info.value, UnavailableError)


def test_connection_refused(key: str) -> None:
    down = sync_limiter(redis.Redis(port=free_port(), retry=Retry(NoBackoff(), 0)))
    with pytest.raises(UnavailableError):
        down.fixed(key, 1, 1000)


def test_replicated_wait(limiter: RateLimiter, key: str) -> None:
    d = limiter.replicated(0, 10).fixed(key, 2, 60_000)
    assert d.allowed and d.replicas_acked == 0
    all_of = limiter.replicated(0, 10).all([(key + "x", Fixed(1, 1000))])
    assert all_of.replicas_acked == 0
    assert limiter.wait_replicated(key, 0, 10) == 0


def test_asyncio(server: Server, protocol: int, key: str) -> None:
    async def scenario() -> None:
        client = redis.asyncio.Redis(port=server.port, protocol=protocol)
        limiter = async_limiter(client, server)
        assert (await limiter.sliding(key, 1, 60_000)).allowed
        assert not (await limiter.sliding(key, 1, 60_000)).allowed
        assert (await limiter.token_bucket(key + "b", 2, 1, 1000)).remaining == 1
        assert (await limiter.fixed(key + "f", 1, 1000)).allowed
        assert (await limiter.throttle(key + "t", 0, 1, 1)).allowed
        both = await limiter.all([(key + "1", Fixed(1, 1000)), (key + "2", Fixed(1, 1000))])
        assert both.allowed
        async with limiter.lease(key + "l", 1, 1000) as lease:
            assert lease.allowed
            with pytest.raises(LimitExceeded):
                async with limiter.lease(key + "l", 1, 1000):
                    pass
        status = await limiter.status(key)
        assert status is not None and status.algorithm == "sliding"
        assert await limiter.reset(key) == 1
        assert (await limiter.replicated(0, 5).fixed(key + "w", 1, 1000)).replicas_acked == 0
        with pytest.raises(ArgumentError):
            await limiter.fixed(key, 1, 0)
        await client.aclose()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "reply",
    [
        {b"allowed": 1, b"limit": 1, b"remaining": 0, b"retry_after_ms": 0, b"reset_after_ms": 1},
        [1, 2, 3, 4],
        [b"allowed", 1, 2, 3, 4],
        [2, 1, 1, 0, 0],
        None,
        b"OK",
    ],
)
def test_other_reply_shapes_are_errors(reply: object) -> None:
    with pytest.raises(UnexpectedReplyError):
        p.decision(reply)


def test_status_shapes() -> None:
    flat = [
        b"algorithm",
        b"fixed",
        b"limit",
        3,
        b"window_ms",
        10,
        b"allowed",
        1,
        b"remaining",
        2,
        b"retry_after_ms",
        0,
        b"reset_after_ms",
        10,
    ]
    as_map = dict(zip(flat[0::2], flat[1::2]))
    as_map[b"allowed"] = True
    assert p.status_reply(flat) == p.status_reply(as_map)
    with pytest.raises(UnexpectedReplyError):
        p.status_reply([b"algorithm", b"fixed"])
    with pytest.raises(UnexpectedReplyError):
        p.all_decision([1, [1, 1, 1, 0, 0]], 2)
