"""The drain loop with an injected clock: asking again, expiry, merging, faults, accounts.

Real Redis and the simulator over real HTTP; only time is the test's (a manual clock), with
the limiter's spacing at 1 ms so its real-time checks never hold a test up.
"""

from __future__ import annotations

from typing import Any

import pytest

from esms_callbacks.engine.clock import ManualClock
from esms_callbacks.engine.drainer import DrainReport
from esms_callbacks.errors import Retry, TransientError
from esms_callbacks.tuning import MARGIN_STEP_S
from tests.helpers import T0, whereabouts


def statuses(events: list[dict[str, Any]], ref_id: str) -> list[str]:
    return [e["status"] for e in events if e["ref_id"] == ref_id]


def test_pending_ref_is_asked_again_after_the_delay_then_sent(drain_env, sim):
    # given a RefId that is pending twice, then sent
    drainer, runtime, clock, events = drain_env(repoll_after_s=900, max_age_s=86400)
    sim.script("r1", ["pending7", "pending7", "sent"])
    runtime.backlog.park("oa1", ["r1"], clock.now_s())

    # when drained now: one pending event, and the RefId waits
    assert drainer.drain(budget_s=5).stopped == "nothing due"
    assert statuses(events, "r1") == ["pending"]
    # before the delay: nothing is due
    clock.advance(899)
    assert drainer.drain(budget_s=5).requests == 0
    # after it: asked again, same state, so no new event
    clock.advance(2)
    assert drainer.drain(budget_s=5).requests == 1
    assert statuses(events, "r1") == ["pending"]
    # and once more: sent, terminal, forgotten
    clock.advance(901)
    drainer.drain(budget_s=5)
    assert statuses(events, "r1") == ["pending", "sent"]
    assert events[-1]["terminal"] is True
    assert sim.asked("r1") == 3
    assert runtime.backlog.per_oa(clock.now_s()) == []


def test_never_found_ref_expires_after_max_age_with_one_last_ask(drain_env, sim):
    # given a RefId eSMS never knows, a max age of one hour, asked every 15 minutes
    drainer, runtime, clock, events = drain_env(
        repoll_after_s=900,
        max_age_s=3600,
        query_status="off",  # GetCallback alone
    )
    sim.script("ghost", ["missing"])
    runtime.backlog.park("oa1", ["ghost"], clock.now_s())

    # when time passes in steps of the re-ask delay
    for _ in range(6):
        drainer.drain(budget_s=5)
        clock.advance(900)

    # expect not_found once (no repeat for the same state), then expired, once, at 1 h
    assert statuses(events, "ghost") == ["not_found", "expired"]
    expired = events[-1]
    assert expired["terminal"] is True and expired["record"] is None
    assert sim.asked("ghost") == 5  # at 0, 15, 30, 45 and 60 minutes
    assert runtime.backlog.per_oa(clock.now_s()) == []


def test_small_submissions_leave_in_full_requests(drain_env, sim):
    # given 100 submissions of 3 RefIds each while no request went out
    drainer, runtime, clock, events = drain_env()
    for i in range(100):
        runtime.backlog.park("oa1", [f"s{i}-{j}" for j in range(3)], clock.now_s())

    # when drained
    report = drainer.drain(budget_s=5)

    # expect 300 RefIds in 3 requests of 100, each with its terminal event
    assert report.requests == 3
    assert [r.ref_count_sent for r in sim.requests] == [100, 100, 100]
    assert len({e["ref_id"] for e in events if e["terminal"]}) == 300


def test_oldest_oa_goes_first_and_requests_never_mix_oas(drain_env, sim):
    drainer, runtime, clock, events = drain_env()
    runtime.backlog.park("oa-old", ["a1", "a2"], clock.now_s() - 10)
    runtime.backlog.park("oa-new", ["b1"], clock.now_s())
    drainer.drain(budget_s=5)
    assert [r.oa_id for r in sim.requests] == ["oa-old", "oa-new"]
    assert {e["oa_id"] for e in events if e["ref_id"].startswith("a")} == {"oa-old"}


def test_transient_fault_puts_refs_back_and_asks_for_a_retry(drain_env, sim):
    # given eSMS answering HTTP 500 once
    drainer, runtime, clock, events = drain_env()
    sim.add_fault("http500")
    runtime.backlog.park("oa1", ["f1", "f2"], clock.now_s())

    # when drained: a Retry (Flower shows it) that comes back in about a slot, since one
    # failure does not hold the account; nothing published; the RefIds wait ESMS_RETRY_BASE
    with pytest.raises(Retry) as caught:
        drainer.drain(budget_s=5)
    assert isinstance(caught.value.cause, TransientError)
    assert caught.value.after_s == runtime.terms.spacing_s
    assert events == []
    (oa,) = runtime.backlog.per_oa(clock.now_s())
    assert (oa.waiting, oa.due_now, oa.leased) == (2, 0, 0)

    # and after that they are asked and sent
    clock.advance(5)
    drainer.drain(budget_s=5)
    assert sorted(e["ref_id"] for e in events if e["status"] == "sent") == ["f1", "f2"]


