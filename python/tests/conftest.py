"""Real servers with the module, started on free ports in temp dirs, killed at the end.

A missing server fails its tests unless REDLIMIT_SKIP_MISSING_SERVERS=1 (then they are
skipped, never passed). REDLIMIT_MODULE names the module to load (default: the newer of
target/debug and target/release libredlimit.so).

REDLIMIT_TEST_ENGINE=scripts (or auto) runs the suites on servers started *without* the
module, the limiters deciding through the Lua scripts (as the Rust suites do); unset
(or module), with the module as always. Build limiters with :func:`sync_limiter` and
:func:`async_limiter`: they take that engine and the server's test clock.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, cast

import pytest
import redis

from redlimit import AsyncRateLimiter, Engine, RateLimiter
from redlimit._scripts import script_key

REPO = Path(__file__).resolve().parents[2]
SERVERS = {
    "redis-7.0": ("REDLIMIT_REDIS_7_0_BIN", "/usr/bin/redis-server"),
    "redis-8.2": ("REDLIMIT_REDIS_8_2_BIN", str(REPO / ".servers/redis-8.2/redis-server")),
    "valkey-9.1": ("REDLIMIT_VALKEY_9_1_BIN", str(REPO / ".servers/valkey-9.1/valkey-server")),
}


ENGINE: Engine = cast(Engine, os.environ.get("REDLIMIT_TEST_ENGINE") or "module")
if ENGINE not in ("module", "scripts", "auto"):
    raise RuntimeError(f"REDLIMIT_TEST_ENGINE must be module, scripts or auto, not {ENGINE}")
ON_SCRIPTS = ENGINE != "module"
"""The suites decide through the scripts, on servers without the module."""
WITH_MODULE = not ON_SCRIPTS
"""Whether the suites' servers load the module."""


def stored_name(key: str) -> str:
    """The name a limiter ``key`` is kept under by the engine the suites run with."""
    return script_key(key.encode()).decode() if ON_SCRIPTS else key


def stat(command: str) -> str:
    """The ``INFO commandstats`` name counting the calls of ``RL.<command>`` (under the
    scripts: every call is an ``EVALSHA``)."""
    return "evalsha" if ON_SCRIPTS else f"rl.{command}"


def sync_limiter(
    client: Any, server: Optional[Server] = None, engine: Optional[Engine] = None
) -> RateLimiter:
    """A limiter on ``client`` with the suites' engine (or ``engine``) and ``server``'s
    test clock."""
    limiter = RateLimiter(client, engine=engine or ENGINE)
    if server is not None:
        limiter._engine.now_us = server.now_us
    return limiter


def async_limiter(
    client: Any, server: Optional[Server] = None, engine: Optional[Engine] = None
) -> AsyncRateLimiter:
    """:func:`sync_limiter` for asyncio."""
    limiter = AsyncRateLimiter(client, engine=engine or ENGINE)
    if server is not None:
        limiter._engine.now_us = server.now_us
    return limiter


def module_path() -> Path:
    env = os.environ.get("REDLIMIT_MODULE")
    if env:
        return Path(env)
    builds = [REPO / f"target/{p}/libredlimit.so" for p in ("debug", "release")]
    found = [b for b in builds if b.exists()]
    if not found:
        pytest.fail("no libredlimit.so: run `cargo build -p redlimit-module` first")
    return max(found, key=lambda b: b.stat().st_mtime)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    directory: str
    module: bool
    offset_ms: int = 0

    def client(self, protocol: int = 2) -> redis.Redis:
        return redis.Redis(port=self.port, protocol=protocol)

    def advance(self, ms: int) -> None:
        """Moves the decision clock forward, never back: the module's
        (redlimit.clock-offset-ms), and the scripts' (their time override, see
        :meth:`now_us`)."""
        self.offset_ms += ms
        if not self.module:
            return
        r = self.client()
        current = int(str(r.config_get("redlimit.clock-offset-ms")["redlimit.clock-offset-ms"]))
        r.config_set("redlimit.clock-offset-ms", current + ms)
        r.close()

    def now_us(self) -> int:
        """The scripts' time override (microseconds since the epoch): 0 (the server's
        ``TIME``) until the clock was advanced, then the local clock plus the offset
        (the server runs on this machine: the same clock)."""
        if self.offset_ms == 0:
            return 0
        return time.time_ns() // 1000 + self.offset_ms * 1000

    def log(self) -> str:
        return (Path(self.directory) / "server.log").read_text(errors="replace")


def binary(name: str) -> str:
    env, default = SERVERS[name]
    path = os.environ.get(env, default)
    if not os.access(path, os.X_OK):
        message = f"{name}: no server at {path} (scripts/install-deps.sh installs it; {env})"
        if os.environ.get("REDLIMIT_SKIP_MISSING_SERVERS") == "1" and not os.environ.get(
            "REDLIMIT_REQUIRE_ALL_SERVERS"
        ):
            pytest.skip(message)
        pytest.fail(message)
    return path


