"""The package over ``redis.RedisCluster`` / ``redis.asyncio.RedisCluster`` on a real
3 primaries + 3 replicas cluster with the module (Redis 7.0): routing to the owner,
hash tags, CROSSSLOT, WAIT on the owner, leases, the FastAPI middleware, and the
round trips redis-py spends routing RL.* (``INFO commandstats`` / ``errorstats``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio

from conftest import (
    Cluster,
    async_limiter,
    closed_port,
    stat,
    stored_name,
    sync_limiter,
)
from redlimit import LimitExceeded, Sliding, TokenBucket
from redlimit._types import AllPolicy
from redlimit.errors import ArgumentError, CommandError, UnavailableError
from test_fastapi import Running, make_app

REDIS_PY = tuple(int(x) for x in redis.__version__.split(".")[:2])


@pytest.fixture
def rc(cluster: Cluster, protocol: int) -> Iterator[redis.RedisCluster]:
    client = cluster.client(protocol)
    yield client
    client.close()


def spread_keys(client: Any, prefix: str) -> list[str]:
    """One key per primary (so that every command goes to a different owner)."""
    by_node: dict[str, str] = {}
    i = 0
    while len(by_node) < 3:
        key = f"{prefix}:{i}"
        by_node.setdefault(client.get_node_from_key(key).name, key)
        i += 1
    return list(by_node.values())


def port_of(client: Any, key: str) -> int:
    port: int = client.get_node_from_key(key).port
    return port


class Stats:
    """Per-node call counts from ``INFO commandstats`` and ``INFO errorstats``."""

    def __init__(self, cluster: Cluster) -> None:
        self.ports = cluster.primaries()

    def reset(self) -> None:
        for port in self.ports:
            with redis.Redis(port=port) as r:
                r.config_resetstat()

    def calls(self, command: str) -> dict[int, int]:
        out = {}
        for port in self.ports:
            with redis.Redis(port=port) as r:
                stats = r.info("commandstats")
            out[port] = int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))
        return out

    def errors(self, name: str) -> dict[int, int]:
        out = {}
        for port in self.ports:
            with redis.Redis(port=port) as r:
                stats = r.info("errorstats")
            out[port] = int(stats.get(f"errorstat_{name}", {}).get("count", 0))
        return out


RL_COMMANDS = ("tokenbucket", "sliding", "fixed", "throttle", "status", "acquire", "release")


def test_every_command_goes_to_the_owner(
    cluster: Cluster, rc: redis.RedisCluster, key: str
) -> None:
    limiter = sync_limiter(rc)
    stats = Stats(cluster)
    tags = spread_keys(rc, key)
    assert len({port_of(rc, t) for t in tags}) == 3
    for tag in tags:
        owner = port_of(rc, tag)
        stats.reset()
        k = f"{{{tag}}}"  # every key below lives in the tag's slot
        d = limiter.token_bucket(k + ":tb", 2, 1, 1000)
        assert (d.allowed, d.remaining) == (True, 1)
        assert limiter.sliding(k + ":sl", 1, 60_000).allowed
        assert not limiter.sliding(k + ":sl", 1, 60_000).allowed
        assert limiter.fixed(k + ":fx", 5, 60_000).remaining == 4
        assert limiter.throttle(k + ":th", 0, 1, 60).allowed
        assert limiter.check(k + ":ck", TokenBucket(1, 1, 1000)).allowed
        status = limiter.status(k + ":tb")
        assert status is not None and status.algorithm == "tokenbucket"
        assert (status.decision.allowed, status.decision.remaining) == (True, 0)  # a PEEK
        assert limiter.acquire(k + ":ls", 1, 10_000, "a").allowed
        assert limiter.release(k + ":ls", "a")
        for command in RL_COMMANDS:
            calls = stats.calls(stat(command))
            assert calls[owner] >= 1 and sum(calls.values()) == calls[owner], command
        assert sum(stats.errors("MOVED").values()) == 0
        with redis.Redis(port=owner) as r:  # the owner holds the keys
            names = [stored_name(k + s) for s in (":tb", ":sl", ":fx", ":th", ":ck")]
            assert r.exists(*names) == 5
        assert limiter.reset(k + ":tb", k + ":sl") == 2
        assert limiter.status(k + ":tb") is None


def test_all_with_a_hash_tag(rc: redis.RedisCluster, key: str) -> None:
    limiter = sync_limiter(rc)
    m, h = f"{{{key}}}:m", f"{{{key}}}:h"
    limits: list[tuple[str, AllPolicy]] = [(m, Sliding(2, 60_000)), (h, TokenBucket(10, 1, 60_000))]
    got = [limiter.all(limits) for _ in range(3)]
    assert [d.allowed for d in got] == [True, True, False]
    assert got[1].decisions[1].remaining == 8
    # The refused call counted nothing on the bucket (all or nothing).
    assert limiter.token_bucket(h, 10, 1, 60_000, peek=True).remaining == 7
    with redis.Redis(port=port_of(rc, m)) as r:
        assert r.exists(stored_name(m), stored_name(h)) == 2
    assert limiter.reset(m, h) == 2


def test_all_across_slots_is_crossslot(rc: redis.RedisCluster, key: str) -> None:
    limiter = sync_limiter(rc)
    a, b = spread_keys(rc, key)[:2]
    with pytest.raises(CommandError, match=r"^CROSSSLOT "):
        limiter.all([(a, Sliding(2, 60_000)), (b, Sliding(2, 60_000))])
    with pytest.raises(CommandError, match=r"^CROSSSLOT "):
        limiter.reset(a, b)


def test_wait_on_the_owner(cluster: Cluster, rc: redis.RedisCluster, key: str) -> None:
    limiter = sync_limiter(rc)
    stats = Stats(cluster)
    for k in spread_keys(rc, key):
        stats.reset()
        limiter.token_bucket(k, 5, 1, 1000)
        acked = limiter.wait_replicated(k, 1, 2000)
        assert isinstance(acked, int) and acked == 1  # one replica per primary
        waits = stats.calls("wait")
        assert waits == {p: int(p == port_of(rc, k)) for p in waits}
        stats.reset()
        d = limiter.replicated(1, 2000).token_bucket(k, 5, 1, 1000)
        assert (d.allowed, d.remaining, d.replicas_acked) == (True, 3, 1)
        waits = stats.calls("wait")
        assert waits == {p: int(p == port_of(rc, k)) for p in waits}


def test_lease_context_manager(rc: redis.RedisCluster, key: str) -> None:
    limiter = sync_limiter(rc)
    for k in spread_keys(rc, key):
        with limiter.lease(k, 1, 10_000) as d:
            assert d.allowed
            with pytest.raises(LimitExceeded), limiter.lease(k, 1, 10_000):
                pass
        with limiter.lease(k, 1, 10_000):  # released on exit
            pass


def test_admit_and_settle_on_a_cluster(cluster: Cluster, protocol: int, key: str) -> None:
    rpm, tpm = f"{{{key}}}:rpm", f"{{{key}}}:tpm"
    requests, tokens = TokenBucket(20, 20, 60_000), TokenBucket(20_000, 20_000, 60_000)
    rc = cluster.client(protocol)
    limiter = sync_limiter(rc)
    # A first call opens the connections (and asks auto's question) before the admit
    # whose SINCE is measured.
    assert limiter.check(tpm, tokens, cost=0).remaining == 20_000
    permit = limiter.admit([(rpm, requests, 1), (tpm, tokens, 5000)], max_wait=1)
    assert [d.remaining for d in permit.decision.decisions] == [19, 15_000]
    permit.settle([1, 1000])  # RL.ADJUST routed to the keys' owner
    # Refunded 4000 (a token refills every 3 ms meanwhile: no upper bound asserted).
    assert limiter.check(tpm, tokens, cost=0).remaining >= 18_990
    a, b = spread_keys(rc, key)[:2]
    with pytest.raises(CommandError, match=r"^CROSSSLOT "):  # not an outage: raised
        limiter.admit([(a, requests, 1), (b, tokens, 1)], failure="open")
    rc.close()

    async def scenario() -> None:
        client = redis.asyncio.RedisCluster(
            host="127.0.0.1", port=cluster.nodes[0].port, protocol=protocol
        )
        aio = async_limiter(client)
        try:
            async with aio.admit([(rpm, requests, 1), (tpm, tokens, 2000)]) as permit:
                await permit.settle([1, 500])
            assert (await aio.check(tpm, tokens, cost=0)).remaining >= 18_490
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_asyncio_cluster(cluster: Cluster, protocol: int, key: str) -> None:
    stats = Stats(cluster)

    async def scenario() -> None:
        client = redis.asyncio.RedisCluster(
            host="127.0.0.1", port=cluster.nodes[0].port, protocol=protocol
        )
        limiter = async_limiter(client)
        try:
            # replicated() first: the client is not initialised yet.
            d = await limiter.replicated(1, 2000).token_bucket(key + ":first", 3, 1, 1000)
            assert (d.allowed, d.remaining, d.replicas_acked) == (True, 2, 1)
            keys = spread_keys(client, key)
            for k in keys:
                assert (await limiter.token_bucket(k, 2, 1, 1000)).remaining == 1
                assert await limiter.status(k) is not None
                async with limiter.lease(k + ":l", 1, 10_000) as lease:
                    assert lease.allowed
                    with pytest.raises(LimitExceeded):
                        async with limiter.lease(k + ":l", 1, 10_000):
                            pass
                stats.reset()
                assert await limiter.wait_replicated(k, 1, 2000) == 1
                d = await limiter.replicated(1, 2000).sliding(f"{{{k}}}:s", 5, 1000)
                assert (d.remaining, d.replicas_acked) == (4, 1)
                waits = stats.calls("wait")
                assert waits == {p: 2 * int(p == port_of(client, k)) for p in waits}
            tagged = [(f"{{{key}}}:m", Sliding(1, 60_000)), (f"{{{key}}}:h", Sliding(9, 60_000))]
            assert [(await limiter.all(tagged)).allowed for _ in range(2)] == [True, False]
            with pytest.raises(CommandError, match=r"^CROSSSLOT "):
                await limiter.all([(keys[0], Sliding(1, 1000)), (keys[1], Sliding(1, 1000))])
            # An error reply on the owner's connection leaves it usable.
            with pytest.raises(ArgumentError, match="capacity"):
                await limiter.replicated(1, 2000).token_bucket(keys[0], 0, 1, 1000)
            assert (await limiter.replicated(1, 2000).fixed(keys[0] + ":f", 2, 1000)).allowed
        finally:
            await client.aclose()

    asyncio.run(scenario())


def test_fastapi_middleware_on_a_cluster(cluster: Cluster, key: str) -> None:
    app = make_app(cluster.nodes[0].port, cluster=True)
    running = Running(app)
    try:
        ip = {"x-forwarded-for": f"6.6.6.6, 10.9.{len(key)}.{hash(key) % 250}"}
        got = [running.http.get("/api/hello", headers=ip) for _ in range(4)]
        user = {"x-user": key}
        two = [running.http.get("/api/two/a", headers=user) for _ in range(3)]
    finally:
        running.stop()
    assert [r.status_code for r in got] == [200, 200, 200, 429]
    assert got[0].headers["ratelimit"] == '"burst";r=2;t=1'
    assert [r.status_code for r in two] == [200, 200, 429]  # RL.ALL under one hash tag


def measure(cluster: Cluster, client: Any, key: str, n: int) -> dict[str, dict[str, Any]]:
    """Over ``n`` calls each of RL.TOKENBUCKET (keys on every shard) and RL.ALL (two
    keys, one hash tag): RL.* calls per node against the keys' owners, COMMAND GETKEYS
    calls and MOVED redirects on all primaries, and where a bare WAIT goes."""
    stats = Stats(cluster)
    limiter = sync_limiter(client)
    out: dict[str, dict[str, Any]] = {}
    keys = [f"{key}:{i}" for i in range(n)]
    tagged = [(f"{{{k}}}:m", f"{{{k}}}:h") for k in keys]
    for name in ("tokenbucket", "all"):
        stats.reset()
        expected = dict.fromkeys(stats.ports, 0)
        for k, (m, h) in zip(keys, tagged):
            if name == "tokenbucket":
                limiter.token_bucket(k, 10, 1, 1000)
                expected[port_of(client, k)] += 1
            else:
                limiter.all([(m, Sliding(5, 1000)), (h, TokenBucket(9, 1, 1000))])
                expected[port_of(client, m)] += 1
        out[name] = {
            "calls": stats.calls(stat(name)),
            "expected": expected,
            "getkeys": stats.calls("command|getkeys"),
            "moved": sum(stats.errors("MOVED").values()),
        }
    stats.reset()
    for _ in keys:
        client.execute_command("WAIT", 0, 0)
    out["wait"] = {"calls": stats.calls("wait"), "default": client.get_default_node().port}
    return out


def test_routing_round_trips(cluster: Cluster, key: str) -> None:
    n = 50
    client = cluster.client()
    try:
        got = measure(cluster, client, key, n)
    finally:
        client.close()
    print(f"redis-py {redis.__version__}, {n} calls each: {got}")
    for name in ("tokenbucket", "all"):
        # Every call went straight to its key's owner: no MOVED, no extra RL.* call.
        assert got[name]["calls"] == got[name]["expected"], name
        assert got[name]["moved"] == 0, name
    assert sum(got["tokenbucket"]["getkeys"].values()) == 0  # fixed key positions
    if REDIS_PY >= (8, 2):
        assert sum(got["all"]["getkeys"].values()) == 0  # movablekeys: read from the key specs
    # A bare WAIT goes to the client's default node, whoever owns the keys.
    assert got["wait"]["calls"] == {
        p: n * (p == got["wait"]["default"]) for p in got["wait"]["calls"]
    }


def test_unreachable_cluster_is_unavailable() -> None:
    """A lazy asyncio cluster client that reaches no node: UnavailableError (redis-py
    raises RedisClusterException, not a RedisError), and the middleware's failure policy."""
    port = closed_port()

    async def scenario() -> None:
        client = redis.asyncio.RedisCluster(host="127.0.0.1", port=port)
        limiter = async_limiter(client)
        with pytest.raises(UnavailableError):
            await limiter.token_bucket("k", 1, 1, 1000)
        with pytest.raises(UnavailableError):
            await limiter.replicated(1, 10).token_bucket("k", 1, 1, 1000)
        with pytest.raises(UnavailableError):
            await limiter.wait_replicated("k", 1, 10)
        await client.aclose()

    asyncio.run(scenario())
    running = Running(make_app(port, cluster=True))
    try:
        got = running.http.get("/api/hello")
    finally:
        running.stop()
    assert got.status_code == 503
    assert got.headers["content-type"] == "application/problem+json"
