"""eSMS half down: a 5xx that other requests get too is eSMS's trouble, never one RefId's.

Real Redis and the simulator over real HTTP (half of its requests answered HTTP 500 at
random, seeded); time is the test's manual clock.
"""

from __future__ import annotations

import contextlib
from typing import Any

from esms_callbacks.errors import Retry
from tests.test_bad_refid import waive_backoff


def drain_until_terminal(
    drainer: Any, runtime: Any, clock: Any, events: list[dict[str, Any]], refs: set[str]
) -> None:
    for _ in range(5000):
        waive_backoff(runtime)
        with contextlib.suppress(Retry):
            drainer.drain(budget_s=5)
        if {e["ref_id"] for e in events if e["terminal"]} >= refs:
            return
        clock.advance(2)
    raise AssertionError("some RefIds never ended")


def test_esms_half_down_gives_no_healthy_refid_up(drain_env, sim):
    # given 4,000 healthy RefIds, the settings at their defaults, and eSMS answering half of
    # all requests with HTTP 500
    drainer, runtime, clock, events = drain_env(retry_base_s=2.0, repoll_after_s=900.0)
    refs = [f"half-{i:04d}" for i in range(4000)]
    runtime.backlog.park("oa1", refs, clock.now_s())
    sim.set_fault_rate("http500", 0.5, seed=7)

    # when drained until every RefId ended
    drain_until_terminal(drainer, runtime, clock, events, set(refs))

    # expect every one sent, none given up
    terminal = [e for e in events if e["terminal"]]
    expired = [e for e in terminal if e["status"] == "expired"]
    assert expired == [], f"{len(expired)} given up, e.g. {expired[0]['error']}"
    assert sorted(e["ref_id"] for e in terminal) == sorted(refs)


def test_a_refid_esms_chokes_on_is_still_given_up_while_esms_is_half_down(drain_env, sim):
    # given 1,000 healthy RefIds and one eSMS fails every request for, while eSMS answers
    # half of all requests with HTTP 500
    drainer, runtime, clock, events = drain_env(retry_base_s=2.0, repoll_after_s=900.0)
    refs = [f"half-{i:04d}" for i in range(1000)]
    culprit = "half-0500"
    sim.poison(culprit, "http500")
    runtime.backlog.park("oa1", refs, clock.now_s())
    sim.set_fault_rate("http500", 0.5, seed=11)

    # when drained until every RefId ended
    drain_until_terminal(drainer, runtime, clock, events, set(refs))

    # expect the healthy ones sent, the culprit given up, each once
    terminal = {e["ref_id"]: e for e in events if e["terminal"]}
    assert len([e for e in events if e["terminal"]]) == len(refs)
    assert terminal.pop(culprit)["error"]["message"].startswith("given up")
    assert {e["status"] for e in terminal.values()} == {"sent"}
