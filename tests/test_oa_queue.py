"""The account's queue of OAs (AccountKeys.oa_queue) and its count of RefIds, against real
Redis: exact after every script, the lease taking the OA the rule before the queue took
(a loop over every OA with work), and a backlog parked before the queue migrated to it.

The rule before: an OA's chunk due longest, an expired lease counting as due since it
expired; equal times, the lower OA id. `old_rule` below computes it from the per-OA zsets.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

import pytest
import redis

from esms_callbacks.engine.backlog import Backlog, Requeue
from esms_callbacks.engine.keys import AccountKeys
from tests.helpers import T0

OAS = ["oa-1", "oa-10", "oa-2", "oa-b", "oa-a"]  # ids whose byte order is not their number's


@pytest.fixture
def account(redis_client: redis.Redis) -> Iterator[tuple[Backlog, AccountKeys, redis.Redis]]:
    keys = AccountKeys(f"test-oa-queue-{uuid.uuid4().hex}")
    yield Backlog(redis_client, keys, done_ttl_s=600, chunk_refs=3), keys, redis_client
    stale = list(redis_client.scan_iter(match=f"{keys.prefix}*", count=1000))
    if stale:
        redis_client.delete(*stale)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _oas(client: redis.Redis, keys: AccountKeys) -> list[str]:
    return sorted({_text(x) for x in client.smembers(keys.known_oas) | client.smembers(keys.oas)})


Pairs = list[tuple[bytes, float]]


def _zsets(client: redis.Redis, keys: AccountKeys) -> dict[str, tuple[Pairs, Pairs]]:
    """Each OA's `due` and `leased`, (chunk id, score) pairs, in one round trip."""
    oas = _oas(client, keys)
    pipe = client.pipeline(transaction=True)
    for oa in oas:
        pipe.zrange(keys.due(oa), 0, -1, withscores=True)
        pipe.zrange(keys.leased(oa), 0, -1, withscores=True)
    flat = pipe.execute()
    return {oa: (flat[2 * i], flat[2 * i + 1]) for i, oa in enumerate(oas)}


def queue_from_zsets(client: redis.Redis, keys: AccountKeys) -> dict[str, float]:
    """What the queue must hold: each OA with a chunk due or leased, scored by the earliest
    due time or lease expiry of its chunks (ms)."""
    out = {}
    for oa, (due, leased) in _zsets(client, keys).items():
        heads = [pairs[0][1] for pairs in (due, leased) if pairs]
        if heads:
            out[oa] = min(heads)
    return out


def refs_from_chunks(client: redis.Redis, keys: AccountKeys) -> int:
    pipe = client.pipeline(transaction=False)
    for oa, (due, leased) in _zsets(client, keys).items():
        for chunk_id, _ in due + leased:
            pipe.hlen(f"{keys.oa(oa)}c:{_text(chunk_id)}")
    return sum(int(n) for n in pipe.execute())


def old_rule(client: redis.Redis, keys: AccountKeys, now_s: float) -> str | None:
    """The OA the lease script took before the queue: its loop over `oas`."""
    now_ms = round(now_s * 1000)
    with_work = {_text(x) for x in client.smembers(keys.oas)}
    best: tuple[float, str] | None = None
    for oa, (due, leased) in _zsets(client, keys).items():
        since = [pairs[0][1] for pairs in (due, leased) if pairs and pairs[0][1] <= now_ms]
        if oa in with_work and since and (best is None or (min(since), oa) < best):
            best = (min(since), oa)
    return None if best is None else best[1]


def assert_exact(client: redis.Redis, keys: AccountKeys) -> None:
    pairs = cast(Pairs, client.zrange(keys.oa_queue, 0, -1, withscores=True))
    queue = {_text(member): score for member, score in pairs}
    assert queue == queue_from_zsets(client, keys)
    assert int(client.hget(keys.backlog_meta, "refs") or 0) == refs_from_chunks(client, keys)


# the scripts a sequence runs, leases more often (each compared with the rule before)
OPS = ["park", "park", "lease", "lease", "lease", "renew", "settle", "settle", "unlease"]
OPS += ["claim", "strike", "decide", "sweep", "tick", "tick"]


@dataclass
class Request:
    oa_id: str
    token: str
    ref_ids: list[str]


