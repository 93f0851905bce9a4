"""The receiver's applier threads (push/applier.py) against real Redis: the ready set, the
sweep, turns between accounts, a stop that does not wait for a stuck batch, reloads.

Given pushes recorded in accounts' inboxes, expect each applied whether or not its account was
named ready, no account kept waiting behind a busy one, and nothing answered 200 lost however
the appliers stop.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from esms_callbacks.engine.keys import PUSHES_READY, AccountKeys
from esms_callbacks.engine.scripts import register_file
from esms_callbacks.push.applier import AccountInbox, Appliers
from esms_callbacks.push.apply import ApplyReport, PushApplier
from esms_callbacks.push.inbox import (
    GROUP,
    InboxEntry,
    PushInbox,
    ReadyAccounts,
    ReadyNamer,
    forget_idle_consumers,
    leave_groups,
)
from esms_callbacks.runtime import Runtime
from esms_callbacks.settings import Settings
from esms_callbacks.tuning import APPLIER_BATCH
from tests.helpers import drain_events, runtime_of, wait_until
from tests.procs import PrivateRedis
from tests.receiving import get, push_params, receiving, serve_app

OA = "1397492183140006179"


def record_unnamed(runtime: Runtime, *ref_ids: str) -> None:
    """Record pushes as the receiver's script does, without naming the account ready: as a
    receiver that died between the two, or a name lost in a failover."""
    script = register_file(runtime.redis, "gcra", "inbox_record")
    k = runtime.keys
    for ref_id in ref_ids:
        record = {"SMSID": ref_id, "SendStatus": 5, "SendFailed": 0, "SendSuccess": 1}
        payload = json.dumps({"ref_id": ref_id, "oa_id": OA, "record": record})
        keys = [k.pushes, k.push_source("127.0.0.1"), k.stats]
        assert script(keys=keys, args=[0, 1_000_000, 0, 10_000, payload, ""])[0] == 1


class Published:
    """A publish function keeping every event, in order, across accounts."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, events: list[dict[str, Any]]) -> None:
        with self.lock:
            self.events += events

    def refs(self) -> list[str]:
        with self.lock:
            return [e["ref_id"] for e in self.events]


def account_inbox(runtime: Runtime, publish: Any) -> AccountInbox:
    applier = PushApplier(
        runtime.settings, runtime.account, runtime.backlog, runtime.inbox, publish, runtime.clock
    )
    return AccountInbox(runtime.name, runtime.keys.account_id, runtime.inbox, applier)


def test_a_push_whose_ready_name_was_lost_is_applied_by_the_sweep(push_settings):
    settings = push_settings()  # reclaim after 0.5 s: a sweep each APPLIER_SWEEP_MIN_S
    with receiving(settings) as (served, runtime):
        assert get(served.push_url(), push_params("named", OA)).status == 200
        drain_events(settings.broker_url, settings.status_queue, 1)
        # when a push is recorded and its account never named ready
        record_unnamed(runtime, "unnamed")
        assert runtime.redis.zscore(PUSHES_READY, runtime.keys.account_id) is None
        # expect it applied all the same, within a sweep or two
        [event] = drain_events(settings.broker_url, settings.status_queue, 1, timeout_s=5)
    assert (event["ref_id"], event["status"]) == ("unnamed", "sent")
    assert PushInbox(runtime.redis, runtime.keys).waiting() == 0


