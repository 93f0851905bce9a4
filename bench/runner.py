"""Run one scenario: its own simulator process, this project's workers and beat (configured
through the environment only), the backlog submitted, every RefId waited for."""

from __future__ import annotations

import random
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis

from bench import naive
from bench.env import (
    API_KEY,
    SECRET_KEY,
    STOP_GRACE_S,
    ZONE,
    project_env,
    window_opening_at,
)
from bench.harness import (
    PrioritizedSimulator,
    beat_command,
    fleet_cpu_s,
    simulator_process,
    worker_command,
)
from bench.measure import (
    LogFigures,
    Submission,
    Terms,
    commit_to_receipt,
    goodput,
    handler_lag,
    log_figures,
    probing,
    too_close,
)
from bench.outcome import Outcome
from bench.scenarios import Scenario
from bench.status_queue import StatusQueueReader, StatusTally
from bench.submit import Backlog, Group, Producer, Submit, submit_all
from esms_callbacks.cli.processes import Children, simulator_options
from esms_callbacks.engine.keys import AccountKeys
from esms_callbacks.simulator.remote import RemoteSimulator

Say = Callable[[str], None]
POLL_S = 0.5
PROGRESS_EVERY_S = 10.0
STARTUP_S = 6.0  # workers and beat start (in parallel) before a parked window opens
SUBMIT_S_PER_GROUP = 0.004  # .delay() and parking, with room to spare
DEADLINE_SLOWDOWN = 3.0  # give up waiting at this many times the ideal drain time (+ 60 s)
# The simulator stands in for eSMS's own servers, which use none of the workers' CPU. It times
# requests by the kernel's receipt (simulator.arrival), so its own scheduling no longer skews
# what it measures; at a higher priority it would preempt the sending worker right after each
# write for its ~5 ms of handling, a cost real eSMS does not put on the workers. So it shares
# the CPUs evenly by default (as it did in effect before: its nice did not count across
# autogroups); --simulator-nice changes that, and the notes say what it got.
SIMULATOR_NICE = 0


def say_to_stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class RunOptions:
    redis_url: str
    log_dir: Path
    overrides: Mapping[str, str]  # extra environment for every project process
    naive: bool = True
    simulator_nice: int = 0
    say: Say = say_to_stderr


@dataclass(frozen=True)
class Plan:
    """What one scenario run submits, and when its window opens."""

    scenario: Scenario
    tag: str  # prefix of every RefId of the run
    backlog: Backlog
    groups: list[Group]
    opens_at: datetime | None  # None: window "always"
    log_dir: Path

    @classmethod
    def make(cls, scenario: Scenario, log_dir: Path) -> Plan:
        tag = f"{scenario.key}{uuid.uuid4().hex[:6]}"
        backlog = Backlog.build(tag, scenario.oa_sizes)
        groups = backlog.groups(scenario.group_sizes, random.Random(scenario.key))
        opens_at = None
        if scenario.parked:
            lead_s = STARTUP_S + len(groups) * SUBMIT_S_PER_GROUP
            opens_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=round(lead_s))
        return cls(scenario, tag, backlog, groups, opens_at, log_dir / scenario.key)

    @property
    def window(self) -> str:
        return "always" if self.opens_at is None else window_opening_at(self.opens_at)

    def producer_groups(self) -> list[Group]:
        """The RefIds a producer thread adds while draining, for the same OA, in 1-12s."""
        extra = Backlog.build(f"{self.tag}p", (self.scenario.producer_refs,))
        return extra.groups((1, 12), random.Random(f"{self.scenario.key}-producer"))


