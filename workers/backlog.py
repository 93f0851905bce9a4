"""The waiting RefIds of an account, per OA, durable in Redis.

Life of a RefId: park -> due (waiting, scored by when to ask) -> lease (in a request, scored
by lease expiry, owned by one request's token) -> settle: remembered as done when terminal, or
back to due for a later ask. A lease that expires (its worker died or stalled) puts the RefId
back to due, and its old holder can no longer settle it: only the current holder publishes
and settles, so a RefId gets one terminal event. Every multi-key change is one Lua script on
keys of one hash tag. A recorded push takes its RefIds through the same leases
(workers.push_claim) and settles them here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import redis

from esms_callbacks.workers.keys import AccountKeys
from esms_callbacks.workers.scripts import register

# Forgets finished RefIds older than `cutoff` (ms) from `done` and their history, a bounded
# number per call so that no call holds Redis long; what is left goes at the next call.
FORGET_DONE_LUA = """
local function forget_done(done, history, cutoff)
  local old = redis.call('ZRANGEBYSCORE', done, '-inf', cutoff, 'LIMIT', 0, 1000)
  for _, ref in ipairs(old) do
    redis.call('ZREM', done, ref)
    redis.call('HDEL', history, ref)
  end
end
"""

# KEYS[1] due, KEYS[2] submitted, KEYS[3] oas, KEYS[4] done, KEYS[5] history.
# ARGV[1] now (ms), ARGV[2] OA id, ARGV[3] forget finished RefIds older than this (ms),
# ARGV[4..] RefIds. A RefId already waiting or leased is left as it is; one that finished
# recently is not asked again (it already had its one terminal event).
# Returns {added, already finished}.
PARK_LUA = (
    FORGET_DONE_LUA
    + """
forget_done(KEYS[4], KEYS[5], ARGV[3])
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
)

# KEYS[1] oas. ARGV[1] per-OA key prefix (AccountKeys.oa_prefix), ARGV[2] now (ms), ARGV[3]
# lease expiry (ms), ARGV[4] most RefIds to lease, ARGV[5] token.
# Picks the OA whose RefId has been due longest (an expired lease counts as due since it
# expired), puts that OA's expired leases back to due (their holder lost them), then leases its
# RefIds due longest ago to `token`. Per-OA keys are built here from the prefix, for the OAs
# listed in `oas`; all share the account's hash tag. A RefId that failed two requests or more
# (its `strikes`) rides in a batch of at most ARGV[4] / 2^(strikes - 1): a RefId eSMS chokes
# on is split away from its neighbours within a few requests. Returns {} when nothing is due,
# else a flat list: OA id, then RefId, submitted (ms), last state key ('' if none), strikes
# per RefId.
LEASE_LUA = """
local prefix, now = ARGV[1], tonumber(ARGV[2])
local best, best_since = nil, nil
for _, oa in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local since = nil
  local head = redis.call('ZRANGE', prefix .. oa .. ':due', 0, 0, 'WITHSCORES')
  if head[2] and tonumber(head[2]) <= now then since = tonumber(head[2]) end
  local lost = redis.call('ZRANGEBYSCORE', prefix .. oa .. ':leased', '-inf', now,
    'WITHSCORES', 'LIMIT', 0, 1)
  if lost[2] and (since == nil or tonumber(lost[2]) < since) then since = tonumber(lost[2]) end
  if since and (best == nil or since < best_since or (since == best_since and oa < best)) then
    best, best_since = oa, since
  end
end
if best == nil then return {} end
local due, leased = prefix .. best .. ':due', prefix .. best .. ':leased'
local submitted, state, owner = prefix .. best .. ':submitted', prefix .. best .. ':state',
  prefix .. best .. ':owner'
for _, ref in ipairs(redis.call('ZRANGEBYSCORE', leased, '-inf', now)) do
  redis.call('ZREM', leased, ref)
  redis.call('HDEL', owner, ref)
  redis.call('ZADD', due, now, ref)
end
local most = tonumber(ARGV[4])
local refs = redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, most)
local strikes = prefix .. best .. ':strikes'
local any_struck = redis.call('EXISTS', strikes) == 1
local out, taken = {best}, 0
for _, ref in ipairs(refs) do
  local struck = any_struck and tonumber(redis.call('HGET', strikes, ref) or '0') or 0
  if struck > 1 then  -- failed twice: halve the batch it may ride in, for each later failure
    most = math.min(most, math.max(1, math.floor(tonumber(ARGV[4]) / 2 ^ (struck - 1))))
  end
  if taken >= most then break end
  taken = taken + 1
  redis.call('ZREM', due, ref)
  redis.call('ZADD', leased, ARGV[3], ref)
  redis.call('HSET', owner, ref, ARGV[5])
  out[#out + 1] = ref
  out[#out + 1] = redis.call('HGET', submitted, ref) or '0'
  out[#out + 1] = redis.call('HGET', state, ref) or ''
  out[#out + 1] = struck
end
return out
"""

