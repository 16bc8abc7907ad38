"""Two windows per user (10 a minute and 100 an hour), decided all-or-nothing in one
RL.ALL: a refused request counts against neither. The hash tag `{user:42}` keeps both
keys in one cluster slot.

    python python/examples/two_windows.py
"""

from __future__ import annotations

import os

import redis

from redlimit import RateLimiter, Sliding


def allow(limiter: RateLimiter, user: str) -> bool:
    d = limiter.all(
        [
            (f"{{user:{user}}}:m", Sliding(10, 60_000)),
            (f"{{user:{user}}}:h", Sliding(100, 3_600_000)),
        ]
    )
    if not d.allowed:
        waits = [x.retry_after_ms for x in d.decisions if not x.allowed]
        print(f"user {user}: refused, retry in {max(w or 0 for w in waits)} ms")
    return d.allowed


if __name__ == "__main__":
    limiter = RateLimiter(
        redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379"))
    )
    print([allow(limiter, "42") for _ in range(12)].count(True), "of 12 allowed")