def run_scenario(scenario: Scenario, options: RunOptions) -> list[Outcome]:
    """Run `scenario` (and Celery's rate_limit beside it, if it asks); one outcome per row."""
    started = time.monotonic()
    say = options.say
    outcomes: list[Outcome] = []
    with redis.Redis.from_url(options.redis_url) as client:
        fresh_broker(client, naive_too=scenario.naive and options.naive)
        plan = Plan.make(scenario, options.log_dir)  # the window counts from now
        plan.log_dir.mkdir(parents=True, exist_ok=True)
        say(f"[{scenario.key}] {scenario.title}; window {plan.window}; logs {plan.log_dir}")
        with simulator_process(
            *simulator_args(scenario, plan.window),
            log_dir=plan.log_dir,
            nice=options.simulator_nice,
        ) as sim:
            ours = Outcome(scenario, f"{scenario.key}. {scenario.title}")
            try:
                run_ours(plan, ours, sim, client, options)
            except Exception as exc:
                ours.error = f"{type(exc).__name__}: {exc}"
                say(f"[{scenario.key}] failed:\n{traceback.format_exc()}")
            ours.wall_s = time.monotonic() - started
            outcomes.append(ours)
            if scenario.naive and options.naive:
                outcomes.append(
                    naive.run(scenario, sim, plan.backlog, options.redis_url, plan.log_dir, say)
                )
    return outcomes


def simulator_args(scenario: Scenario, window: str) -> list[str]:
    faulty = bool(scenario.fault_rate)
    return simulator_options(
        API_KEY,
        SECRET_KEY,
        rate_interval_s=scenario.interval_s,
        policy="sent",
        max_refs=scenario.max_refs,
        window=window,
        timezone=ZONE,
        fault_rates=[f"http500:{scenario.fault_rate:g}"] if faulty else [],
        fault_seed=1 if faulty else None,
    )


def fresh_broker(client: redis.Redis, naive_too: bool) -> None:
    """Empty the benchmark's Redis database, then declare the task queues again: this
    process's Celery producers remember having declared them, and kombu's Redis transport
    silently drops messages for an exchange whose bindings are gone."""
    client.flushdb()
    from esms_callbacks.tasks import app

    apps = [app]
    if naive_too:
        from bench.naive_app import app as naive_app

        apps.append(naive_app)
    for celery_app in apps:
        with celery_app.connection_for_write() as connection:
            channel = connection.default_channel
            for queue in celery_app.amqp.queues.values():
                queue(channel).declare()


