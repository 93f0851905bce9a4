"""Pushed RefIds claimed through the backlog's leases (workers.backlog), so that a push and a
poll of the same RefId give one terminal event whichever comes first: only the holder of a
RefId's lease publishes and settles it, and the claimer settles with Backlog.settle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis

from esms_callbacks.workers.backlog import life_keys
from esms_callbacks.workers.keys import AccountKeys
from esms_callbacks.workers.scripts import register

# KEYS[1] due, KEYS[2] leased, KEYS[3] submitted, KEYS[4] state, KEYS[5] oas, KEYS[6] owner,
# KEYS[7] done. ARGV[1] now (ms), ARGV[2] lease expiry (ms), ARGV[3] token, ARGV[4] OA id,
# ARGV[5] '1' to take RefIds never submitted, ARGV[6..] RefIds pushed by eSMS.
# Leases pushed RefIds to `token` as a request would, so a push and a poll of one RefId never
# both publish: only the holder does. Returns per RefId a quadruple: what it was, submitted
# (ms), last state key, due (ms). What it was: 'done' (had its terminal event), 'busy' (a
# request holds it: try again later), 'unknown' (never submitted, left alone), 'waiting' or
# 'new' (never submitted, now waiting too): both leased to `token`.
CLAIM_PUSHED_LUA = """
local now = tonumber(ARGV[1])
local out = {}
for i = 6, #ARGV do
  local ref = ARGV[i]
  local kind, submitted, state, due = 'unknown', '', '', ''
  local lease = redis.call('ZSCORE', KEYS[2], ref)
  if redis.call('ZSCORE', KEYS[7], ref) then
    kind = 'done'
  elseif lease and tonumber(lease) > now then
    kind = 'busy'
  else
    submitted = redis.call('HGET', KEYS[3], ref)
    if submitted then
      kind = 'waiting'
      due = redis.call('ZSCORE', KEYS[1], ref) or ARGV[1]
      if lease then due = ARGV[1] end  -- its holder died: it was due again
      state = redis.call('HGET', KEYS[4], ref) or ''
      redis.call('ZREM', KEYS[1], ref)
    elseif ARGV[5] == '1' then
      kind, submitted, due = 'new', ARGV[1], ARGV[1]
      redis.call('HSET', KEYS[3], ref, ARGV[1])
      redis.call('SADD', KEYS[5], ARGV[4])
    else
      submitted = ''
    end
    if kind ~= 'unknown' then
      redis.call('ZADD', KEYS[2], ARGV[2], ref)
      redis.call('HSET', KEYS[6], ref, ARGV[3])
    end
  end
  out[#out + 1] = kind
  out[#out + 1] = submitted
  out[#out + 1] = state
  out[#out + 1] = due
end
return out
"""


@dataclass(frozen=True)
class Claimed:
    """What a pushed RefId was when an applier claimed it (see CLAIM_PUSHED_LUA)."""

    ref_id: str
    kind: str  # done, busy, unknown, waiting, new
    submitted_s: float | None
    state_key: str
    due_s: float | None

    @property
    def held(self) -> bool:
        return self.kind in ("waiting", "new")


class PushClaims:
    def __init__(self, client: redis.Redis, keys: AccountKeys) -> None:
        self._keys = keys
        self._claim = register(client, CLAIM_PUSHED_LUA)

    def claim(
        self,
        oa_id: str,
        ref_ids: Sequence[str],
        now_s: float,
        lease_s: float,
        token: str,
        take_unsubmitted: bool,
    ) -> list[Claimed]:
        """Lease pushed RefIds to `token` unless they are done or held by a request."""
        flat = self._claim(
            keys=life_keys(self._keys, oa_id),
            args=[
                _ms(now_s),
                _ms(now_s + lease_s),
                token,
                oa_id,
                "1" if take_unsubmitted else "",
                *ref_ids,
            ],
        )
        items = [_text(x) for x in flat]
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


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
