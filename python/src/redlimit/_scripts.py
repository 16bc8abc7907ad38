"""The script engine's wire side: the Lua source (one script, built from ``client/lua/``
exactly as the Rust client builds it), its SHA1, the key namespace of its keys, and one
script call as the ``EVALSHA`` / ``EVAL`` commands that run it.

The wheel and the sdist ship ``client/lua/`` as ``redlimit/lua/`` (``hatch_build.py``);
a source checkout (``PYTHONPATH=src``, an editable install) reads ``client/lua/`` itself.
Nothing here does I/O once the source is read.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from redis.crc import key_slot

from ._protocol import Command

KEY_SUFFIX = b"|rls"
"""What the script engine appends to a key's name: its keys never meet the module's."""

_REPO_LUA = Path(__file__).resolve().parents[3] / "client" / "lua"
"""``client/lua/`` of the repository, for a source checkout (not installed)."""


def _read(name: str) -> bytes:
    shipped = resources.files("redlimit").joinpath("lua").joinpath(name)
    if shipped.is_file():
        return shipped.read_bytes()
    local = _REPO_LUA / name
    if local.is_file():
        return local.read_bytes()
    raise FileNotFoundError(
        f"redlimit: the script engine's Lua ({name}) is neither in the package "
        f"(redlimit/lua/) nor in {_REPO_LUA}: reinstall the package"
    )


@cache
def source() -> bytes:
    """The whole script: the files listed in ``ORDER``, concatenated in that order,
    nothing added (``redlimit::scripts::SOURCE`` in Rust)."""
    order = _read("ORDER").decode("utf-8").splitlines()
    return b"".join(_read(name.strip()) for name in order if name.strip())


@cache
def sha1() -> str:
    """The script's SHA1, as ``SCRIPT LOAD`` answers it (``client/lua/SHA1``)."""
    return hashlib.sha1(source()).hexdigest()


def _has_hash_tag(key: bytes) -> bool:
    open_at = key.find(b"{")
    if open_at < 0:
        return False
    close_at = key.find(b"}", open_at + 1)
    return close_at > open_at + 1


def script_key(key: bytes) -> bytes:
    """The name under which the script engine keeps the limiter ``key``: its own
    namespace, in the same cluster slot as ``key`` whenever that can be.

    >>> script_key(b"{user:42}:m"), script_key(b"user:42"), script_key(b"a}b")
    (b'{user:42}:m|rls', b'{user:42}|rls', b'a}b|rls')
    """
    if _has_hash_tag(key) or not key or b"}" in key:
        return key + KEY_SUFFIX
    return b"{" + key + b"}" + KEY_SUFFIX


def slot(key: bytes) -> int:
    """The cluster slot of ``key``."""
    return key_slot(key)


@dataclass(frozen=True)
class ScriptCall:
    """One call of the script: ``KEYS`` (the limiter keys in the script namespace, then,
    when every one shares its original's slot, the original names the script checks),
    and ``ARGV`` (the operation, the time override, the rest)."""

    keys: tuple[bytes, ...]
    args: tuple[bytes, ...]

    def evalsha(self) -> Command:
        """``EVALSHA <sha1> numkeys keys... args...``."""
        return ("EVALSHA", sha1().encode(), len(self.keys), *self.keys, *self.args)

    def eval(self) -> Command:
        """``EVAL <source> numkeys keys... args...``: loads the script too (after
        ``NOSCRIPT``)."""
        return ("EVAL", source(), len(self.keys), *self.keys, *self.args)
