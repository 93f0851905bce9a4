"""The backlog's Lua scripts (engine/backlog.py) against real Redis, one by one.

Park, lease, renew, settle, unlease and claim are what keep a RefId's one terminal event;
the drainer and the push applier tests use them together, these check each alone.
"""

from __future__ import annotations

import uuid

import pytest

from esms_callbacks.engine.backlog import Backlog, Requeue, Tally
from esms_callbacks.engine.keys import AccountKeys
from tests.helpers import T0, whereabouts

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
    assert [store.where(OA, r).where for r in ("s1", "s2")] == ["leased", "leased"]  # not its token
    store.settle(
        OA,
        "mine",
        T0 + 1,
        ["s1"],
        [Requeue("s2", T0 + 900, "pending:7", "pending:7|1|p|")],
        tally,
        {"s1": "sent:5|1|p|"},
        asked=True,
    )
    done, waiting = store.where(OA, "s1"), store.where(OA, "s2")
    assert (done.where, done.asks, done.summary) == ("done", 1, "sent:5|1|p|")
    assert (waiting.where, waiting.due_s, waiting.state_key) == ("waiting", T0 + 900, "pending:7")
    assert waiting.summary == "pending:7|1|p|"
    assert client.hget(keys.stats, "requests") == b"1"


def test_unlease_hands_back_only_what_its_token_holds(backlog):
    store, _keys, _client = backlog
    store.park(OA, ["u1"], T0)
    store.lease_next(T0, 10, 60, "mine")
    store.unlease(OA, "not-mine", ["u1"], T0 + 5)
    assert whereabouts(store, OA, "u1").where == "leased"
    store.unlease(OA, "mine", ["u1"], T0 + 5)
    assert (whereabouts(store, OA, "u1").where, whereabouts(store, OA, "u1").due_s) == (
        "waiting",
        T0 + 5,
    )
    assert store.renew(OA, "mine", ["u1"], T0 + 60) == set()  # no longer its


def test_a_claim_for_a_push_says_what_each_refid_was(backlog):
    store, _, _ = backlog
    store.park(OA, ["done"], T0)
    store.lease_next(T0, 1, 60, "r1")
    store.settle(OA, "r1", T0, ["done"], [])
    store.park(OA, ["held"], T0 + 1)
    store.lease_next(T0 + 1, 1, 60, "r2")  # a request holds it
    store.park(OA, ["waiting"], T0 + 2)
    claims = store.claim(OA, ["waiting", "held", "done", "new"], T0 + 3, 60, "push", True)
    assert [(c.ref_id, c.kind, c.held) for c in claims] == [
        ("waiting", "waiting", True),
        ("held", "busy", False),
        ("done", "done", False),
        ("new", "new", True),
    ]
    assert claims[0].due_s == T0 + 2  # it keeps its turn if the push is not final
    assert store.renew(OA, "push", ["waiting"], T0 + 60) == {"waiting"}  # the push holds it
    ignored = store.claim(OA, ["stranger"], T0, 60, "push", take_unsubmitted=False)
    assert [c.kind for c in ignored] == ["unknown"]


def test_a_lease_takes_part_of_a_chunk_and_the_rest_stays_due(backlog):
    # given 150 RefIds parked at once (a chunk of 100, then one of 50)
    store, _, _ = backlog
    refs = [f"p{i:03d}" for i in range(150)]
    store.park(OA, refs, T0)
    # when leases of 40 are taken
    taken = []
    for token in ("t1", "t2", "t3", "t4"):
        _, leased = store.lease_next(T0, 40, 60, token) or ("", [])
        taken.append([item.ref_id for item in leased])
    # expect them oldest first, 40, 40, 40 and the last 30, nothing twice
    assert [len(batch) for batch in taken] == [40, 40, 40, 30]
    assert [ref for batch in taken for ref in batch] == refs
    assert [whereabouts(store, OA, r).where for r in ("p000", "p149")] == ["leased", "leased"]
    assert store.lease_next(T0, 40, 60, "t5") is None


