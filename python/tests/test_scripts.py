"""The script engine in Python: one script under one SHA1 with the Rust client, the
translation of every RL.* call (the Rust reference's cases), and, on real servers, the
engine choice (``auto`` detection, a module gone after a failover, a reconnect),
``verify()``, ``NOSCRIPT`` reloads and the scripts' own key namespace."""

from __future__ import annotations

import asyncio
import logging
from importlib import resources

import pytest
import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.retry import Retry

from conftest import REPO, Server, async_limiter, start, stop, sync_limiter
from redlimit import (
    ArgumentError,
    BackendInfo,
    CommandError,
    Fixed,
    ModuleNotLoadedError,
    RateLimiter,
    Sliding,
    TokenBucket,
    UnavailableError,
    WrongTypeError,
)
from redlimit import _protocol as p
from redlimit import _scripts as s
from redlimit._translate import translate

LUA = REPO / "client" / "lua"


def test_one_script_under_one_sha1() -> None:
    """The script is client/lua's files in ORDER's order, nothing added (as Rust builds
    it), and its SHA1 is client/lua/SHA1 (which a Rust unit test asserts too)."""
    order = [n for n in (LUA / "ORDER").read_text().splitlines() if n.strip()]
    assert s.source() == b"".join((LUA / name).read_bytes() for name in order)
    assert s.sha1() == (LUA / "SHA1").read_text().strip()
    shipped = resources.files("redlimit").joinpath("lua")
    if shipped.joinpath("ORDER").is_file():  # installed from a wheel: the same files
        assert shipped.joinpath("SHA1").read_text().strip() == s.sha1()


def words(call: tuple[bytes, ...]) -> list[str]:
    return [w.decode() for w in call]


def test_commands_become_script_calls() -> None:
    """The Rust reference translation's cases (client/src/engine/translate.rs)."""
    call = translate(p.token_bucket("k", 5, 1, 1000, 2, True, None), 7)
    assert call.keys == (b"{k}|rls", b"k")
    assert words(call.args) == ["decide", "7", "tokenbucket", "5", "1", "1000", "2", "1", "0"]
    both = p.all_of(
        [("{u}a", Sliding(3, 100, approx=True)), ("{u}b", TokenBucket(1, 2, 3))], 4, False
    )
    assert words(translate(both).args) == [
        "all", "0", "0", "COST", "0",
        "sliding-approx", "3", "100", "0", "4",
        "tokenbucket", "1", "2", "3", "4",
    ]  # fmt: skip
    rpm, tpm = TokenBucket(3, 3, 60_000), TokenBucket(1000, 1000, 60_000)
    limits = [("{p}:rpm", rpm), ("{p}:tpm", tpm)]
    assert words(translate(p.all_of(limits, 1, False, None, 5000)).args)[4] == "5000"
    costs = words(translate(p.all_of(limits, 1, False, [1, 900])).args)
    assert costs[2:5] == ["0", "COSTS", "0"] and (costs[9], costs[14]) == ("1", "900")
    adjust = p.adjust("k", -5, Sliding(10, 1000, approx=True), 300)
    assert words(translate(adjust, 7).args) == [
        "adjust", "7", "-5", "300", "sliding-approx", "10", "1000", "0",
    ]  # fmt: skip
    assert len(translate(p.adjust("k", 3, None, None)).args) == 4  # delta and since only
    throttle = translate(p.throttle("k", 1, 2, 3, 4))
    assert words(throttle.args) == ["decide", "0", "throttle", "1", "2", "3", "4", "0", "0"]
    lease = translate(p.acquire("k", 2, 1000, b"\xff"))
    assert lease.args == (b"acquire", b"0", b"2", b"1000", b"\xff")
    reset = translate(p.reset(["{a}1", "{a}2"]))
    assert reset.keys == (b"{a}1|rls", b"{a}2|rls", b"{a}1", b"{a}2")
    assert words(reset.args) == ["reset", "0", "2"]
    # A name without a hash tag containing "}": its script key hashes elsewhere, so the
    # call has no guard (its keys would span two slots).
    assert translate(p.status("a}b")).keys == (b"a}b|rls",)