class Driver:
    """Random park/lease/renew/settle/unlease/claim/strike/decide/sweep on a manual clock."""

    def __init__(self, backlog: Backlog, client: redis.Redis, seed: int) -> None:
        self.backlog, self.client, self.rnd = backlog, client, random.Random(seed)
        self.now_s = T0
        self.requests: list[Request] = []
        self.pool = [f"r{i}" for i in range(60)]
        self.leases = 0

    def some(self, refs: list[str]) -> list[str]:
        return self.rnd.sample(refs, self.rnd.randint(0, len(refs))) if refs else []

    def request(self) -> Request | None:
        return self.rnd.choice(self.requests) if self.requests else None

    def step(self) -> str:
        rnd, backlog = self.rnd, self.backlog
        op = rnd.choice(OPS)
        req = self.request()
        if op == "park":
            backlog.park(rnd.choice(OAS), rnd.sample(self.pool, rnd.randint(1, 7)), self.now_s)
        elif op == "lease":
            expected = old_rule(self.client, self.backlog.keys, self.now_s)
            assert backlog.next_due_oa(self.now_s) == expected
            token = uuid.uuid4().hex
            got = backlog.lease_next(self.now_s, rnd.randint(1, 5), rnd.choice([5, 20]), token)
            assert (got[0] if got else None) == expected
            if got:
                self.leases += 1
                self.requests.append(Request(got[0], token, [x.ref_id for x in got[1]]))
        elif op == "renew" and req:
            backlog.renew(
                req.oa_id, req.token, self.some(req.ref_ids), self.now_s + rnd.randint(1, 30)
            )
        elif op == "settle" and req:
            finished = self.some(req.ref_ids)
            later = [
                Requeue(ref, self.now_s + rnd.choice([0, 3, 10]), "pending:7")
                for ref in req.ref_ids
                if ref not in finished
            ]
            backlog.settle(req.oa_id, req.token, self.now_s, finished, later, asked=True)
            self.requests.remove(req)
        elif op == "unlease" and req:
            due_s = self.now_s + rnd.choice([0, 2, 8])
            backlog.unlease(req.oa_id, req.token, self.some(req.ref_ids), due_s)
        elif op == "claim":
            oa, token = rnd.choice(OAS), uuid.uuid4().hex
            refs = [*rnd.sample(self.pool, rnd.randint(1, 4)), f"new-{uuid.uuid4().hex[:6]}"]
            claims = backlog.claim(oa, refs, self.now_s, 15, token, rnd.random() < 0.5)
            held = [c.ref_id for c in claims if c.held]
            if held:
                self.requests.append(Request(oa, token, held))
        elif op == "strike" and req:
            backlog.strike(req.oa_id, req.token, self.some(req.ref_ids), self.now_s, True)
        elif op == "decide" and req:
            backlog.decide(req.oa_id, req.token, {ref: "sent:5" for ref in self.some(req.ref_ids)})
        elif op == "sweep":
            backlog.sweep(self.now_s)
        else:
            self.now_s += rnd.choice([0, 1, 1, 2, 5, 16])
        return op


@pytest.mark.parametrize("seed", range(8))
def test_the_queue_and_the_count_stay_exact_through_random_sequences(account, seed):
    # given an account with a few OAs, chunks of 3 RefIds, and a manual clock
    backlog, keys, client = account
    driver = Driver(backlog, client, seed)
    # when random scripts run, leases of dead holders expiring as the clock moves on
    for _ in range(250):
        driver.step()
        # expect the queue and the count to be what the zsets and chunks say, every step
        assert_exact(client, keys)
    assert driver.leases > 10  # the sequence leased (and compared with the old rule) often
    assert backlog.waiting_total() == refs_from_chunks(client, keys)


