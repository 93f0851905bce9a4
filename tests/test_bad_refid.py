"""One RefId eSMS chokes on: split from its neighbours within a few requests, then given up
once the evidence that eSMS refuses it alone spans minutes; a failure eSMS gives other
requests too is never evidence against a RefId.

Real Redis and the simulator over real HTTP (its `poison` makes every request that carries
one RefId fail); time is the test's manual clock.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

import pytest

from esms_callbacks.errors import Retry
from esms_callbacks.tuning import GIVE_UP_LONE_FAILURES, GIVE_UP_LONE_SPAN_S
from tests.helpers import T0, whereabouts

CULPRIT = "bad-0500"
SPLITS = 7  # halvings from 100 RefIds to one: log2(ESMS_MAX_REFS)


def waive_backoff(runtime: Any) -> None:
    """Let the breaker's probe go now, as its backoff running out would."""
    if runtime.redis.hexists(runtime.keys.health, "open_until_us"):
        runtime.redis.hset(runtime.keys.health, mapping={"open_until_us": 1, "probe_until_us": 1})


def drain_until_idle(drainer: Any, runtime: Any, clock: Any, rounds: int = 1000) -> int:
    """Drain, then let 5 s pass (the breaker's backoff waived, as its time passing would),
    until nothing waits; return the number of failed drains."""
    failures = 0
    for _ in range(rounds):
        waive_backoff(runtime)
        try:
            drainer.drain(budget_s=5)
        except Retry:
            failures += 1
        if runtime.backlog.per_oa(clock.now_s()) == []:
            return failures
        clock.advance(5)
    raise AssertionError("the backlog never emptied")


def at_s(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["observed_at"]).timestamp()


@pytest.mark.parametrize(
    ("kind", "params"),
    [("html", {}), ("badjson", {}), ("code", {"code": 99})],
)
def test_one_bad_refid_ends_alone_and_its_neighbours_end_normally(drain_env, sim, kind, params):
    # given 1,000 RefIds, and eSMS failing every request that carries one of them
    drainer, runtime, clock, events = drain_env(max_age_s=86400, repoll_after_s=900)
    refs = [f"bad-{i:04d}" for i in range(1000)]
    sim.poison(CULPRIT, kind, **params)
    runtime.backlog.park("oa1", refs, clock.now_s())

    # when drained until nothing waits
    drain_until_idle(drainer, runtime, clock)

    # expect every neighbour sent, and the culprit expired with the reason, each once
    terminal = {e["ref_id"]: e for e in events if e["terminal"]}
    assert set(terminal) == set(refs)
    assert {e["status"] for r, e in terminal.items() if r != CULPRIT} == {"sent"}
    culprit = terminal[CULPRIT]
    assert culprit["status"] == "expired"
    assert "given up" in culprit["error"]["message"]
    assert culprit["error"]["message"].count("alone") == 1
    assert len([e for e in events if e["terminal"]]) == 1000
    # isolated within a few requests (log2(100) halvings), then tried alone until the
    # evidence spans minutes: a few requests more, not thousands
    failed = [r for r in sim.requests if r.fault]
    assert len(failed) <= SPLITS + 1 + GIVE_UP_LONE_FAILURES
    assert at_s(culprit) >= T0 + GIVE_UP_LONE_SPAN_S
    # without holding its neighbours back: every one sent within the first minute
    assert max(at_s(e) for r, e in terminal.items() if r != CULPRIT) < T0 + 60
    # and it never opened the breaker for the other RefIds
    assert runtime.breaker.failures_in_a_row() <= 1
    assert runtime.backlog.per_oa(clock.now_s()) == []


def test_the_last_batch_with_a_bad_refid_is_split_too(drain_env, sim):
    # given only one batch, which carries the culprit: no other request answers in between
    drainer, runtime, clock, events = drain_env(max_age_s=86400, breaker_after=5)
    refs = [f"bad-{i:04d}" for i in range(450, 550)]
    sim.poison(CULPRIT, "html")
    runtime.backlog.park("oa1", refs, clock.now_s())

    # when drained (the breaker's backoff waived, as its time passing would)
    for _ in range(200):
        waive_backoff(runtime)
        with contextlib.suppress(Retry):
            drainer.drain(budget_s=5)
        clock.advance(5)

    # expect the 99 neighbours sent, and the culprit given up
    terminal = {e["ref_id"]: e["status"] for e in events if e["terminal"]}
    assert len(terminal) == 100
    assert terminal.pop(CULPRIT) == "expired"
    assert set(terminal.values()) == {"sent"}


