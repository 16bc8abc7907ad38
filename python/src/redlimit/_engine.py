"""Which engine decides on the server: the redlimit module (``RL.*`` commands), Lua
scripts running the same algorithms on any Redis >= 6.2 / Valkey >= 7.2 without it
(managed services that cannot load modules), or whichever the server offers. The same
choices, names and default as the Rust client's ``ServerEngine``.

Shared by the sync and asyncio clients; nothing here does I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Literal, Optional

import redis.exceptions

from . import _scripts
from ._protocol import Command, Key
from ._translate import translate
from .errors import UnexpectedReplyError

log = logging.getLogger("redlimit")

Engine = Literal["module", "scripts", "auto"]
"""What decides on the server:

- ``"module"`` (the default): the module's ``RL.*`` commands only; a server without the
  module answers every call with :class:`ModuleNotLoadedError` (an outage for the
  failure policies).
- ``"scripts"``: the Lua scripts only (``EVALSHA``, loaded again after ``NOSCRIPT``),
  even where the module is loaded. Same algorithms and replies; keys in their own
  namespace (``{name}|rls``).
- ``"auto"``: the module where every server reached has it, the scripts otherwise:
  asked (``COMMAND INFO RL.TOKENBUCKET``) once, and again after a connection failure
  (a reconnect, a failover) or an ``RL.*`` command a server does not know.
