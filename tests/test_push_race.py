"""A push and a poll of the same RefIds racing: one terminal event per RefId, every time.

The real drainer asks the simulator over HTTP while the real push applier applies pushes of the
same RefIds, from two threads started together with random offsets, many rounds over.
"""

from __future__ import annotations

import functools
import random
import threading
from collections import Counter
from typing import Any

from esms_callbacks.engine.drainer import DrainReport
from esms_callbacks.push.apply import ApplyReport, PushApplier
from esms_callbacks.push.inbox import InboxEntry, PushInbox
from esms_callbacks.push.parse import Push

OA = "oa-race"
ROUNDS = 200
REFS_PER_ROUND = 10
SENT_RECORD = {"SendStatus": 5, "SendFailed": 0, "SendSuccess": 1}


def test_a_push_and_a_poll_racing_give_one_terminal_event_per_refid(drain_env, sim):
    drainer, runtime, clock, events = drain_env()
    lock = threading.Lock()

    def publish(batch: list[dict[str, Any]]) -> None:
        with lock:
            events.extend(batch)

    drainer.publish = publish
    applier = PushApplier(
        drainer.settings,
        drainer.account,
        runtime.backlog,
        PushInbox(runtime.redis, runtime.keys),
        publish,
        clock,
    )
    rng = random.Random(7)
    all_refs: list[str] = []
    for round_no in range(ROUNDS):
        refs = [f"race{round_no}-{j}" for j in range(REFS_PER_ROUND)]
        all_refs += refs
        if round_no % 2:  # eSMS's GetCallback has not caught up: the poll says pending
            for ref in refs:
                sim.script(ref, ["pending7", "sent"])
        runtime.backlog.park(OA, refs, clock.now_s())
        entries = [
            InboxEntry(f"{round_no + 1}-{j}", Push(ref, OA, {"SMSID": ref, **SENT_RECORD}), 0.0)
            for j, ref in enumerate(refs)
        ]
        reports = race(
            lambda: drainer.step(DrainReport()),
            functools.partial(applier.apply, entries),
            (rng.uniform(0, 0.004), rng.uniform(0, 0.004)),
        )
        # Entries whose RefId a request held stay pending; the receiver reclaims them later.
        left = [e for e in entries if e.entry_id not in reports.acked]
        for _ in range(3):
            if not left:
                break
            report = applier.apply(left)
            left = [e for e in left if e.entry_id not in report.acked]
        assert left == []

    terminal = Counter(e["ref_id"] for e in events if e["terminal"])
    assert {ref: terminal[ref] for ref in all_refs} == dict.fromkeys(all_refs, 1)
    winners = Counter(e["source"] for e in events if e["terminal"])
    assert winners["poll"] > 0 and winners["push"] > 0, winners  # the race really was run
    assert runtime.backlog.per_oa(clock.now_s()) == []


def race(poll: Any, push: Any, delays_s: tuple[float, float]) -> ApplyReport:
    """Run `poll` and `push` on two threads released together, each after its delay."""
    start = threading.Barrier(2)
    reports: list[ApplyReport] = []

    def run(step: Any, delay_s: float, keep: bool) -> None:
        start.wait()
        threading.Event().wait(delay_s)
        result = step()
        if keep:
            reports.append(result)

    threads = [
        threading.Thread(target=run, args=(poll, delays_s[0], False)),
        threading.Thread(target=run, args=(push, delays_s[1], True)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return reports[0]
