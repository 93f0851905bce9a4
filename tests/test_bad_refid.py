"""One RefId eSMS chokes on: split from its neighbours within a few requests, then given up.

Real Redis and the simulator over real HTTP (its `poison` makes every request that carries
one RefId fail); time is the test's manual clock.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from esms_callbacks.errors import Retry

CULPRIT = "bad-0500"


def drain_until_idle(drainer: Any, clock: Any, rounds: int = 200) -> int:
    """Drain, waiting out each failure's ESMS_RETRY_BASE, until nothing is due; return the
    number of failed drains."""
    failures = 0
    for _ in range(rounds):
        try:
            report = drainer.drain(budget_s=5)
        except Retry:
            failures += 1
            clock.advance(5)
            continue
        if report.stopped == "nothing due" and report.requests == 0:
            clock.advance(5)  # RefIds waiting ESMS_RETRY_BASE are due after this
            if drainer.drain(budget_s=5).requests == 0:
                return failures
    raise AssertionError("the backlog never emptied")


def waive_backoff(runtime: Any) -> None:
    """Let the breaker's probe go now, as its backoff running out would."""
    if runtime.redis.hexists(runtime.keys.health, "open_until_us"):
        runtime.redis.hset(runtime.keys.health, mapping={"open_until_us": 1, "probe_until_us": 1})


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

    # when drained until nothing is due
    drain_until_idle(drainer, clock)

    # expect every neighbour sent, and the culprit expired with the reason, each once
    terminal = {e["ref_id"]: e for e in events if e["terminal"]}
    assert set(terminal) == set(refs)
    assert {e["status"] for r, e in terminal.items() if r != CULPRIT} == {"sent"}
    culprit = terminal[CULPRIT]
    assert culprit["status"] == "expired"
    assert "given up" in culprit["error"]["message"]
    assert culprit["error"]["message"].count("alone") == 1
    assert len([e for e in events if e["terminal"]]) == 1000
    # isolated within a few requests: log2(100) halvings and one more alone, not thousands
    failed = [r for r in sim.requests if r.fault]
    assert len(failed) <= 12
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
    for _ in range(60):
        waive_backoff(runtime)
        with contextlib.suppress(Retry):
            drainer.drain(budget_s=5)
        clock.advance(5)

    # expect the 99 neighbours sent, and the culprit given up
    terminal = {e["ref_id"]: e["status"] for e in events if e["terminal"]}
    assert len(terminal) == 100
    assert terminal.pop(CULPRIT) == "expired"
    assert set(terminal.values()) == {"sent"}


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
    waive_backoff(runtime)
    drain_until_idle(drainer, clock)
    assert sorted(e["ref_id"] for e in events if e["status"] == "sent") == refs


def test_sporadic_failures_do_not_shrink_batches(drain_env, sim):
    # given a batch that failed once by chance (a 500), then succeeds
    drainer, runtime, clock, _events = drain_env()
    runtime.backlog.park("oa1", [f"s-{i:03d}" for i in range(100)], clock.now_s())
    sim.add_fault("http500")

    # when drained
    drain_until_idle(drainer, clock)

    # expect it asked again whole: one failure is not evidence against any RefId
    assert [r.ref_count_sent for r in sim.requests] == [100, 100]
