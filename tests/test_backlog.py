"""The backlog's Lua scripts (workers/backlog.py, and the push claim's, workers/push_claim.py)
against real Redis, one by one.

Park, lease, renew, settle, unlease and claim are what keep a RefId's one terminal event;
the drainer and the push applier tests use them together, these check each alone.
"""

from __future__ import annotations

import json
import uuid

import pytest

from esms_callbacks.workers.backlog import Backlog, Requeue, Tally
from esms_callbacks.workers.keys import AccountKeys
from esms_callbacks.workers.push_claim import PushClaims
from tests.helpers import T0

OA, OTHER = "oa-a", "oa-b"


@pytest.fixture
def backlog(redis_client):
    keys = AccountKeys(f"test-backlog-{uuid.uuid4().hex}")
    yield Backlog(redis_client, keys, done_ttl_s=3600), keys, redis_client
    for key in redis_client.scan_iter(match=f"{keys.prefix}*"):
        redis_client.delete(key)


def test_park_files_each_refid_once_and_not_again_after_it_finished(backlog):
    store, _, _ = backlog
    assert store.park(OA, ["a", "b"], T0).added == 2
    again = store.park(OA, ["a", "c"], T0 + 1)
    assert (again.added, again.already_waiting, again.already_finished) == (1, 1, 0)
    _, leased = store.lease_next(T0 + 2, 10, 60, "t1") or ("", [])
    store.settle(OA, "t1", T0 + 3, [item.ref_id for item in leased], [])
    assert store.park(OA, ["a"], T0 + 4).already_finished == 1


def test_the_oa_due_longest_is_leased_first_and_an_expired_lease_counts_as_due(backlog):
    store, _, _ = backlog
    store.park(OTHER, ["o1"], T0 + 5)
    store.park(OA, ["a1", "a2"], T0)
    oa, first = store.lease_next(T0 + 10, 10, 60, "t1") or ("", [])
    assert (oa, [item.ref_id for item in first]) == (OA, ["a1", "a2"])
    # the request holding OA's RefIds dies: its lease (60 s) runs out at T0 + 70, so they are
    # due again since then; OTHER's RefId has been due longer (since T0 + 5) and goes first
    oa, second = store.lease_next(T0 + 71, 10, 60, "t2") or ("", [])
    assert (oa, [item.ref_id for item in second]) == (OTHER, ["o1"])
    oa, third = store.lease_next(T0 + 72, 10, 60, "t3") or ("", [])
    assert (oa, [item.ref_id for item in third]) == (OA, ["a1", "a2"])
    assert store.renew(OA, "t1", ["a1", "a2"], T0 + 200) == set()  # the dead holder lost them
    assert store.lease_next(T0 + 73, 10, 60, "t4") is None  # nothing due


def test_settle_touches_only_what_its_token_holds_and_counts_in_one_call(backlog):
    store, keys, client = backlog
    store.park(OA, ["s1", "s2"], T0)
    store.lease_next(T0, 10, 60, "mine")
    tally = Tally(counters={"requests": 1}, gauges={"request_time_s": "0.5"})
    store.settle(OA, "someone-else", T0 + 1, ["s1"], [Requeue("s2", T0 + 900, "pending:7")])
    assert client.zcard(keys.leased(OA)) == 2  # untouched: not its token
    store.settle(
        OA,
        "mine",
        T0 + 1,
        ["s1"],
        [Requeue("s2", T0 + 900, "pending:7", '{"status":"pending"}')],
        tally,
        {"s1": '{"status":"sent"}'},
        asked=True,
    )
    assert client.zscore(keys.done(OA), "s1") is not None
    assert client.zscore(keys.due(OA), "s2") == (T0 + 900) * 1000
    assert client.hget(keys.state(OA), "s2") == b"pending:7"
    assert client.hget(keys.stats, "requests") == b"1"
    asks, _, last = client.hget(keys.history(OA), "s1").decode().partition("|")
    assert (asks, json.loads(last)) == ("1", {"status": "sent"})


def test_unlease_hands_back_only_what_its_token_holds(backlog):
    store, keys, client = backlog
    store.park(OA, ["u1"], T0)
    store.lease_next(T0, 10, 60, "mine")
    store.unlease(OA, "not-mine", ["u1"], T0 + 5)
    assert client.zscore(keys.leased(OA), "u1") is not None
    store.unlease(OA, "mine", ["u1"], T0 + 5)
    assert client.zscore(keys.due(OA), "u1") == (T0 + 5) * 1000
    assert client.hget(keys.owner(OA), "u1") is None


def test_a_claim_for_a_push_says_what_each_refid_was(backlog):
    store, keys, client = backlog
    store.park(OA, ["done"], T0)
    store.lease_next(T0, 1, 60, "r1")
    store.settle(OA, "r1", T0, ["done"], [])
    store.park(OA, ["held"], T0 + 1)
    store.lease_next(T0 + 1, 1, 60, "r2")  # a request holds it
    store.park(OA, ["waiting"], T0 + 2)
    pushes = PushClaims(client, keys)
    claims = pushes.claim(OA, ["waiting", "held", "done", "new"], T0 + 3, 60, "push", True)
    assert [(c.ref_id, c.kind, c.held) for c in claims] == [
        ("waiting", "waiting", True),
        ("held", "busy", False),
        ("done", "done", False),
        ("new", "new", True),
    ]
    assert claims[0].due_s == T0 + 2  # it keeps its turn if the push is not final
    assert client.hget(keys.owner(OA), "waiting") == b"push"
    ignored = pushes.claim(OA, ["stranger"], T0, 60, "push", take_unsubmitted=False)
    assert [c.kind for c in ignored] == ["unknown"]
