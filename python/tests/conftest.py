"""Real servers with the module, started on free ports in temp dirs, killed at the end.

A missing server fails its tests unless REDLIMIT_SKIP_MISSING_SERVERS=1 (then they are
skipped, never passed). REDLIMIT_MODULE names the module to load (default: the newer of
target/debug and target/release libredlimit.so).
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

import pytest
import redis

REPO = Path(__file__).resolve().parents[2]
SERVERS = {
    "redis-7.0": ("REDLIMIT_REDIS_7_0_BIN", "/usr/bin/redis-server"),
    "redis-8.2": ("REDLIMIT_REDIS_8_2_BIN", str(REPO / ".servers/redis-8.2/redis-server")),
    "valkey-9.1": ("REDLIMIT_VALKEY_9_1_BIN", str(REPO / ".servers/valkey-9.1/valkey-server")),
}


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

    def client(self, protocol: int = 2) -> redis.Redis:
        return redis.Redis(port=self.port, protocol=protocol)

    def advance(self, ms: int) -> None:
        """Moves the module's clock forward (redlimit.clock-offset-ms), never back."""
        r = self.client()
        current = int(str(r.config_get("redlimit.clock-offset-ms")["redlimit.clock-offset-ms"]))
        r.config_set("redlimit.clock-offset-ms", current + ms)
        r.close()

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


def start(name: str, *, module: bool, extra: tuple[str, ...] = ()) -> Server:
    path = binary(name)
    directory = tempfile.mkdtemp(prefix=f"redlimit-py-{name}-")
    port = free_port()
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
            stop(server)
            pytest.fail(f"{name} did not start: {server.log()[-2000:]}")
        time.sleep(0.05)


def stop(server: Server) -> None:
    server.process.kill()
    server.process.wait()
    shutil.rmtree(server.directory, ignore_errors=True)


@pytest.fixture(scope="session", params=list(SERVERS))
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    s = start(request.param, module=True)
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
