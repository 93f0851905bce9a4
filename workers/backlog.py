"""The waiting RefIds of an account, per OA, durable in Redis.

Life of a RefId: park -> due (waiting, scored by when to ask) -> lease (in a request, scored
by lease expiry, owned by one request's token) -> settle: remembered as done when terminal, or
back to due for a later ask. A lease that expires (its worker died or stalled) puts the RefId
back to due, and its old holder can no longer settle it: only the current holder publishes
and settles, so a RefId gets one terminal event. Every multi-key change is one Lua script on
keys of one hash tag.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import redis

from workers.keys import AccountKeys

# KEYS[1] due, KEYS[2] submitted, KEYS[3] oas, KEYS[4] done.
# ARGV[1] now (ms), ARGV[2] OA id, ARGV[3] forget finished RefIds older than this (ms),
# ARGV[4..] RefIds. A RefId already waiting or leased is left as it is; one that finished
# recently is not asked again (it already had its one terminal event).
# Returns {added, already finished}.
PARK_LUA = """
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', ARGV[3])
local added, finished = 0, 0
for i = 4, #ARGV do
  if redis.call('ZSCORE', KEYS[4], ARGV[i]) then
    finished = finished + 1
  elseif redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[1]) == 1 then
    redis.call('ZADD', KEYS[1], ARGV[1], ARGV[i])
    added = added + 1
  end
end
if added > 0 then redis.call('SADD', KEYS[3], ARGV[2]) end
return {added, finished}
"""

# KEYS[1] due, KEYS[2] leased, KEYS[3] submitted, KEYS[4] state, KEYS[5] owner.
# ARGV[1] now (ms), ARGV[2] lease expiry (ms), ARGV[3] most RefIds to lease, ARGV[4] token.
# Puts expired leases back to due (their holder lost them), then leases the RefIds due longest
# ago to `token`. Returns a flat list: RefId, submitted (ms), last state key ('' if none).
LEASE_LUA = """
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
for _, ref in ipairs(expired) do
  redis.call('ZREM', KEYS[2], ref)
  redis.call('HDEL', KEYS[5], ref)
  redis.call('ZADD', KEYS[1], ARGV[1], ref)
