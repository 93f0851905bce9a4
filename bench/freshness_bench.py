"""How fresh the statuses are, on eSMS's current terms and no pushes: `make bench-freshness`.

    python -m bench.freshness_bench [--quick] [--only lag,backlog,...] [--log-dir DIR]

On a redis-server of its own (a free port, never the Redis on 6379), one simulator process
and, for each scenario, two `celery worker` instances of 4 and `celery beat` of this project,
all on eSMS's current terms (GetCallback 0.05 s x 200 RefIds, window always; QueryZnsStatus
0.01 s; GetZaloMessageStatus 0.034 s, in the simulator and in the project's environment):

    lag        2,000 messages with a CallbackUrl, registered at once, each final at a moment
               spread uniformly (seeded) 5-90 s after the send, submitted at once
               (ESMS_QUERY_STATUS=fallback): for each RefId, its terminal event's arrival on
               the status queue minus the moment eSMS had its final status
    backlog    20,000 messages without a CallbackUrl, final at once, ESMS_QUERY_STATUS=only:
               QueryZnsStatus's rate used while RefIds wait, gaps, code 160, time to drain
    fallback   the same backlog with ESMS_QUERY_STATUS=fallback: each GetCallback request of
               200 leaves them all out, and they are asked with QueryZnsStatus
    delivery   2,000 messages with a CallbackUrl, sent at once, on the phone 10 s later,
               ESMS_TRACK_DELIVERY=on: GetZaloMessageStatus's rate used while RefIds wait

Progress goes to stderr; the markdown table to stdout and .run/bench-freshness.md. Every
process is stopped by its pid on exit, Ctrl-C included. bench/freshness_figures.py has the
exact definitions of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from kombu import Connection

from bench.env import (
    CURRENT_CALLBACK_INTERVAL_S,
    CURRENT_DELIVERY_INTERVAL_S,
    CURRENT_MAX_REFS,
    CURRENT_QUERY_INTERVAL_S,
    STOP_GRACE_S,
    prepare_producer,
    project_env,
)
from bench.freshness_figures import EndpointUse, Lag, endpoint_use, lag_figures
from bench.harness import (
    beat_command,
    current_terms_simulator_options,
    env_overrides,
    simulator_process,
    stop_on_sigterm,
    worker_command,
)
from bench.memory_bench import start_redis
from bench.perf_bench import _commit
from bench.runner import fresh_broker
from bench.submit import oa_id
from esms_callbacks.cli.processes import ROOT, Children
from esms_callbacks.simulator.remote import RemoteSimulator
from esms_callbacks.terms import CALLBACK, DELIVERY, QUERY

# eSMS's current terms
CALLBACK_INTERVAL_S, MAX_REFS = CURRENT_CALLBACK_INTERVAL_S, CURRENT_MAX_REFS
QUERY_INTERVAL_S, DELIVERY_INTERVAL_S = CURRENT_QUERY_INTERVAL_S, CURRENT_DELIVERY_INTERVAL_S
INTERVALS_S = {
    CALLBACK: CALLBACK_INTERVAL_S,
    QUERY: QUERY_INTERVAL_S,
    DELIVERY: DELIVERY_INTERVAL_S,
}
ASKED_KEY = {CALLBACK: "ref_ids", QUERY: "sms_id", DELIVERY: "message_id"}
WORKERS, CONCURRENCY = 2, 4
LAG_P50_TARGET_S, LAG_P99_TARGET_S = 30.0, 120.0
RATE_TARGET = 0.9  # of an endpoint's rate while its queue waits
SUBMIT_GROUP = 500  # RefIds a .delay() carries
SEED = 7
PROGRESS_EVERY_S = 10.0
OUTPUT = ROOT / ".run" / "bench-freshness.md"


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Scenario:
    key: str
    count: int
    callback_url: bool
    final_after_s: tuple[float, float]  # uniform between
    env: Mapping[str, str]
    measured: str  # the endpoint whose rate is held to RATE_TARGET, or "" (lag)
    delivered_after_s: float | None = None
    timeout_s: float = 600.0

    def describe(self) -> str:
        low, high = self.final_after_s
        final = f"final {low:g}-{high:g} s after the send" if high else "final at once"
        url = "with" if self.callback_url else "without"
        parts = [f"{self.count:,} messages {url} CallbackUrl, {final}"]
        if self.delivered_after_s is not None:
            parts.append(f"on the phone {self.delivered_after_s:g} s later")
        parts += [f"{k}={v}" for k, v in self.env.items()]
        return "; ".join(parts)


def scenarios(quick: bool) -> list[Scenario]:
    scale = 4 if quick else 1
    return [
        Scenario("lag", 2000 // scale, True, (5.0, 90.0 / (2 if quick else 1)), {}, ""),
        Scenario(
            "backlog", 20000 // scale, False, (0.0, 0.0), {"ESMS_QUERY_STATUS": "only"}, QUERY
        ),
        Scenario(
            "fallback",
            20000 // scale,
            False,
            (0.0, 0.0),
            {"ESMS_QUERY_STATUS": "fallback"},
            QUERY,
        ),
        Scenario(
            "delivery",
            2000 // scale,
            True,
            (0.0, 0.0),
            {"ESMS_TRACK_DELIVERY": "on"},
            DELIVERY,
            delivered_after_s=10.0,
        ),
    ]


@dataclass
class Result:
    scenario: Scenario
    terminal: int = 0
    duplicates: int = 0
    events: int = 0
    drained_s: float | None = None  # submission to the last terminal event
    lag: Lag | None = None
    uses: dict[str, EndpointUse] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def lost(self) -> int:
        return self.scenario.count - self.terminal

    def misses(self) -> list[str]:
        if self.error:
            return ["did not run to the end"]
        missed = []
        if self.lost:
            missed.append(f"{self.lost:,} without a terminal event")
        if self.duplicates:
            missed.append(f"{self.duplicates:,} duplicate terminal events")
        lag = self.lag
        if self.scenario.key == "lag" and lag is not None:
            if lag.p50_s > LAG_P50_TARGET_S:
                missed.append(f"lag p50 > {LAG_P50_TARGET_S:g} s")
            if lag.p99_s > LAG_P99_TARGET_S:
                missed.append(f"lag p99 > {LAG_P99_TARGET_S:g} s")
        for use in self.uses.values():
            if use.early or use.refused:
                missed.append(f"{use.endpoint}: requests early")
        measured = self.uses.get(self.scenario.measured)
        if self.scenario.measured and (measured is None or (measured.rate_used or 0) < RATE_TARGET):
            missed.append(f"{self.scenario.measured} rate used < {RATE_TARGET:g}")
        return missed


@dataclass(frozen=True)
class Stage:
    """What every scenario shares: the Redis, the simulator, where logs go, extra env."""

    redis_url: str
    client: redis.Redis
    sim: RemoteSimulator
    log_dir: Path
    overrides: Mapping[str, str]


def run_scenario(scenario: Scenario, stage: Stage) -> Result:
    result = Result(scenario)
    key = scenario.key
    scenario_dir = stage.log_dir / key
    scenario_dir.mkdir(parents=True, exist_ok=True)
    say(f"[{key}] {scenario.describe()}; logs {scenario_dir}")
    fresh_broker(stage.client, naive_too=False)
    stage.sim.reset()
    status_queue = f"bench.status.{key}.{uuid.uuid4().hex[:6]}"
    env = project_env(
        redis_url=stage.redis_url,
        base_url=stage.sim.base_url,
        account=f"bench-{key}-{uuid.uuid4().hex[:6]}",
        status_queue=status_queue,
        interval_s=CALLBACK_INTERVAL_S,
        max_refs=MAX_REFS,
        window="always",
        overrides={
            "ESMS_QUERY_RATE_INTERVAL": f"{QUERY_INTERVAL_S:g}",
            "ESMS_DELIVERY_RATE_INTERVAL": f"{DELIVERY_INTERVAL_S:g}",
            **scenario.env,
            **stage.overrides,
        },
    )
    try:
        with Children(scenario_dir, stop_grace_s=STOP_GRACE_S) as fleet:
            for name in (f"worker{i + 1}" for i in range(WORKERS)):
                fleet.start(name, worker_command(name, CONCURRENCY), env)
            fleet.start("beat", beat_command(scenario_dir / "beat-schedule"), env)
            fleet.wait_ready()
            say(f"[{key}] {WORKERS} workers x {CONCURRENCY} and beat ready")
            final_at_s, submitted_at = send(scenario, stage.sim)
            terminal_at_s = watch(scenario, stage.redis_url, status_queue, result)
            if terminal_at_s:
                result.drained_s = max(terminal_at_s.values()) - submitted_at
            fleet.stop()
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        say(f"[{key}] failed: {result.error}")
        return result
    result.lag = lag_figures(final_at_s, terminal_at_s)
    log = stage.sim.requests()
    (scenario_dir / "requests.json").write_text(json.dumps(log))
    for endpoint, interval_s in INTERVALS_S.items():
        use = endpoint_use(log, endpoint, interval_s, ASKED_KEY[endpoint])
        if use.requests:
            result.uses[endpoint] = use
    return result


def send(scenario: Scenario, sim: RemoteSimulator) -> tuple[dict[str, float], float]:
    """Register the scenario's messages at the simulator as sent now, then submit their
    RefIds; return when each became final at eSMS (time.time()), and when submission ended.
    The moment taken as a message's send is just before its registration: a lag is, if
    anything, long."""
    from esms_callbacks import fetch_callbacks  # after prepare_producer

    rng = random.Random(SEED)
    oa = oa_id(0)
    refs = [f"fr-{scenario.key}-{n:06d}" for n in range(scenario.count)]
    low, high = scenario.final_after_s
    after_s = {ref: round(rng.uniform(low, high), 1) for ref in refs}  # ~900 POSTs
    by_after: dict[float, list[str]] = {}
    for ref, seconds in after_s.items():
        by_after.setdefault(seconds, []).append(ref)
    sent_at = time.time()
    registered_at: dict[str, float] = {}
    for seconds, group in by_after.items():
        registered_at.update(dict.fromkeys(group, time.time()))
        sim.register_messages(
            group,
            oa,
            callback_url=scenario.callback_url,
            final_after_s=seconds,
            delivered_after_s=scenario.delivered_after_s,
        )
    took_s = time.time() - sent_at
    for start in range(0, len(refs), SUBMIT_GROUP):
        fetch_callbacks.delay(refs[start : start + SUBMIT_GROUP], oa)
    submitted_at = time.time()
    say(
        f"[{scenario.key}] registered in {took_s:.1f} s, submitted "
        f"{submitted_at - sent_at - took_s:.1f} s later"
    )
    delivered_s = scenario.delivered_after_s or 0.0
    final_at_s = {ref: registered_at[ref] + s + delivered_s for ref, s in after_s.items()}
    return final_at_s, submitted_at


def watch(scenario: Scenario, broker_url: str, queue: str, result: Result) -> dict[str, float]:
    """Consume the status queue until every RefId has a terminal event or the scenario's
    time is up; return when each RefId's first terminal event arrived (time.time())."""
    terminal_at_s: dict[str, float] = {}
    deadline = time.monotonic() + scenario.timeout_s
    next_say = time.monotonic() + PROGRESS_EVERY_S
    with Connection(broker_url) as conn:
        simple = conn.SimpleQueue(queue, no_ack=True)
        try:
            while len(terminal_at_s) < scenario.count and time.monotonic() < deadline:
                if time.monotonic() >= next_say:
                    next_say += PROGRESS_EVERY_S
                    say(f"[{scenario.key}] {len(terminal_at_s):,}/{scenario.count:,} terminal")
                try:
                    message = simple.get(timeout=0.5)
                except simple.Empty:
                    continue
                received_at = time.time()
                event: dict[str, Any] = message.payload
                result.events += 1
                status = str(event.get("status"))
                result.statuses[status] = result.statuses.get(status, 0) + 1
                if event.get("terminal"):
                    ref = str(event["ref_id"])
                    if ref in terminal_at_s:
                        result.duplicates += 1
                    else:
                        terminal_at_s[ref] = received_at
            # A late duplicate would show within a repoll; look for one that long.
            linger = time.monotonic() + 6.0
            while time.monotonic() < linger:
                try:
                    message = simple.get(timeout=0.5)
                except simple.Empty:
                    continue
                if message.payload.get("terminal"):
                    result.duplicates += 1
        finally:
            simple.close()
    result.terminal = len(terminal_at_s)
    return terminal_at_s