def test_the_oa_due_longest_goes_first_whatever_their_number_and_ties_go_by_oa_id(account):
    # given 300 OAs parked one a second, then two due at the same moment as the oldest
    backlog, keys, client = account
    for i in range(300):
        backlog.park(f"oa-{i:03d}", [f"x{i}"], T0 + 10 + i)
    backlog.park("oa-b", ["b1"], T0)
    backlog.park("oa-a", ["a1"], T0)
    # expect the lower id of the two oldest, then the other, then the parking order
    order = []
    for n in range(5):
        now_s = T0 + 400
        assert backlog.next_due_oa(now_s) == old_rule(client, keys, now_s)
        oa, _ = backlog.lease_next(now_s, 10, 60, f"t{n}") or ("", [])
        order.append(oa)
    assert order == ["oa-a", "oa-b", "oa-000", "oa-001", "oa-002"]
    # and a lease expired at T0 + 460 counts as due since then: after the OAs parked before
    assert backlog.next_due_oa(T0 + 470) == "oa-003"
    assert_exact(client, keys)


def test_nothing_due_until_the_earliest_due_time_or_lease_expiry(account):
    backlog, keys, client = account
    backlog.park("oa-1", ["a"], T0)
    backlog.lease_next(T0, 10, 30, "tok")
    backlog.settle("oa-1", "tok", T0 + 1, [], [Requeue("a", T0 + 100, "pending:7")])
    assert backlog.next_due_oa(T0 + 99.999) is None
    assert backlog.lease_next(T0 + 99.999, 10, 30, "tok2") is None
    assert backlog.next_due_oa(T0 + 100) == "oa-1"
    assert backlog.waiting_total() == 1
    assert_exact(client, keys)


# --- a backlog parked by the version before the queue ------------------------------------


def as_before_the_queue(client: redis.Redis, keys: AccountKeys) -> None:
    """Leave the backlog as the version before left it: per-OA keys and `oas` only (that
    version wrote the same ones, and neither the queue nor the count)."""
    client.delete(keys.oa_queue, keys.backlog_meta)


def test_a_backlog_from_before_the_queue_is_leased_in_the_same_order(account):
    # given three OAs' RefIds, one of them leased by a request that died, as before the queue
    backlog, keys, client = account
    backlog.park("oa-2", ["c1", "c2"], T0 + 5)
    backlog.park("oa-1", ["a1"], T0)
    backlog.lease_next(T0, 10, 20, "dead")  # oa-1's, expires at T0 + 20
    backlog.park("oa-3", ["d1", "d2", "d3", "d4"], T0 + 30)
    as_before_the_queue(client, keys)
    # when the upgraded code leases
    taken = [backlog.lease_next(T0 + 40, 10, 60, f"t{n}") for n in range(4)]
    # expect oa-2 (due since T0 + 5), then oa-1 (its lease expired at T0 + 20), then oa-3
    assert [got[0] if got else None for got in taken] == ["oa-2", "oa-1", "oa-3", None]
    assert client.hget(keys.backlog_meta, "layout") == b"2"
    assert_exact(client, keys)
    assert backlog.waiting_total() == 7


def test_the_checks_migrate_too_and_writes_before_the_migration_are_counted_once(account):
    # given an old backlog of one OA, then a park by the upgraded code before any lease
    backlog, keys, client = account
    backlog.park("oa-old", ["o1", "o2", "o3", "o4"], T0)
    as_before_the_queue(client, keys)
    backlog.park("oa-new", ["n1"], T0 + 1)  # writes the queue and the count, not yet built
    # expect the capacity figure and the release's look to build them from every OA
    assert backlog.waiting_total() == 5
    assert backlog.next_due_oa(T0 + 2) == "oa-old"
    assert_exact(client, keys)
    # and the build runs once: later calls find it done
    assert backlog.migrate() is False
    as_before_the_queue(client, keys)
    assert backlog.migrate() is True
    assert_exact(client, keys)


def test_a_sweep_mends_an_oa_that_a_writer_without_the_queue_left_out(account):
    # given a built queue, then a worker of the version before parks another OA's RefIds
    # (it writes the per-OA keys and `oas`, not the queue)
    backlog, keys, client = account
    backlog.park("oa-1", ["a"], T0 + 10)
    backlog.park("oa-2", ["b"], T0)
    backlog.migrate()
    client.zrem(keys.oa_queue, "oa-2")
    assert backlog.next_due_oa(T0 + 20) == "oa-1"
    # when beat's release sweeps
    backlog.sweep(T0 + 20)
    # expect oa-2 back in its place, due longest
    assert backlog.next_due_oa(T0 + 20) == "oa-2"
    assert {_text(m) for m in client.zrange(keys.oa_queue, 0, -1)} == {"oa-1", "oa-2"}