# KEYS[1] owner, KEYS[2] strikes. ARGV[1] token, ARGV[2..] RefIds.
# Counts a failed request against each RefId `token` still holds (see Backlog.strike);
# returns the new counts, 0 for a RefId no longer held.
STRIKE_LUA = """
local out = {}
for i = 2, #ARGV do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[1] then
    out[#out + 1] = redis.call('HINCRBY', KEYS[2], ARGV[i], 1)
  else
    out[#out + 1] = 0
  end
end
return out
"""

# KEYS[1] leased, KEYS[2] owner, KEYS[3] state. ARGV[1] token, ARGV[2] new lease expiry (ms),
# ARGV[3] n RefIds, then n RefIds, then pairs RefId, terminal state key.
# Extends the leases `token` still holds and records the terminal states about to be
# published for them (as DECIDE_LUA does), in one round trip; returns the RefIds it lost
# (taken back by another holder), usually none, so the answer stays small.
RENEW_LUA = """
local lost = {}
local n = tonumber(ARGV[3])
for i = 4, 3 + n do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[1] then
    redis.call('ZADD', KEYS[1], ARGV[2], ARGV[i])
  else
    lost[#lost + 1] = ARGV[i]
  end
end
for i = 4 + n, #ARGV, 2 do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[1] then
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  end
end
return lost
"""

# KEYS[1] state, KEYS[2] owner. ARGV[1] token, then pairs RefId, state key.
# Records the terminal states of the RefIds `token` still holds, before their events are
# published: if the settle never comes (a crash), whoever holds the RefId next (a request or a
# push) finds the decision and publishes the same event again, never another one.
DECIDE_LUA = """
for i = 2, #ARGV, 2 do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[1] then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return 1
"""

