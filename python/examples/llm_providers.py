"""Outbound LLM calls: per-provider limits, waiting for a slot instead of failing.

RL.TOKENBUCKET with MAXWAIT reserves capacity up to `max_wait_ms` ahead: the call is
admitted and `retry_after_ms` says how long to sleep first (callers queue in arrival
order). A lease (RL.ACQUIRE) caps concurrent requests per provider.

    python python/examples/llm_providers.py   # needs a server with the module on :6379
"""

from __future__ import annotations

import asyncio
import os

import redis.asyncio

from redlimit import AsyncRateLimiter, LimitExceeded

PROVIDERS = {
    # requests per minute as a bucket: burst, refill per minute; concurrent requests
    "openai": {"capacity": 60, "per_minute": 500, "concurrent": 20},
    "anthropic": {"capacity": 20, "per_minute": 50, "concurrent": 5},
}


async def call_llm(limiter: AsyncRateLimiter, provider: str, prompt: str) -> str:
    p = PROVIDERS[provider]
    d = await limiter.token_bucket(
        f"llm:{provider}:rpm", p["capacity"], p["per_minute"], 60_000, max_wait_ms=30_000
    )
    if not d.allowed:  # more than 30 s of queue ahead: give up now
        raise RuntimeError(f"{provider}: over the limit, retry in {d.retry_after_ms} ms")
    if d.retry_after_ms:
        await asyncio.sleep(d.retry_after_ms / 1000)  # our reserved moment
    while True:  # wait for a free concurrency slot
        try:
            async with limiter.lease(f"llm:{provider}:inflight", p["concurrent"], 120_000):
                await asyncio.sleep(0.05)  # the real HTTP call goes here
                return f"{provider} answered {prompt!r}"
        except LimitExceeded:
            await asyncio.sleep(0.02)  # a holder releases on exit; retry shortly


async def main() -> None:
    client = redis.asyncio.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379"))
    limiter = AsyncRateLimiter(client)
    answers = await asyncio.gather(*(call_llm(limiter, "anthropic", f"q{i}") for i in range(25)))
    print(len(answers), "answers;", answers[-1])
    await client.aclose()


if __name__ == "__main__":
    asyncio.run(main())