def test_a_settle_puts_refids_due_at_different_times_each_where_it_belongs(backlog):
    # given a request holding three RefIds, one of which expires sooner than the others
    store, _, _ = backlog
    store.park(OA, ["a", "b", "c"], T0)
    store.lease_next(T0, 10, 60, "tok")
    # when it settles a as finished, b due in 900 s and c due in 10 s
    store.settle(
        OA, "tok", T0 + 1, ["a"], [Requeue("b", T0 + 900, "pending:7"), Requeue("c", T0 + 10, "")]
    )
    # expect each where it belongs, and only c due at T0 + 10
    assert whereabouts(store, OA, "a").where == "done"
    assert (whereabouts(store, OA, "b").due_s, whereabouts(store, OA, "c").due_s) == (
        T0 + 900,
        T0 + 10,
    )
    _, due = store.lease_next(T0 + 10, 10, 60, "tok2") or ("", [])
    assert [item.ref_id for item in due] == ["c"]
    [oa] = store.per_oa(T0 + 10)
    assert (oa.waiting, oa.due_now, oa.leased) == (1, 0, 1)


def test_done_refids_are_swept_after_the_done_memory_and_can_be_submitted_again(backlog):
    # given a RefId done at T0 (memory 3600 s)
    store, _, _ = backlog
    store.park(OA, ["d1"], T0)
    store.lease_next(T0, 10, 60, "tok")
    store.settle(OA, "tok", T0, ["d1"], [])
    # expect it remembered for the hour, then swept, then new again
    assert store.sweep(T0 + 3599) == 0
    assert store.park(OA, ["d1"], T0 + 3599).already_finished == 1
    assert store.sweep(T0 + 3601) == 1
    assert store.where(OA, "d1") is None
    assert store.park(OA, ["d1"], T0 + 3601).added == 1


def test_an_oa_with_nothing_waiting_or_remembered_is_forgotten_then_known_again(backlog):
    # given an OA whose RefIds all finished at T0 (done memory 3600 s), and OAs with a RefId
    # leased, one remembered as done since T0 + 3000, one waiting
    store, keys, client = backlog
    for oa, now_s in (("gone", T0), ("leased", T0 + 1), ("recent", T0 + 2)):
        store.park(oa, [f"{oa}-1", f"{oa}-2"], now_s)
        assert store.lease_next(now_s, 10, 100_000, oa) is not None
    store.settle("gone", "gone", T0, ["gone-1", "gone-2"], [])
    store.settle("recent", "recent", T0 + 3000, ["recent-1", "recent-2"], [])
    store.park("waits", ["waits-1"], T0 + 3000)

    # when the sweep runs once the first OA's done memory ran out
    store.sweep(T0 + 3601)

    # expect that OA forgotten, every key of it gone, and the others kept as they were
    assert list(client.scan_iter(match=f"{keys.oa('gone')}*")) == []
    assert store.known_oa_ids() == ["leased", "recent", "waits"]
    assert client.zscore(keys.oa_queue, "gone") is None
    assert whereabouts(store, "recent", "recent-1").where == "done"
    assert whereabouts(store, "leased", "leased-1").where == "leased"
    # and the housekeeping no longer runs a script for it
    swept, sweep = [], store._sweep

    def spy(keys: list[str], args: list[object], client: object) -> object:
        swept.append(args[1])
        return sweep(keys=keys, args=args, client=client)

    store._sweep = spy
    store.sweep(T0 + 3602)
    assert swept == ["leased", "recent", "waits"]
    # and new RefIds make it known again, from scratch
    assert store.park("gone", ["gone-1"], T0 + 3700).added == 1
    assert store.known_oa_ids() == ["gone", "leased", "recent", "waits"]
    again = whereabouts(store, "gone", "gone-1")
    assert (again.where, again.submitted_s, again.asks) == ("waiting", T0 + 3700, 0)


def test_an_oa_is_kept_while_anything_of_it_waits_or_is_remembered(backlog):
    # given an OA with one RefId done at T0 and one waiting to be asked again later
    store, keys, client = backlog
    store.park(OA, ["done", "later"], T0)
    store.lease_next(T0, 10, 60, "tok")
    store.settle(OA, "tok", T0, ["done"], [Requeue("later", T0 + 10_000, "pending:7")])

    # when the sweep runs after the done memory, then after the last one finished too
    store.sweep(T0 + 3601)
    assert store.known_oa_ids() == [OA]
    assert client.exists(f"{keys.oa(OA)}meta") == 1
    store.lease_next(T0 + 10_000, 10, 60, "tok2")
    store.settle(OA, "tok2", T0 + 10_000, ["later"], [])
    store.sweep(T0 + 10_001)

    # expect it kept while the done one is remembered, forgotten once nothing is
    assert store.known_oa_ids() == [OA]
    store.sweep(T0 + 13_601)
    assert store.known_oa_ids() == []
