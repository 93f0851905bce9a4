"""`esms-callbacks demo`: the whole stack against the simulator, a window that opens a few
seconds after start, a few thousand RefIds in small groups, a live progress line, a summary.

Every status source shows: a third of the messages were sent without a CallbackUrl (GetCallback
does not know them: QueryZnsStatus answers), delivery is tracked (GetZaloMessageStatus says
when each reached the phone; a few never do, and expire), and a few messages nobody submitted
are found in eSMS's ledger and adopted (ESMS_RECONCILE=adopt). The simulator's messages are
sent a minute before the demo starts (its clock offset), as the ledger's sweep reads only
records over a minute old."""

from __future__ import annotations

import json
import os
import random
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from esms_callbacks.accounts import NO_SECRETS, default_account
from esms_callbacks.cli.processes import ROOT, free_port
from esms_callbacks.cli.progress import bar, line
from esms_callbacks.cli.stack import (
    processes,
    push_url,
    stack_commands,
    stack_environment,
    wait_for_worker,
)
from esms_callbacks.cli.status_text import shown
from esms_callbacks.engine.notes import NO_OA
from esms_callbacks.events.consumer import read_events
from esms_callbacks.events.publish import status_queue
from esms_callbacks.ops.status import account_state
from esms_callbacks.runtime import Runtime
from esms_callbacks.settings import Settings
from esms_callbacks.tasks import app, fetch_callbacks
from esms_callbacks.tuning import LEDGER_LAG_S

OA_ID = "1090257973118325189"
ZONE = "Asia/Ho_Chi_Minh"


