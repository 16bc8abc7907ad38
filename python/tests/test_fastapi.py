"""A FastAPI app behind the middleware and the dependency, served by a real uvicorn,
called with httpx: real 429s, headers and Retry-After values."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any, Optional

import httpx
import pytest
import redis
import redis.asyncio
import uvicorn
from fastapi import Depends, FastAPI

from conftest import Server, async_limiter, free_port
from redlimit import Engine, Fixed, Sliding, TokenBucket
from redlimit.starlette import (
    ClientIp,
    Limit,
    Limiter,
    RateLimit,
    RateLimitMiddleware,
    Rule,
    install,
)


def make_app(
    port: int,
    failure: str = "closed",
    headers: str = "draft11",
    cluster: bool = False,
    engine: Optional[Engine] = None,
    server: Optional[Server] = None,
) -> FastAPI:
    client: Any = (
        redis.asyncio.RedisCluster(host="127.0.0.1", port=port)
        if cluster
        else redis.asyncio.Redis(port=port)
    )
    limiter = Limiter(
        async_limiter(client, server, engine),
        client_ip=ClientIp(["127.0.0.1/32"]),
        failure=failure,  # type: ignore[arg-type]
        headers=headers,  # type: ignore[arg-type]
        timeout=2.0,
    )
    app = FastAPI()
    install(app)
    app.add_middleware(
        RateLimitMiddleware,
        limiter=limiter,
        rules=[
            Rule("hello", [Limit("burst", TokenBucket(3, 1, 1000))], path="/api/hello"),
            Rule(
                "two",
                [Limit("minute", Sliding(2, 60_000)), Limit("hour", Fixed(100, 3_600_000))],
                path="/api/two/**",
                key=lambda c: c.headers.get("x-user"),
            ),
        ],
        exempt=lambda c: c.headers.get("x-internal") == "yes",
    )
    search = RateLimit(
        limiter,
        Rule(
            "search", [Limit("per-user", Sliding(1, 60_000))], key=lambda c: c.headers.get("x-user")
        ),
    )

    @app.get("/api/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    @app.get("/api/two/{x}")
    async def two(x: str) -> dict[str, str]:
        return {"x": x}

    @app.get("/search", dependencies=[Depends(search)])
    async def do_search() -> dict[str, str]:
        return {"found": "nothing"}

    @app.get("/health")
    async def health() -> str:
        return "ok"

    return app


class Running:
    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}")

    def stop(self) -> None:
        self.http.close()
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def api(server: Server) -> Iterator[Running]:
    running = Running(make_app(server.port, server=server))
    yield running
    running.stop()


def body(response: httpx.Response) -> Any:
    return json.loads(response.content)


def test_token_bucket_429(api: Running, server: Server, key: str) -> None:
    ip = {"x-forwarded-for": f"6.6.6.6, 10.{len(key)}.{hash(key) % 250}.{hash(key) % 199}"}
    got = [api.http.get("/api/hello", headers=ip) for _ in range(4)]
    assert [r.status_code for r in got] == [200, 200, 200, 429]
    assert got[0].headers["ratelimit-policy"] == '"burst";q=3;w=3'
    assert got[0].headers["ratelimit"] == '"burst";r=2;t=1'
    assert got[2].headers["ratelimit"] == '"burst";r=0;t=3'
    refused = got[3]
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["ratelimit"] == '"burst";r=0;t=1'
    assert refused.headers["content-type"] == "application/problem+json"
    assert body(refused) == {
        "detail": "Too many requests; retry in 1 s.",
        "retry-after": 1,
        "status": 429,
        "title": "Request cannot be satisfied as assigned quota has been exceeded",
        "type": "https://iana.org/assignments/http-problem-types#quota-exceeded",
        "violated-policies": ["burst"],
    }
    server.advance(1000)
    assert api.http.get("/api/hello", headers=ip).status_code == 200
    # Exempt: by path and by predicate, no headers.
    assert "ratelimit" not in api.http.get("/health").headers
    assert "ratelimit" not in api.http.get("/api/hello", headers={"x-internal": "yes"}).headers


def test_two_limits_and_dependency(api: Running, key: str) -> None:
    user = {"x-user": key}
    got = [api.http.get("/api/two/a", headers=user) for _ in range(3)]
    assert [r.status_code for r in got] == [200, 200, 429]
    assert got[0].headers["ratelimit-policy"] == '"minute";q=2;w=60, "hour";q=100;w=3600'
    assert got[1].headers["ratelimit"].startswith('"minute";r=0;t=60, "hour";r=98;t=')
    assert body(got[2])["violated-policies"] == ["minute"]
    assert 59 <= int(got[2].headers["retry-after"]) <= 60
    # Another user has fresh counters.
    assert api.http.get("/api/two/a", headers={"x-user": key + "b"}).status_code == 200
    first = api.http.get("/search", headers=user)
    assert first.status_code == 200 and first.headers["ratelimit"] == '"per-user";r=0;t=60'
    second = api.http.get("/search", headers=user)
    assert second.status_code == 429 and second.headers["retry-after"] == "60"
    assert body(second)["violated-policies"] == ["per-user"]


@pytest.mark.parametrize("failure", ["closed", "open"])
def test_without_module_failure_policy(bare_server: Server, failure: str) -> None:
    running = Running(make_app(bare_server.port, failure=failure, engine="module"))
    try:
        got = [running.http.get("/api/hello") for _ in range(4)]
    finally:
        running.stop()
    if failure == "open":
        assert [r.status_code for r in got] == [200] * 4
        assert all("ratelimit" not in r.headers for r in got)
    else:
        assert [r.status_code for r in got] == [503] * 4
        assert got[0].headers["retry-after"] == "1"
        problem = body(got[0])
        assert problem["type"].endswith("#temporary-reduced-capacity")
        assert "violated-policies" not in problem


def test_legacy_headers(server: Server, key: str) -> None:
    running = Running(make_app(server.port, headers="legacy", server=server))
    try:
        ip = {"x-forwarded-for": "2001:db8:" + key[-4:] + "::1"}
        got = [running.http.get("/api/hello", headers=ip) for _ in range(4)]
        # Another address of the same /64 shares the bucket.
        same64 = running.http.get(
            "/api/hello", headers={"x-forwarded-for": "2001:db8:" + key[-4:] + "::2"}
        )
    finally:
        running.stop()
    assert [r.status_code for r in got] == [200, 200, 200, 429]
    assert got[0].headers["x-ratelimit-limit"] == "3"
    assert got[0].headers["x-ratelimit-remaining"] == "2"
    assert "ratelimit" not in got[0].headers
    assert same64.status_code == 429


def test_client_ip_rightmost_untrusted() -> None:
    from starlette.datastructures import Headers

    ips = ClientIp(["127.0.0.1/32", "10.0.0.0/8"])
    xff = Headers(raw=[(b"x-forwarded-for", b"6.6.6.6, 198.51.100.7, 10.1.2.3")])
    assert ips.resolve("127.0.0.1", xff) == "198.51.100.7"
    assert ips.resolve("203.0.113.9", xff) == "203.0.113.9"  # untrusted peer: header ignored
    assert ips.resolve("127.0.0.1", Headers(raw=[(b"x-forwarded-for", b"junk")])) == "127.0.0.1"
    v6 = Headers(raw=[(b"x-forwarded-for", b"2001:db8:aa:bb::1")])
    assert ips.resolve("127.0.0.1", v6) == "2001:db8:aa:bb::/64"
    assert ClientIp().resolve("::ffff:192.0.2.1", xff) == "192.0.2.1"


@pytest.mark.parametrize("engine", ["scripts", "auto"])
def test_managed_redis(
    bare_server: Server, engine: Engine, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The app on a server without the module (a managed Redis): the Lua scripts decide,
    with the module's 429s, headers and bodies; keys in the scripts' namespace."""
    caplog.set_level(logging.INFO, logger="redlimit")
    running = Running(make_app(bare_server.port, engine=engine, server=bare_server))
    try:
        ip = {"x-forwarded-for": f"6.6.6.6, 10.{len(key)}.{hash(key) % 250}.{hash(key) % 199}"}
        got = [running.http.get("/api/hello", headers=ip) for _ in range(4)]
        user = {"x-user": key}
        two = [running.http.get("/api/two/a", headers=user) for _ in range(3)]
        search = [running.http.get("/search", headers=user) for _ in range(2)]
        bare_server.advance(1000)
        again = running.http.get("/api/hello", headers=ip)
    finally:
        running.stop()
    assert [r.status_code for r in got] == [200, 200, 200, 429]
    assert got[0].headers["ratelimit-policy"] == '"burst";q=3;w=3'
    assert got[0].headers["ratelimit"] == '"burst";r=2;t=1'
    assert got[3].headers["retry-after"] == "1"
    assert body(got[3])["violated-policies"] == ["burst"]
    assert again.status_code == 200
    assert [r.status_code for r in two] == [200, 200, 429]
    assert two[1].headers["ratelimit"].startswith('"minute";r=0;t=60, "hour";r=98;t=')
    assert body(two[2])["violated-policies"] == ["minute"]
    assert [r.status_code for r in search] == [200, 429]
    assert search[1].headers["retry-after"] == "60"
    with redis.Redis(port=bare_server.port) as r:
        assert r.info("commandstats")["cmdstat_evalsha"]["calls"] > 0
        assert r.keys("*|rls"), "the scripts' keys"
    if engine == "auto":
        assert any("the Lua scripts decide" in m for m in caplog.messages), caplog.messages
