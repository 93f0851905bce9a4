"""Celery's own `rate_limit` on a scenario's terms (bench/naive_app.py), for comparison.

Same simulator (reset), same worker count and RefIds, already cut into full requests (the
most favourable case for it). Its tasks do not retry: a refused request's RefIds are simply
not answered, which the table counts as lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from bench.env import STOP_GRACE_S, naive_env
from bench.harness import fleet_cpu_s, worker_command
from bench.measure import Terms, log_figures
from bench.outcome import Outcome
from bench.scenarios import Scenario
from bench.submit import Backlog, Group, submit_all
from esms_callbacks.cli.processes import Children
from esms_callbacks.simulator.remote import RemoteSimulator


def run(
    scenario: Scenario,
    sim: RemoteSimulator,
    backlog: Backlog,
    redis_url: str,
    log_dir: Path,
    say: Callable[[str], None],
) -> Outcome:
    started = time.monotonic()
    key = scenario.key
    outcome = Outcome(
        scenario,
        f"{key}. Celery rate_limit, same terms",
        comparison=True,
        submitted=backlog.total,
    )
    try:
        _run(scenario, sim, backlog, redis_url, log_dir, say, outcome)
    except Exception as exc:
        outcome.error = f"{type(exc).__name__}: {exc}"
        say(f"[{key}] Celery rate_limit run failed: {outcome.error}")
    outcome.wall_s = time.monotonic() - started
    return outcome


def _run(
    scenario: Scenario,
    sim: RemoteSimulator,
    backlog: Backlog,
    redis_url: str,
    log_dir: Path,
    say: Callable[[str], None],
    outcome: Outcome,
) -> None:
    from bench.naive_app import naive_fetch

    sim.reset()  # the same simulator as this project's run: forget its log and rate clock
    sim.configure(window="always")
    env = naive_env(redis_url=redis_url, base_url=sim.base_url, interval_s=scenario.interval_s)
    size = scenario.max_refs
    tasks: list[Group] = [
        (oa, refs[start : start + size])
        for oa, refs in backlog.refs.items()
        for start in range(0, len(refs), size)
    ]
    with Children(log_dir, stop_grace_s=STOP_GRACE_S) as fleet:
        for name in (f"naive{index + 1}" for index in range(scenario.workers)):
            command = worker_command(
                name, scenario.concurrency, app="bench.naive_app", queues="bench.naive"
            )
            fleet.start(name, command, env)
        fleet.wait_ready()
        cpu_before_s = fleet_cpu_s(fleet, "naive")
        submissions = submit_all(naive_fetch.delay, tasks)
        say(f"[{scenario.key}] Celery rate_limit: {len(tasks)} tasks of up to {size} RefIds")
        # Each worker instance sends at the full rate: all tasks are done well before this.
        deadline = time.monotonic() + len(tasks) * scenario.interval_s * 2 + 60
        while sim.stats()["requests"] < len(tasks):
            if time.monotonic() > deadline:
                outcome.deadline_hit = True
                outcome.notes.append("deadline hit before every task had sent its request")
                break
            time.sleep(0.5)
        outcome.cpu_s = fleet_cpu_s(fleet, "naive") - cpu_before_s
    figures = log_figures(sim.requests(), submissions, Terms(scenario.interval_s, size))
    outcome.figures = figures
    outcome.finished = figures.refs_answered