def run_ours(
    plan: Plan,
    outcome: Outcome,
    sim: PrioritizedSimulator,
    client: redis.Redis,
    options: RunOptions,
) -> None:
    """Run this project's workers and beat on `plan`; fill `outcome` in."""
    from esms_callbacks.tasks import fetch_callbacks

    scenario, opens_at = plan.scenario, plan.opens_at
    say, key = options.say, scenario.key
    status_queue = f"bench.status.{key}.{uuid.uuid4().hex[:6]}"
    account = f"bench-{key}-{uuid.uuid4().hex[:6]}"
    env = project_env(
        redis_url=options.redis_url,
        base_url=sim.base_url,
        account=account,
        status_queue=status_queue,
        interval_s=scenario.interval_s,
        max_refs=scenario.max_refs,
        window=plan.window,
        overrides={**dict(scenario.env), **options.overrides},
    )
    submit: Submit = fetch_callbacks.delay
    outcome.submitted = scenario.total_refs
    submissions: list[Submission] = []
    with ExitStack() as stack:
        fleet = stack.enter_context(Children(plan.log_dir, stop_grace_s=STOP_GRACE_S))
        if opens_at is None:
            submissions = _submit(submit, plan.groups, say, key)
        for name in (f"worker{index + 1}" for index in range(scenario.workers)):
            fleet.start(name, worker_command(name, scenario.concurrency), env)
        fleet.start("beat", beat_command(plan.log_dir / "beat-schedule"), env)
        fleet.wait_ready()
        cpu_before_s = fleet_cpu_s(fleet, "worker")
        outcome.notes.append(
            f"simulator at nice {sim.nice}{_autogroup_note(sim.autogroup_nice)}; "
            f"worker start-up CPU {cpu_before_s:.1f}s (not counted)"
        )
        say(f"[{key}] {scenario.workers} workers x {scenario.concurrency} and beat ready")
        producer: Producer | None = None
        if opens_at is not None:
            submissions = _submit(submit, plan.groups, say, key)
            late_s = time.time() - opens_at.timestamp()
            if late_s > 0:
                outcome.notes.append(f"submission ended {late_s:.1f}s after the window opened")
            else:
                say(f"[{key}] window opens in {-late_s:.1f}s")
        if scenario.producer_refs:
            start_at = opens_at.timestamp() if opens_at else time.time()
            producer = Producer(submit, plan.producer_groups(), start_at, scenario.producer_s)
            producer.start()
            stack.callback(producer.stop)
        deadline = time.monotonic() + _deadline_s(scenario, opens_at)
        reader = StatusQueueReader(client, status_queue)
        watched = _wait_for_all(scenario, sim, reader, deadline, producer, say)
        if producer is not None:
            producer.stop()
            submissions += producer.submissions
        outcome.cpu_s = fleet_cpu_s(fleet, "worker") - cpu_before_s
        stopping = time.monotonic()
        fleet.stop()
        say(
            f"[{key}] {watched.tally.finished}/{scenario.total_refs} RefIds terminal "
            f"({watched.tally.events} events); processes stopped in "
            f"{time.monotonic() - stopping:.1f}s"
        )
    log = sim.requests()
    committed = committed_at_s(client, account)
    delays = commit_to_receipt(committed, log)
    if delays is not None:
        outcome.notes.append(
            f"commit to receipt over {delays.count} requests: median {delays.median_s * 1e3:.1f}"
            f" ms, p99 {delays.p99_s * 1e3:.1f} ms, max {delays.max_s * 1e3:.1f} ms, spread "
            f"{delays.spread_s * 1e3:.1f} ms"
        )
    closest = too_close(committed, log, scenario.interval_s)
    outcome.notes += [f"too close: {pair}" for pair in closest]
    terms = Terms(scenario.interval_s, scenario.max_refs)
    outcome.figures = log_figures(log, submissions, terms)
    submitted = {ref for _, refs in plan.groups for ref in refs}
    if scenario.producer_refs:
        submitted.update(ref for _, refs in plan.producer_groups() for ref in refs)
    outcome.finished = len(submitted & watched.tally.terminal.keys())
    if unknown := len(watched.tally.terminal.keys() - submitted):
        outcome.notes.append(f"terminal events for {unknown} RefIds never submitted")
    outcome.deadline_hit = watched.deadline_hit
    if scenario.goodput_over_s:
        outcome.goodput = goodput(log, scenario.goodput_over_s, scenario.interval_s)
    outcome.notes += _notes(scenario, log, watched, opens_at, outcome.figures)


@dataclass
class Watched:
    tally: StatusTally
    deadline_hit: bool
    faults_off_at: float | None  # time.time() when the simulator's faults were turned off


def _wait_for_all(
    scenario: Scenario,
    sim: RemoteSimulator,
    reader: StatusQueueReader,
    deadline: float,
    producer: Producer | None,
    say: Say,
) -> Watched:
    """Wait until every RefId has a terminal event (or the deadline); turn the simulator's
    faults off `faults_for_s` after the first request."""
    expected = scenario.total_refs
    started = time.monotonic()
    next_progress = started + PROGRESS_EVERY_S
    first_at: float | None = None
    faults_off_at: float | None = None
    while True:
        if producer is not None and producer.error is not None:
            raise RuntimeError(f"the producer thread failed: {producer.error!r}")
        # LLEN first: decoding events while the workers run would take CPU from them.
        if reader.queued() >= expected and reader.poll().finished >= expected:
            return Watched(reader.tally, False, faults_off_at)
        now = time.monotonic()
        if now > deadline:
            say(f"[{scenario.key}] deadline: stopped waiting after {now - started:.0f}s")
            return Watched(reader.poll(), True, faults_off_at)
        if scenario.faults_for_s is not None and faults_off_at is None:
            first_at = first_at or _first_request_at(sim.requests())
            if first_at is not None and time.time() >= first_at + scenario.faults_for_s:
                sim.set_fault_rate("http500", 0)
                faults_off_at = time.time()
                say(f"[{scenario.key}] faults off after {faults_off_at - first_at:.0f}s")
        if now >= next_progress:
            next_progress += PROGRESS_EVERY_S
            stats = sim.stats()
            say(
                f"[{scenario.key}] {now - started:4.0f}s: {stats['requests']} requests, codes "
                f"{stats['codes']}, {reader.queued()}/{expected} events"
            )
        time.sleep(POLL_S)


