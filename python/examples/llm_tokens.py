"""Outbound LLM calls under requests per minute *and* tokens per minute at once, charged
what they really used.

Each call is admitted against both budgets in one reservation (RL.ALL ... COSTS 1 N
MAXWAIT): it costs 1 request and prompt + max_tokens tokens up front, waits in arrival
order if the budgets are short, and once the response says how many tokens were used,
``settle`` gives the rest back (RL.ADJUST) for the next calls.

    REDIS_URL=redis://localhost:6379 python python/examples/llm_tokens.py
"""

from __future__ import annotations

import asyncio
import os
import random

import redis.asyncio

from redlimit import AsyncRateLimiter, NotAdmitted, TokenBucket

# Per provider and tier, across the fleet.
REQUESTS = TokenBucket(500, 500, 60_000)  # 500 requests per minute
TOKENS = TokenBucket(20_000, 20_000, 60_000)  # 20k tokens per minute


async def provider_call(prompt_tokens: int, max_tokens: int) -> int:
    """Stands for the HTTP call; returns the tokens the response says were used."""
    await asyncio.sleep(0.01)
    return prompt_tokens + random.randint(max_tokens // 10, max_tokens // 2)


async def complete(
    limiter: AsyncRateLimiter, provider: str, tier: str, prompt_tokens: int, max_tokens: int
) -> int:
    budget = f"llm:{{{provider}/{tier}}}"  # one hash tag: both keys on one cluster slot
    call = [
        (f"{budget}:rpm", REQUESTS, 1),
        (f"{budget}:tpm", TOKENS, prompt_tokens + max_tokens),  # the most it can use
    ]
    # Sleeps until the reserved instant (at most 30 s); NotAdmitted if longer.
    # An exception in the block before settling cancels the permit (all given back).
    async with limiter.admit(call, max_wait=30) as permit:
        used = await provider_call(prompt_tokens, max_tokens)
        await permit.settle([1, used])  # gives back prompt + max_tokens - used
        return used


async def main() -> None:
    client = redis.asyncio.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379"))
    limiter = AsyncRateLimiter(client)
    await limiter.reset("llm:{openai/pro}:rpm", "llm:{openai/pro}:tpm")
    # 12 calls of up to 3,000 tokens, one after the other: 36,000 charged up front is
    # more than the 20k budget (the last calls would wait about 48 s), but each settle
    # gives back what its call did not use, so all of them go out at once.
    used = [await complete(limiter, "openai", "pro", 500, 2_500) for _ in range(12)]
    left = await limiter.check("llm:{openai/pro}:tpm", TOKENS, cost=0)
    print(f"12 calls used {sum(used)} tokens; {left.remaining} of 20000 left")
    try:
        await complete(limiter, "openai", "pro", 500, 25_000)
    except NotAdmitted as refused:  # above the budget: it never fits
        print("a 25,500-token call:", refused)
    await client.aclose()


if __name__ == "__main__":
    asyncio.run(main())