def test_auth_failure_pauses_the_account_and_keeps_the_refs(drain_env, sim, redis_client):
    drainer, runtime, clock, events = drain_env(account_pause_s=60)
    sim.add_fault("code", code=101, message="Sai ApiKey hoac SecretKey")
    runtime.backlog.park("oa1", ["k1"], clock.now_s())

    assert drainer.drain(budget_s=5).stopped == "account paused"
    # a second drain sends nothing while paused
    assert drainer.drain(budget_s=5) == DrainReport(stopped="account paused")
    assert len(sim.requests) == 1
    (oa,) = runtime.backlog.per_oa(clock.now_s())
    assert oa.due_now == 1

    # once the pause is over (credentials fixed), work resumes
    redis_client.delete(runtime.keys.paused)
    drainer.drain(budget_s=5)
    assert statuses(events, "k1") == ["sent"]


def test_closed_window_sends_nothing(drain_env, sim):
    from esms_callbacks.esms.window import Window

    drainer, runtime, clock, _events = drain_env(window=Window.parse("01:00-02:00", "UTC"))
    clock.now = 1_800_000_000.0 - (1_800_000_000 % 86400) + 3 * 3600  # 03:00 UTC
    runtime.backlog.park("oa1", ["w1"], clock.now_s())
    assert drainer.drain(budget_s=5).stopped == "window closed"
    assert sim.requests == []


def test_garbage_in_an_answer_is_skipped_and_harms_no_other_refid(drain_env, caplog):
    # given eSMS answering with odd records around one good one
    from esms_callbacks.esms.client import parse_answer

    drainer, runtime, clock, events = drain_env(query_status="off")  # GetCallback's answer
    body = {
        "Code": 100,
        "Message": "Success",
        "Data_callback": [
            "not a record",
            {"SendStatus": 5},  # no SMSID
            {"SMSID": "never-asked", "SendStatus": 5},
            {"SMSID": "odd", "SendStatus": "five", "SendFailed": None, "Extra": [1, 2]},
            {"SMSID": "good", "SendStatus": 5, "SendFailed": 0, "TypeId": "25"},
            {"SMSID": "good", "SendStatus": 5, "SendFailed": 0, "TypeId": "25"},
        ],
    }
    import json

    def ask(ref_ids, oa_id, gate, on_sent=None):
        assert gate()
        return parse_answer(json.dumps(body), set(ref_ids))

    drainer.ask = ask
    runtime.backlog.park("oa1", ["good", "odd", "esms:{x}:oas", "*"], clock.now_s())

    # when drained
    drainer.drain(budget_s=5)

    # expect the good one sent, the odd one pending (asked again), key-looking RefIds just
    # not found yet, and each piece of garbage named in a log line
    by_ref = {e["ref_id"]: e["status"] for e in events}
    assert by_ref == {
        "good": "sent",
        "odd": "pending",
        "esms:{x}:oas": "not_found",
        "*": "not_found",
    }
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 4, skipped
    (oa,) = runtime.backlog.per_oa(clock.now_s())
    assert oa.waiting == 3  # odd and the two key-looking ones wait to be asked again


def test_a_stale_lease_holder_publishes_nothing(drain_env, sim):
    # given a request so slow that its lease expires and another drainer takes the RefId over
    drainer, runtime, clock, events = drain_env(max_age_s=86400)
    other, *_ = drain_env(max_age_s=86400)
    other.clock = clock
    sim.script("slow-1", ["pending7", "sent"])
    runtime.backlog.park("oa1", ["slow-1"], clock.now_s())
    ask = drainer.ask

    def slow_ask(ref_ids, oa_id, gate, on_sent=None):
        answer = ask(ref_ids, oa_id, gate, on_sent)  # eSMS says pending...
        clock.advance(runtime.lease_s + 1)  # ...but too late: the lease expired
        other.drain(budget_s=5)  # the other drainer asks again and gets "sent"
        return answer

    drainer.ask = slow_ask

    # when the slow holder finally handles its (stale) answer
    drainer.drain(budget_s=5)

    # expect only the current holder's event: one terminal, no "pending" after "sent"
    assert [(e["ref_id"], e["status"]) for e in events] == [("slow-1", "sent")]
    assert runtime.backlog.per_oa(clock.now_s()) == []


