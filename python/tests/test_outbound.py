"""Outbound quotas against real servers, RESP2 and RESP3: RL.ALL's COSTS and MAXWAIT,
RL.ADJUST, and admit/settle/cancel (sync)."""

from __future__ import annotations

import pytest

from conftest import Server, sync_limiter
from redlimit import (
    ArgumentError,
    Fixed,
    NotAdmitted,
    Permit,
    RateLimiter,
    Sliding,
    Throttle,
    TokenBucket,
)
from redlimit._types import AllPolicy, Policy

RPM = TokenBucket(20, 20, 60_000)
TPM = TokenBucket(20_000, 20_000, 60_000)


@pytest.fixture
def limiter(server: Server, protocol: int) -> RateLimiter:
    return sync_limiter(server.client(protocol), server)


def left(limiter: RateLimiter, key: str, policy: Policy) -> int:
    """What the limiter holds now (a COST 0 call writes nothing)."""
    return limiter.check(key, policy, cost=0).remaining


def test_all_costs(limiter: RateLimiter, key: str) -> None:
    limits: list[tuple[str, AllPolicy]] = [(f"{{{key}}}:rpm", RPM), (f"{{{key}}}:tpm", TPM)]
    d = limiter.all(limits, costs=[1, 3500])
    assert d.allowed
    assert [(x.allowed, x.limit, x.remaining, x.retry_after_ms) for x in d.decisions] == [
        (True, 20, 19, 0),
        (True, 20_000, 16_500, 0),
    ]
    assert [x.reset_after_ms for x in d.decisions] == [3000, 10_500]
    # A zero cost only asks; the old one-cost call stays valid. (A token refills every
    # 3 ms: counts of the token bucket may grow by a few between calls.)
    d = limiter.all(limits, costs=[0, 16_600])
    assert not d.allowed and [x.allowed for x in d.decisions] == [True, False]
    assert left(limiter, f"{{{key}}}:rpm", RPM) == 19
    d = limiter.all(limits)
    assert d.allowed and d.decisions[0].remaining == 18
    assert 16_499 <= d.decisions[1].remaining <= 16_530
    assert limiter.all(limits, costs=[1, 1], peek=True).allowed
    assert 16_499 <= left(limiter, f"{{{key}}}:tpm", TPM) <= 16_540
    with pytest.raises(ValueError, match="one cost per key"):
        limiter.all(limits, costs=[1])
    with pytest.raises(ValueError, match="cost and costs together"):
        limiter.all(limits, cost=2, costs=[1, 1])
    with pytest.raises(ArgumentError, match="COSTS must be a non-negative integer"):
        limiter.all(limits, costs=[1, -1])


def test_all_max_wait(limiter: RateLimiter, key: str) -> None:
    rpm, tpm = TokenBucket(3, 3, 60_000), TokenBucket(1000, 1000, 60_000)
    limits: list[tuple[str, AllPolicy]] = [(f"{{{key}}}:rpm", rpm), (f"{{{key}}}:tpm", tpm)]
    assert limiter.all(limits, costs=[0, 900]).allowed
    # 100 tokens left; 900 more are there in 48 s: one reservation on both buckets.
    d = limiter.all(limits, costs=[1, 900], max_wait_ms=60_000)
    assert d.allowed and all(x.allowed for x in d.decisions)
    waits = {x.retry_after_ms for x in d.decisions}
    assert len(waits) == 1
    wait = waits.pop()
    assert wait is not None and 47_000 < wait <= 48_000
    assert [x.remaining for x in d.decisions] == [0, 0]
    # The next 900 come after the reservation: past 60 s, so nothing is counted...
    d = limiter.all(limits, costs=[1, 900], max_wait_ms=60_000)
    assert not d.allowed
    tokens = d.decisions[1]
    assert not tokens.allowed and tokens.retry_after_ms is not None
    assert 41_000 < tokens.retry_after_ms <= 42_000
    # ... and the same call, allowed to wait longer, queues behind the first one.
    d = limiter.all(limits, costs=[1, 900], max_wait_ms=110_000)
    assert d.allowed
    later = d.decisions[1].retry_after_ms
    assert later is not None and 101_000 < later <= 102_000
    # A cost above a bucket never acts; windows cannot reserve.
    never = limiter.all(limits, costs=[1, 1001], max_wait_ms=600_000)
    assert not never.allowed and never.decisions[1].retry_after_ms is None
    with pytest.raises(ArgumentError, match="MAXWAIT must be 0 unless every policy"):
        limiter.all([(key + "w", Sliding(10, 1000))], max_wait_ms=1000)
    assert limiter.all([(key + "w", Sliding(10, 1000))], max_wait_ms=0).allowed