def committed_at_s(client: redis.Redis, account: str) -> list[float]:
    """When the limiter committed each request of the last minutes (the `recent` log holds
    `commit time:RefIds` members)."""
    members = client.zrangebyscore(AccountKeys(account).recent, "-inf", "+inf")
    return [float(m.split(b":")[0]) for m in members if isinstance(m, bytes)]


def _first_request_at(log: list[dict[str, Any]]) -> float | None:
    times = [r["received_at_s"] for r in log if r["api_key_ok"]]
    return min(times) if times else None


def _deadline_s(scenario: Scenario, opens_at: datetime | None) -> float:
    until_open_s = max(0.0, opens_at.timestamp() - time.time()) if opens_at else 0.0
    drain_s = scenario.total_refs / scenario.max_refs * scenario.interval_s
    extra_s = (scenario.faults_for_s or 0.0) + scenario.producer_s
    return until_open_s + extra_s + drain_s * DEADLINE_SLOWDOWN + 60.0


def _submit(submit: Submit, groups: list[Group], say: Say, key: str) -> list[Submission]:
    started = time.monotonic()
    submissions = submit_all(submit, groups)
    refs, took_s = sum(s.count for s in submissions), time.monotonic() - started
    say(f"[{key}] submitted {refs} RefIds in {len(groups)} groups in {took_s:.1f}s")
    return submissions


def _notes(
    scenario: Scenario,
    log: list[dict[str, Any]],
    watched: Watched,
    opens_at: datetime | None,
    figures: LogFigures,
) -> list[str]:
    notes = []
    first_at = _first_request_at(log)
    if figures.median_gap_ratio is not None:
        notes.append(f"median gap {figures.median_gap_ratio:.3f} x interval")
    lag = handler_lag(log, scenario.interval_s)
    if lag:
        notes.append(lag)
    if opens_at is not None and first_at is not None:
        notes.append(
            f"first request {first_at - opens_at.timestamp():.2f}s after the window opened"
        )
    if watched.faults_off_at is not None:
        probe = probing(log, watched.faults_off_at)
        if probe is not None and scenario.fault_rate >= 1:
            gaps = ", ".join(f"{gap:.1f}" for gap in probe.largest_gaps_s)
            notes.append(
                f"while every request failed ({probe.period_s:.0f}s): {probe.requests} requests, "
                f"{probe.per_minute:.1f}/min; largest gaps up to the first success (s): {gaps}"
            )
        recovered = [
            r["received_at_s"]
            for r in log
            if r["code"] == 100 and r["received_at_s"] >= watched.faults_off_at
        ]
        if recovered:
            notes.append(
                f"first Code 100 {min(recovered) - watched.faults_off_at:.1f}s after the faults "
                "stopped"
            )
    if figures.outside_window:
        notes.append(f"{figures.outside_window} requests answered Code 99 (window closed?)")
    if figures.oversize:
        notes.append(f"{figures.oversize} requests carried more than {scenario.max_refs} RefIds")
    tally = watched.tally
    if tally.duplicate_terminal_events:
        notes.append(f"{tally.duplicate_terminal_events} duplicate terminal events")
    if tally.conflicting:
        notes.append(f"{tally.conflicting} RefIds with conflicting terminal events")
    if watched.deadline_hit:
        notes.append(f"deadline hit: {scenario.total_refs - tally.finished} RefIds not terminal")
    return notes


def _autogroup_note(nice: int | None) -> str:
    return "" if nice is None else f" (its autogroup at nice {nice})"
