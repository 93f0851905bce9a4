"""The waiting RefIds of an account, per OA, durable in Redis.

Life of a RefId: park -> due (waiting, in a chunk scored by when to ask) -> lease (in a
request: its chunk leased until an expiry, owned by one request's token) -> settle:
remembered as done when terminal, or back to due for a later ask. A lease that expires (its
worker died or stalled) puts the RefIds back to due, and its old holder can no longer settle
them: only the current holder publishes and settles, so a RefId gets one terminal event.
Every multi-key change is one Lua script on keys of one hash tag (engine/lua/backlog_*.lua,
whose prelude draws the keys). The OAs with work wait in one queue per account, scored by
when their earliest RefId is due, which every script that moves a chunk keeps exact: the
next OA to ask for costs one look however many OAs there are. A recorded push takes its
RefIds through the same leases (`claim`) and settles them here: the backlog is the one
writer of leases.

RefIds are kept in small hashes (chunks of at most a request's worth, and buckets by the
RefId's hash) that Redis stores compactly: bench/memory_bench.py measures the bytes a RefId
costs parked, pending and remembered as done.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from esms_callbacks.engine.keys import AccountKeys
from esms_callbacks.engine.notes import NO_OA
from esms_callbacks.engine.redis_connect import node_for, refreshing_cluster
from esms_callbacks.engine.redis_values import as_text, to_ms
from esms_callbacks.engine.scripts import register_file
from esms_callbacks.tuning import PARK_CHUNK, SWEEP_BUCKETS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Leased:
    ref_id: str
    submitted_s: float
    state_key: str
    strikes: int = 0  # failed requests that carried it since eSMS last answered for it


@dataclass(frozen=True)
class Strikes:
    """What a RefId's failed requests say against it (Backlog.strike), since eSMS last
    answered for it."""

    count: int  # failed requests that carried it
    alone: int  # of them, those that carried it alone while eSMS answered others
    alone_since_s: float | None  # when the first of those failed


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
    both described in engine.stats; `answered`: eSMS answered it, so the account is healthy
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


@dataclass(frozen=True)
class Whereabouts:
    """Where one RefId is (Backlog.where): `where` is 'waiting', 'leased' or 'done'."""

    where: str
    submitted_s: float | None
    due_s: float | None  # waiting: when it is asked again
    lease_until_s: float | None  # leased: until when the request holds it
    done_s: float | None
    state_key: str  # the last state recorded, '' if none
    asks: int
    strikes: int
    summary: str  # the last event published (events.publish.event_summary), '' if none


WAITING, LEASED, DONE = "waiting", "leased", "done"


@dataclass(frozen=True)
class WaitingRecord:
    ref_id: str
    submitted_s: float
    asks: int
    state_key: str  # the last state recorded, '' if none


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


class Backlog:
    def __init__(
        self,
        client: redis.Redis,
        keys: AccountKeys,
        done_ttl_s: float,
        chunk_refs: int = 100,
    ) -> None:
        self._redis = client
        self._keys = keys
        self._done_ttl_s = done_ttl_s
        self._chunk_refs = chunk_refs  # RefIds that park together: one request's worth

        def script(name: str, writes: bool = True) -> Any:
            return register_file(client, "backlog_prelude", f"backlog_{name}", writes=writes)

        self._park = script("park")
        self._lease = script("lease")
        self._renew = script("renew")
        self._settle = script("settle")
        self._unlease = script("unlease")
        self._decide = script("decide")
        self._strike = script("strike")
        self._claim = script("claim")
        self._sweep = script("sweep")
        self._counts = script("counts", writes=False)
        self._where = script("where", writes=False)
        self._next = script("next", writes=False)
        self._migrate = script("migrate")

    @property
    def _route(self) -> list[str]:
        """What the scripts that derive the per-OA keys from a prefix are given as KEYS, so
        a Cluster client sends them to the account's shard (every key of an account shares
        its slot) and follows a failover; they read no KEYS of their own."""
        return [self._keys.oas]

    def _shard(self) -> redis.Redis:
        """Where pipelines of those scripts run: the account's node of a Cluster (its
        client cannot pipeline scripts), else the one server."""
        return node_for(self._redis, self._keys.oas)

    @property
    def client(self) -> redis.Redis:
        return self._redis

    @property
    def keys(self) -> AccountKeys:
        return self._keys

    @property
    def done_ttl_s(self) -> float:
        return self._done_ttl_s

    def park(self, oa_id: str, ref_ids: Sequence[str], now_s: float) -> Parked:
        """Add RefIds to wait, due now; one adopted from eSMS's ledger already (OA `-`, while
        ESMS_RECONCILE is or was `adopt`) is left where it is."""
        k = self._keys
        added = finished = 0
        forget_before_ms = to_ms(now_s - self._done_ttl_s)
        for start in range(0, len(ref_ids), PARK_CHUNK):
            chunk = ref_ids[start : start + PARK_CHUNK]
            new, done = self._park(
                keys=[k.oas, k.known_oas, k.oa_queue, k.backlog_meta],
                args=[
                    k.oa(oa_id),
                    to_ms(now_s),
                    oa_id,
                    forget_before_ms,
                    self._chunk_refs,
                    k.oa(NO_OA),
                    *chunk,
                ],
            )
            added, finished = added + int(new), finished + int(done)
        return Parked(added, len(ref_ids) - added - finished, finished)

    def lease_next(
        self, now_s: float, max_refs: int, lease_s: float, token: str
    ) -> tuple[str, list[Leased]] | None:
        """Take up to `max_refs` RefIds of the OA due longest, for one request held by `token`;
        return (OA id, RefIds), or None when nothing is due."""
        k = self._keys
        flat = self._lease(
            keys=[k.oas, k.oa_queue, k.backlog_meta],
            args=[k.oa_prefix, to_ms(now_s), to_ms(now_s + lease_s), max_refs, token],
        )
        if not flat:
            return None
        oa_id, *items = [as_text(x) for x in flat]
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
        args: list[str | int] = [self._keys.oa(oa_id), oa_id, token, to_ms(until_s), len(refs)]
        args += refs
        for ref_id, state_key in (decided or {}).items():
            args += [ref_id, state_key]
        lost = self._renew(keys=[self._keys.oa_queue], args=args)
        return set(refs) - {as_text(x) for x in lost}

    def decide(self, oa_id: str, token: str, decided: dict[str, str]) -> None:
        """Record terminal states (RefId -> state key) before their events go out, for the
        RefIds `token` still holds (see backlog_decide.lua)."""
        if decided:
            args: list[str] = [self._keys.oa(oa_id), token]
            for ref_id, state_key in decided.items():
                args += [ref_id, state_key]
            self._decide(keys=self._route, args=args)

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
        for finished RefIds (their memory keeps the last); `asked`: eSMS was just asked for
        all of them (counted in their asks)."""
        k = self._keys
        tally = tally or Tally()
        summaries = summaries or {}
        args: list[str | int] = [
            k.oa(oa_id),
            oa_id,
            token,
            to_ms(now_s),
            len(finished),
            len(requeue),
            len(tally.counters),
            len(tally.gauges),
            "1" if asked else "",
        ]
        for ref_id in finished:
            args += [ref_id, summaries.get(ref_id, "")]
        for item in requeue:
            args += [item.ref_id, to_ms(item.due_s), item.state_key, item.summary]
        for name, increment in tally.counters.items():
            args += [name, increment]
        for name, value in tally.gauges.items():
            args += [name, value]
        args += [tally.recent_member, tally.recent_keep_s] if tally.recent_member else ["", ""]
        args.append("1" if tally.answered else "")
        self._settle(
            keys=[k.oas, k.stats, k.recent, k.health, k.oa_queue, k.backlog_meta], args=args
        )

    def claim(
        self,
        oa_id: str,
        ref_ids: Sequence[str],
        now_s: float,
        lease_s: float,
        token: str,
        take_unsubmitted: bool,
        unless_elsewhere: bool = False,
    ) -> list[Claimed]:
        """Lease pushed RefIds to `token` with the leases requests use, unless they are done
        or held by a request (backlog_claim.lua): a push and a poll of one RefId then give
        one terminal event whichever comes first. `unless_elsewhere`: a RefId to take that
        is known under another OA is left there (eSMS's ledger names no OA)."""
        k = self._keys
        flat = self._claim(
            keys=[k.oas, k.known_oas, k.oa_queue, k.backlog_meta],
            args=[
                k.oa(oa_id),
                to_ms(now_s),
                to_ms(now_s + lease_s),
                token,
                oa_id,
                "1" if take_unsubmitted else "",
                to_ms(now_s - self._done_ttl_s),
                k.oa_prefix if unless_elsewhere else "",
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

    def strike(
        self, oa_id: str, token: str, ref_ids: Sequence[str], now_s: float, lone: bool = False
    ) -> dict[str, Strikes]:
        """Count a failed request against the RefIds `token` still holds; `lone`: it carried
        one RefId alone while eSMS answered the account's others, so it also counts as
        evidence against that one. Return each held RefId's strikes and evidence so far (all
        forgotten once eSMS answers for it)."""
        if not ref_ids:
            return {}
        flat = self._strike(
            keys=self._route,
            args=[self._keys.oa(oa_id), token, to_ms(now_s), "1" if lone else "", *ref_ids],
        )
        out = {}
        for i, ref in enumerate(ref_ids):
            count, alone, since_ms = (
                int(flat[3 * i]),
                int(flat[3 * i + 1]),
                as_text(flat[3 * i + 2]),
            )
            if count:
                out[ref] = Strikes(count, alone, int(float(since_ms)) / 1000 if since_ms else None)
        return out

    def unlease(self, oa_id: str, token: str, ref_ids: Iterable[str], due_s: float) -> None:
        """Hand RefIds `token` still holds back to wait, due at `due_s`."""
        refs = list(ref_ids)
        if refs:
            self._unlease(
                keys=[self._keys.oa_queue],
                args=[self._keys.oa(oa_id), oa_id, token, to_ms(due_s), *refs],
            )

    def where(self, oa_id: str, ref_id: str) -> Whereabouts | None:
        """Where `ref_id` is under `oa_id`, or None if it is not known there."""
        answer = [
            as_text(x) for x in self._where(keys=self._route, args=[self._keys.oa(oa_id), ref_id])
        ]
        if not answer:
            return None
        if answer[0] == "d":
            _, done_s, asks, *summary = answer[1].split("|")
            return Whereabouts(
                DONE, None, None, None, float(done_s), summary[0], _int(asks), 0, "|".join(summary)
            )
        record, due_ms, lease_ms = answer[1], answer[2], answer[3]
        if "|" not in record:  # never asked: its submission time alone
            record += "|0|0|||||"
        submitted_ms, asks, strikes, state, *rest = record.split("|")
        summary = rest[:4]  # the evidence of backlog_strike.lua may follow
        leased = bool(lease_ms)
        return Whereabouts(
            LEASED if leased else WAITING,
            int(submitted_ms) / 1000,
            None if leased or not due_ms else float(due_ms) / 1000,
            float(lease_ms) / 1000 if leased else None,
            None,
            state,
            _int(asks),
            _int(strikes),
            "|".join(summary) if any(summary) else "",
        )

    def sweep(self, now_s: float) -> int:
        """Forget done RefIds older than the done memory, in every OA known, a bounded
        number of buckets each (beat's release calls it every few seconds), and each OA
        with nothing left waiting, leased or remembered; return how many RefIds were
        forgotten. Each OA's place in the queue is set again on the way."""
        k = self._keys
        oas = sorted(as_text(x) for x in self._redis.smembers(k.known_oas))
        if not oas:
            return 0
        cutoff_ms = to_ms(now_s - self._done_ttl_s)
        with refreshing_cluster(self._redis):
            pipe = self._shard().pipeline(transaction=False)
            for oa in oas:
                args = [k.oa(oa), oa, cutoff_ms, SWEEP_BUCKETS]
                self._sweep(keys=[k.oa_queue, k.known_oas, k.oas], args=args, client=pipe)
            swept = pipe.execute()
        gone = [oa for oa, (_, _, forgot) in zip(oas, swept, strict=True) if int(forgot)]
        if gone:
            log.info("forgot %d OAs with nothing waiting or remembered", len(gone))
        return sum(int(forgotten) for forgotten, _, _ in swept)

    def oa_ids(self) -> list[str]:
        return sorted(as_text(x) for x in self._redis.smembers(self._keys.oas))

    def locate(self, ref_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """Under which OA each of `ref_ids` is known, and whether it is `waiting` (or in a
        request) or `done`, for those known: each RefId looked up in every OA known (eSMS's
        ledger names no OA), in one round trip."""
        oas = self.known_oa_ids()
        if not ref_ids or not oas:
            return {}
        with refreshing_cluster(self._redis):
            pipe = self._shard().pipeline(transaction=False)
            for ref_id in ref_ids:
                for oa in oas:
                    pipe.hget(f"{self._keys.oa(oa)}b:{bucket_of(ref_id)}", ref_id)
            found = pipe.execute()
        out: dict[str, tuple[str, str]] = {}
        for i, ref_id in enumerate(ref_ids):
            for j, oa in enumerate(oas):
                at = found[i * len(oas) + j]
                if at is not None:
                    out[ref_id] = (oa, DONE if as_text(at).startswith("d|") else WAITING)
                    break
        return out

    def waiting_records(self, oa_id: str) -> list[WaitingRecord]:
        """Every RefId of the OA waiting or in a request, with its record (for reports: one
        round trip per OA, a look at every chunk)."""
        k = self._keys
        chunk_ids = self._redis.zrange(k.due(oa_id), 0, -1) + self._redis.zrange(
            k.leased(oa_id), 0, -1
        )
        if not chunk_ids:
            return []
        with refreshing_cluster(self._redis):
            pipe = self._shard().pipeline(transaction=False)
            for chunk_id in chunk_ids:
                pipe.hgetall(f"{k.oa(oa_id)}c:{as_text(chunk_id)}")
            chunks = pipe.execute()
        out = []
        for chunk in chunks:
            for ref, raw in chunk.items():
                record = as_text(raw)
                if "|" not in record:  # never asked: its submission time alone
                    record += "|0|0|||||"
                submitted_ms, asks, _, state, *_ = record.split("|")
                out.append(WaitingRecord(as_text(ref), int(submitted_ms) / 1000, _int(asks), state))
        return out

    def known_oa_ids(self) -> list[str]:
        """OAs with RefIds waiting now or remembered as done (the sweep forgets the others)."""
        return sorted(as_text(x) for x in self._redis.smembers(self._keys.known_oas))

    def next_due_oa(self, now_s: float) -> str | None:
        """Return the OA whose RefId has been due longest (leases expired count as due): the
        one the next lease takes, or None when nothing is due."""
        oa_id, _ = self._peek(now_s)
        return oa_id

    def waiting_total(self) -> int:
        """RefIds waiting or leased over every OA of the account (what `per_oa` sums to as
        waiting + leased), from one counter the scripts keep: the capacity check's figure."""
        _, refs = self._peek(0.0)
        return refs

    def migrate(self) -> bool:
        """Build the queue of OAs and the count of RefIds of a backlog parked by a version
        without them, from its OAs with work; a no-op once built (the first lease or look at
        the queue does it too). Return whether it built them."""
        k = self._keys
        return bool(self._migrate(keys=[k.oas, k.oa_queue, k.backlog_meta], args=[k.oa_prefix]))

    def _peek(self, now_s: float) -> tuple[str | None, int]:
        """(the OA due longest at `now_s` or None, RefIds waiting or leased), building the
        queue first if this backlog predates it."""
        k = self._keys
        for _ in range(2):
            built, oa_id, refs = self._next(keys=[k.oa_queue, k.backlog_meta], args=[to_ms(now_s)])
            if int(built):
                break
            self.migrate()
        return as_text(oa_id) or None, int(refs)

    def per_oa(self, now_s: float) -> list[OaBacklog]:
        """Each OA's RefIds (for `status`): one script per OA with work, so the submission
        path uses `waiting_total` and the release `next_due_oa` instead."""
        oa_ids = self.oa_ids()
        with refreshing_cluster(self._redis):
            pipe = self._shard().pipeline(transaction=False)
            for oa in oa_ids:
                self._counts(keys=self._route, args=[self._keys.oa(oa), to_ms(now_s)], client=pipe)
            counted = pipe.execute()
        out = []
        for oa, (waiting, due_now, leased, expired, oldest) in zip(oa_ids, counted, strict=True):
            out.append(
                OaBacklog(
                    oa,
                    int(waiting) + int(expired),
                    int(due_now) + int(expired),
                    int(leased),
                    float(oldest) / 1000 if oldest else None,
                )
            )
        return out


BUCKETS = 32768  # as esms_callbacks/engine/lua/backlog_prelude.lua has it


def bucket_of(ref_id: str) -> str:
    """The bucket a RefId's whereabouts live in (as the scripts' prelude computes it)."""
    return f"{int(hashlib.sha1(ref_id.encode()).hexdigest()[:4], 16) % BUCKETS:04x}"


def _int(text: str) -> int:
    return int(text) if text.lstrip("-").isdigit() else 0
