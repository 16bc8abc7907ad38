"""Outbound quotas, continued: the asyncio client (``async with limiter.admit(...)``,
cancellation while waiting), the failure policy without the module or without a
server, and RESP3 answering what RESP2 answers."""

from __future__ import annotations

import asyncio
from typing import Union

import pytest
import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.retry import Retry

from conftest import WITH_MODULE, Server, async_limiter, start, stop, sync_limiter
from redlimit import (
    ArgumentError,
    AsyncPermit,
    AsyncRateLimiter,
    Decision,
    ModuleNotLoadedError,
    NotAdmitted,
    RateLimiter,
    TokenBucket,
    UnavailableError,
)
from redlimit._types import AllPolicy

RPM = TokenBucket(20, 20, 60_000)
TPM = TokenBucket(20_000, 20_000, 60_000)


async def left(limiter: AsyncRateLimiter, key: str, policy: TokenBucket) -> int:
    return (await limiter.check(key, policy, cost=0)).remaining


def test_async_admit_settle(server: Server, protocol: int, key: str) -> None:
    rpm, tpm = f"{{{key}}}:rpm", f"{{{key}}}:tpm"

    async def scenario() -> None:
        client = redis.asyncio.Redis(port=server.port, protocol=protocol)
        limiter = async_limiter(client, server)
        async with limiter.admit([(rpm, RPM, 1), (tpm, TPM, 1200 + 16_000)]) as permit:
            assert isinstance(permit, AsyncPermit)
            assert [d.remaining for d in permit.decision.decisions] == [19, 2800]
            await permit.settle([1, 1200 + 850])
        assert permit.done
        # As in test_outbound.py: SINCE counts from sending the admit (latency ≤ 300 ms).
        assert 17_850 <= await left(limiter, tpm, TPM) <= 18_200
        # The refund is reused at once by the next call (it would wait ~21 s without).
        again = await limiter.admit([(rpm, RPM, 1), (tpm, TPM, 10_000)], max_wait=0)
        assert 7_850 <= again.decision.decisions[1].remaining <= 8_200
        await again.settle([1, 10_000])  # as charged: nothing to send
        # A block that raises before settling gives everything back.
        with pytest.raises(ConnectionResetError):
            async with limiter.admit([(rpm, RPM, 1), (tpm, TPM, 5000)]) as failed:
                raise ConnectionResetError("the provider was never reached")
        assert failed.done
        assert 7_850 <= await left(limiter, tpm, TPM) <= 8_300
        with pytest.raises(NotAdmitted) as refused:
            await limiter.admit([(rpm, RPM, 1), (tpm, TPM, 20_001)], max_wait=60)
        assert refused.value.retry_after_ms is None
        adjusted = await limiter.adjust(tpm, 1000)
        assert adjusted is not None and 6_939 <= adjusted.remaining <= 7_300
        costs = await limiter.all([(rpm, RPM), (tpm, TPM)], costs=[0, 1], max_wait_ms=10)
        assert costs.allowed
        await client.aclose()

    asyncio.run(scenario())


def test_async_cancel_while_waiting(server: Server, protocol: int, key: str) -> None:
    """Cancelled while it waits for its instant, admit gives back what no queue depends
    on: the request bucket (it had the token), less the refill until the reservation's
    act time (a bucket charged nothing might have been full until then); the token
    bucket is in debt (the reservation waits for its own tokens) and keeps it."""
    rpm, tpm = f"{{{key}}}:rpm", f"{{{key}}}:tpm"
    slow = TokenBucket(100, 100, 5000)  # a token every 50 ms

    async def scenario() -> None:
        client = redis.asyncio.Redis(port=server.port, protocol=protocol)
        limiter = async_limiter(client, server)
        assert (await limiter.all([(rpm, RPM), (tpm, slow)], costs=[0, 100])).allowed
        admitting = limiter.admit([(rpm, RPM, 1), (tpm, slow, 50)], max_wait=5)
        task: asyncio.Task[AsyncPermit] = asyncio.create_task(admitting)
        await asyncio.sleep(0.1)
        # Reserved: the token, and the refill until the act time (2.5 s).
        reserved = await limiter.check(rpm, RPM, cost=0)
        assert reserved.remaining == 18
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(50):  # the give-back runs in the background
            after = await limiter.check(rpm, RPM, cost=0)
            if after.reset_after_ms < reserved.reset_after_ms - 300:
                break
            await asyncio.sleep(0.01)
        # A token is 3 s of refill; about 2.4 s of it, until the act time, does not
        # come back: about 0.6 s sooner full, 18 tokens still until the act time.
        assert after.remaining == 18
        gained = reserved.reset_after_ms - after.reset_after_ms
        assert 300 < gained <= 1_000, gained
        # In debt, the token bucket keeps the reservation: ~148 tokens to full, not ~98.
        tokens = await limiter.check(tpm, slow, cost=0)
        assert tokens.remaining == 0 and tokens.reset_after_ms > 6000
        await client.aclose()

    asyncio.run(scenario())