def test_not_ready_makes_those_refs_not_found_asked_again_after_the_repoll_delay(drain_env, sim):
    # given RefIds eSMS answers with Code 105 (SMSID not found yet), max age 2 h
    drainer, runtime, clock, events = drain_env(
        repoll_after_s=900, max_age_s=7200, query_status="off"
    )
    runtime.backlog.park("oa1", ["nr-1", "nr-2"], clock.now_s())
    sim.add_fault("code", code=105)

    # when drained: no retry, each RefId not found (one event each), nothing due for 900 s
    report = drainer.drain(budget_s=5)
    assert report.stopped == "nothing due" and report.requests == 1
    assert [(e["ref_id"], e["status"]) for e in events] == [
        ("nr-1", "not_found"),
        ("nr-2", "not_found"),
    ]
    clock.advance(899)
    assert drainer.drain(budget_s=5).requests == 0
    # after it: asked again (105 once more: the same state, no new event)
    clock.advance(2)
    sim.add_fault("code", code=105)
    assert drainer.drain(budget_s=5).requests == 1
    assert len(events) == 2
    assert runtime.redis.hget(runtime.keys.stats, "errors:105") == b"2"
    # past max age, the last ask ends it: expired, once each
    clock.advance(7200)
    sim.add_fault("code", code=105)
    drainer.drain(budget_s=5)
    assert [e["status"] for e in events[2:]] == ["expired", "expired"]
    assert runtime.backlog.per_oa(clock.now_s()) == []


def test_a_refid_that_already_finished_is_not_asked_again(drain_env, sim):
    drainer, runtime, clock, events = drain_env(done_ttl_s=3600)
    runtime.backlog.park("oa1", ["once"], clock.now_s())
    drainer.drain(budget_s=5)
    assert [e["status"] for e in events] == ["sent"]
    # resubmitted within the done memory: nothing waits, nothing is asked
    parked = runtime.backlog.park("oa1", ["once", "new"], clock.now_s())
    assert (parked.added, parked.already_finished) == (1, 1)
    # after it, a resubmission is a new submission
    clock.advance(3601)
    assert runtime.backlog.park("oa1", ["once"], clock.now_s()).added == 1


def test_broker_failing_part_way_settles_what_went_out_and_hands_back_the_rest(drain_env, sim):
    from esms_callbacks.errors import PublishFailed

    # given three RefIds answered "sent", and a broker that takes only the first event
    drainer, runtime, clock, events = drain_env()
    runtime.backlog.park("oa1", ["p1", "p2", "p3"], clock.now_s())

    def flaky_publish(batch):
        events.extend(batch[:1])
        raise PublishFailed(1, len(batch))

    drainer.publish = flaky_publish

    # when drained: a retry, one event out, that RefId done, the other two waiting again
    with pytest.raises(Retry):
        drainer.drain(budget_s=5)
    assert [e["ref_id"] for e in events] == ["p1"]
    (oa,) = runtime.backlog.per_oa(clock.now_s())
    assert (oa.waiting, oa.leased) == (2, 0)

    # and once the broker is back, the other two get their events, p1 is not asked again
    drainer.publish = events.extend
    clock.advance(5)
    drainer.drain(budget_s=5)
    assert sorted(e["ref_id"] for e in events) == ["p1", "p2", "p3"]
    assert sim.asked("p1") == 1


class InterleavingClock(ManualClock):
    """A manual clock that runs `meanwhile` once, the first time someone sleeps on it: what
    other drainers do while this one sleeps toward its slot."""

    def __init__(self, start_s: float, meanwhile: Any) -> None:
        super().__init__(start_s)
        self.meanwhile = meanwhile

    def sleep(self, seconds: float) -> None:
        meanwhile, self.meanwhile = self.meanwhile, None
        if meanwhile is not None:
            meanwhile()
        super().sleep(seconds)


def test_a_slot_carries_whichever_oa_is_due_longest_when_it_comes(drain_env, sim):
    # given two OAs, and two drainers: the second takes its slot while the first one sleeps
    # toward its own (the first chose nothing before sleeping)
    first, runtime, _, events = drain_env()
    second, *_ = drain_env()
    runtime.backlog.park("oa-a", ["a1", "a2"], T0 - 20)
    runtime.backlog.park("oa-b", ["b1"], T0 - 10)
    clock = InterleavingClock(T0, lambda: second.step(DrainReport()))
    first.clock = second.clock = clock

    # when the first drainer's slot comes
    stopped = first.step(DrainReport())

    # expect it to carry the OA still due (the second drainer took the oldest), not nothing
    assert stopped == ""
    assert [(r.oa_id, r.ref_count_sent) for r in sim.requests] == [("oa-a", 2), ("oa-b", 1)]
    assert sorted(e["ref_id"] for e in events) == ["a1", "a2", "b1"]