def run_demo(refs: int, opens_in_s: float, interval_s: float, timeout_s: float) -> int:
    stamp = datetime.now(UTC).strftime("%H%M%S")
    opens_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=opens_in_s)
    local = opens_at.astimezone(ZoneInfo(ZONE))
    env = {k: v for k, v in os.environ.items() if k not in ("ESMS_API_KEY", "ESMS_SECRET_KEY")}
    env.update(
        {
            "ESMS_SIM_PORT": str(free_port()),
            "ESMS_WINDOW": f"{local:%H:%M:%S}-{local + timedelta(hours=1):%H:%M:%S}",
            "ESMS_TIMEZONE": ZONE,
            "ESMS_RATE_INTERVAL": str(interval_s),
            "ESMS_REPOLL_AFTER": "5",
            "ESMS_RELEASE_EVERY": "1",
            "ESMS_ACCOUNT": f"demo-{stamp}",
            "ESMS_STATUS_QUEUE": f"esms.demo.{stamp}",
            "ESMS_TRACK_DELIVERY": "on",
            "ESMS_RECONCILE": "adopt",
            "ESMS_RECONCILE_EVERY": "5",
            # the ledger read once the others had their turn: what it adds shows
            "ESMS_LEDGER_WINDOW": f"{local + timedelta(seconds=20):%H:%M:%S}-"
            f"{local + timedelta(hours=1):%H:%M:%S}",
            "ESMS_SIM_CLOCK_OFFSET": str(-LEDGER_LAG_S - 5),
            "ESMS_MAX_AGE": str(int(opens_in_s + 120)),  # the few never delivered expire soon
        }
    )
    env, _ = stack_environment(Settings(), env)
    os.environ.update(env)
    settings = Settings.from_env()
    log_path = ROOT / ".run" / "demo.log"
    (ROOT / ".run").mkdir(exist_ok=True)
    print(
        f"Demo against the bundled eSMS simulator (nothing reaches eSMS). Window "
        f"{settings.terms.window}: opens in {opens_in_s:.0f}s. One request every "
        f"{settings.terms.spacing_s:g}s, up to {settings.terms.max_refs_per_request} RefIds each. "
        f"Process logs: {log_path}",
        flush=True,
    )
    with log_path.open("ab") as log, processes(stack_commands(True, env, False), env, log):
        wait_for_worker(app)
        ref_ids = [f"demo-{stamp}-{i:05d}" for i in range(refs)]
        lost = [f"demo-{stamp}-lost-{i}" for i in range(max(1, refs // 100))]
        register_messages(settings, ref_ids + lost)
        submit_in_groups(ref_ids)  # the lost ones never are: the ledger's sweep finds them
        outcomes = watch(settings, ref_ids + lost, opens_at, timeout_s)
        summarize(settings, ref_ids, outcomes, opens_at)
        print(f"  never submitted, adopted  {outcomes.get('adopted', 0)} of {len(lost)}")
    return 0 if sum(outcomes.values()) - outcomes.get("adopted", 0) >= len(ref_ids + lost) else 1


def simulator_pushes(ref_ids: list[str], oa_id: str = OA_ID, delay_s: float = 1.0) -> None:
    """Have the simulator push these RefIds' final statuses to the stack's receiver, on its own
    schedule and with eSMS's retries, as eSMS does for messages sent with a CallbackUrl."""
    body = {
        "url": push_url(dict(os.environ)),
        "oa_id": oa_id,
        "ref_ids": ref_ids,
        "delay_s": delay_s,
        "rate_per_s": 200,
    }
    request = urllib.request.Request(
        os.environ["ESMS_BASE_URL"] + "/_sim/push",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()


def register_messages(settings: Settings, ref_ids: list[str], oa_id: str = OA_ID) -> None:
    """Tell the simulator these messages were just sent: every third without a CallbackUrl,
    final 0-20 s later, on the phone 2-10 s after that (one in fifty never)."""
    from esms_callbacks.simulator.remote import RemoteSimulator

    simulator = RemoteSimulator(settings.terms.base_url)
    rng = random.Random(11)
    for start in range(0, len(ref_ids), 50):
        group = ref_ids[start : start + 50]
        simulator.register_messages(
            group,
            oa_id,
            callback_url=(start // 50) % 3 != 0,
            final_after_s=rng.uniform(0, 20),
            final="failed_offline" if rng.random() < 0.1 else "sent",
            delivered_after_s=None if rng.random() < 0.02 else rng.uniform(2, 10),
        )


def submit_in_groups(ref_ids: list[str], oa_id: str = OA_ID) -> None:
    """Submit like many producers would: small groups of 1 to 12 RefIds."""

    rng, start = random.Random(7), 0
    while start < len(ref_ids):
        size = rng.randint(1, 12)
        fetch_callbacks.delay(ref_ids[start : start + size], oa_id)
        start += size
        line(
            f"submitting {bar(start, len(ref_ids))} {min(start, len(ref_ids))}/{len(ref_ids)} "
            "RefIds in groups of 1-12"
        )
    line(f"submitted {len(ref_ids)} RefIds", end="\n")


def watch(
    settings: Settings, ref_ids: list[str], opens_at: datetime, timeout_s: float
) -> Counter[str]:
    """Consume events and redraw one progress line until every RefId is terminal."""
    runtime = Runtime(settings, default_account(settings, NO_SECRETS))
    terminal: Counter[str] = Counter()
    latest: Counter[str] = Counter()

    def redraw() -> None:
        state = account_state(runtime, runtime.clock.now_s())
        wait_s = (opens_at - datetime.now(UTC)).total_seconds()
        window = f"window opens in {wait_s:3.0f}s" if wait_s > 0 else "window open"
        done = sum(terminal.values()) - terminal["adopted"]
        line(
            f"{window} | waiting {state['waiting_refs']:5} | requests "
            f"{state['counters'].get('requests', 0):4} | "
            + " ".join(f"{shown(k)} {v}" for k, v in sorted(latest.items()))  # from the broker
            + f" | done {bar(done, len(ref_ids))} {done}/{len(ref_ids)}"
        )

    for event in read_events(
        settings.broker_url,
        status_queue(settings.status_queue, settings.events_exchange),
        stop=lambda: sum(terminal.values()) - terminal["adopted"] >= len(ref_ids),
        timeout_s=timeout_s,
        poll_s=0.25,
        transport_options=settings.broker_transport_options,
        idle=redraw,
    ):
        latest[event["status"]] += 1
        if event["terminal"]:
            terminal[event["status"]] += 1
            if event["oa_id"] == NO_OA:  # found in eSMS's ledger, never submitted
                terminal["adopted"] += 1
    line("", end="\n")
    return terminal


def summarize(
    settings: Settings, ref_ids: list[str], outcomes: Counter[str], opens_at: datetime
) -> None:
    # The simulator package needs aiohttp (the `worker` extra): loaded when a demo runs.
    from esms_callbacks.simulator.remote import RemoteSimulator

    terms = settings.terms
    every_request = RemoteSimulator(terms.base_url).requests()
    requests = [r for r in every_request if r.get("endpoint", "callback") == "callback"]
    by_endpoint = Counter(r.get("endpoint", "callback") for r in every_request)
    answered = [r for r in requests if r["code"] == 100]
    times = sorted(r["received_at_s"] for r in requests)
    span_s = times[-1] - times[0] if len(times) > 1 else 0.0
    rate = (len(times) - 1) / span_s * terms.rate_interval_s if span_s else float("nan")
    print("\nSummary")
    print(f"  RefIds submitted          {len(ref_ids)}")
    counts = {status: n for status, n in outcomes.items() if status != "adopted"}
    print(f"  terminal                  {sum(counts.values())} {counts}")
    print(f"  GetCallback requests      {len(requests)} ({len(requests) - len(answered)} refused)")
    print(f"  QueryZnsStatus requests   {by_endpoint['query']} (messages without CallbackUrl)")
    print(f"  GetZaloMessageStatus      {by_endpoint['delivery']} (delivered to the phone?)")
    if answered:
        mean = sum(r["ref_count_sent"] for r in answered) / len(answered)
        print(f"  RefIds per request        {mean:.1f} of {terms.max_refs_per_request}")
        print(
            f"  first request             {times[0] - opens_at.timestamp():.2f}s after the "
            "window opened"
        )
    print(
        f"  rate used                 {rate:.2f} of the allowed "
        f"{1 / terms.rate_interval_s:g}/s (while requests were going out)"
    )