def render(results: list[Result]) -> str:
    columns = [
        "scenario",
        "terminal / lost / duplicate",
        "lag p50 / p90 / p99 / max s",
        "drained in s",
        "endpoint: requests, rate used while RefIds wait",
        "min gap / interval",
        "early (gaps < interval) / Code 160",
        "meets target",
    ]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    for result in results:
        lines.append("| " + " | ".join(cells(result)) + " |")
    notes = [f"- {r.scenario.key}: {r.scenario.describe()}" + _extra(r) for r in results]
    return "\n".join([*lines, "", "Notes:", *notes, "", LEGEND])


def _extra(result: Result) -> str:
    statuses = ", ".join(f"{k} {v:,}" for k, v in sorted(result.statuses.items()))
    parts = [f"{result.events:,} events ({statuses})", *result.notes]
    if result.error:
        parts.append(f"error: {result.error}")
    return "; " + "; ".join(parts)


def cells(result: Result) -> list[str]:
    s, lag = result.scenario, result.lag
    uses = list(result.uses.values())
    missed = result.misses()
    verdict = "yes" if not missed else "**no**: " + ", ".join(missed)
    lag_cell = (
        f"{lag.p50_s:.1f} / {lag.p90_s:.1f} / {lag.p99_s:.1f} / {lag.max_s:.1f}"
        if lag is not None and s.key == "lag"
        else "-"
    )
    if s.key == "lag":
        lag_cell += f" (<= {LAG_P50_TARGET_S:g} / - / <= {LAG_P99_TARGET_S:g})"

    def used(use: EndpointUse) -> str:
        rate = "-" if use.rate_used is None else f"{use.rate_used:.3f}"
        target = f" (>= {RATE_TARGET:g})" if use.endpoint == s.measured else ""
        return f"{use.endpoint}: {use.requests:,}, {rate}{target}"

    def gap(use: EndpointUse) -> str:
        ratio = "-" if use.min_gap_s is None else f"{use.min_gap_s / INTERVALS_S[use.endpoint]:.3f}"
        return f"{use.endpoint} {ratio}"

    return [
        s.key,
        f"{result.terminal:,} / {result.lost:,} / {result.duplicates:,}",
        lag_cell,
        "-" if result.drained_s is None else f"{result.drained_s:.0f}",
        "<br>".join(used(u) for u in uses),
        "<br>".join(gap(u) for u in uses),
        "<br>".join(f"{u.endpoint} {u.early} / {u.refused}" for u in uses),
        verdict,
    ]


