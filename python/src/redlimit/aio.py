"""The asyncio client over ``redis.asyncio.Redis`` or ``redis.asyncio.RedisCluster``."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import partial
from typing import Any, Callable, Optional, TypeVar, Union

import redis.asyncio
import redis.exceptions

from . import _protocol as p
from . import _usage as u
from . import _verify as v
from . import permit as a
from ._engine import BackendInfo, Decider, Engine, EngineState, is_connection_failure, node_name
from ._protocol import Key
from ._types import AllDecision, AllPolicy, Decision, Policy, Status
from ._usage import UsageBucket, UsageShape
from .client import REDIS_ERRORS, _with_acks
from .errors import LimitExceeded, NotAdmitted, RateLimitError
from .permit import AdmitFailure, Admitting, AsyncPermit, MaxWait

T = TypeVar("T")

AsyncClient = Union["redis.asyncio.Redis", "redis.asyncio.RedisCluster"]


def _release(node: Any, connection: Any) -> None:
    """Back to the node's free list (``ClusterNode.release`` appeared in redis-py 6;
    5.x appends to ``_free`` itself)."""
    release = getattr(node, "release", None)
    if release is not None:
        release(connection)
    else:
        node._free.append(connection)


class AsyncRateLimiter:
    """RL.* commands on ``redis.asyncio.Redis`` or ``RedisCluster`` (RESP2 or RESP3).

    >>> limiter = AsyncRateLimiter(redis.asyncio.Redis())
    >>> d = await limiter.token_bucket("user:42", capacity=10, refill_tokens=1, refill_ms=1000)
    >>> d.allowed, d.remaining
    (True, 9)

    ``engine``: ``"module"`` (the default), ``"scripts"`` or ``"auto"``, as for
    :class:`RateLimiter`.
    """

    def __init__(
        self,
        client: AsyncClient,
        *,
        engine: Engine = "module",
        wait_replicas: Optional[int] = None,
        wait_timeout_ms: int = 0,
    ) -> None:
        self.client = client
        self._client: Any = client  # redis-py is only partly typed
        self._wait: Optional[tuple[int, int]] = (
            None if wait_replicas is None else (wait_replicas, wait_timeout_ms)
        )
        self._engine = EngineState(engine)

    @property
    def engine(self) -> Engine:
        """The engine chosen: ``"module"``, ``"scripts"`` or ``"auto"``."""
        return self._engine.choice

    @property
    def engine_in_use(self) -> Optional[Decider]:
        """What decides now: ``"module"`` or ``"scripts"`` (``None``: ``"auto"`` has
        not asked the server yet)."""
        return self._engine.in_use

    def replicated(self, replicas: int, timeout_ms: int) -> AsyncRateLimiter:
        """The same limiter, each call followed by ``WAIT replicas timeout_ms`` on the
        connection that made it, on the node that owns the key; ``replicas_acked``
        of the decision says how many replicas acknowledged."""
        same = AsyncRateLimiter(self.client, wait_replicas=replicas, wait_timeout_ms=timeout_ms)
        same._engine = self._engine  # one engine (and what auto found) for both
        return same

    # ------------------------------------------------------------------ transport

    async def _call(self, key: Key, command: p.Command, parse: Callable[[Any], T]) -> T:
        try:
            try:
                return await self._attempt(key, command, parse, await self._uses_scripts())
            except redis.exceptions.ResponseError as exc:
                if not self._engine.module_vanished(exc):
                    raise
                return await self._attempt(key, command, parse, True)
        except RateLimitError:
            raise
        except REDIS_ERRORS as exc:
            if is_connection_failure(exc):
                self._engine.forget()
            raise p.translate(exc) from exc

    async def _attempt(
        self, key: Key, command: p.Command, parse: Callable[[Any], T], scripts: bool
    ) -> T:
        wire = self._engine.wire(key, command, scripts)
        try:
            return await self._send(wire.key, wire.first, parse)
        except redis.exceptions.NoScriptError:
            if wire.then is None:
                raise
            return await self._send(wire.key, wire.then, parse)  # EVAL loads the script

    async def _send(self, key: Key, command: p.Command, parse: Callable[[Any], T]) -> T:
        if self._wait is None:
            if isinstance(self.client, redis.asyncio.RedisCluster) and p.routed_by_hand(command):
                node = await self._owner(key)
                return parse(await self._client.execute_command(*command, target_nodes=node))
            reply = await self._client.execute_command(*command)
            return parse(reply)
        replicas, timeout_ms = self._wait
        reply, acks = await self._with_wait(key, command, ("WAIT", replicas, timeout_ms))
        return _with_acks(parse(reply), p.count(acks, "WAIT"))

    async def _with_wait(self, key: Key, command: p.Command, wait: p.Command) -> list[Any]:
        if not isinstance(self.client, redis.asyncio.RedisCluster):
            pipe = self._client.pipeline(transaction=False)
            pipe.execute_command(*command)
            pipe.execute_command(*wait)
            return list(await pipe.execute(raise_on_error=True))
        # One connection of the owner node, so that WAIT covers this very write.
        node = await self._owner(key)
        connection = node.acquire_connection()
        try:
            await connection.send_packed_command(connection.pack_commands([command, wait]))
            replies: list[Any] = []
            error: Optional[BaseException] = None
            for _ in range(2):
                try:
                    replies.append(await connection.read_response())
                except redis.exceptions.ResponseError as exc:
                    error = error or exc
                    replies.append(None)
        except BaseException:
            # Replies may be left unread: the connection must not serve anyone else.
            await connection.disconnect()
            raise
        finally:
            _release(node, connection)
        if error is not None:
            raise error  # both replies were read: the connection stays usable
        return replies

    async def _owner(self, key: Key) -> Any:
        # A new redis.asyncio.RedisCluster knows no slots until its first command
        # (initialize() returns at once once it has).
        await self._client.initialize()
        return self._client.get_node_from_key(key)

    # ------------------------------------------------------------------ engine

    async def _nodes(self) -> list[v.AsyncNode]:
        """Every server a decision may reach (each primary of a cluster), with a
        function sending it one command."""
        if isinstance(self.client, redis.asyncio.RedisCluster):
            await self._client.initialize()
            return [
                (node.name, partial(self._client.execute_command, target_nodes=node))
                for node in self._client.get_primaries()
            ]
        return [(node_name(self.client), self._client.execute_command)]

    async def _uses_scripts(self) -> bool:
        scripts = self._engine.uses_scripts()
        if scripts is None:  # auto, not asked yet on these connections
            nodes = await self._nodes()
            steps = v.has_module(self._engine, [n for n, _ in nodes])
            scripts = not await v.drive_async(steps, nodes)
        return scripts

    async def verify(self) -> BackendInfo:
        """Which engine decides (see :meth:`RateLimiter.verify`)."""
        try:
            nodes = await self._nodes()
            return await v.drive_async(v.verify(self._engine, [n for n, _ in nodes]), nodes)
        except RateLimitError:
            raise
        except REDIS_ERRORS as exc:
            raise p.translate(exc) from exc

    # ------------------------------------------------------------------ commands

    async def token_bucket(
        self,
        key: Key,
        capacity: int,
        refill_tokens: int,
        refill_ms: int,
        *,
        cost: int = 1,
        peek: bool = False,
        max_wait_ms: Optional[int] = None,
    ) -> Decision:
        """``RL.TOKENBUCKET``. With ``max_wait_ms`` an admitted request may have to wait
        ``retry_after_ms`` before acting (reservation)."""
        cmd = p.token_bucket(key, capacity, refill_tokens, refill_ms, cost, peek, max_wait_ms)
        return await self._call(key, cmd, p.decision)

    async def sliding(
        self,
        key: Key,
        limit: int,
        window_ms: int,
        *,
        cost: int = 1,
        peek: bool = False,
        approx: bool = False,
    ) -> Decision:
        """``RL.SLIDING``: exact sliding log, or the two-window estimate with ``approx``."""
        cmd = p.sliding(key, limit, window_ms, cost, peek, approx)
        return await self._call(key, cmd, p.decision)

    async def fixed(
        self, key: Key, limit: int, window_ms: int, *, cost: int = 1, peek: bool = False
    ) -> Decision:
        """``RL.FIXED``: a window aligned to the Unix epoch."""
        return await self._call(key, p.fixed(key, limit, window_ms, cost, peek), p.decision)

    async def throttle(
        self, key: Key, max_burst: int, count_per_period: int, period_s: int, quantity: int = 1
    ) -> Decision:
        """``RL.THROTTLE`` (redis-cell's ``CL.THROTTLE``), as a :class:`Decision`
        (``allowed`` = not limited; the server's whole seconds times 1000)."""
        cmd = p.throttle(key, max_burst, count_per_period, period_s, quantity)
        return await self._call(key, cmd, p.throttle_decision)

    async def check(
        self, key: Key, policy: Policy, *, cost: int = 1, peek: bool = False
    ) -> Decision:
        """One decision under any policy object (its own command, not ``RL.ALL``)."""
        return await self._call(key, p.check(key, policy, cost, peek), p.check_parser(policy))

    async def all(
        self,
        limits: Sequence[tuple[Key, AllPolicy]],
        *,
        cost: int = 1,
        peek: bool = False,
        costs: Optional[Sequence[int]] = None,
        max_wait_ms: Optional[int] = None,
    ) -> AllDecision:
        """``RL.ALL``: counted against every key iff every key allows. In a cluster the
        keys must share a hash tag (``{user:42}:m``, ``{user:42}:h``).

        ``costs`` gives each key its own cost (``COSTS``, instead of one ``cost`` for
        all). ``max_wait_ms`` (token buckets only) makes it one reservation across all
        the limits: admitted if every bucket can take its cost within that time, each
        decision's ``retry_after_ms`` then says when to act (see :meth:`admit`)."""
        cmd = p.all_of(limits, cost, peek, costs, max_wait_ms)
        return await self._call(limits[0][0], cmd, lambda r: p.all_decision(r, len(limits)))

    async def adjust(
        self,
        key: Key,
        delta: int,
        policy: Optional[Policy] = None,
        *,
        since_ms: Optional[int] = None,
    ) -> Optional[Decision]:
        """``RL.ADJUST`` (see :meth:`RateLimiter.adjust`)."""
        return await self._call(key, p.adjust(key, delta, policy, since_ms), p.adjusted)

    def admit(
        self,
        limits: Sequence[tuple[Key, AllPolicy, int]],
        max_wait: MaxWait = 0.0,
        *,
        failure: AdmitFailure = "error",
    ) -> Admitting:
        """:meth:`RateLimiter.admit` for asyncio: ``await limiter.admit(...)`` returns an
        :class:`AsyncPermit` (or raises :class:`NotAdmitted`), or
        ``async with limiter.admit(...) as permit:`` cancels the permit when the block
        raises before settling. The reservation's wait is an ``asyncio.sleep``; a task
        cancelled during it gives the reservation back in the background, where the
        server allows (not on a bucket in debt: others queue behind it)."""
        return Admitting(self._admit(limits, max_wait, failure))

    async def _admit(
        self,
        limits: Sequence[tuple[Key, AllPolicy, int]],
        max_wait: MaxWait,
        failure: AdmitFailure,
    ) -> AsyncPermit:
        charged = a.charges(limits)
        wait_ms = a.max_wait_ms(max_wait)
        pairs = [(key, policy) for key, policy, _ in charged]
        costs = [cost for _, _, cost in charged]
        reserve = a.reserves(charged)
        started = time.monotonic()
        while True:
            sent_at = time.monotonic()
            try:
                decision = await self.all(
                    pairs, costs=costs, max_wait_ms=wait_ms if reserve and wait_ms else None
                )
            except RateLimitError as error:
                a.on_failure(charged, failure, error)
                opened = a.admitted_open(charged)
                return AsyncPermit(self, charged, opened, "failed_open", failure, sent_at, 0)
            if decision.allowed:
                break
            retry = a.retry_ms(decision)
            elapsed_ms = (time.monotonic() - started) * 1000
            if reserve or retry is None or elapsed_ms + retry > wait_ms:
                raise NotAdmitted(decision, retry)
            await asyncio.sleep(max(retry, 1) / 1000)
        act_ms = a.act_wait_ms(decision) if reserve else 0
        permit = AsyncPermit(self, charged, decision, "server", failure, sent_at, act_ms)
        if act_ms:
            try:
                await asyncio.sleep(act_ms / 1000)
            except asyncio.CancelledError:
                permit._abandon()
                raise
        permit._waited = timedelta(seconds=time.monotonic() - started)
        return permit

    async def acquire(self, key: Key, limit: int, lease_ms: int, lease_id: Key) -> Decision:
        """``RL.ACQUIRE``: take (or renew) the lease ``lease_id``."""
        return await self._call(key, p.acquire(key, limit, lease_ms, lease_id), p.decision)

    async def release(self, key: Key, lease_id: Key) -> bool:
        """``RL.RELEASE``: ``True`` if the lease was held."""
        return await self._call(
            key, p.release(key, lease_id), lambda r: p.count(r, "RL.RELEASE") == 1
        )

    @asynccontextmanager
    async def lease(
        self, key: Key, limit: int, lease_ms: int, lease_id: Optional[Key] = None
    ) -> AsyncIterator[Decision]:
        """Hold one of ``limit`` slots for the block; raises :class:`LimitExceeded` when
        none is free. Released on exit (and expires by itself after ``lease_ms``)."""
        lease = lease_id if lease_id is not None else uuid.uuid4().hex
        decision = await self.acquire(key, limit, lease_ms, lease)
        if not decision.allowed:
            raise LimitExceeded(key if isinstance(key, str) else repr(key), decision)
        try:
            yield decision
        finally:
            await self.release(key, lease)

    async def record_usage(self, key: Key, amount: int, shape: UsageShape) -> int:
        """``RL.USAGE.ADD``: as :meth:`RateLimiter.record_usage` (the total afterwards)."""
        return await self._call(key, u.record(key, amount, shape), u.total)

    async def usage(self, key: Key) -> list[UsageBucket]:
        """``RL.USAGE``: as :meth:`RateLimiter.usage` (every bucket, oldest first)."""
        return await self._call(key, u.read(key), u.buckets)

    async def status(self, key: Key) -> Optional[Status]:
        """``RL.STATUS``: ``None`` for a missing (or idle) key."""
        return await self._call(key, p.status(key), p.status_reply)

    async def reset(self, *keys: Key) -> int:
        """``RL.RESET``: the number of limiter keys deleted. In a cluster, one slot."""
        if not keys:
            raise ValueError("reset needs at least one key")
        return await self._call(keys[0], p.reset(keys), lambda r: p.count(r, "RL.RESET"))

    async def wait_replicated(self, key: Key, replicas: int, timeout_ms: int) -> int:
        """``WAIT replicas timeout_ms`` on the node that owns ``key`` (a cluster client
        would send a bare WAIT to its default node). WAIT covers the writes of *its own
        connection*: from a shared pool prefer :meth:`replicated`, which sends the
        decision and the WAIT on one connection."""
        try:
            if isinstance(self.client, redis.asyncio.RedisCluster):
                node = await self._owner(key)
                reply = await self._client.execute_command(
                    "WAIT", replicas, timeout_ms, target_nodes=node
                )
            else:
                reply = await self._client.execute_command("WAIT", replicas, timeout_ms)
        except REDIS_ERRORS as exc:
            raise p.translate(exc) from exc
        return p.count(reply, "WAIT")
