"""Ships the script engine's Lua in the wheel and the sdist from its one source,
``client/lua/`` of the repository (no second copy is checked in).

The wheel gets ``redlimit/lua/`` (``ORDER``, the files it lists, ``SHA1``), which
``redlimit._scripts`` concatenates in ``ORDER``'s order, nothing added, as the Rust
client does: both load one script under one SHA1. The sdist carries the same files
in ``lua/``, from which a wheel built from the sdist takes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class LuaFiles(BuildHookInterface):
    """Adds the Lua files to the build (``force_include``)."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        root = Path(self.root)
        for lua in (root.parent / "client" / "lua", root / "lua"):  # checkout, sdist
            if (lua / "ORDER").is_file():
                break
        else:
            raise FileNotFoundError(
                f"no client/lua/ORDER next to {root} (nor lua/ORDER in it): build the "
                "package from the redlimit repository or from its sdist"
            )
        order = [line.strip() for line in (lua / "ORDER").read_text().splitlines()]
        names = ["ORDER", "SHA1", *(name for name in order if name)]
        into = "redlimit/lua" if self.target_name == "wheel" else "lua"
        for name in names:
            if not (lua / name).is_file():
                raise FileNotFoundError(f"{lua / name} (listed by the script engine)")
            build_data["force_include"][str(lua / name)] = f"{into}/{name}"