def test_refids_submitted_while_a_culprit_is_tried_alone_go_at_once(drain_env, sim):
    # given a culprit already split from its neighbours and being tried alone
    drainer, runtime, clock, events = drain_env(max_age_s=86400)
    sim.poison(CULPRIT, "http500")
    runtime.backlog.park("oa1", [f"bad-{i:04d}" for i in range(450, 550)], clock.now_s())
    for _ in range(30):
        waive_backoff(runtime)
        with contextlib.suppress(Retry):
            drainer.drain(budget_s=5)
        clock.advance(5)
    culprit = whereabouts(runtime.backlog, "oa1", CULPRIT)
    assert (culprit.where, culprit.summary) == ("waiting", "")  # no event for it yet
    assert culprit.strikes > SPLITS + 1
    assert sum(1 for e in events if e["terminal"]) == 99

    # when new RefIds come, of its OA and another
    runtime.backlog.park("oa1", ["new-1", "new-2"], clock.now_s())
    runtime.backlog.park("oa2", ["new-3"], clock.now_s())
    drainer.drain(budget_s=5)

    # expect them sent in the same drain: the culprit's wait holds nothing else back
    sent = {e["ref_id"] for e in events if e["status"] == "sent"}
    assert {"new-1", "new-2", "new-3"} <= sent
    assert whereabouts(runtime.backlog, "oa1", CULPRIT).where == "waiting"


def test_an_answer_for_a_refid_forgets_the_evidence_against_it(drain_env, sim):
    # given a RefId eSMS failed alone, while answering others, one time short of giving up,
    # over more than the span
    drainer, runtime, clock, events = drain_env(max_age_s=86400)
    runtime.backlog.park("oa1", ["flaky"], clock.now_s())
    for _ in range(GIVE_UP_LONE_FAILURES - 1):
        sim.add_fault("http500")
        with contextlib.suppress(Retry):
            drainer.drain(budget_s=5)
        runtime.redis.delete(runtime.keys.health)  # eSMS answered others in between
        clock.advance(GIVE_UP_LONE_SPAN_S / 4)
    assert whereabouts(runtime.backlog, "oa1", "flaky").strikes == GIVE_UP_LONE_FAILURES - 1

    # when eSMS answers for it once (still pending), then fails it alone again
    sim.script("flaky", ["pending7", "sent"])
    drainer.drain(budget_s=5)
    clock.advance(runtime.settings.repoll_after_s)
    sim.add_fault("http500")
    with contextlib.suppress(Retry):
        drainer.drain(budget_s=5)

    # expect it not given up: the evidence started again from that failure
    assert [e["status"] for e in events] == ["pending"]
    found = whereabouts(runtime.backlog, "oa1", "flaky")
    assert (found.where, found.strikes, found.state_key) == ("waiting", 1, "pending:7")
    assert found.summary.startswith("pending:7|")


def test_an_outage_gives_no_refid_up(drain_env, sim):
    # given eSMS failing every request for a long while (an outage, not one RefId)
    drainer, runtime, clock, events = drain_env(max_age_s=86400, breaker_after=3)
    refs = [f"out-{i:03d}" for i in range(8)]
    runtime.backlog.park("oa1", refs, clock.now_s())
    sim.set_fault_rate("http500", 1.0)

    # when many requests fail (the breaker's backoff waived each time)
    for _ in range(40):
        waive_backoff(runtime)
        with contextlib.suppress(Retry):
            drainer.drain(budget_s=5)
        clock.advance(5)
    assert len(sim.requests) >= 30

    # expect nothing given up; once eSMS is back, every RefId is sent
    assert [e for e in events if e["terminal"]] == []
    sim.set_fault_rate("http500", 0.0)
    drain_until_idle(drainer, runtime, clock)
    assert sorted(e["ref_id"] for e in events if e["status"] == "sent") == refs


def test_sporadic_failures_do_not_shrink_batches(drain_env, sim):
    # given a batch that failed once by chance (a 500), then succeeds
    drainer, runtime, clock, _events = drain_env()
    runtime.backlog.park("oa1", [f"s-{i:03d}" for i in range(100)], clock.now_s())
    sim.add_fault("http500")

    # when drained
    drain_until_idle(drainer, runtime, clock)

    # expect it asked again whole: one failure is not evidence against any RefId
    assert [r.ref_count_sent for r in sim.requests] == [100, 100]
