"""Pushed RefIds claimed through the backlog's leases (engine.backlog), so that a push and a
poll of the same RefId give one terminal event whichever comes first: only the holder of a
RefId's lease publishes and settles it, and the claimer settles with Backlog.settle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis

from esms_callbacks.engine.keys import AccountKeys
from esms_callbacks.engine.redis_values import as_text, to_ms
from esms_callbacks.engine.scripts import register_file


@dataclass(frozen=True)
class Claimed:
    """What a pushed RefId was when an applier claimed it (see backlog_claim.lua)."""

    ref_id: str
    kind: str  # done, busy, unknown, waiting, new
    submitted_s: float | None
    state_key: str
    due_s: float | None

    @property
    def held(self) -> bool:
        return self.kind in ("waiting", "new")


class PushClaims:
    def __init__(self, client: redis.Redis, keys: AccountKeys, done_ttl_s: float) -> None:
        self._keys = keys
        self._done_ttl_s = done_ttl_s
        self._claim = register_file(client, "backlog_prelude", "backlog_claim")

    def claim(
        self,
        oa_id: str,
        ref_ids: Sequence[str],
        now_s: float,
        lease_s: float,
        token: str,
        take_unsubmitted: bool,
    ) -> list[Claimed]:
        """Lease pushed RefIds to `token` unless they are done or held by a request (see
        esms_callbacks/engine/lua/backlog_claim.lua)."""
        k = self._keys
        flat = self._claim(
            keys=[k.oas, k.known_oas],
            args=[
                k.oa(oa_id),
                to_ms(now_s),
                to_ms(now_s + lease_s),
                token,
                oa_id,
                "1" if take_unsubmitted else "",
                to_ms(now_s - self._done_ttl_s),
                *ref_ids,
            ],
        )
        items = [as_text(x) for x in flat]
        return [
            Claimed(
                ref_id,
                items[i],
                int(items[i + 1]) / 1000 if items[i + 1] else None,
                items[i + 2],
                int(float(items[i + 3])) / 1000 if items[i + 3] else None,
            )
            for ref_id, i in zip(ref_ids, range(0, len(items), 4), strict=True)
        ]
