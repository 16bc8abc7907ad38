"""One truth, from Python: the same random timelines through the module and through
this package's script engine must give identical replies, parsed by the same code.

Each call is sent twice at the same instant on one server with the module: as
``RL.REPLAY <micros> <call>`` (the module's clock runs 30 days ahead,
``redlimit.clock-offset-ms``, so that a replayed time is accepted) and through
``RateLimiter(engine="scripts")`` with the scripts' test-only time override, on keys
of their own. Decisions, throttle replies, ``RL.ALL`` (``COST``, ``COSTS``, ``PEEK``,
``MAXWAIT``), leases and ``RL.ADJUST`` must be equal field for field (an error: of the
same type), on Redis 7.0, Redis 8.2 and Valkey 9.1, with policy changes, costs, peeks,
time standing still, creeping, jumping past windows and stepping back.

``REDLIMIT_PY_DIFF_CALLS`` sets the calls per algorithm (default 300; the Rust
``tests/scripts_differential.rs`` runs 20,000+); ``REDLIMIT_PY_DIFF_SEED`` replays a
seed (printed).
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from typing import Any, Callable

import pytest

from conftest import SERVERS, start, stop
from redlimit import Decision, Fixed, RateLimiter, RateLimitError, Sliding, Throttle, TokenBucket
from redlimit import _protocol as p
from redlimit._protocol import translate as error_of
from redlimit._types import AllPolicy, Policy

CALLS = int(os.environ.get("REDLIMIT_PY_DIFF_CALLS", "300"))
OFFSET_MS = 30 * 24 * 3_600 * 1_000
FAMILIES = ("tokenbucket", "throttle", "fixed", "sliding", "approx", "leases", "all", "adjust")
KEYS = 3

Parse = Callable[[Any], Any]


class Timeline:
    """Random calls of one family at moving instants (a few keys, tier changes)."""

    def __init__(self, family: str, rng: random.Random, start_us: int) -> None:
        self.family, self.rng, self.now_us = family, rng, start_us
        self.policies = [self.policy(k) for k in range(KEYS)]

    def advance(self) -> None:
        r, rng = self.rng.random(), self.rng
        if r < 0.25:
            return  # the same instant
        if r < 0.75:
            self.now_us += rng.randint(1, 400_000)
        elif r < 0.93:
            self.now_us += rng.randint(0, 5_000_000)
        elif r < 0.97:
            self.now_us += rng.randint(0, 120_000_000)  # past every window
        else:
            self.now_us -= rng.randint(0, 300_000)  # a clock stepping back

    def policy(self, k: int) -> Policy:
        rng, family = self.rng, self.family
        kind = family
        if family == "all":
            kind = ("tokenbucket", "fixed", rng.choice(("sliding", "approx")))[k]
        elif family == "adjust":
            kind = ("tokenbucket", "throttle", rng.choice(("fixed", "sliding", "approx")))[k]
        window = rng.choice((100, 1_000, 5_000, 60_000))
        if kind == "tokenbucket":
            return TokenBucket(rng.randint(1, 20), rng.randint(1, 5), window)
        if kind == "throttle":
            return Throttle(rng.randint(0, 10), rng.randint(1, 10), rng.choice((1, 2, 10, 60)))
        if kind == "fixed":
            return Fixed(rng.randint(1, 20), window)
        if kind in ("sliding", "approx"):
            return Sliding(rng.randint(1, 20), window, approx=kind == "approx")
        return Fixed(rng.randint(1, 4), window)  # leases: limit, lease_ms

    def step(self, key: str) -> tuple[p.Command, Parse]:
        rng = self.rng
        self.advance()
        k = rng.randrange(KEYS)
        if rng.random() < 0.03:
            self.policies[k] = self.policy(k)
        pol, name = self.policies[k], f"{key}:{k}"
        cost = rng.choice((0, 1, 1, 1, 1, 2, 3, 5, 25))
        peek = rng.random() < 0.1
        if self.family == "leases":
            assert isinstance(pol, Fixed)
            lease = rng.choice("abcde")
            if rng.random() < 0.3:
                return p.release(name, lease), lambda r: p.count(r, "RL.RELEASE")
            return p.acquire(name, pol.limit, pol.window_ms, lease), p.decision
        if self.family == "all":
            picked = rng.sample(range(KEYS), rng.randint(1, KEYS))
            limits: list[tuple[p.Key, AllPolicy]] = []
            for i in picked:
                limit = self.policies[i]
                assert isinstance(limit, (TokenBucket, Fixed, Sliding))
                limits.append((f"{key}:{i}", limit))
            costs = [rng.choice((0, 1, 2, 7)) for _ in limits] if rng.random() < 0.5 else None
            buckets = all(isinstance(limit, TokenBucket) for _, limit in limits)
            wait = rng.choice((50, 999, 3_000)) if buckets and rng.random() < 0.4 else None
            command = p.all_of(limits, 1 if costs else cost, peek, costs, wait)
            return command, lambda r: p.all_decision(r, len(limits))
        if self.family == "adjust" and rng.random() < 0.4:
            policy = None if rng.random() < 0.3 else pol
            since = None if rng.random() < 0.5 else rng.randint(0, 5_000)
            return p.adjust(name, rng.randint(-5, 5), policy, since), p.adjusted
        if isinstance(pol, Throttle):
            throttle = p.throttle(name, pol.max_burst, pol.count_per_period, pol.period_s, cost)
            return throttle, p.throttle_decision
        if isinstance(pol, TokenBucket) and rng.random() < 0.3:
            wait = rng.choice((1, 50, 999, 3_000))
            c = pol
            return p.token_bucket(
                name, c.capacity, c.refill_tokens, c.refill_ms, cost, peek, wait
            ), p.decision
        return p.check(name, pol, cost, peek), p.decision


def run(send: Callable[[], Any]) -> Any:
    """A reply, or the type of the error it raised."""
    try:
        return send()
    except RateLimitError as error:
        return type(error).__name__


def module_call(r: Any, at_us: int, command: p.Command, parse: Parse) -> Any:
    """``command`` on module keys (``{family}:k`` as ``{family}m:k``, away from the
    scripts' guards), replayed at ``at_us``."""
    args = [a.replace("}:", "}m:", 1) if isinstance(a, str) else a for a in command[1:]]

    def send() -> Any:
        try:
            return parse(r.execute_command("RL.REPLAY", at_us, command[0], *args))
        except RateLimitError:
            raise
        except Exception as exc:
            raise error_of(exc) from exc

    return run(send)


def script_call(limiter: RateLimiter, at_us: int, command: p.Command, parse: Parse) -> Any:
    """``command`` through the script engine at ``at_us`` (its time override)."""
    limiter._engine.now_us = lambda: at_us
    key = command[2] if command[0] == "RL.ALL" else command[1]
    return run(lambda: limiter._call(str(key), command, parse))


def outcome(reply: Any) -> str:
    decisions = reply.decisions if hasattr(reply, "decisions") else [reply]
    if all(isinstance(d, Decision) for d in decisions):
        return "allowed" if all(d.allowed for d in decisions) else "refused"
    return str(reply)


@pytest.mark.parametrize("flavour", list(SERVERS))
def test_the_scripts_answer_as_the_module(flavour: str) -> None:
    seed = int(os.environ.get("REDLIMIT_PY_DIFF_SEED") or time.time_ns() % 10**9)
    print(f"seed {seed}, {CALLS} calls per algorithm on {flavour}")
    server = start(flavour, module=True)
    try:
        r = server.client()
        r.config_set("redlimit.clock-offset-ms", OFFSET_MS)
        scripts = RateLimiter(server.client(), engine="scripts")
        start_us = time.time_ns() // 1000 + 24 * 3_600 * 1_000_000  # within the offset
        for n, family in enumerate(FAMILIES):
            timeline = Timeline(family, random.Random(seed + n), start_us)
            seen: Counter[str] = Counter()
            for i in range(CALLS):
                command, parse = timeline.step(f"{{{family}}}")
                at = timeline.now_us
                module = module_call(r, at, command, parse)
                script = script_call(scripts, at, command, parse)
                assert module == script, (
                    f"{flavour} {family} seed {seed} step {i} at {at} us: {command}\n"
                    f"module: {module}\nscripts: {script}"
                )
                seen[outcome(module)] += 1
            print(f"{flavour} {family}: {CALLS} identical replies {dict(seen)}")
            if family not in ("leases", "adjust"):
                assert seen["allowed"] > 0 and seen["refused"] > 0, (family, seen)
    finally:
        stop(server)