# KEYS[1] due, KEYS[2] leased, KEYS[3] submitted, KEYS[4] state, KEYS[5] oas, KEYS[6] owner,
# KEYS[7] done, KEYS[8] stats, KEYS[9] recent, KEYS[10] the breaker's health hash, KEYS[11]
# history. ARGV[1] OA id, ARGV[2] token, ARGV[3] now (ms), ARGV[4] done memory (ms), ARGV[5]
# n finished, ARGV[6] n to ask again, ARGV[7] n counters, ARGV[8] n gauges, ARGV[9] '1' if
# these RefIds were just asked (counted in their history), then: pairs RefId, event summary
# for finished RefIds (forgotten, remembered as done); quadruples RefId, due (ms), state key,
# event summary for RefIds to ask again (a summary is '' when no event was published); pairs
# field, increment for the stats hash; pairs field, value set in it; a member for `recent`
# (scored now, s) and how long `recent` keeps members (s), or two empty strings; and '1' if
# eSMS answered, which closes the breaker (workers.health), else ''. KEYS[12] strikes: a
# finished RefId, or one eSMS just answered for, has its failed requests forgotten.
# Only RefIds `token` still holds are touched; the counters ride along so that a request
# costs one round trip to settle. History: `asks|last event summary` per RefId, for `show`.
SETTLE_LUA = (
    FORGET_DONE_LUA
    + """
local function remember(ref, summary)
  local asks, last = 0, ''
  local old = redis.call('HGET', KEYS[11], ref)
  if old then
    local a, l = string.match(old, '^(%d+)|(.*)$')
    asks, last = tonumber(a) or 0, l or ''
  end
  if ARGV[9] == '1' then asks = asks + 1 end
  if summary ~= '' then last = summary end
  redis.call('HSET', KEYS[11], ref, asks .. '|' .. last)
end
local n_finished, n_requeue = tonumber(ARGV[5]), tonumber(ARGV[6])
local n_counters, n_gauges = tonumber(ARGV[7]), tonumber(ARGV[8])
local i = 10
for _ = 1, n_finished do
  local ref = ARGV[i]
  if redis.call('HGET', KEYS[6], ref) == ARGV[2] then
    redis.call('ZREM', KEYS[2], ref)
    redis.call('HDEL', KEYS[3], ref)
    redis.call('HDEL', KEYS[4], ref)
    redis.call('HDEL', KEYS[6], ref)
    redis.call('ZADD', KEYS[7], ARGV[3], ref)
    redis.call('HDEL', KEYS[12], ref)
    remember(ref, ARGV[i + 1])
  end
  i = i + 2
end
if n_finished > 0 then  -- the memory of an OA nobody submits to any more fades by itself
  forget_done(KEYS[7], KEYS[11], tonumber(ARGV[3]) - tonumber(ARGV[4]))
  redis.call('PEXPIRE', KEYS[7], math.max(1, tonumber(ARGV[4])))
  redis.call('PEXPIRE', KEYS[11], math.max(1, tonumber(ARGV[4])))
end
for _ = 1, n_requeue do
  local ref = ARGV[i]
  if redis.call('HGET', KEYS[6], ref) == ARGV[2] then
    redis.call('ZREM', KEYS[2], ref)
    redis.call('HDEL', KEYS[6], ref)
    redis.call('ZADD', KEYS[1], ARGV[i + 1], ref)
    if ARGV[i + 2] ~= '' then redis.call('HSET', KEYS[4], ref, ARGV[i + 2]) end
    if ARGV[9] == '1' then redis.call('HDEL', KEYS[12], ref) end
    remember(ref, ARGV[i + 3])
  end
  i = i + 4
end
if redis.call('ZCARD', KEYS[1]) + redis.call('ZCARD', KEYS[2]) == 0 then
  redis.call('SREM', KEYS[5], ARGV[1])
end
for _ = 1, n_counters do
  redis.call('HINCRBY', KEYS[8], ARGV[i], ARGV[i + 1])
  i = i + 2
end
for _ = 1, n_gauges do
  redis.call('HSET', KEYS[8], ARGV[i], ARGV[i + 1])
  i = i + 2
end
if ARGV[i] ~= '' then
  local now_s = tonumber(ARGV[3]) / 1000
  redis.call('ZADD', KEYS[9], now_s, ARGV[i])
  redis.call('ZREMRANGEBYSCORE', KEYS[9], '-inf', now_s - tonumber(ARGV[i + 1]))
end
if ARGV[i + 2] == '1' then redis.call('DEL', KEYS[10]) end
return 1
"""
)

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
    strikes: int = 0  # failed requests that carried it since eSMS last answered for it


@dataclass(frozen=True)
class Requeue:
    ref_id: str
    due_s: float
    state_key: str
    summary: str = ""  # the event published for it now (history), '' if none


