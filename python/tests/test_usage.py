"""Usage counters (RL.USAGE.ADD / RL.USAGE) through the sync and asyncio clients, under
the suites' engine (module, scripts or auto), RESP2 and RESP3: add and read, rollover as
the clock moves, the key's shape, bad inputs, and a server that cannot be reached."""

from __future__ import annotations

import asyncio
from typing import Callable

import pytest
import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from conftest import (
    ON_SCRIPTS,
    Cluster,
    Server,
    async_limiter,
    free_port,
    stored_name,
    sync_limiter,
)
from redlimit import (
    ArgumentError,
    RateLimiter,
    UnavailableError,
    UnexpectedReplyError,
    UsageBucket,
    UsageShape,
    WrongTypeError,
)
from redlimit import _usage as u
from redlimit._translate import translate
from test_cluster import port_of, spread_keys

HOUR = 3_600_000
DAY_BY_HOUR = UsageShape.hourly(24)


@pytest.fixture
def limiter(server: Server, protocol: int) -> RateLimiter:
    return sync_limiter(server.client(protocol), server)


def test_record_and_read(limiter: RateLimiter, key: str) -> None:
    assert limiter.usage(key) == []
    assert limiter.record_usage(key, 0, DAY_BY_HOUR) == 0  # reads, writes nothing
    assert limiter.usage(key) == []
    assert limiter.record_usage(key, 1200, DAY_BY_HOUR) == 1200
    assert limiter.record_usage(key, 300, DAY_BY_HOUR) == 1500
    assert limiter.record_usage(key, 0, DAY_BY_HOUR) == 1500
    assert limiter.replicated(0, 10).record_usage(key, 0, DAY_BY_HOUR) == 1500
    report = limiter.usage(key)
    assert len(report) == 24, "one bucket per hour, the current hour last"
    assert all(b.start_ms % HOUR == 0 for b in report)
    assert [b.start_ms - a.start_ms for a, b in zip(report, report[1:])] == [HOUR] * 23
    assert report[-1].amount == 1500 and sum(b.amount for b in report) == 1500
    assert report[-1].start.timestamp() * 1000 == report[-1].start_ms
    status = limiter.status(key)
    assert status is not None and status.algorithm == "usage"
    assert (status.policy["bucket_ms"], status.policy["buckets"]) == (HOUR, 24)
    assert status.decision.allowed and status.decision.limit == 0
    assert 23 * HOUR < status.decision.reset_after_ms <= 24 * HOUR
    assert limiter.reset(key) == 1
    assert limiter.usage(key) == []


def test_rollover_as_the_clock_moves(limiter: RateLimiter, server: Server, key: str) -> None:
    assert limiter.record_usage(key, 1500, DAY_BY_HOUR) == 1500
    server.advance(HOUR)
    assert limiter.record_usage(key, 100, DAY_BY_HOUR) == 1600
    report = limiter.usage(key)
    assert len(report) == 24
    assert [b.amount for b in report[-2:]] == [1500, 100]
    server.advance(23 * HOUR)  # the 1500 bucket is a day old: out of the ring
    assert limiter.record_usage(key, 0, DAY_BY_HOUR) == 100
    assert [b.amount for b in limiter.usage(key) if b.amount] == [100]
    server.advance(24 * HOUR)  # the newest bucket left the ring: no key
    assert limiter.usage(key) == []
    assert limiter.status(key) is None
    assert limiter.record_usage(key, 7, DAY_BY_HOUR) == 7


def test_the_shape_is_the_keys(limiter: RateLimiter, key: str) -> None:
    limiter.record_usage(key, 5, DAY_BY_HOUR)
    with pytest.raises(
        ArgumentError, match=r"it records 24 buckets of 3600000 ms, not 60 of 60000 ms"
    ):
        limiter.record_usage(key, 5, UsageShape.per_minute(60))
    assert limiter.record_usage(key, 0, DAY_BY_HOUR) == 5  # nothing recorded
    limiter.fixed(key + "f", 1, 1000)
    with pytest.raises(WrongTypeError, match="fixed limiter"):
        limiter.record_usage(key + "f", 1, DAY_BY_HOUR)
    with pytest.raises(WrongTypeError, match="fixed limiter"):
        limiter.usage(key + "f")
    with pytest.raises(WrongTypeError, match="usage limiter"):
        limiter.fixed(key, 1, 1000)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        (lambda: UsageShape(0, 24), "bucket_ms must be a positive integer"),
        (lambda: UsageShape(60_000, 0), "buckets must be a positive integer"),
        (lambda: UsageShape.per_minute(1441), "buckets must be at most 1440"),
        (lambda: UsageShape.daily(-1), "buckets must be a positive integer"),
        (lambda: UsageShape(10**13 + 1, 1), "bucket_ms must be at most 10000000000000"),
        (lambda: UsageShape(10**10, 1001), r"bucket_ms \* buckets is at most 10000000000000"),
        (lambda: UsageShape(True, 1), "bucket_ms must be a positive integer"),
    ],
)
def test_shapes_are_checked_as_the_server_checks_them(
    shape: Callable[[], object], message: str
) -> None:
    with pytest.raises(ArgumentError, match=message):
        shape()


