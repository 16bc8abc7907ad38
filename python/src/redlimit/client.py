"""The synchronous client over ``redis.Redis`` or ``redis.RedisCluster``."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from functools import partial
from typing import Any, Callable, Optional, TypeVar, Union

import redis
import redis.exceptions

from . import _protocol as p
from . import _usage as u
from . import _verify as v
from . import permit as a
from ._engine import BackendInfo, Decider, Engine, EngineState, is_connection_failure, node_name
from ._protocol import Key
from ._types import AllDecision, AllPolicy, Decision, Policy, Status
from ._usage import UsageBucket, UsageShape
from ._verify import Node
from .errors import LimitExceeded, NotAdmitted, RateLimitError
from .permit import AdmitFailure, MaxWait, Permit

T = TypeVar("T")

REDIS_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.RedisError,
    # Not a RedisError: a cluster client's own refusals (keys of several slots, a slot
    # no node covers) are raised before anything is sent.
    redis.exceptions.RedisClusterException,
    ConnectionError,
    TimeoutError,
)

SyncClient = Union["redis.Redis", "redis.RedisCluster"]


def _with_acks(value: T, acks: int) -> T:
    if isinstance(value, (Decision, AllDecision)):
        return dataclasses.replace(value, replicas_acked=acks)
    return value


class RateLimiter:
    """RL.* commands on a ``redis.Redis`` or ``redis.RedisCluster`` (RESP2 or RESP3).

    >>> limiter = RateLimiter(redis.Redis())
    >>> d = limiter.token_bucket("user:42", capacity=10, refill_tokens=1, refill_ms=1000)
    >>> d.allowed, d.remaining
    (True, 9)

    ``engine`` says what decides on the server (see :data:`redlimit.Engine`):
    ``"module"`` (the default: ``RL.*`` commands), ``"scripts"`` (Lua scripts, for a
    managed Redis that cannot load modules) or ``"auto"`` (the module where it is
    loaded, the scripts otherwise). Same calls, same replies.
    """

    def __init__(
        self,
        client: SyncClient,
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

    def replicated(self, replicas: int, timeout_ms: int) -> RateLimiter:
        """The same limiter, each call followed by ``WAIT replicas timeout_ms`` on the
        connection that made it, on the node that owns the key; ``replicas_acked``
        of the decision says how many replicas acknowledged."""
        same = RateLimiter(self.client, wait_replicas=replicas, wait_timeout_ms=timeout_ms)
        same._engine = self._engine  # one engine (and what auto found) for both
        return same

    # ------------------------------------------------------------------ transport

    def _call(self, key: Key, command: p.Command, parse: Callable[[Any], T]) -> T:
        try:
            try:
                return self._attempt(key, command, parse, self._uses_scripts())
            except redis.exceptions.ResponseError as exc:
                if not self._engine.module_vanished(exc):
                    raise
                return self._attempt(key, command, parse, True)
        except RateLimitError:
            raise
        except REDIS_ERRORS as exc:
            if is_connection_failure(exc):
                self._engine.forget()
            raise p.translate(exc) from exc

    def _attempt(self, key: Key, command: p.Command, parse: Callable[[Any], T], scripts: bool) -> T:
        wire = self._engine.wire(key, command, scripts)
        try:
            return self._send(wire.key, wire.first, parse)
        except redis.exceptions.NoScriptError:
            if wire.then is None:
                raise
            return self._send(wire.key, wire.then, parse)  # EVAL loads the script

    def _send(self, key: Key, command: p.Command, parse: Callable[[Any], T]) -> T:
        if self._wait is None:
            if isinstance(self.client, redis.RedisCluster) and p.routed_by_hand(command):
                node = self._client.get_node_from_key(key)
                return parse(self._client.execute_command(*command, target_nodes=node))
            reply = self._client.execute_command(*command)
            return parse(reply)
        replicas, timeout_ms = self._wait
        pipe = self._owner(key).pipeline(transaction=False)
        pipe.execute_command(*command)
        pipe.execute_command("WAIT", replicas, timeout_ms)
        reply, acks = pipe.execute(raise_on_error=True)
        return _with_acks(parse(reply), p.count(acks, "WAIT"))

    def _owner(self, key: Key) -> Any:
        if isinstance(self.client, redis.RedisCluster):
            node = self._client.get_node_from_key(key)
            return node.redis_connection
        return self.client

    # ------------------------------------------------------------------ engine

    def _nodes(self) -> list[Node]:
        """Every server a decision may reach (each primary of a cluster), with a
        function sending it one command."""
        if isinstance(self.client, redis.RedisCluster):
            return [
                (node.name, partial(self._client.execute_command, target_nodes=node))
                for node in self._client.get_primaries()
            ]
        return [(node_name(self.client), self._client.execute_command)]

    def _uses_scripts(self) -> bool:
        scripts = self._engine.uses_scripts()
        if scripts is None:  # auto, not asked yet on these connections
            nodes = self._nodes()
            scripts = not v.drive(v.has_module(self._engine, [n for n, _ in nodes]), nodes)
        return scripts

    def verify(self) -> BackendInfo:
        """Which engine decides, checked on every server a decision may reach: the
        module (``"module"``, or ``"auto"`` where every server has it), else the
        scripts, loaded now (``SCRIPT LOAD``; ``"scripts"``, or ``"auto"``). Raises
        :class:`ModuleNotLoadedError` (``"module"`` without the module) or another
        :class:`RateLimitError`."""
        try:
            nodes = self._nodes()
            return v.drive(v.verify(self._engine, [n for n, _ in nodes]), nodes)
        except RateLimitError:
            raise
        except REDIS_ERRORS as exc:
            raise p.translate(exc) from exc

    # ------------------------------------------------------------------ commands

    def token_bucket(
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
        return self._call(key, cmd, p.decision)

    def sliding(
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
        return self._call(key, cmd, p.decision)

    def fixed(
        self, key: Key, limit: int, window_ms: int, *, cost: int = 1, peek: bool = False
    ) -> Decision:
        """``RL.FIXED``: a window aligned to the Unix epoch."""
        return self._call(key, p.fixed(key, limit, window_ms, cost, peek), p.decision)

    def throttle(
        self, key: Key, max_burst: int, count_per_period: int, period_s: int, quantity: int = 1
    ) -> Decision:
        """``RL.THROTTLE`` (redis-cell's ``CL.THROTTLE``), as a :class:`Decision`
        (``allowed`` = not limited; the server's whole seconds times 1000)."""
        cmd = p.throttle(key, max_burst, count_per_period, period_s, quantity)
        return self._call(key, cmd, p.throttle_decision)

    def check(self, key: Key, policy: Policy, *, cost: int = 1, peek: bool = False) -> Decision:
        """One decision under any policy object (its own command, not ``RL.ALL``)."""
        return self._call(key, p.check(key, policy, cost, peek), p.check_parser(policy))

    def all(
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
        return self._call(limits[0][0], cmd, lambda r: p.all_decision(r, len(limits)))

    def adjust(
        self,
        key: Key,
        delta: int,
        policy: Optional[Policy] = None,
        *,
        since_ms: Optional[int] = None,
    ) -> Optional[Decision]:
        """``RL.ADJUST``: ``delta`` units back (negative: a refund, never above full) or
        more (positive: a charge, into a bounded debt), under ``policy`` (else the one
        the key was last changed with). ``since_ms``: the charge being refunded was made
        that long ago (a limiter that was full meanwhile gives back less). The decision
        a ``PEEK`` of cost 1 answers afterwards; ``None`` for an absent or idle key
        without ``policy`` (nothing changed)."""
        return self._call(key, p.adjust(key, delta, policy, since_ms), p.adjusted)

    def admit(
        self,
        limits: Sequence[tuple[Key, AllPolicy, int]],
        max_wait: MaxWait = 0.0,
        *,
        failure: AdmitFailure = "error",
    ) -> Permit:
        """Waits until a call costing ``cost`` at every ``(key, policy, cost)`` may go out,
        at most ``max_wait`` (seconds or a ``timedelta``), counts it against all of them
        at that instant, and returns its :class:`Permit` (settle it with the real costs
        once known). Raises :class:`NotAdmitted` at once when it cannot go out within
        ``max_wait``: nothing is counted anywhere.

        - **Token buckets** reserve (``RL.ALL ... COSTS ... MAXWAIT``, one round trip):
          waiters of the whole fleet are served in arrival order, a large call keeps its
          place, no limit is counted without the others, a cost above a bucket's
          capacity is never admitted. ``admit`` then sleeps until the reserved instant.
        - **Windows** cannot reserve a later instant: the call is retried at each retry
          time until admitted or past ``max_wait``.
        - Interrupted while it sleeps for its instant, the reservation is given back
          where the server allows (not on a bucket in debt: others queue behind it).
        - ``failure`` answers when the server cannot decide: see :data:`AdmitFailure`.
        """
        charged = a.charges(limits)
        wait_ms = a.max_wait_ms(max_wait)
        pairs = [(key, policy) for key, policy, _ in charged]
        costs = [cost for _, _, cost in charged]
        reserve = a.reserves(charged)
        started = time.monotonic()
        while True:
            sent_at = time.monotonic()
            try:
                decision = self.all(
                    pairs, costs=costs, max_wait_ms=wait_ms if reserve and wait_ms else None
                )
            except RateLimitError as error:
                a.on_failure(charged, failure, error)
                opened = a.admitted_open(charged)
                return Permit(self, charged, opened, "failed_open", failure, sent_at, 0)
            if decision.allowed:
                break
            retry = a.retry_ms(decision)
            elapsed_ms = (time.monotonic() - started) * 1000
            if reserve or retry is None or elapsed_ms + retry > wait_ms:
                raise NotAdmitted(decision, retry)
            time.sleep(max(retry, 1) / 1000)
        act_ms = a.act_wait_ms(decision) if reserve else 0
        permit = Permit(self, charged, decision, "server", failure, sent_at, act_ms)
        if act_ms:
            try:
                time.sleep(act_ms / 1000)
            except BaseException:
                permit._abandon()
                raise
        permit._waited = timedelta(seconds=time.monotonic() - started)
        return permit

    def acquire(self, key: Key, limit: int, lease_ms: int, lease_id: Key) -> Decision:
        """``RL.ACQUIRE``: take (or renew) the lease ``lease_id``."""
        return self._call(key, p.acquire(key, limit, lease_ms, lease_id), p.decision)

    def release(self, key: Key, lease_id: Key) -> bool:
        """``RL.RELEASE``: ``True`` if the lease was held."""
        return self._call(key, p.release(key, lease_id), lambda r: p.count(r, "RL.RELEASE") == 1)

    @contextmanager
    def lease(
        self, key: Key, limit: int, lease_ms: int, lease_id: Optional[Key] = None
    ) -> Iterator[Decision]:
        """Hold one of ``limit`` slots for the block; raises :class:`LimitExceeded` when
        none is free. Released on exit (and expires by itself after ``lease_ms``)."""
        lease = lease_id if lease_id is not None else uuid.uuid4().hex
        decision = self.acquire(key, limit, lease_ms, lease)
        if not decision.allowed:
            raise LimitExceeded(key if isinstance(key, str) else repr(key), decision)
        try:
            yield decision
        finally:
            self.release(key, lease)

    def record_usage(self, key: Key, amount: int, shape: UsageShape) -> int:
        """``RL.USAGE.ADD``: adds ``amount`` to the usage counter ``key`` (a ring of
        ``shape.buckets`` buckets of ``shape.bucket_ms``) and returns the total over the
        ring afterwards; ``amount`` 0 only reads it. Never refused: a counter is not a
        limit. Raises :class:`ArgumentError` for a bad amount or a key of another shape
        (naming both), :class:`WrongTypeError` for a limiter's key, and
        :class:`UnavailableError` when the server cannot be reached (nothing recorded,
        nothing kept to send later).

        >>> limiter.record_usage("usage:{user:42}:openai", 1200, UsageShape.hourly(24))
        1200
        """
        return self._call(key, u.record(key, amount, shape), u.total)

    def usage(self, key: Key) -> list[UsageBucket]:
        """``RL.USAGE``: every bucket of the counter ``key``, oldest first, the last one
        the bucket of now, zeros included; ``[]`` for an absent or expired key."""
        return self._call(key, u.read(key), u.buckets)

    def status(self, key: Key) -> Optional[Status]:
        """``RL.STATUS``: ``None`` for a missing (or idle) key."""
        return self._call(key, p.status(key), p.status_reply)

    def reset(self, *keys: Key) -> int:
        """``RL.RESET``: the number of limiter keys deleted. In a cluster, one slot."""
        if not keys:
            raise ValueError("reset needs at least one key")
        return self._call(keys[0], p.reset(keys), lambda r: p.count(r, "RL.RESET"))

    def wait_replicated(self, key: Key, replicas: int, timeout_ms: int) -> int:
        """``WAIT replicas timeout_ms`` on the node that owns ``key`` (a cluster client
        would send a bare WAIT to its default node). WAIT covers the writes of *its own
        connection*: from a shared pool prefer :meth:`replicated`, which sends the
        decision and the WAIT on one connection."""
        try:
            if isinstance(self.client, redis.RedisCluster):
                node = self._client.get_node_from_key(key)
                reply = self._client.execute_command(
                    "WAIT", replicas, timeout_ms, target_nodes=node
                )
            else:
                reply = self._client.execute_command("WAIT", replicas, timeout_ms)
        except REDIS_ERRORS as exc:
            raise p.translate(exc) from exc
        return p.count(reply, "WAIT")