@pytest.mark.parametrize(
    ("command", "error", "message"),
    [
        (("RL.TOKENBUCKET", "k", 1, 1), ArgumentError, "needs a key and 3 policy numbers"),
        (("RL.FIXED", "k", 1, 1, "COSTS", 1), ArgumentError, "unknown option COSTS"),
        (("RL.FIXED", "k", 1, 1, "COST"), ArgumentError, "COST without its value"),
        (("RL.ALL", 2, "a", "b", "FIXED", 1, 1, "FIXED", 1, 1, "COSTS", 1), ArgumentError,
         r"COSTS needs one cost per key \(2 keys, 1 costs\)"),
        (("RL.ALL", 1, "a", "FIXED", 1, 1, "COST", 1, "COSTS", 1), ArgumentError,
         "COST and COSTS together"),
        (("RL.ALL", 1, "a", "THROTTLE", 1, 1, 1), ArgumentError, "RL.ALL has no policy"),
        (("RL.ADJUST", "k", 1, "SINCE", 1, "SINCE", 2), ArgumentError, "SINCE given twice"),
        (("RL.ACQUIRE", "k", 1, 1000), ArgumentError, "needs key limit lease_ms lease_id"),
        (("RL.SETSTATE", "k", "x"), CommandError, "the script engine has no RL.SETSTATE"),
    ],
)  # fmt: skip
def test_malformed_calls_name_what_is_wrong(
    command: p.Command, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        translate(command)


def test_keys_keep_their_slot_in_their_own_namespace() -> None:
    for key in (b"user:42", b"{user:42}:m", b"a{b"):
        assert s.script_key(key) != key and s.slot(s.script_key(key)) == s.slot(key)
    assert s.script_key(b"{user:42}:m") == b"{user:42}:m|rls"
    assert s.script_key(b"user:42") == b"{user:42}|rls"


# ----------------------------------------------------------------------------- live


def test_auto_finds_what_the_server_offers(
    server: Server, bare_server: Server, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="redlimit")
    for target, found in (
        (server, "module" if server.module else "scripts"),
        (bare_server, "scripts"),
    ):
        limiter = RateLimiter(target.client(), engine="auto")
        assert limiter.engine == "auto" and limiter.engine_in_use is None
        assert limiter.fixed(key, 2, 60_000).remaining == 1
        assert limiter.engine_in_use == found
        assert limiter.replicated(0, 10).engine_in_use == found  # shared
        assert limiter.verify().engine == found
    assert any(f"no redlimit module on localhost:{bare_server.port}" in m for m in caplog.messages)


def test_verify_reports_the_engine(server: Server, bare_server: Server) -> None:
    if server.module:
        info = RateLimiter(server.client()).verify()
        assert info.engine == "module" and isinstance(info.module_version, int)
        assert info.nodes[0].address == f"localhost:{server.port}"
    scripts = RateLimiter(bare_server.client(), engine="scripts").verify()
    assert scripts == BackendInfo("scripts", scripts.nodes) and scripts.module_version is None
    with bare_server.client() as r:
        assert r.script_exists(s.sha1()) == [True]
    with pytest.raises(ModuleNotLoadedError, match="not loaded on localhost:"):
        RateLimiter(bare_server.client()).verify()
    with pytest.raises(ValueError, match="engine must be one of module, scripts, auto"):
        RateLimiter(bare_server.client(), engine="lua")  # type: ignore[arg-type]

    async def asynchronous() -> None:
        client = redis.asyncio.Redis(port=bare_server.port)
        assert (await async_limiter(client, engine="auto").verify()).engine == "scripts"
        await client.aclose()

    asyncio.run(asynchronous())


def test_noscript_loads_the_script_again(bare_server: Server, key: str) -> None:
    limiter = sync_limiter(bare_server.client(), bare_server, engine="scripts")
    with bare_server.client() as r:
        r.script_flush()
        r.config_resetstat()
        assert limiter.token_bucket(key, 3, 1, 1000).remaining == 2
        assert limiter.token_bucket(key, 3, 1, 1000).remaining == 1
        stats = r.info("commandstats")
        assert stats["cmdstat_eval"]["calls"] == 1  # after the one NOSCRIPT
        assert stats["cmdstat_evalsha"]["calls"] == 2
        r.script_flush()
        assert limiter.replicated(0, 10).token_bucket(key, 3, 1, 1000).remaining == 0


def test_the_engines_never_read_each_others_keys(server: Server, key: str) -> None:
    if not server.module:
        pytest.skip("needs the module (REDLIMIT_TEST_ENGINE=module)")
    module = RateLimiter(server.client())
    scripts = RateLimiter(server.client(), engine="scripts")
    module.fixed(key, 5, 60_000)
    with pytest.raises(WrongTypeError, match="WRONGTYPE"):  # the module's key: refused
        scripts.fixed(key, 5, 60_000)
    assert scripts.fixed(key + "s", 5, 60_000).remaining == 4
    with server.client() as r:
        assert r.exists(s.script_key((key + "s").encode())) == 1 and r.exists(key + "s") == 0
    with pytest.raises(WrongTypeError, match="fixed limiter"):
        scripts.token_bucket(key + "s", 5, 1, 1000)


def test_auto_after_a_failover_and_a_reconnect(bare_server: Server, key: str) -> None:
    """A node without the module took over (``unknown command``): the scripts decide at
    once; a connection failure makes auto ask again."""
    limiter = RateLimiter(bare_server.client(), engine="auto")
    limiter._engine.found_module(True, "a primary that had it")
    assert limiter.all([(key, Fixed(2, 60_000))]).decisions[0].remaining == 1
    assert limiter.engine_in_use == "scripts"
    own = start(bare_server.name, module=False)
    down = RateLimiter(redis.Redis(port=own.port, retry=Retry(NoBackoff(), 0)), engine="auto")
    assert down.fixed(key, 2, 60_000).allowed and down.engine_in_use == "scripts"
    stop(own)
    with pytest.raises(UnavailableError):
        down.fixed(key, 2, 60_000)
    assert down.engine_in_use is None  # asked again on the next connection