def test_many_small_oas_each_get_one_full_request(drain_env, sim):
    # given 12 OAs with 30 RefIds each
    drainer, runtime, clock, events = drain_env()
    for n in range(12):
        runtime.backlog.park(f"oa-{n:02d}", [f"{n}-{i}" for i in range(30)], clock.now_s() - n)
    # when drained: one request per OA, oldest OA first, no slot spent on nothing
    report = drainer.drain(budget_s=5)
    assert report.requests == 12 and report.stopped == "nothing due"
    assert [r.oa_id for r in sim.requests] == [f"oa-{n:02d}" for n in reversed(range(12))]
    assert {r.ref_count_sent for r in sim.requests} == {30}
    assert len(events) == 360


def test_a_pause_after_the_slot_was_reserved_stops_the_request(drain_env, sim, redis_client):
    # given a drainer sleeping toward its slot when eSMS refuses the account elsewhere
    drainer, runtime, _, _ = drain_env()
    runtime.backlog.park("oa1", ["p1", "p2"], T0)

    def refused_elsewhere() -> None:
        redis_client.set(runtime.keys.paused, "Code 101", px=60_000)

    drainer.clock = InterleavingClock(T0, refused_elsewhere)

    # when its slot comes
    stopped = drainer.step(DrainReport())

    # expect nothing sent, the RefIds due again at once, the drain stopped
    assert stopped == "account paused"
    assert sim.requests == []
    (oa,) = runtime.backlog.per_oa(drainer.clock.now_s())
    assert (oa.due_now, oa.leased) == (2, 0)


def test_a_160_holds_the_account_and_widens_the_margin(drain_env, sim):
    drainer, runtime, clock, _ = drain_env(rate_interval_s=0.5)
    runtime.backlog.park("oa1", ["r1"], clock.now_s())
    sim.add_fault("code", code=160)

    with pytest.raises(Retry):
        drainer.drain(budget_s=5)

    # expect the next commit held back (about one interval) and the spacing wider
    commit = runtime.limiter.commit()
    assert commit.backing_off and 0.4 < commit.wait_s <= 0.5
    assert float(runtime.redis.hget(runtime.keys.rate, "extra_us")) >= MARGIN_STEP_S * 1e6


def test_a_failing_esms_backs_off_then_one_probe_and_its_success_recover(drain_env, sim):
    # given eSMS failing three times in a row (the breaker opens at three)
    drainer, runtime, clock, events = drain_env(breaker_after=3, backoff_max_s=60)
    runtime.backlog.park("oa1", ["b1", "b2"], clock.now_s())
    sim.add_fault("http500", count=3)
    for _ in range(3):
        with pytest.raises(Retry):
            drainer.drain(budget_s=5)
        clock.advance(5)  # the failed RefIds wait ESMS_RETRY_BASE

    # when drained while the breaker is open: nothing goes out
    assert drainer.drain(budget_s=5).stopped == "backing off after failures"
    assert len(sim.requests) == 3

    # when its time has passed: one probe goes; its success closes the breaker
    runtime.redis.hset(runtime.keys.health, "open_until_us", 1)
    drainer.drain(budget_s=5)
    assert len(sim.requests) == 4
    assert runtime.redis.exists(runtime.keys.health) == 0
    assert sorted(e["ref_id"] for e in events) == ["b1", "b2"]


def test_a_request_is_settled_and_counted_in_one_round_trip(drain_env, sim, monkeypatch):
    drainer, runtime, clock, _ = drain_env()
    runtime.backlog.park("oa1", ["c1", "c2", "c3"], clock.now_s())
    scripts: list[str] = []
    run = runtime.redis.evalsha

    def counting_evalsha(sha: str, *args: Any) -> Any:
        scripts.append(sha)
        return run(sha, *args)

    monkeypatch.setattr(runtime.redis, "evalsha", counting_evalsha)
    monkeypatch.setattr(
        runtime.redis, "pipeline", lambda *a, **k: pytest.fail("no extra round trip for counters")
    )

    drainer.drain(budget_s=5)

    stats = {k.decode(): v.decode() for k, v in runtime.redis.hgetall(runtime.keys.stats).items()}
    assert (stats["requests"], stats["refs_asked"], stats["events:sent"]) == ("1", "3", "3")
    assert float(stats["request_time_s"]) >= 0
    # the request: reserve, lease, commit, mark sent, renew, settle (with the counters); then
    # the next slot: reserve, lease (nothing due), hand back
    assert len(scripts) == 6 + 3
    (member,) = runtime.redis.zrange(runtime.keys.recent, 0, -1)
    sent_at_s = float(member.decode().split(":")[0])
    assert sim.requests[0].received_at_s - 1 < sent_at_s <= sim.requests[0].received_at_s