end
local refs = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, ref in ipairs(refs) do
  redis.call('ZREM', KEYS[1], ref)
  redis.call('ZADD', KEYS[2], ARGV[2], ref)
  redis.call('HSET', KEYS[5], ref, ARGV[4])
  out[#out + 1] = ref
  out[#out + 1] = redis.call('HGET', KEYS[3], ref) or '0'
  out[#out + 1] = redis.call('HGET', KEYS[4], ref) or ''
end
return out
"""

# KEYS[1] leased, KEYS[2] owner. ARGV[1] token, ARGV[2] new lease expiry (ms), ARGV[3..] RefIds.
# Extends the leases `token` still holds; returns those RefIds (the others were taken back).
RENEW_LUA = """
local held = {}
for i = 3, #ARGV do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[1] then
    redis.call('ZADD', KEYS[1], ARGV[2], ARGV[i])
    held[#held + 1] = ARGV[i]
  end
end
return held
"""

# KEYS[1] due, KEYS[2] leased, KEYS[3] submitted, KEYS[4] state, KEYS[5] oas, KEYS[6] owner,
# KEYS[7] done. ARGV[1] OA id, ARGV[2] token, ARGV[3] now (ms), ARGV[4] done memory (ms),
# ARGV[5] n finished, ARGV[6..5+n] finished RefIds (forgotten, remembered as done), then
# triples RefId, due (ms), state key for RefIds to ask again. Only RefIds `token` still holds
# are touched.
SETTLE_LUA = """
local n = tonumber(ARGV[5])
for i = 6, 5 + n do
  local ref = ARGV[i]
  if redis.call('HGET', KEYS[6], ref) == ARGV[2] then
    redis.call('ZREM', KEYS[2], ref)
    redis.call('HDEL', KEYS[3], ref)
    redis.call('HDEL', KEYS[4], ref)
    redis.call('HDEL', KEYS[6], ref)
    redis.call('ZADD', KEYS[7], ARGV[3], ref)
  end
end
if n > 0 then  -- the memory of an OA nobody submits to any more fades by itself
  redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', tonumber(ARGV[3]) - tonumber(ARGV[4]))
  redis.call('PEXPIRE', KEYS[7], math.max(1, tonumber(ARGV[4])))
end
for i = 6 + n, #ARGV, 3 do
  local ref = ARGV[i]
  if redis.call('HGET', KEYS[6], ref) == ARGV[2] then
    redis.call('ZREM', KEYS[2], ref)
    redis.call('HDEL', KEYS[6], ref)
    redis.call('ZADD', KEYS[1], ARGV[i + 1], ref)
    if ARGV[i + 2] ~= '' then redis.call('HSET', KEYS[4], ref, ARGV[i + 2]) end
  end
end
if redis.call('ZCARD', KEYS[1]) + redis.call('ZCARD', KEYS[2]) == 0 then
  redis.call('SREM', KEYS[5], ARGV[1])
end
return 1
"""

# KEYS[1] due, KEYS[2] leased, KEYS[3] owner. ARGV[1] token, ARGV[2] due (ms), ARGV[3..] RefIds.
# Hands RefIds `token` still holds back to wait, unchanged (e.g. after a failed request).
UNLEASE_LUA = """
for i = 3, #ARGV do
  if redis.call('HGET', KEYS[3], ARGV[i]) == ARGV[1] then
    redis.call('ZREM', KEYS[2], ARGV[i])
    redis.call('HDEL', KEYS[3], ARGV[i])
    redis.call('ZADD', KEYS[1], ARGV[2], ARGV[i])
  end
end
return 1
"""

PARK_CHUNK = 1000  # RefIds per script call, so one huge submission never blocks Redis long


@dataclass(frozen=True)
class Leased:
    ref_id: str
    submitted_s: float
    state_key: str


@dataclass(frozen=True)
class Requeue:
    ref_id: str
    due_s: float
    state_key: str


@dataclass(frozen=True)
class OaBacklog:
    oa_id: str
    waiting: int
    due_now: int
    leased: int
    oldest_due_s: float | None


@dataclass(frozen=True)
class Parked:
    added: int  # new RefIds now waiting
    already_waiting: int  # waiting or in a request already: left as they were
    already_finished: int  # had their terminal event within the done memory: not asked again


class Backlog:
    def __init__(self, client: redis.Redis, keys: AccountKeys, done_ttl_s: float) -> None:
        self._redis = client
        self._keys = keys
        self._done_ttl_s = done_ttl_s
        self._park = client.register_script(PARK_LUA)
        self._lease = client.register_script(LEASE_LUA)
        self._renew = client.register_script(RENEW_LUA)
        self._settle = client.register_script(SETTLE_LUA)
        self._unlease = client.register_script(UNLEASE_LUA)

    def park(self, oa_id: str, ref_ids: Sequence[str], now_s: float) -> Parked:
        """Add RefIds to wait, due now."""
        k = self._keys
        added = finished = 0
        forget_before_ms = _ms(now_s - self._done_ttl_s)
        for start in range(0, len(ref_ids), PARK_CHUNK):
            chunk = ref_ids[start : start + PARK_CHUNK]
            new, done = self._park(
                keys=[k.due(oa_id), k.submitted(oa_id), k.oas, k.done(oa_id)],
                args=[_ms(now_s), oa_id, forget_before_ms, *chunk],
            )
            added, finished = added + int(new), finished + int(done)
        return Parked(added, len(ref_ids) - added - finished, finished)

    def lease(
        self, oa_id: str, now_s: float, max_refs: int, lease_s: float, token: str
    ) -> list[Leased]:
        """Take up to `max_refs` due RefIds of an OA for one request, held by `token`."""
        k = self._keys
        flat = self._lease(
            keys=[
                k.due(oa_id),
                k.leased(oa_id),
                k.submitted(oa_id),
                k.state(oa_id),
                k.owner(oa_id),
            ],
            args=[_ms(now_s), _ms(now_s + lease_s), max_refs, token],
        )
        items = [_text(x) for x in flat]
        return [
            Leased(items[i], int(items[i + 1]) / 1000, items[i + 2])
            for i in range(0, len(items), 3)
        ]

    def renew(self, oa_id: str, token: str, ref_ids: Iterable[str], until_s: float) -> set[str]:
        """Extend the leases `token` still holds; return their RefIds."""
        refs = list(ref_ids)
        if not refs:
            return set()
        held = self._renew(
            keys=[self._keys.leased(oa_id), self._keys.owner(oa_id)],
            args=[token, _ms(until_s), *refs],
        )
        return {_text(x) for x in held}

    def settle(
        self,
        oa_id: str,
        token: str,
        now_s: float,
        finished: Sequence[str],
        requeue: Sequence[Requeue],
    ) -> None:
        """Forget finished RefIds; put the others back to wait until their due time."""
        k = self._keys
        args: list[str | int] = [
            oa_id,
            token,
            _ms(now_s),
            _ms(self._done_ttl_s),
            len(finished),
            *finished,
        ]
        for item in requeue:
            args += [item.ref_id, _ms(item.due_s), item.state_key]
        self._settle(
            keys=[
                k.due(oa_id),
                k.leased(oa_id),
                k.submitted(oa_id),
                k.state(oa_id),
                k.oas,
                k.owner(oa_id),
                k.done(oa_id),
            ],
            args=args,
        )

    def unlease(self, oa_id: str, token: str, ref_ids: Iterable[str], due_s: float) -> None:
        """Hand RefIds `token` still holds back to wait, due at `due_s`."""
        refs = list(ref_ids)
        if refs:
            k = self._keys
            self._unlease(
                keys=[k.due(oa_id), k.leased(oa_id), k.owner(oa_id)],
                args=[token, _ms(due_s), *refs],
            )

    def oa_ids(self) -> list[str]:
        return sorted(_text(x) for x in self._redis.smembers(self._keys.oas))

    def next_due_oa(self, now_s: float) -> str | None:
        """Return the OA whose RefId has been due longest (leases expired count as due)."""
        best: tuple[float, str] | None = None
        for oa in self.per_oa(now_s):
            if oa.due_now and (best is None or (oa.oldest_due_s or 0) < best[0]):
                best = (oa.oldest_due_s or 0, oa.oa_id)
        return None if best is None else best[1]

    def per_oa(self, now_s: float) -> list[OaBacklog]:
        oa_ids = self.oa_ids()
        pipe = self._redis.pipeline(transaction=False)
        now_ms = _ms(now_s)
        for oa in oa_ids:
            pipe.zcard(self._keys.due(oa))
            pipe.zcount(self._keys.due(oa), "-inf", now_ms)
            pipe.zcard(self._keys.leased(oa))
            pipe.zcount(self._keys.leased(oa), "-inf", now_ms)
            pipe.zrange(self._keys.due(oa), 0, 0, withscores=True)
        results = pipe.execute()
        out = []
        for i, oa in enumerate(oa_ids):
            waiting, due_now, leased, lease_expired, oldest = results[i * 5 : i * 5 + 5]
            out.append(
                OaBacklog(
                    oa,
                    int(waiting) + int(lease_expired),
                    int(due_now) + int(lease_expired),
                    int(leased) - int(lease_expired),
                    oldest[0][1] / 1000 if oldest else None,
                )
            )
        return out


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