def test_adjust(limiter: RateLimiter, server: Server, key: str) -> None:
    assert limiter.token_bucket(key, 20_000, 20_000, 60_000, cost=4000).remaining == 16_000
    refunded = limiter.adjust(key, -2800, TPM, since_ms=0)
    # The decision of a PEEK of cost 1 afterwards (a token refills every 3 ms meanwhile).
    assert refunded is not None and refunded.allowed
    assert 18_799 <= refunded.remaining <= 19_000
    charged = limiter.adjust(key, 5000)  # the stored policy
    assert charged is not None and 13_799 <= charged.remaining <= 14_000
    assert limiter.adjust(key + "absent", -5) is None
    full = limiter.adjust(key + "absent", -5, Fixed(10, 60_000))
    assert full is not None and full.remaining == 9
    # A window gives back from its current count.
    assert limiter.fixed(key + "f", 10, 3_600_000, cost=5).remaining == 5
    after = limiter.adjust(key + "f", -3, Fixed(10, 3_600_000))
    assert after is not None and after.remaining == 7
    # An extra charge goes into a bounded debt: the next caller waits.
    limiter.token_bucket(key + "d", 10, 1, 1000, cost=10)
    debt = limiter.adjust(key + "d", 5)
    assert debt is not None and not debt.allowed and debt.retry_after_ms is not None
    assert 5_000 < debt.retry_after_ms <= 6_000


def test_adjust_since(limiter: RateLimiter, server: Server, key: str) -> None:
    """A refund of a charge made 20 s ago, after the bucket was full meanwhile and
    someone else charged: charging less back then would have left nothing more now."""
    bucket = TokenBucket(100, 1, 1000)
    for k in (key + "a", key + "b"):
        assert limiter.check(k, bucket, cost=10).remaining == 90
    server.advance(20_000)  # full again: 10 tokens of refill were lost
    for k in (key + "a", key + "b"):
        assert limiter.check(k, bucket, cost=50).remaining == 50
    with_since = limiter.adjust(key + "a", -10, bucket, since_ms=20_000)
    without = limiter.adjust(key + "b", -10, bucket)
    assert with_since is not None and without is not None
    assert with_since.remaining in (49, 50)
    assert without.remaining in (59, 60)
    with pytest.raises(ArgumentError, match="delta must be an integer"):
        limiter.adjust(key, 1 << 63, bucket)
    assert limiter.adjust(key + "t", 0, Throttle(1, 1, 60)) is not None