LEGEND = """\
How to read it (bench/freshness_figures.py has the exact definitions):
- lag: a RefId's first terminal event taken off the status queue (time.time()) minus the
  moment eSMS had its final status (registration + its final_after_s; the registration's
  start is taken as the send, so a lag is if anything long); nearest-rank percentiles.
- rate used while RefIds wait: an endpoint's requests from its first to the first ask of the
  last message it asked, x its interval / that span, at the simulator's receipt (monotonic
  clock). In the lag scenario RefIds are asked again 5 s after their last ask
  (ESMS_REPOLL_AFTER), so GetCallback's queue does not wait and its rate is not a target.
- min gap / interval and early: between two arrivals of the endpoint's requests over the
  whole run; Code 160: the simulator refused one as too close. Both must be 0.
- drained in: from the end of submission to the last terminal event.
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.freshness_bench", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="a quarter of the messages")
    parser.add_argument(
        "--only",
        default="",
        help="scenarios to run, comma-separated (lag,backlog,fallback,delivery)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for every worker and beat, e.g. ESMS_DRAINERS=6",
    )
    parser.add_argument("--log-dir", type=Path, help="process logs (default: a new temp dir)")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="also write the table here")
    args = parser.parse_args(argv)
    args.overrides = env_overrides(parser, args.env)
    known = {s.key for s in scenarios(False)}
    args.keys = [k for k in args.only.split(",") if k] or sorted(known)
    if unknown := set(args.keys) - known:
        parser.error(f"--only: unknown scenario(s) {sorted(unknown)}; use {sorted(known)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_sigterm()
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="esms-freshness-bench-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results: list[Result] = []
    interrupted = False
    server, url = start_redis(log_dir)
    try:
        prepare_producer(url, {})
        options = current_terms_simulator_options()
        with ExitStack() as stack:
            client = stack.enter_context(redis.Redis.from_url(url))
            sim = stack.enter_context(simulator_process(*options, log_dir=log_dir))
            sim.configure(
                query_rate_interval_s=QUERY_INTERVAL_S,
                delivery_rate_interval_s=DELIVERY_INTERVAL_S,
            )
            stage = Stage(url, client, sim, log_dir, args.overrides)
            for scenario in scenarios(args.quick):
                if scenario.key in args.keys:
                    results.append(run_scenario(scenario, stage))
    except KeyboardInterrupt:
        interrupted = True
        say("bench: interrupted; every process was stopped")
    finally:
        server.stop()
    heading = (
        f"Freshness benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {_commit()}, "
        f"{os.cpu_count()} CPUs, {WORKERS} workers x {CONCURRENCY} and beat, GetCallback "
        f"{CALLBACK_INTERVAL_S:g} s x {MAX_REFS}, QueryZnsStatus {QUERY_INTERVAL_S:g} s, "
        f"GetZaloMessageStatus {DELIVERY_INTERVAL_S:g} s, window always, no pushes"
        + (", quick" if args.quick else "")
        + "".join(f", {k}={v}" for k, v in args.overrides.items())
        + f", load average {os.getloadavg()[0]:.1f} at the end, took "
        f"{(time.monotonic() - started) / 60:.1f} min"
        + (", INTERRUPTED: partial results" if interrupted else "")
    )
    text = f"{heading}\n\n{render(results)}\nProcess logs: {log_dir}\n"
    print("\n" + text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    if interrupted:
        return 130
    return 1 if any(r.misses() for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
