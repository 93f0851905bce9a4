"""One way to load the project's Lua scripts into a Redis client (sync or asyncio).

Every script starts with a `#!lua` line (Redis >= 7), so that a Redis out of memory
(maxmemory reached under `noeviction`) refuses a script that may write before it starts,
instead of failing it at its first write with the writes before it kept: no script can leave
a RefId half-moved. Read-only scripts say so (`no-writes`), and still run then.

Scripts kept as files live in `lua/` beside this module, each with a header naming its KEYS
and ARGV; `register_file` joins a prelude of shared functions and the script.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

SHEBANG = "#!lua\n"
READ_ONLY = "#!lua flags=no-writes\n"
LUA_DIR = Path(__file__).resolve().parent / "lua"


def register(client: Any, source: str, writes: bool = True) -> Any:
    """Register `source` on `client` (redis.Redis or redis.asyncio.Redis)."""
    return client.register_script((SHEBANG if writes else READ_ONLY) + source)


def register_file(client: Any, *names: str, writes: bool = True) -> Any:
    """Register the scripts `names` (files in lua/, without `.lua`), joined in order."""
    return register(client, "\n".join(lua_source(name) for name in names), writes)


@cache
def lua_source(name: str) -> str:
    return (LUA_DIR / f"{name}.lua").read_text()
