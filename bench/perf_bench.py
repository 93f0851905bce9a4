"""Performance benchmark: the table users read (`make bench`).

    python -m bench.perf_bench [--only a,c] [--scale 0.5] [--env KEY=VALUE ...] [--no-naive]
                               [--redis URL] [--log-dir DIR] [--json PATH] [--list]

Each scenario (bench/scenarios.py) starts its own eSMS simulator process (policy "sent": every
RefId is terminal at its first ask), real `celery worker` and `celery beat` processes of this
project configured only through environment variables, submits its backlog with
`fetch_callbacks.delay()` (while the window is closed, or before the workers start for "always"
windows), and waits until every RefId has its terminal event on the status queue. Scenarios a
and b also run Celery's own rate_limit (bench/naive_app.py) on the same terms.

Progress goes to stderr; the markdown table to stdout. Figures are measured, never assumed;
ratios are what to compare across machines. Every process is stopped on exit, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, fields
from datetime import UTC, datetime
from pathlib import Path

import redis

from bench.env import prepare_producer
from bench.harness import env_overrides, stop_on_sigterm
from bench.outcome import Outcome
from bench.report import misses, render
from bench.runner import SIMULATOR_NICE, RunOptions, run_scenario, say_to_stderr
from bench.scenarios import BY_KEY, SCENARIOS, Scenario
from esms_callbacks.cli.processes import ROOT

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.perf_bench", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="SCENARIO",
        help="run only these scenarios (a-g; repeat or comma-separate)",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply backlogs and timed phases (0.2 for a quick check)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for every worker and beat (and the producer), e.g. ESMS_DRAINERS=6",
    )
    parser.add_argument(
        "--no-naive", action="store_true", help="skip Celery's rate_limit comparison runs"
    )
    parser.add_argument(
        "--simulator-nice",
        type=int,
        default=SIMULATOR_NICE,
        help="CPU priority change of the simulator process and its autogroup (default "
        "%(default)s: it shares the CPUs evenly with the workers; below 0 needs root)",
    )
    parser.add_argument(
        "--redis",
        default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL),
        help="a Redis database the benchmark may flush (default %(default)s)",
    )
    parser.add_argument("--log-dir", type=Path, help="process logs (default: a new temp dir)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = parser.parse_args(argv)
    args.keys = [key.strip() for item in args.only for key in item.split(",") if key.strip()]
    unknown = [key for key in args.keys if key not in BY_KEY]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; choose from {sorted(BY_KEY)}")
    if not 0 < args.scale <= 10:
        parser.error("--scale must be a number above 0 and at most 10")
    args.overrides = env_overrides(parser, args.env)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for scenario in SCENARIOS:
            print(f"{scenario.key}. {scenario.title}")
        return 0
    try:
        redis.Redis.from_url(args.redis).ping()
    except redis.RedisError as exc:
        print(f"bench: no Redis at {args.redis} ({exc}); run `make redis`", file=sys.stderr)
        return 1
    prepare_producer(args.redis, args.overrides)
    stop_on_sigterm()
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="esms-perf-bench-"))
    options = RunOptions(
        args.redis,
        log_dir,
        args.overrides,
        naive=not args.no_naive,
        simulator_nice=args.simulator_nice,
    )
    chosen = [s for s in SCENARIOS if not args.keys or s.key in args.keys]
    started = time.monotonic()
    outcomes: list[Outcome] = []
    interrupted = False
    try:
        for scenario in chosen:
            outcomes += _run(scenario.scaled(args.scale), options)
    except KeyboardInterrupt:
        interrupted = True
        say_to_stderr("bench: interrupted; every process was stopped")
    finally:
        redis.Redis.from_url(args.redis).flushdb()  # up to 120,000 events; free the memory
    elapsed_s = time.monotonic() - started
    print(_heading(args, elapsed_s, interrupted))
    print(render(outcomes))
    print(f"Process logs: {log_dir}")
    if args.json:
        args.json.write_text(json.dumps([_as_json(o) for o in outcomes], indent=2))
    if interrupted:
        return 130
    return 1 if any(o.error for o in outcomes) else 0


def _run(scenario: Scenario, options: RunOptions) -> list[Outcome]:
    """Run one scenario; a failure (the simulator dying, say) is a row, not the end."""
    try:
        return run_scenario(scenario, options)
    except Exception as exc:
        traceback.print_exc()
        failed = Outcome(scenario, f"{scenario.key}. {scenario.title}")
        failed.error = f"{type(exc).__name__}: {exc}"
        return [failed]


def _heading(args: argparse.Namespace, elapsed_s: float, interrupted: bool) -> str:
    parts = [
        f"Performance benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"commit {_commit()}",
        f"{os.cpu_count()} CPUs",
        f"took {elapsed_s / 60:.1f} min",
    ]
    if args.scale != 1:
        parts.append(f"scale {args.scale:g}")
    if args.overrides:
        parts.append("extra env " + " ".join(f"{k}={v}" for k, v in args.overrides.items()))
    if interrupted:
        parts.append("INTERRUPTED: partial results")
    return "\n" + ", ".join(parts) + "\n"


def _commit() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{rev}{' + uncommitted changes' if dirty else ''}" if rev else "unknown"


def _as_json(outcome: Outcome) -> dict[str, object]:
    data = {f.name: getattr(outcome, f.name) for f in fields(outcome)}
    data["scenario"] = outcome.scenario.key
    data["figures"] = asdict(outcome.figures) if outcome.figures else None
    data["lost"] = outcome.lost
    data["cpu_s_per_1000_refs"] = outcome.cpu_s_per_1000_refs
    data["refs_per_s_ratio"] = outcome.refs_per_s_ratio
    data["misses"] = misses(outcome)
    return data


if __name__ == "__main__":
    sys.exit(main())