"""

ENGINES: tuple[Engine, ...] = ("module", "scripts", "auto")

Decider = Literal["module", "scripts"]
"""What decided: the module or the scripts."""

PROBE: Command = ("COMMAND INFO", "RL.TOKENBUCKET")
"""The question ``"auto"`` asks every primary (redis-py splits the first word)."""


@dataclass(frozen=True)
class NodeInfo:
    """One server :meth:`RateLimiter.verify` found ready."""

    address: str
    """``host:port`` (or the Unix socket's path)."""
    module_version: Optional[int] = None
    """The module's version (``MODULE LIST``); ``None`` for the scripts, or when the
    server refused ``MODULE LIST`` and the module was found by ``COMMAND INFO``."""


@dataclass(frozen=True)
class BackendInfo:
    """What :meth:`RateLimiter.verify` found: which engine decides, on which servers."""

    engine: Decider
    nodes: tuple[NodeInfo, ...]

    @property
    def module_version(self) -> Optional[int]:
        """The module's version on the first server checked, if known."""
        return self.nodes[0].module_version if self.nodes else None


@dataclass(frozen=True)
class Wire:
    """How one call goes out: ``first``; after ``NOSCRIPT``, ``then`` (the ``EVAL``
    that loads the script); ``key`` routes it (the first key actually sent)."""

    first: Command
    then: Optional[Command]
    key: Key


class EngineState:
    """The engine of one limiter (and of its :meth:`replicated` copies): the choice,
    and what ``"auto"`` found on the current connections."""

    def __init__(self, choice: Engine) -> None:
        if choice not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {choice!r}")
        self.choice: Engine = choice
        self._module_found: Optional[bool] = None
        self.now_us: Optional[Callable[[], int]] = None
        """Tests only: the scripts' time override (microseconds since the epoch; 0: the
        server's ``TIME``), read once per call."""

    def uses_scripts(self) -> Optional[bool]:
        """Whether calls go through the scripts; ``None`` when ``"auto"`` must ask."""
        if self.choice == "module":
            return False
        if self.choice == "scripts":
            return True
        return None if self._module_found is None else not self._module_found

    @property
    def in_use(self) -> Optional[Decider]:
        """What decides now (``None``: ``"auto"`` has not asked the server yet)."""
        scripts = self.uses_scripts()
        if scripts is None:
            return None
        return "scripts" if scripts else "module"

    def found_module(self, module: bool, node: str) -> None:
        """Records what ``"auto"`` found on ``node``; logs it when it changed."""
        before, self._module_found = self._module_found, module
        if before != module:
            if module:
                log.info("redlimit: the module decides on %s (RL.* commands)", node)
            else:
                log.info(
                    "redlimit: no redlimit module on %s: the Lua scripts decide (EVALSHA)", node
                )

    def forget(self) -> None:
        """A connection failed (a reconnect, a failover follows): ``"auto"`` asks again."""
        if self.choice == "auto":
            self._module_found = None

    def wire(self, key: Key, command: Command, scripts: bool) -> Wire:
        """``command`` as sent by the module or the scripts (translation errors raise
        :class:`ArgumentError` as the module's reply would)."""
        if not scripts:
            return Wire(command, None, key)
        call = translate(command, self.now_us() if self.now_us is not None else 0)
        return Wire(call.evalsha(), call.eval(), call.keys[0])

    def module_vanished(self, error: BaseException) -> bool:
        """``"auto"`` sent ``RL.*`` to a node that does not know it (a failover, a
        resharding): the scripts decide from now on, until the next failure asks again."""
        if self.choice != "auto" or not is_unknown_rl_command(error):
            return False
        self._module_found = False
        log.info("redlimit: a server no longer knows RL.*: the Lua scripts decide (EVALSHA)")
        return True


def is_unknown_rl_command(error: BaseException) -> bool:
    """The server said it does not know an ``RL.*`` command."""
    if not isinstance(error, redis.exceptions.ResponseError):
        return False
    lowered = str(error).lower()
    return ("unknown command" in lowered or "unsupported command" in lowered) and "rl." in lowered


def is_connection_failure(error: BaseException) -> bool:
    """No answer: the next call may reach another server (reconnect, failover)."""
    return isinstance(
        error,
        (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
            ConnectionError,
            TimeoutError,
        ),
    )


def knows_module(reply: Any) -> bool:
    """Reads ``COMMAND INFO RL.TOKENBUCKET``: nil for a command the server does not know."""
    if isinstance(reply, (list, tuple)) and len(reply) == 1:
        if reply[0] is None:
            return False
        if isinstance(reply[0], (list, tuple, Mapping)):
            return True
    raise UnexpectedReplyError(f"expected one command's info, got {reply!r}")


def module_in(modules: Any) -> tuple[bool, Optional[int]]:
    """Whether a ``MODULE LIST`` reply (RESP2 flat pairs, or maps) lists the redlimit
    module, and its version."""
    if not isinstance(modules, (list, tuple)):
        raise UnexpectedReplyError(f"expected a module list, got {modules!r}")
    for module in modules:
        if isinstance(module, Mapping):
            fields = dict(module.items())
        elif isinstance(module, (list, tuple)):
            fields = dict(zip(module[0::2], module[1::2]))
        else:
            raise UnexpectedReplyError(f"expected a module, got {module!r}")
        named = {_text(k): v for k, v in fields.items()}
        if _text(named.get("name", b"")) == "redlimit":
            version = named.get("ver")
            return True, version if isinstance(version, int) else None
    return False, None


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def loaded_sha(reply: Any, node: str) -> NodeInfo:
    """Checks a ``SCRIPT LOAD`` reply: the SHA1 every client loads the script under."""
    sha = _text(reply)
    if sha != _scripts.sha1():
        raise UnexpectedReplyError(f"{node} loaded the script as {sha}, expected {_scripts.sha1()}")
    return NodeInfo(node, None)


def node_name(client: Any) -> str:
    """``host:port`` of a standalone client, or its Sentinel service (for logs and
    :class:`NodeInfo`)."""
    pool = getattr(client, "connection_pool", None)
    service = getattr(pool, "service_name", None)
    if service:  # a Sentinel master: whichever server the Sentinels name
        return f"the primary of {service}"
    kwargs: Mapping[str, Any] = getattr(pool, "connection_kwargs", {}) or {}
    if kwargs.get("path"):
        return str(kwargs["path"])
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


def missing_message(nodes: list[str]) -> str:
    """The error naming the servers without the module."""
    return (
        f"the redlimit module is not loaded on {', '.join(nodes)}: load libredlimit.so "
        "there (--loadmodule or MODULE LOAD), or decide with the Lua scripts "
        '(engine="scripts" or "auto")'
    )
