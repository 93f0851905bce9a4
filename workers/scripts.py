"""One way to load the project's Lua scripts into a Redis client (sync or asyncio).

Every script starts with a `#!lua` line (Redis >= 7), so that a Redis out of memory
(maxmemory reached under `noeviction`) refuses a script that may write before it starts,
instead of failing it at its first write with the writes before it kept: no script can leave
a RefId half-moved (out of `leased`, never back in `due`).
"""

from __future__ import annotations

from typing import Any

SHEBANG = "#!lua\n"


def register(client: Any, source: str) -> Any:
    """Register `source` on `client` (redis.Redis or redis.asyncio.Redis)."""
    return client.register_script(SHEBANG + source)