def test_admit_settle_refund_is_reused(limiter: RateLimiter, key: str) -> None:
    rpm, tpm = f"{{{key}}}:rpm", f"{{{key}}}:tpm"
    call = [(rpm, RPM, 1), (tpm, TPM, 1200 + 16_000)]  # prompt + max_tokens
    permit = limiter.admit(call)
    assert isinstance(permit, Permit) and permit.source == "server"
    assert permit.costs == (1, 17_200)
    assert [d.remaining for d in permit.decision.decisions] == [19, 2800]
    # Without a refund, the next call of 10,000 tokens would wait about 21.6 s.
    with pytest.raises(NotAdmitted) as refused:
        limiter.admit([(rpm, RPM, 1), (tpm, TPM, 10_000)], max_wait=1)
    retry = refused.value.retry_after_ms
    assert retry is not None and 19_000 < retry <= 20_600
    permit.settle([1, 1200 + 850])  # the response says what was used
    assert permit.done
    # 2,800 + 15,150 given back, less a third of a token per ms by which the permit's
    # SINCE (counted from sending the admit) exceeds the server's time since it acted:
    # the admit's latency, 300 ms at most here even on a loaded machine.
    assert 17_850 <= left(limiter, tpm, TPM) <= 18_200
    # The refund is what the next call takes, at once.
    again = limiter.admit([(rpm, RPM, 1), (tpm, TPM, 10_000)], max_wait=0)
    assert again.waited.total_seconds() < 0.5
    assert 7_850 <= again.decision.decisions[1].remaining <= 8_200
    with pytest.raises(RuntimeError, match="already settled"):
        permit.settle([1, 1])
    with pytest.raises(ValueError, match="settle takes 2 costs"):
        again.settle([1])
    again.cancel()  # never made: all back
    assert 17_850 <= left(limiter, tpm, TPM) <= 18_300
    # The first call stays counted; the refund of the second loses the refill a
    # bucket charged less could not have held since (SINCE): a fraction of a token.
    assert left(limiter, rpm, RPM) in (18, 19)


def test_admit_waits_for_the_reserved_instant(limiter: RateLimiter, key: str) -> None:
    bucket = TokenBucket(100, 100, 1000)  # 1 token every 10 ms
    limiter.admit([(key, bucket, 100)])
    permit = limiter.admit([(key, bucket, 20)], max_wait=1.0)
    wait = permit.decision.decisions[0].retry_after_ms
    assert wait is not None and 100 < wait <= 200
    assert permit.waited.total_seconds() >= wait / 1000
    permit.settle([20])
    # Over 100 at once: never.
    with pytest.raises(NotAdmitted, match="never fits") as never:
        limiter.admit([(key, bucket, 101)], max_wait=60)
    assert never.value.retry_after_ms is None


def test_admit_over_windows_retries(limiter: RateLimiter, key: str) -> None:
    window = Sliding(1, 300)
    limiter.admit([(key, window, 1)])
    with pytest.raises(NotAdmitted) as refused:
        limiter.admit([(key, window, 1)], max_wait=0.05)
    assert refused.value.retry_after_ms is not None and 100 < refused.value.retry_after_ms <= 300
    permit = limiter.admit([(key, window, 1), (key + "f", Fixed(5, 3_600_000), 2)], max_wait=2)
    assert permit.waited.total_seconds() >= 0.1
    assert [d.remaining for d in permit.decision.decisions] == [0, 3]
    permit.settle([1, 1])
    assert left(limiter, key + "f", Fixed(5, 3_600_000)) == 4
    with pytest.raises(TypeError, match="token buckets and windows"):
        limiter.admit([(key + "t", Throttle(1, 1, 1), 1)])  # type: ignore[list-item]


def test_context_manager_cancels_on_error(limiter: RateLimiter, key: str) -> None:
    call = [(f"{{{key}}}:rpm", RPM, 1), (f"{{{key}}}:tpm", TPM, 5000)]
    held: list[Permit] = []

    def call_provider() -> None:
        with limiter.admit(call) as permit:
            held.append(permit)
            assert 15_000 <= left(limiter, f"{{{key}}}:tpm", TPM) <= 15_100
            raise ConnectionResetError("the provider was never reached")

    with pytest.raises(ConnectionResetError):
        call_provider()
    assert held[0].done
    # All back, less the refill a full bucket could not hold since the charge (SINCE).
    assert 19_990 <= left(limiter, f"{{{key}}}:tpm", TPM) <= 20_000
    assert left(limiter, f"{{{key}}}:rpm", RPM) in (19, 20)
    with limiter.admit(call) as kept:  # no error, not settled: the charges stay
        pass
    assert not kept.done and 14_990 <= left(limiter, f"{{{key}}}:tpm", TPM) <= 15_200