def test_failure_policy_without_module(bare_server: Server, protocol: int, key: str) -> None:
    limiter = RateLimiter(bare_server.client(protocol))
    call: list[tuple[str, AllPolicy, int]] = [(key + "r", RPM, 1), (key + "t", TPM, 5000)]
    with pytest.raises(ModuleNotLoadedError, match="unknown command"):
        limiter.admit(call)
    opened = limiter.admit(call, failure="open")
    assert opened.source == "failed_open" and opened.decision.allowed
    assert [d.remaining for d in opened.decision.decisions] == [19, 15_000]
    opened.settle([1, 100])  # nothing was counted: nothing to correct
    assert opened.done
    with pytest.raises(NotAdmitted) as closed:
        limiter.admit(call, failure="closed")
    assert isinstance(closed.value.unavailable, ModuleNotLoadedError)
    assert not closed.value.decision.allowed and closed.value.retry_after_ms is None
    with pytest.raises(ModuleNotLoadedError):
        limiter.adjust(key, -1, RPM)
    with pytest.raises(ModuleNotLoadedError):
        limiter.all([(key, RPM)], costs=[2], max_wait_ms=1000)

    async def asynchronous() -> None:
        client = redis.asyncio.Redis(port=bare_server.port, protocol=protocol)
        aio = AsyncRateLimiter(client)
        with pytest.raises(ModuleNotLoadedError):
            await aio.admit(call)
        assert (await aio.admit(call, failure="open")).source == "failed_open"
        with pytest.raises(NotAdmitted):
            async with aio.admit(call, failure="closed"):
                pass
        await client.aclose()

    asyncio.run(asynchronous())


def test_failure_policy_is_for_outages_only(server: Server, key: str) -> None:
    limiter = sync_limiter(server.client(), server)
    with pytest.raises(ArgumentError, match="capacity must be a positive integer"):
        limiter.admit([(key, TokenBucket(0, 1, 1000), 1)], failure="open")


def test_settle_when_the_server_is_gone(server: Server, key: str) -> None:
    own = start(server.name, module=WITH_MODULE)
    try:
        client = redis.Redis(port=own.port, retry=Retry(NoBackoff(), 0))
        limiter = sync_limiter(client, own)
        dropped = limiter.admit([(key, TPM, 5000)], failure="open")
        raised = limiter.admit([(key + "e", TPM, 5000)])
        assert dropped.source == raised.source == "server"
    finally:
        stop(own)
    dropped.settle([1000])  # "open": a lost refund only under-admits
    with pytest.raises(UnavailableError):
        raised.settle([1000])


Reply = Union[Decision, None]


def _same(a: Reply, b: Reply) -> bool:
    if a is None or b is None:
        return a is b
    close = abs(a.reset_after_ms - b.reset_after_ms) <= 500
    waits = (a.retry_after_ms, b.retry_after_ms)
    if None in waits:
        close = close and waits[0] == waits[1]
    else:
        close = close and abs((waits[0] or 0) - (waits[1] or 0)) <= 500
    # A settle's refund loses the refill of the ms since its charge (SINCE, rounded up):
    # a fraction of a token here, which may floor one whole token lower.
    near = abs(a.remaining - b.remaining) <= 1
    return (a.allowed, a.limit) == (b.allowed, b.limit) and near and close


def test_resp3_answers_what_resp2_answers(server: Server, key: str) -> None:
    slow = TokenBucket(1000, 1000, 3_600_000)  # a token every 3.6 s: nothing moves
    tokens = TokenBucket(20_000, 1, 3_600_000)
    replies: dict[int, list[Reply]] = {}
    for protocol in (2, 3):
        limiter = sync_limiter(server.client(protocol), server)
        k = f"{{{key}:{protocol}}}"
        limits: list[tuple[str, AllPolicy]] = [(k + ":r", RPM), (k + ":t", slow)]
        out: list[Reply] = []
        out += limiter.all(limits, costs=[1, 900]).decisions
        out += limiter.all(limits, costs=[1, 200], max_wait_ms=3_600_000).decisions
        out += limiter.all(limits, costs=[1, 5000], max_wait_ms=1000).decisions
        out.append(limiter.adjust(k + ":t", -50, slow, since_ms=0))
        out.append(limiter.adjust(k + ":none", -50))
        # (The request bucket is held by the reservation until it acts: another one.)
        permit = limiter.admit([(k + ":r2", RPM, 2), (k + ":w", tokens, 3000)])
        out += permit.decision.decisions
        permit.settle([1, 1000])
        out.append(limiter.check(k + ":w", tokens, cost=0))
        replies[protocol] = out
    assert len(replies[2]) == len(replies[3]) == 11
    differ = [(a, b) for a, b in zip(replies[2], replies[3]) if not _same(a, b)]
    assert differ == []