def test_an_account_with_more_than_a_batch_waiting_lets_the_others_go_in_between(
    make_settings,
):
    # given one applier thread, swept once, and two accounts: `busy` with two and a half
    # batches recorded and named first, `quiet` with one push named after it
    busy, quiet = (runtime_of(make_settings(), f"{n}-{time.time_ns()}") for n in "bq")
    published = Published()
    appliers = Appliers(busy.redis, reclaim_after_s=600, threads=1)  # no sweep during the test
    appliers.serve(
        {r.keys.account_id: account_inbox(r, published) for r in (busy, quiet)},
    )
    appliers.start()
    try:
        wait_until(lambda: appliers.sweeps == 1, 10, "the first sweep")
        many = [f"busy-{i:05d}" for i in range(APPLIER_BATCH * 5 // 2)]
        record_unnamed(busy, *many)
        record_unnamed(quiet, "quiet")
        # (named at 1 and 2 ms past the epoch: before any name the thread gives again)
        busy.redis.zadd(PUSHES_READY, {busy.keys.account_id: 1, quiet.keys.account_id: 2})
        # when the thread applies them
        wait_until(lambda: len(published.refs()) == len(many) + 1, 30, "every push applied")
    finally:
        appliers.stop(within_s=5)
    # expect the quiet account's push applied after the busy one's first batch, not its last
    order = published.refs()
    assert order.index("quiet") == APPLIER_BATCH
    assert sorted(order[:APPLIER_BATCH] + order[APPLIER_BATCH + 1 :]) == many
    # and the stopped appliers gone from both accounts' consumer groups
    for runtime in (busy, quiet):
        consumers = runtime.redis.xinfo_consumers(runtime.keys.pushes, GROUP)
        assert appliers.consumer not in [c["name"].decode() for c in consumers]


class GatedApplier(PushApplier):
    """An applier noting each batch it is given; its first waits until released."""

    batches: list[list[str]]
    entered: threading.Event
    release: threading.Event

    def apply(self, entries: list[InboxEntry]) -> ApplyReport:
        self.batches.append([e.push.ref_id for e in entries if e.push])
        if len(self.batches) == 1:
            self.entered.set()
            self.release.wait(30)
        return super().apply(entries)


def test_one_thread_at_a_time_applies_an_account_and_reads_it_again_after(make_settings, tmp_path):
    # given two applier threads (a Redis of the test's own: its blocked clients are theirs)
    with PrivateRedis(tmp_path, options=("--appendonly", "no")) as server:
        runtime = runtime_of(make_settings(redis_url=server.url))
        published = Published()
        gated = GatedApplier(
            runtime.settings,
            runtime.account,
            runtime.backlog,
            runtime.inbox,
            published,
            runtime.clock,
        )
        gated.batches, gated.entered, gated.release = [], threading.Event(), threading.Event()
        appliers = Appliers(runtime.redis, reclaim_after_s=600, threads=2)  # one sweep only
        name = runtime.keys.account_id
        appliers.serve({name: AccountInbox("a", name, runtime.inbox, gated)})
        appliers.start()
        ready = ReadyAccounts(runtime.redis)
        try:
            wait_until(lambda: appliers.sweeps == 1, 10, "the first sweep")
            record_unnamed(runtime, "r1")
            ready.name(name)
            wait_until(gated.entered.is_set, 10, "r1 being applied")
            # when a second push comes while the first thread still applies the first
            record_unnamed(runtime, "r2")
            ready.name(name)
            wait_until(
                lambda: (
                    runtime.redis.zscore(PUSHES_READY, name) is None
                    and runtime.redis.info("clients")["blocked_clients"] == 1
                ),
                10,
                "the other thread took the name and went back to waiting",
            )
            # expect the other thread to have left it to the first, which reads it once done
            assert gated.batches == [["r1"]]
            gated.release.set()
            wait_until(lambda: published.refs() == ["r1", "r2"], 10, "r2 applied after r1")
        finally:
            gated.release.set()
            appliers.stop(within_s=5)
        assert gated.batches == [["r1"], ["r2"]]


class StuckApplier(PushApplier):
    """An applier whose batch hangs (a broker that does not answer) until released."""

    entered = threading.Event()
    release = threading.Event()

    def apply(self, entries: list[InboxEntry]) -> ApplyReport:
        self.entered.set()
        self.release.wait(30)
        return ApplyReport()  # acknowledges nothing


def test_a_stop_does_not_wait_for_a_stuck_batch_and_another_receiver_takes_it_over(
    make_settings,
):
    # given an applier stuck inside a batch of one push
    runtime = runtime_of(make_settings())
    published = Published()
    stuck = StuckApplier(
        runtime.settings, runtime.account, runtime.backlog, runtime.inbox, published, runtime.clock
    )
    first = Appliers(runtime.redis, reclaim_after_s=0.2, threads=1)
    keys_name = runtime.keys.account_id
    first.serve({keys_name: AccountInbox("a", keys_name, runtime.inbox, stuck)})
    first.start()
    try:
        record_unnamed(runtime, "held")
        wait_until(stuck.entered.is_set, 10, "the batch started")
        # when the receiver stops
        started = time.monotonic()
        first.stop(within_s=0.5)
        # expect the stop over in the time given, the push still pending (not lost)
        assert time.monotonic() - started < 1.0
        pending: Any = runtime.redis.xpending(runtime.keys.pushes, GROUP)
        assert pending["pending"] == 1
        # and another receiver (or this one started again) applying it once it is idle
        second = Appliers(runtime.redis, reclaim_after_s=0.2, threads=1)
        second.serve({runtime.keys.account_id: account_inbox(runtime, published)})
        second.start()
        try:
            wait_until(lambda: published.refs() == ["held"], 10, "the held push taken over")
        finally:
            second.stop(within_s=5)
    finally:
        StuckApplier.release.set()
    assert runtime.inbox.waiting() == 0


def test_accounts_added_and_tokens_rotated_in_the_file_are_applied_without_a_restart(
    tmp_path: Path, push_settings: Any
) -> None:
    from esms_callbacks.cli.receive import build_app

    def write(tables: dict[str, str]) -> None:
        path.write_text(
            "".join(
                f'[accounts.{name}]\napi_key = "k-{name}"\nsecret_key = "s"\n'
                f'push_token = "{token}"\n'
                for name, token in tables.items()
            )
        )

    path = tmp_path / "accounts.toml"
    a, b = f"a-{time.time_ns()}", f"b-{time.time_ns()}"
    write({a: "token-a-first-0000000000"})
    settings: Settings = push_settings(accounts_file=str(path), push_token="")
    with serve_app(lambda: build_app(settings)) as served:
        url = served.base_url + "/esms/push/"
        assert get(url + "token-a-first-0000000000", push_params("a1", OA)).status == 200
        # when a's token is rotated and b added
        write({a: "token-a-second-000000000", b: "token-b-first-0000000000"})
        wait_until(
            lambda: get(url + "token-b-first-0000000000", push_params("b1", OA)).status == 200,
            10,
            "the added account's pushes taken",
        )
        assert get(url + "token-a-second-000000000", push_params("a2", OA)).status == 200
        # expect the old token refused, and every push taken applied as its account's
        assert get(url + "token-a-first-0000000000", push_params("a3", OA)).status == 404
        events = drain_events(settings.broker_url, settings.status_queue, 3, timeout_s=20)
    assert sorted((e["ref_id"], e["account"]) for e in events) == [
        ("a1", a),
        ("a2", a),
        ("b1", b),
    ]


def test_consumers_are_removed_only_with_nothing_pending(make_settings):
    # given a group with a consumer holding a push and one holding nothing
    runtime = runtime_of(make_settings())
    record_unnamed(runtime, "held")
    inbox = PushInbox(runtime.redis, runtime.keys)
    assert [e.push.ref_id for e in inbox.read("holding", 10) if e.push] == ["held"]
    assert inbox.read("empty", 10) == []
    absent = PushInbox(runtime.redis, AccountKeys(f"never-pushed-{time.time_ns()}"))

    def consumers() -> set[str]:
        return {c["name"].decode() for c in runtime.redis.xinfo_consumers(inbox.stream, GROUP)}

    # when both leave, or every idle consumer is forgotten (an inbox without a group beside)
    leave_groups(runtime.redis, [inbox, absent], "holding")
    forget_idle_consumers(runtime.redis, [absent, inbox], idle_s=-1)  # idle at all
    # expect the empty one gone, the one holding a push kept: it is taken over from there
    assert consumers() == {"holding"}
    leave_groups(runtime.redis, [inbox], "empty")
    assert consumers() == {"holding"}


def test_names_asked_for_together_go_in_one_call_and_each_is_in_once_it_returns(tmp_path):
    # given a namer on a Redis of the test's own (its command counts are the namer's)
    with PrivateRedis(tmp_path, options=("--appendonly", "no")) as server:
        sync = server.client()

        async def name_all(names: list[str]) -> None:
            client = aioredis.Redis(port=server.port)
            namer = ReadyNamer(client)
            try:
                await namer.name(names[0])  # the script loaded: the count starts here
                sync.config_resetstat()
                # when 50 pushes' accounts are named at once
                await asyncio.gather(*(namer.name(name) for name in names))
            finally:
                await client.aclose()

        names = [f"acct-{i}" for i in range(50)]
        asyncio.run(name_all(names))
        # expect every one named, in two calls at most (the first alone, then the others)
        calls = sync.info("commandstats")["cmdstat_evalsha"]["calls"]
        assert calls <= 2
        named: Any = sync.zrange(PUSHES_READY, 0, -1)
        assert {n.decode() for n in named} == set(names)
