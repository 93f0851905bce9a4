"""`esms-callbacks show REFID`: where a RefId is, its asks and its last event, over its life.

The real drainer asks the simulator over HTTP on a manual clock; the history is real Redis.
"""

from __future__ import annotations

import json

from esms_callbacks.cli.main import main
from esms_callbacks.ops.lookup import FINISHED, IN_A_REQUEST, WAITING, find_ref
from tests.helpers import runtime_of

OA = "oa-show"


def test_a_refid_s_whole_life_is_there_to_look_up(drain_env, sim):
    drainer, runtime, clock, _ = drain_env(repoll_after_s=900)
    sim.script("r1", ["pending7", "sent"])
    runtime.backlog.park(OA, ["r1"], clock.now_s())

    [state] = find_ref(runtime, "r1")
    assert (state.where, state.asks, state.last_event, state.oa_id) == (WAITING, 0, None, OA)

    drainer.drain(budget_s=5)  # asked once: pending, waits 900 s
    [state] = find_ref(runtime, "r1", OA)
    assert (state.where, state.asks, state.last_state) == (WAITING, 1, "pending:7")
    assert state.last_event is not None and state.last_event["status"] == "pending"
    assert state.next_ask_at is not None and state.submitted_at is not None
    assert state.next_ask_at > state.submitted_at

    runtime.backlog.lease_next(clock.now_s() + 901, 10, 60, "a-request")
    assert find_ref(runtime, "r1")[0].where == IN_A_REQUEST
    runtime.backlog.unlease(OA, "a-request", ["r1"], clock.now_s())

    clock.advance(901)
    drainer.drain(budget_s=5)  # asked again: sent, finished
    [state] = find_ref(runtime, "r1")
    assert (state.where, state.asks) == (FINISHED, 2)
    assert state.last_event is not None
    assert (state.last_event["status"], state.last_event["source"]) == ("sent", "poll")
    assert state.finished_at is not None and state.next_ask_at is None


def test_the_history_goes_with_the_done_memory(drain_env, sim):
    drainer, runtime, clock, _ = drain_env(done_ttl_s=60)
    sim.script("old", ["sent"])
    runtime.backlog.park(OA, ["old"], clock.now_s())
    drainer.drain(budget_s=5)
    assert find_ref(runtime, "old")[0].where == FINISHED
    clock.advance(61)
    assert runtime.backlog.sweep(clock.now_s()) == 1  # beat's release sweeps what is too old
    assert find_ref(runtime, "old") == []
    assert runtime.backlog.park(OA, ["old"], clock.now_s()).added == 1  # a new submission


def test_show_prints_the_state_and_says_when_nothing_is_known(cli_env, capsys):
    runtime = runtime_of(cli_env)
    runtime.backlog.park(OA, ["c1"], runtime.clock.now_s())
    assert main(["show", "c1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"c1 (OA {OA}): waiting") and "asked eSMS               0 times" in out
    assert main(["show", "c1", "--json"]) == 0
    [state] = json.loads(capsys.readouterr().out)
    assert (state["where"], state["oa_id"]) == ("waiting", OA)
    assert main(["show", "nobody", "--oa", OA]) == 1
    assert "not known here: never submitted under OA oa-show" in capsys.readouterr().err