@dataclass
class Tally:
    """What a request adds to the account's stats hash (`counters` incremented, `gauges`
    set) and its entry in the recent-requests log (`recent_member`, kept `recent_keep_s`),
    both described in workers.stats; `answered`: eSMS answered it, so the account is healthy
    (the breaker closes)."""

    counters: dict[str, int] = field(default_factory=dict)
    gauges: dict[str, str] = field(default_factory=dict)
    recent_member: str = ""
    recent_keep_s: int = 300
    answered: bool = False


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
        self._park = register(client, PARK_LUA)
        self._lease = register(client, LEASE_LUA)
        self._renew = register(client, RENEW_LUA)
        self._settle = register(client, SETTLE_LUA)
        self._unlease = register(client, UNLEASE_LUA)
        self._decide = register(client, DECIDE_LUA)
        self._strike = register(client, STRIKE_LUA)

    @property
    def client(self) -> redis.Redis:
        return self._redis

    @property
    def keys(self) -> AccountKeys:
        return self._keys

    def park(self, oa_id: str, ref_ids: Sequence[str], now_s: float) -> Parked:
        """Add RefIds to wait, due now."""
        k = self._keys
        added = finished = 0
        forget_before_ms = _ms(now_s - self._done_ttl_s)
        for start in range(0, len(ref_ids), PARK_CHUNK):
            chunk = ref_ids[start : start + PARK_CHUNK]
            new, done = self._park(
                keys=[k.due(oa_id), k.submitted(oa_id), k.oas, k.done(oa_id), k.history(oa_id)],
                args=[_ms(now_s), oa_id, forget_before_ms, *chunk],
            )
            added, finished = added + int(new), finished + int(done)
        return Parked(added, len(ref_ids) - added - finished, finished)

    def lease_next(
        self, now_s: float, max_refs: int, lease_s: float, token: str
    ) -> tuple[str, list[Leased]] | None:
        """Take up to `max_refs` RefIds of the OA due longest, for one request held by `token`;
        return (OA id, RefIds), or None when nothing is due."""
        flat = self._lease(
            keys=[self._keys.oas],
            args=[self._keys.oa_prefix, _ms(now_s), _ms(now_s + lease_s), max_refs, token],
        )
        if not flat:
            return None
        oa_id, *items = [_text(x) for x in flat]
        leased = [
            Leased(items[i], int(items[i + 1]) / 1000, items[i + 2], int(items[i + 3]))
            for i in range(0, len(items), 4)
        ]
        return oa_id, leased

    def renew(
        self,
        oa_id: str,
        token: str,
        ref_ids: Iterable[str],
        until_s: float,
        decided: dict[str, str] | None = None,
    ) -> set[str]:
        """Extend the leases `token` still holds, and record the terminal states (`decided`,
        RefId -> state key) about to be published for them; return the RefIds still held."""
        refs = list(ref_ids)
        if not refs:
            return set()
        k = self._keys
        args: list[str | int] = [token, _ms(until_s), len(refs), *refs]
        for ref_id, state_key in (decided or {}).items():
            args += [ref_id, state_key]
        lost = self._renew(keys=[k.leased(oa_id), k.owner(oa_id), k.state(oa_id)], args=args)
        return set(refs) - {_text(x) for x in lost}

    def decide(self, oa_id: str, token: str, decided: dict[str, str]) -> None:
        """Record terminal states (RefId -> state key) before their events go out, for the
        RefIds `token` still holds (see DECIDE_LUA)."""
        if decided:
            args: list[str] = [token]
            for ref_id, state_key in decided.items():
                args += [ref_id, state_key]
            self._decide(keys=[self._keys.state(oa_id), self._keys.owner(oa_id)], args=args)

    def settle(
        self,
        oa_id: str,
        token: str,
        now_s: float,
        finished: Sequence[str],
        requeue: Sequence[Requeue],
        tally: Tally | None = None,
        summaries: Mapping[str, str] | None = None,
        asked: bool = False,
    ) -> None:
        """Forget finished RefIds; put the others back to wait until their due time; count
        the request's `tally` in the same round trip. `summaries`: the events just published
        for finished RefIds (their history keeps the last); `asked`: eSMS was just asked for
        all of them (counted in their history)."""
        k = self._keys
        tally = tally or Tally()
        summaries = summaries or {}
        args: list[str | int] = [
            oa_id,
            token,
            _ms(now_s),
            _ms(self._done_ttl_s),
            len(finished),
            len(requeue),
            len(tally.counters),
            len(tally.gauges),
            "1" if asked else "",
        ]
        for ref_id in finished:
            args += [ref_id, summaries.get(ref_id, "")]
        for item in requeue:
            args += [item.ref_id, _ms(item.due_s), item.state_key, item.summary]
        for name, increment in tally.counters.items():
            args += [name, increment]
        for name, value in tally.gauges.items():
            args += [name, value]
        args += [tally.recent_member, tally.recent_keep_s] if tally.recent_member else ["", ""]
        args.append("1" if tally.answered else "")
        self._settle(
            keys=[
                *life_keys(k, oa_id),
                k.stats,
                k.recent,
                k.health,
                k.history(oa_id),
                k.strikes(oa_id),
            ],
            args=args,
        )

    def strike(self, oa_id: str, token: str, ref_ids: Sequence[str]) -> dict[str, int]:
        """Count a failed request against the RefIds `token` still holds; return each one's
        failed requests so far (forgotten once eSMS answers for it)."""
        if not ref_ids:
            return {}
        k = self._keys
        counts = self._strike(keys=[k.owner(oa_id), k.strikes(oa_id)], args=[token, *ref_ids])
        return {ref: int(n) for ref, n in zip(ref_ids, counts, strict=True) if int(n)}

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


def life_keys(keys: AccountKeys, oa_id: str) -> list[str]:
    """The keys of a RefId's life in one OA, in the order the settle script (and the push
    claim's, workers.push_claim) take them: due, leased, submitted, state, oas, owner, done."""
    return [
        keys.due(oa_id),
        keys.leased(oa_id),
        keys.submitted(oa_id),
        keys.state(oa_id),
        keys.oas,
        keys.owner(oa_id),
        keys.done(oa_id),
    ]


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