def start(
    name: str, *, module: bool, extra: tuple[str, ...] = (), port: Optional[int] = None
) -> Server:
    path = binary(name)
    directory = tempfile.mkdtemp(prefix=f"redlimit-py-{name}-")
    port = port or free_port()
    args = [
        path,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        directory,
        "--logfile",
        "server.log",
        *extra,
    ]
    if module:
        args += ["--loadmodule", str(module_path())]
    process = subprocess.Popen(args, cwd=directory)
    server = Server(name, port, process, directory, module)
    deadline = time.monotonic() + 10
    while True:
        try:
            if server.client().ping():
                return server
        except redis.exceptions.ConnectionError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            log = server.log()[-2000:] if (Path(directory) / "server.log").exists() else ""
            stop(server)
            pytest.fail(f"{name} did not start on port {port}: {log}")
        time.sleep(0.05)


def stop(server: Server) -> None:
    server.process.kill()
    server.process.wait()
    shutil.rmtree(server.directory, ignore_errors=True)


@pytest.fixture(scope="session", params=list(SERVERS))
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """A server with the module (without it under REDLIMIT_TEST_ENGINE=scripts|auto)."""
    s = start(request.param, module=WITH_MODULE)
    yield s
    stop(s)


@pytest.fixture(scope="session", params=list(SERVERS))
def bare_server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """A server *without* the module."""
    s = start(request.param, module=False)
    yield s
    stop(s)


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def protocol(request: pytest.FixtureRequest) -> int:
    value: int = request.param
    return value


@pytest.fixture
def key() -> str:
    """A fresh key prefix per test (tests share a server and its clock)."""
    return f"t:{uuid.uuid4().hex[:12]}"


def closed_port() -> int:
    return free_port()


# ---------------------------------------------------------------------------- cluster


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


CLUSTER_SERVER = "redis-7.0"
"""One flavour is enough for the routing paths (the client decides them, not the server)."""


@dataclass
class Cluster:
    """3 primaries + 3 replicas (one each), every node with the module (without it under
    REDLIMIT_TEST_ENGINE=scripts|auto)."""

    nodes: list[Server]

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    def client(self, protocol: int = 2) -> redis.RedisCluster:
        return redis.RedisCluster(host="127.0.0.1", port=self.nodes[0].port, protocol=protocol)

    def node_info(self, port: int, section: str) -> dict[str, Any]:
        r = redis.Redis(port=port)
        try:
            info: dict[str, Any] = r.info(section)
            return info
        finally:
            r.close()

    def primaries(self) -> list[int]:
        return [
            n.port for n in self.nodes if self.node_info(n.port, "replication")["role"] == "master"
        ]


def _cluster_info(port: int) -> dict[str, str]:
    r: Any = redis.Redis(port=port, decode_responses=True)
    try:
        info = r.execute_command("CLUSTER INFO")
    finally:
        r.close()
    if isinstance(info, dict):  # redis-py parses it
        return {str(k): str(v) for k, v in info.items()}
    return dict(line.split(":", 1) for line in str(info).split() if ":" in line)


def _cluster_ready(nodes: list[Server]) -> bool:
    """Every node sees cluster_state:ok and 6 known nodes, and every replica is synced."""
    for n in nodes:
        info = _cluster_info(n.port)
        if info.get("cluster_state") != "ok" or info.get("cluster_known_nodes") != "6":
            return False
        r = redis.Redis(port=n.port, decode_responses=True)
        try:
            repl = r.info("replication")
        finally:
            r.close()
        if repl["role"] == "master" and repl["connected_slaves"] != 1:
            return False
        if repl["role"] == "slave" and repl["master_link_status"] != "up":
            return False
    return True


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    binary(CLUSTER_SERVER)
    cli = shutil.which("redis-cli") or str(Path(binary(CLUSTER_SERVER)).with_name("redis-cli"))
    if not os.access(cli, os.X_OK):
        pytest.fail(f"no redis-cli next to {binary(CLUSTER_SERVER)} (for --cluster create)")
    extra = (
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-node-timeout",
        "5000",
        "--repl-diskless-sync",
        "yes",
        "--repl-diskless-sync-delay",
        "0",
    )
    nodes: list[Server] = []
    try:
        for _ in range(6):
            nodes.append(
                start(CLUSTER_SERVER, module=WITH_MODULE, extra=extra, port=cluster_port())
            )
        create = subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in nodes),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
        if create.returncode != 0:
            pytest.fail(f"redis-cli --cluster create: {create.stdout!r} {create.stderr!r}")
        deadline = time.monotonic() + 30
        while not _cluster_ready(nodes):
            if time.monotonic() > deadline:
                states = [(n.port, _cluster_info(n.port).get("cluster_state")) for n in nodes]
                logs = "\n".join(n.log()[-1500:] for n in nodes[:2])
                pytest.fail(f"the cluster did not reach cluster_state:ok, synced: {states}\n{logs}")
            time.sleep(0.05)
        yield Cluster(nodes)
    finally:
        for n in nodes:
            stop(n)