def test_shapes_and_amounts_at_their_bounds(limiter: RateLimiter, key: str) -> None:
    assert UsageShape.daily(365).span_ms == 365 * 86_400_000
    assert UsageShape(10**10, 1000).span_ms == 10**13
    minutes = UsageShape.per_minute(1440)
    # Amounts and totals saturate: at 2^63 - 1 in the module, 2^53 - 1 in the scripts
    # (exact doubles), never wrapping.
    most = 2**53 - 1 if ON_SCRIPTS else 2**63 - 1
    assert limiter.record_usage(key, 1 << 62, minutes) == min(1 << 62, most)
    assert limiter.record_usage(key, 1 << 62, minutes) == most
    report = limiter.usage(key)
    assert len(report) == 1440 and report[-1].amount == most
    with pytest.raises(ArgumentError, match="amount must be at most 4611686018427387904"):
        limiter.record_usage(key, (1 << 62) + 1, minutes)
    with pytest.raises(ArgumentError, match="amount must be a non-negative integer"):
        limiter.record_usage(key, -1, minutes)
    # The server's own checks (a raw command the client would not build).
    with pytest.raises(ArgumentError, match="amount must be"):
        limiter._call(key, ("RL.USAGE.ADD", key, "lots", 60_000, 1440), u.total)
    with pytest.raises(ArgumentError, match="buckets must be at most 1440"):
        limiter._call(key + "x", ("RL.USAGE.ADD", key + "x", 1, 60_000, 1441), u.total)


def test_a_record_that_cannot_reach_the_server_raises(bare_server: Server, key: str) -> None:
    """Reporting is not admission: no failure policy answers for a lost record."""
    down = sync_limiter(redis.Redis(port=free_port(), retry=Retry(NoBackoff(), 0)))
    with pytest.raises(UnavailableError):
        down.record_usage(key, 10, DAY_BY_HOUR)
    with pytest.raises(UnavailableError):
        down.usage(key)
    # A server without the module, engine "module": an outage too, never "recorded".
    without = RateLimiter(bare_server.client())
    with pytest.raises(UnavailableError, match="not loaded"):
        without.record_usage(key, 10, DAY_BY_HOUR)


def test_the_script_translation() -> None:
    """As client/src/engine/translate.rs translates them."""
    call = translate(u.record("{u}k", 5, DAY_BY_HOUR), 7)
    assert call.keys == (b"{u}k|rls", b"{u}k")
    assert call.args == (b"usage_add", b"7", b"5", b"3600000", b"24")
    assert translate(u.read("{u}k")).args == (b"usage", b"0")
    with pytest.raises(ArgumentError, match="needs key amount bucket_ms buckets"):
        translate(("RL.USAGE.ADD", "k", 1, 60_000))
    with pytest.raises(ArgumentError, match=r"RL\.USAGE needs one key"):
        translate(("RL.USAGE", "a", "b"))


@pytest.mark.parametrize("reply", [[1], [1, -2], None, 3, [b"x", 1], {b"a": 1}])
def test_other_usage_replies_are_errors(reply: object) -> None:
    with pytest.raises(UnexpectedReplyError):
        u.buckets(reply)


def test_usage_replies() -> None:
    assert u.buckets([3_600_000, 0, 7_200_000, 42]) == [
        UsageBucket(3_600_000, 0),
        UsageBucket(7_200_000, 42),
    ]
    assert u.buckets([]) == []
    with pytest.raises(UnexpectedReplyError):
        u.total(-1)


def test_asyncio(server: Server, protocol: int, key: str) -> None:
    async def scenario() -> None:
        client = redis.asyncio.Redis(port=server.port, protocol=protocol)
        limiter = async_limiter(client, server)
        assert await limiter.usage(key) == []
        assert await limiter.record_usage(key, 40, UsageShape.per_minute(60)) == 40
        assert await limiter.record_usage(key, 2, UsageShape.per_minute(60)) == 42
        report = await limiter.usage(key)
        assert len(report) == 60 and report[-1].amount == 42
        with pytest.raises(ArgumentError, match="it records 60 buckets of 60000 ms"):
            await limiter.record_usage(key, 1, DAY_BY_HOUR)
        await limiter.fixed(key + "f", 1, 1000)
        with pytest.raises(WrongTypeError):
            await limiter.usage(key + "f")
        await client.aclose()
        down = async_limiter(
            redis.asyncio.Redis(port=free_port(), retry=AsyncRetry(NoBackoff(), 0))
        )
        with pytest.raises(UnavailableError):
            await down.record_usage(key, 1, DAY_BY_HOUR)

    asyncio.run(scenario())


def test_counters_live_on_their_owner_in_a_cluster(
    cluster: Cluster, protocol: int, key: str
) -> None:
    """redis-py's cluster client refuses RL.USAGE.ADD's name (two dots) unless it is told
    the node: the limiter routes it to the key's owner itself."""
    rc = cluster.client(protocol)
    limiter = sync_limiter(rc)
    tags = spread_keys(rc, key)
    for tag in tags:
        usage_key = f"usage:{{{tag}}}:openai"
        assert limiter.record_usage(usage_key, 10, DAY_BY_HOUR) == 10
        assert limiter.record_usage(usage_key, 5, DAY_BY_HOUR) == 15
        assert [b.amount for b in limiter.usage(usage_key)][-1] == 15
        with redis.Redis(port=port_of(rc, tag)) as owner:
            assert owner.exists(stored_name(usage_key)) == 1
    rc.close()

    async def scenario() -> None:
        client = redis.asyncio.RedisCluster(
            host="127.0.0.1", port=cluster.nodes[0].port, protocol=protocol
        )
        aio = async_limiter(client)
        for tag in tags:
            usage_key = f"usage:{{{tag}}}:openai"
            assert await aio.record_usage(usage_key, 1, DAY_BY_HOUR) == 16
            assert (await aio.usage(usage_key))[-1].amount == 16
        await client.aclose()

    asyncio.run(scenario())
