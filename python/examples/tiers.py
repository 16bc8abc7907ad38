"""Per-endpoint tiers (free / pro / enterprise) with the route dependency.

REDIS_URL=redis://127.0.0.1:6379 uvicorn tiers:app --app-dir python/examples
curl -i -H "x-api-key: k1" -H "x-plan: pro" localhost:8000/api/search
"""

from __future__ import annotations

import os
from typing import Optional

import redis.asyncio
from fastapi import Depends, FastAPI
from starlette.requests import HTTPConnection, Request

from redlimit import AsyncRateLimiter, Fixed, TokenBucket
from redlimit.starlette import Limit, Limiter, RateLimit, Rule, install

redis_url = os.environ.get("REDIS_URL", "redis://localhost:6379")
limiter = Limiter(AsyncRateLimiter(redis.asyncio.from_url(redis_url)))
app = FastAPI()
install(app)

TIERS = {
    "free": [Limit("burst", TokenBucket(5, 1, 1000)), Limit("daily", Fixed(1_000, 86_400_000))],
    "pro": [Limit("burst", TokenBucket(50, 10, 1000)), Limit("daily", Fixed(100_000, 86_400_000))],
    "enterprise": [Limit("burst", TokenBucket(500, 100, 1000))],
}


def api_key(conn: HTTPConnection) -> Optional[str]:
    return conn.headers.get("x-api-key")


def per_endpoint(endpoint: str) -> RateLimit:
    rules = {t: Rule(f"{endpoint}-{t}", limits, key=api_key) for t, limits in TIERS.items()}

    def pick(request: Request) -> Rule:
        # Look the plan up in your own store; a header stands in for it here.
        return rules.get(request.headers.get("x-plan", "free"), rules["free"])

    return RateLimit(limiter, pick)


@app.get("/api/search", dependencies=[Depends(per_endpoint("search"))])
async def search() -> dict[str, str]:
    return {"results": "..."}


@app.get("/api/export", dependencies=[Depends(per_endpoint("export"))])
async def export() -> dict[str, str]:
    return {"export": "..."}