def test_any_answer_ends_a_failure_streak(drain_env, sim):
    # given two failures in a row reported by other drainers while this request was out
    drainer, runtime, clock, _ = drain_env(breaker_after=3)
    runtime.backlog.park("oa1", ["s1"], clock.now_s())
    runtime.breaker.record_failure()
    runtime.breaker.record_failure()
    # when this request is answered
    drainer.drain(budget_s=5)
    # expect the streak over: one more failure would not hold the account
    assert runtime.breaker.record_failure().wait_s == 0


def test_an_expiry_published_before_a_crash_is_the_only_terminal_event(drain_env, sim):
    # given a RefId eSMS does not know, asked once more at its maximum age
    drainer, runtime, clock, events = drain_env(
        repoll_after_s=900,
        max_age_s=3600,
        query_status="off",  # GetCallback alone
    )
    sim.script("late", ["missing", "sent"])
    runtime.backlog.park("oa1", ["late"], clock.now_s() - 3600)
    settle = runtime.backlog.settle

    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the worker died after publishing, before settling")

    # when its expired event goes out and the worker dies before settling it
    runtime.backlog.settle = crash
    with pytest.raises(RuntimeError):
        drainer.drain(budget_s=5)
    assert [e["status"] for e in events] == ["expired"]

    # and another drainer takes the lease over once it expired, while eSMS now says "sent"
    runtime.backlog.settle = settle
    clock.advance(runtime.lease_s + 1)
    drainer.drain(budget_s=5)

    # expect the same expired event again (same event_id), never a second terminal state
    assert [e["status"] for e in events] == ["expired", "expired"]
    assert events[0]["event_id"] == events[1]["event_id"]
    assert runtime.backlog.per_oa(clock.now_s()) == []


def window_around_now(redis_client: Any, opened_s_ago: float, closes_in_s: float) -> Any:
    """A UTC window around the Redis clock's now, and that now."""
    from datetime import UTC, datetime, timedelta

    from esms_callbacks.esms.window import Window

    seconds, micros = redis_client.time()
    now = datetime.fromtimestamp(seconds + micros / 1e6, UTC)
    opens, closes = now - timedelta(seconds=opened_s_ago), now + timedelta(seconds=closes_in_s)
    return Window.parse(f"{opens:%H:%M:%S}-{closes:%H:%M:%S}", "UTC"), now.timestamp()


def test_no_request_starts_within_the_guard_before_the_window_closes(drain_env, sim, redis_client):
    # given a window closing in 3 seconds, with a 5-second guard
    window, now_s = window_around_now(redis_client, opened_s_ago=600, closes_in_s=3)
    drainer, runtime, clock, _ = drain_env(window=window, window_guard_s=5.0)
    clock.now = now_s
    runtime.backlog.park("oa1", ["g1"], clock.now_s())
    # when drained: nothing goes out (it could reach eSMS after the close)
    assert drainer.drain(budget_s=5).stopped == "window closes before the next slot"
    assert sim.requests == []


@pytest.mark.parametrize(("opened_s_ago", "waits_s"), [(10, 1.0), (1800, 900.0)])
def test_an_input_rejection_at_the_window_edge_means_wait_for_the_window(
    drain_env, sim, redis_client, opened_s_ago, waits_s
):
    # given eSMS refusing a request (Code 99, as it may outside its own idea of the window)
    window, now_s = window_around_now(redis_client, opened_s_ago, closes_in_s=1800)
    drainer, runtime, clock, _ = drain_env(window=window, window_guard_s=1.0, repoll_after_s=900)
    clock.now = now_s
    runtime.backlog.park("oa1", ["e1"], clock.now_s())
    sim.add_fault("code", code=99)
    drainer.drain(budget_s=5)
    # expect: 10 s after the opening, eSMS's clock just disagrees: ask again in a second;
    # half an hour in, it is a real rejection: ask again after ESMS_REPOLL_AFTER
    due_s = whereabouts(runtime.backlog, "oa1", "e1").due_s
    assert due_s - clock.now_s() == pytest.approx(waits_s, abs=0.5)
