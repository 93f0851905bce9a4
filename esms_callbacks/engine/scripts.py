"""The one way to load the project's Lua scripts into a Redis client (sync or asyncio).

Every script starts with a `#!lua` line (Redis >= 7), so that a Redis out of memory
(maxmemory reached under `noeviction`) refuses a script that may write before it starts,
instead of failing it at its first write with the writes before it kept: no script can leave
a RefId half-moved. Read-only scripts say so (`no-writes`), and still run then.

Every script is a file in `lua/` beside this module, with a header naming its KEYS and ARGV.
`register_file` puts the shebang and the shared prelude (lua/prelude.lua: the Redis clock)
in front, then the files it is given in order: the script's own preludes of shared functions
(backlog_prelude, limiter_spacing, gcra, breaker), and the script last. Constants come in
ARGV, and every key a script touches in KEYS (the backlog's per-OA keys from a prefix).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

SHEBANG = "#!lua\n"
READ_ONLY = "#!lua flags=no-writes\n"
LUA_DIR = Path(__file__).resolve().parent / "lua"
PRELUDE = "prelude"  # put in front of every script


def register_file(client: Any, *names: str, writes: bool = True) -> Any:
    """Register on `client` (redis.Redis or redis.asyncio.Redis) the script made of the
    files `names` (in lua/, without `.lua`), joined in order after the shared prelude."""
    return client.register_script(script_text(*names, writes=writes))


@cache  # one string per script, shared by every client and account that registers it
def script_text(*names: str, writes: bool = True) -> str:
    """The source `register_file` registers for `names`."""
    header = SHEBANG if writes else READ_ONLY
    return header + "\n".join(lua_source(name) for name in (PRELUDE, *names))


@cache
def lua_source(name: str) -> str:
    return (LUA_DIR / f"{name}.lua").read_text()
