"""What ``"auto"`` asks the servers, and ``verify()``: written once as generators that
yield ``(node index, command)`` and receive each reply (or the server's error thrown
in), driven by the sync and the asyncio client over their own nodes."""

from __future__ import annotations

from collections.abc import Awaitable, Generator, Sequence
from typing import Any, Callable, TypeVar

import redis.exceptions

from ._engine import (
    PROBE,
    BackendInfo,
    EngineState,
    NodeInfo,
    knows_module,
    loaded_sha,
    missing_message,
    module_in,
)
from ._protocol import Command
from ._scripts import source
from .errors import ModuleNotLoadedError

T = TypeVar("T")

Steps = Generator[tuple[int, Command], Any, T]
"""Yields ``(node index, command)``; receives the reply, or has the error thrown in."""

Node = tuple[str, Callable[..., Any]]
"""A node's name, and the function sending it one command."""

AsyncNode = tuple[str, Callable[..., Awaitable[Any]]]


def has_module(state: EngineState, names: Sequence[str]) -> Steps[bool]:
    """``"auto"``'s question (``COMMAND INFO RL.TOKENBUCKET``) to every node: the module
    decides only when all know it. A refused question counts as yes: the ``RL.*``
    command itself then tells (``unknown command`` sends it to the scripts)."""
    module = True
    for index in range(len(names)):
        try:
            known = knows_module((yield index, PROBE))
        except redis.exceptions.ResponseError:
            known = True  # refused: the RL.* command itself will tell
        module = module and known
    state.found_module(module, ", ".join(names))
    return module


def verify(state: EngineState, names: Sequence[str]) -> Steps[BackendInfo]:
    """The module (``"module"``, or ``"auto"`` where every node has it), else the
    scripts, loaded on every node (``SCRIPT LOAD``, checked against the SHA1)."""
    where = ", ".join(names)
    if state.choice != "scripts":
        found: list[NodeInfo] = []
        missing: list[str] = []
        for index, name in enumerate(names):
            try:
                loaded, version = module_in((yield index, ("MODULE LIST",)))
            except redis.exceptions.ResponseError:  # MODULE refused (an ACL)
                loaded, version = knows_module((yield index, PROBE)), None
            if loaded:
                found.append(NodeInfo(name, version))
            else:
                missing.append(name)
        if not missing:
            if state.choice == "auto":
                state.found_module(True, where)
            return BackendInfo("module", tuple(found))
        if state.choice == "module":
            raise ModuleNotLoadedError(missing_message(missing))
        state.found_module(False, where)
    nodes = []
    for index, name in enumerate(names):
        nodes.append(loaded_sha((yield index, ("SCRIPT LOAD", source())), name))
    return BackendInfo("scripts", tuple(nodes))


def drive(steps: Steps[T], nodes: Sequence[Node]) -> T:
    """Runs ``steps`` with blocking calls."""
    try:
        index, command = next(steps)
        while True:
            try:
                reply = nodes[index][1](*command)
            except redis.exceptions.ResponseError as error:
                index, command = steps.throw(error)
            else:
                index, command = steps.send(reply)
    except StopIteration as done:
        result: T = done.value
        return result


async def drive_async(steps: Steps[T], nodes: Sequence[AsyncNode]) -> T:
    """Runs ``steps`` with awaited calls."""
    try:
        index, command = next(steps)
        while True:
            try:
                reply = await nodes[index][1](*command)
            except redis.exceptions.ResponseError as error:
                index, command = steps.throw(error)
            else:
                index, command = steps.send(reply)
    except StopIteration as done:
        result: T = done.value
        return result
