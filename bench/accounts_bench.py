"""Many eSMS accounts in one deployment (issue 23): `make bench-accounts`.

    python -m bench.accounts_bench [--accounts 1,10,100,1000] [--seconds 60] [--quick]
                                   [--turn-seconds 0.5] [--rounds 2] [--log-dir DIR]

For each number of accounts, on a redis-server of its own (a free port, no persistence; never
the Redis on 6379), one multi-account simulator process (policy "sent") and this project's
processes configured through the environment and ESMS_ACCOUNTS_FILE only:

    terms    half the accounts on eSMS's current terms (0.05 s x 200 RefIds), half on the
             2023 ones scaled down as the other benchmarks do (0.2 s x 100 for 1 s x 100)
    parking  two `celery worker` instances of 4 serving only esms.fetch, with the window
             closed, take every account's backlog from a producer process
             (`fetch_callbacks.delay(..., account=name)`, bench/accounts_submit.py); once it
             is all parked they stop
    drain    two `celery worker` instances of 4 (8 pool slots, shared by every account) and
             `celery beat`, window "always"; measured from the first request over `--seconds`,
             or longer where accounts take turns: long enough for `--rounds` rounds of turns.
             The workers' turns last `--turn-seconds` (bench/accounts_app.py; FAIR_TURN_S, 10 s,
             in production), so that rounds over 1,000 accounts take minutes, not an hour

Progress goes to stderr; the markdown table to stdout and .run/bench-accounts.md. Every
process is stopped by its pid on exit, Ctrl-C included. bench/accounts_figures.py has the
exact definitions of the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis

from bench.accounts_figures import (
    PeriodFigures,
    TurnWatch,
    first_requests_s,
    period_figures,
    ran_dry,
)
from bench.env import STOP_GRACE_S, ZONE, clean_environ, window_opening_at
from bench.harness import (
    beat_command,
    env_overrides,
    fleet_cpu_s,
    simulator_process,
    stop_on_sigterm,
    worker_command,
)
from bench.measure import Terms
from bench.memory_bench import start_redis, used_memory
from bench.perf_bench import _commit
from bench.submit import oa_id
from esms_callbacks.accounts import NO_SECRETS, read_file
from esms_callbacks.cli.processes import ROOT, Children
from esms_callbacks.engine.keys import AccountKeys
from esms_callbacks.engine.stats import RequestStats
from esms_callbacks.settings import Settings
from esms_callbacks.simulator import SimAccount
from esms_callbacks.simulator.accounts_file import accounts_toml
from esms_callbacks.simulator.remote import RemoteSimulator

TODAY = Terms(0.05, 200)  # eSMS's current terms
SEED = Terms(0.2, 100)  # the 2023 terms (1 s x 100), scaled as the other benchmarks scale them
LABELS = {TODAY: "0.05 s x 200", SEED: "0.2 s x 100"}
WORKERS, CONCURRENCY = 2, 4
SLOTS = WORKERS * CONCURRENCY  # the pool every account's drains share
GROUP = 1000  # RefIds a .delay() carries
RATE_TARGET = 0.9  # of its rate, for every account, where the slots suffice
SHARE_TARGET = 0.8  # slowest share within its terms, where they do not ("close to 1")
WORKER_APP = "bench.accounts_app"  # the production app with the bench's turns
DEFAULT_TURN_S = 0.5
DEFAULT_ROUNDS = 2
# A turn changing hands costs about this much besides the turn (0.3 s measured at 1,000
# accounts on the loaded 2-core machine); with ROUND_MARGIN, a row's period is long enough
# for its rounds.
SWITCH_S = 0.3
ROUND_MARGIN = 1.3
# Requests a pool slot sends a second at most, on the 2-core machine (30-45 a second on 8
# slots are measured): an account's backlog is sized for the lower of its rate and its share
# of the slots at this, plus BACKLOG_MARGIN, so that it lasts the period without parking
# millions of RefIds that can never be asked ("ran dry" says if it did not last).
SLOT_REQUESTS_PER_S = 8.0
BACKLOG_MARGIN = 1.2
STATUS_QUEUE = "bench.status.accounts"
DRAIN_QUEUE = "esms.drain"
POLL_S = 0.25
WATCH_EVERY_S = 5.0  # the request log read for turns this often
MAX_PERIOD_S = 600.0  # a row measured longer than this for its rounds misses its target
PROGRESS_EVERY_S = 10.0
PARK_TIMEOUT_S = 900.0
DEFAULT_ACCOUNTS = "1,10,100,1000"
OUTPUT = ROOT / ".run" / "bench-accounts.md"


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Plan:
    """One row: the accounts, their terms and backlogs, how long it is measured."""

    count: int
    period_s: float
    turn_s: float
    terms_of: dict[str, Terms]
    backlogs: dict[str, int]
    backlog_note: str

    @classmethod
    def make(cls, count: int, seconds: float, turn_s: float, rounds: int) -> Plan:
        names = [f"acct-{i:04d}" for i in range(count)]
        terms_of = {name: TODAY if i % 2 == 0 else SEED for i, name in enumerate(names)}
        period_s = measured_s(count, seconds, turn_s, rounds)
        backlogs = {name: backlog_refs(count, period_s, terms) for name, terms in terms_of.items()}
        note = f"{period_s * BACKLOG_MARGIN:.0f} s of its share"
        return cls(count, period_s, turn_s, terms_of, backlogs, note)

    @property
    def label_of(self) -> dict[str, str]:
        return {name: LABELS[terms] for name, terms in self.terms_of.items()}

    @property
    def total_refs(self) -> int:
        return sum(self.backlogs.values())

    @property
    def takes_turns(self) -> bool:
        return self.count > SLOTS

    @property
    def turns_counted(self) -> bool:
        """Whether an account's turns show as runs of requests: a round of others' turns is
        a pause longer than two gaps (not with 10 accounts on 8 slots, where it is not)."""
        return round_s(self.count, self.turn_s) > 2 * turn_gap_s(self)

    def sim_accounts(self) -> list[SimAccount]:
        return [
            SimAccount(name, f"ak-{name}-Q7v", f"sk-{name}-h3N", terms.interval_s, terms.max_refs)
            for name, terms in self.terms_of.items()
        ]

    def describe_terms(self) -> str:
        today = sum(1 for t in self.terms_of.values() if t == TODAY)
        parts = [f"{n} at {LABELS[t]}" for t, n in ((TODAY, today), (SEED, self.count - today))]
        return f"{self.count:,} ({', '.join(p for p in parts if not p.startswith('0 '))})"


def round_s(count: int, turn_s: float) -> float:
    """About how long a round of turns takes: every account one turn on one slot, as many at
    once as there are slots (0 where the slots are enough for one account each)."""
    return math.ceil(count / SLOTS) * (turn_s + SWITCH_S) if count > SLOTS else 0.0


def measured_s(count: int, seconds: float, turn_s: float, rounds: int) -> float:
    """The row's shortest period: `seconds`, or about `rounds` rounds of turns (its
    backlogs are sized for it; where turns show, it is measured until they went round)."""
    return max(seconds, math.ceil(rounds * round_s(count, turn_s) * ROUND_MARGIN))


def backlog_refs(count: int, period_s: float, terms: Terms) -> int:
    """Enough for the period at the lower of the account's rate and its share of what the
    slots send here (SLOT_REQUESTS_PER_S each), with BACKLOG_MARGIN."""
    per_s = min(1 / terms.interval_s, SLOT_REQUESTS_PER_S * SLOTS / count)
    return math.ceil(period_s * per_s * BACKLOG_MARGIN) * terms.max_refs


@dataclass
class Row:
    plan: Plan
    rounds: int = DEFAULT_ROUNDS
    period_s: float = 0.0  # measured
    figures: PeriodFigures | None = None
    cpu_s: float | None = None
    memory_empty: int = 0
    memory_parked: int = 0
    wanted_at_start: int = 0
    wanted_measured: int = 0
    dry: int = 0
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def enough_slots(self) -> bool:
        return self.wanted_measured <= SLOTS

    @property
    def cpu_per_1000_requests(self) -> float | None:
        if self.cpu_s is None or self.figures is None or not self.figures.requests:
            return None
        return self.cpu_s / (self.figures.requests / 1000)

    def misses(self) -> list[str]:
        f = self.figures
        if self.error or f is None:
            return ["did not run to the end"]
        missed = []
        if self.enough_slots and f.rate_used_min < RATE_TARGET:
            missed.append(f"an account under {RATE_TARGET:g} of its rate")
        if not self.enough_slots:
            if f.idle_accounts:
                missed.append(f"{f.idle_accounts:,} accounts without a request")
            if f.slowest_share_within_terms < SHARE_TARGET:
                missed.append(f"slowest share within terms < {SHARE_TARGET:g}")
        if self.plan.turns_counted and f.turns_min < self.rounds:
            missed.append(f"an account with fewer than {self.rounds} turns")
        if f.refused:
            missed.append("Code 160")
        if self.dry:
            missed.append(f"{self.dry} accounts ran dry (backlog too small to measure)")
        return missed


def run_row(plan: Plan, log_dir: Path, rounds: int, overrides: Mapping[str, str]) -> Row:
    row = Row(plan, rounds)
    row_dir = log_dir / f"accounts-{plan.count}"
    row_dir.mkdir(parents=True, exist_ok=True)
    say(
        f"[{plan.count}] {plan.describe_terms()}; {plan.total_refs:,} RefIds; "
        f"at least {plan.period_s:.0f} s measured; logs {row_dir}"
    )
    accounts_file = row_dir / "accounts.toml"
    accounts_file.write_text(accounts_toml(plan.sim_accounts()))
    server, url = start_redis(row_dir)
    try:
        with ExitStack() as stack:
            client = stack.enter_context(redis.Redis.from_url(url))
            sim = stack.enter_context(
                simulator_process("--policy", "sent", accounts_file=accounts_file, log_dir=row_dir)
            )
            row.memory_empty = used_memory(client)
            base_env = {**process_env(url, sim.base_url, accounts_file), **overrides}
            park(plan, row, row_dir, client, base_env)
            drain_env = {
                **base_env,
                "ESMS_WINDOW": "always",
                "BENCH_FAIR_TURN_S": f"{plan.turn_s:g}",
            }
            drain(plan, row, row_dir, client, sim, drain_env)
    except Exception as exc:
        row.error = f"{type(exc).__name__}: {exc}"
        say(f"[{plan.count}] failed:\n{traceback.format_exc()}")
    finally:
        try:
            server.stop()
        except BaseException:
            server.kill()
            raise
    return row


def process_env(redis_url: str, base_url: str, accounts_file: Path) -> dict[str, str]:
    """The environment of every project process of a row (the window is added per phase)."""
    env = clean_environ()
    env.update(
        {
            "CELERY_BROKER_URL": redis_url,
            "ESMS_REDIS_URL": redis_url,
            "ESMS_ACCOUNTS_FILE": str(accounts_file),
            "ESMS_BASE_URL": base_url,
            "ESMS_REST_BASE_URL": base_url,
            "ESMS_TIMEZONE": ZONE,
            "ESMS_STATUS_QUEUE": STATUS_QUEUE,
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def park(plan: Plan, row: Row, row_dir: Path, client: redis.Redis, env: dict[str, str]) -> None:
    """Every account's backlog parked while the window is closed, by workers serving only
    esms.fetch; they stop once it is all there."""
    closed = window_opening_at(datetime.now(UTC) + timedelta(hours=6))
    env = {**env, "ESMS_WINDOW": closed}
    (row_dir / "park").mkdir(exist_ok=True)
    with Children(row_dir / "park", stop_grace_s=STOP_GRACE_S) as fleet:
        for name in (f"parker{i + 1}" for i in range(WORKERS)):
            fleet.start(name, worker_command(name, CONCURRENCY, queues="esms.fetch"), env)
        fleet.wait_ready(timeout_s=180)
        started = time.monotonic()
        plan_file = row_dir / "submit-plan.json"
        plan_file.write_text(
            json.dumps({"tag": "r", "oa_id": oa_id(0), "group": GROUP, "backlogs": plan.backlogs})
        )
        produced = subprocess.run(
            [sys.executable, "-m", "bench.accounts_submit", str(plan_file)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if produced.returncode != 0:
            raise RuntimeError(f"the producer failed:\n{produced.stderr[-3000:]}")
        sent = json.loads(produced.stdout.strip().splitlines()[-1])
        say(f"[{plan.count}] submitted {sent['refs']:,} RefIds in {sent['took_s']:.1f}s")
        wait_parked(plan, client, started)
        parked_s = time.monotonic() - started
    row.memory_parked = used_memory(client)
    row.notes.append(
        f"{sent['groups']:,} submissions of up to {GROUP:,} RefIds in {sent['took_s']:.0f} s, "
        f"all parked {parked_s:.0f} s after the first"
    )


def wait_parked(plan: Plan, client: redis.Redis, started: float) -> None:
    deadline = started + PARK_TIMEOUT_S
    next_say = time.monotonic() + PROGRESS_EVERY_S
    while True:
        parked = parked_refs(client, plan.backlogs)
        if parked >= plan.total_refs:
            return
        now = time.monotonic()
        if now > deadline:
            raise RuntimeError(f"only {parked:,} of {plan.total_refs:,} RefIds parked in time")
        if now >= next_say:
            next_say += PROGRESS_EVERY_S
            say(f"[{plan.count}] {parked:,}/{plan.total_refs:,} RefIds parked")
        time.sleep(0.5)


def parked_refs(client: redis.Redis, accounts: Mapping[str, int]) -> int:
    pipe = client.pipeline(transaction=False)
    for name in accounts:
        pipe.hget(AccountKeys(name).backlog_meta, "refs")
    return sum(int(value or 0) for value in pipe.execute())


def drain(
    plan: Plan,
    row: Row,
    row_dir: Path,
    client: redis.Redis,
    sim: RemoteSimulator,
    env: dict[str, str],
) -> None:
    """Run the drain fleet and beat; measure from the first request for the plan's period
    and, where turns show, until every account has had its rounds of turns (the last one
    ended), at most MAX_PERIOD_S."""
    row.wanted_at_start = drainers_wanted(env, client, measured=False)
    watch = TurnWatch(list(plan.terms_of), turn_gap_s(plan)) if plan.turns_counted else None
    with Children(row_dir, stop_grace_s=STOP_GRACE_S) as fleet:
        for name in (f"worker{i + 1}" for i in range(WORKERS)):
            fleet.start(name, worker_command(name, CONCURRENCY, app=WORKER_APP), env)
        fleet.start("beat", beat_command(row_dir / "beat-schedule"), env)
        fleet.wait_ready(timeout_s=180)
        ready_at = time.monotonic()
        say(f"[{plan.count}] {WORKERS} workers x {CONCURRENCY} and beat ready")
        first_at: float | None = None
        rounds_at: float | None = None  # when every account had begun its last round's turn
        cpu_start = 0.0
        events = drain_queue_max = 0
        next_say = next_watch = time.monotonic() + PROGRESS_EVERY_S
        while True:
            events += take_status_events(client)
            drain_queue_max = max(drain_queue_max, int(client.llen(DRAIN_QUEUE)))
            now = time.monotonic()
            if first_at is None and sim.stats()["requests"] > 0:
                first_at, cpu_start = now, fleet_cpu_s(fleet, "worker")
                row.notes.append(f"first request {now - ready_at:.1f} s after the fleet was ready")
            if watch is not None and first_at is not None and now >= next_watch:
                next_watch = now + WATCH_EVERY_S
                watch.add(sim.requests(since=watch.seen))
                if rounds_at is None and watch.fewest() >= row.rounds:
                    rounds_at = now
                    took_s = now - first_at
                    say(f"[{plan.count}] every account began turn {row.rounds} by {took_s:.0f}s")
            if first_at is not None and measured_enough(plan, first_at, rounds_at, now):
                row.cpu_s = fleet_cpu_s(fleet, "worker") - cpu_start
                row.period_s = now - first_at
                break
            if first_at is None and now > ready_at + 120:
                raise RuntimeError("no request within 120 s of the fleet being ready")
            if now >= next_say:
                next_say += PROGRESS_EVERY_S
                say(f"[{plan.count}] {now - ready_at:4.0f}s: {sim.stats()['requests']} requests")
            time.sleep(POLL_S)
        log = sim.requests()
        (row_dir / "requests.json").write_text(json.dumps(log))
        row.wanted_measured = drainers_wanted(env, client, measured=True)
        row.notes.append(
            f"drain queue up to {drain_queue_max:,} tasks; {events:,} status events taken off "
            f"the queue; Redis at the end {used_memory(client) / 2**20:.0f} MB"
        )
    seconds = row.period_s
    row.figures = period_figures(log, plan.terms_of, plan.label_of, seconds, turn_gap_s(plan))
    row.dry = ran_dry(log, plan.backlogs)
    firsts = first_requests_s(log, list(plan.terms_of))
    served = sorted(s for s in firsts.values() if s is not None)
    never = len(firsts) - len(served)
    latest_s = served[-1] if served else 0.0
    row.notes.append(
        f"every account's first request within {latest_s:.1f} s of the first"
        if not never
        else f"{never:,} accounts without any request in the run ({log_end_s(log):.0f} s); the "
        f"{len(served):,} others' first requests within {latest_s:.1f} s of the first"
    )
    (row_dir / "first-requests.json").write_text(json.dumps(firsts, indent=0))
    minima = ", ".join(
        f"{label} {rate:.3f}" for label, rate in sorted(row.figures.rate_used_min_by_terms.items())
    )
    row.notes.append(f"lowest rate used by terms: {minima}")
    if plan.turns_counted:
        f = row.figures
        row.notes.append(
            f"turns per account (runs of requests more than {turn_gap_s(plan):g} s apart): "
            f"min {f.turns_min}, median {f.turns_median:g}; a round estimated at "
            f"{round_s(plan.count, plan.turn_s):.0f} s ({plan.count:,} accounts / {SLOTS} slots "
            f"x ({plan.turn_s:g} s turn + {SWITCH_S:g} s to hand it over))"
        )


def measured_enough(plan: Plan, first_at: float, rounds_at: float | None, now: float) -> bool:
    """The plan's period is over and, where turns show, the last account's turn of the last
    round has ended (a turn's gap after it began); or MAX_PERIOD_S is up."""
    if now - first_at >= MAX_PERIOD_S:
        return True
    if now - first_at < plan.period_s:
        return False
    return not plan.turns_counted or (rounds_at is not None and now >= rounds_at + turn_gap_s(plan))


def turn_gap_s(plan: Plan) -> float:
    """A pause in an account's requests longer than this ends a turn: past a few turns of
    others' (a slot's requests come a fraction of a second apart)."""
    return max(1.0, 3 * plan.turn_s)


def log_end_s(log: list[dict[str, Any]]) -> float:
    times = [r["received_monotonic_s"] for r in log if r["api_key_ok"]]
    return max(times) - min(times) if times else 0.0


def take_status_events(client: redis.Redis) -> int:
    """Count and drop the events on the status queue (nobody reads it: unread, they would
    fill Redis at thousands a second)."""
    pipe = client.pipeline(transaction=True)
    pipe.llen(STATUS_QUEUE)
    pipe.delete(STATUS_QUEUE)
    count, _ = pipe.execute()
    return int(count)


def drainers_wanted(env: Mapping[str, str], client: redis.Redis, measured: bool) -> int:
    """The drainers every account wants together (Settings.drainers_wanted): with the
    assumed request time, or with each account's measured one."""
    base = Settings.from_env(env, process="worker")
    total = 0
    for name, account in read_file(base, NO_SECRETS, env).accounts.items():
        took_s = RequestStats(client, AccountKeys(name)).request_time_s() if measured else None
        total += base.drainers_wanted(account.terms, took_s)
    return total


def render(rows: list[Row]) -> str:
    columns = [
        "accounts (terms)",
        "backlog per account",
        "pool slots / drainers wanted",
        "measured (turn)",
        "target",
        "rate used: min / median",
        "slowest share (within its terms)",
        "slowest / median (within its terms)",
        "turns per account: min / median",
        "accounts without a request",
        "requests/s (RefIds/s)",
        "worker CPU s / 1k requests",
        "Redis after parking (per account)",
        "Code 160 (0)",
        "min gap / interval",
        "ran dry (0)",
        "meets target",
    ]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(cells(row)) + " |")
    notes = [
        f"- {row.plan.count:,} account{'s' if row.plan.count != 1 else ''}: "
        + "; ".join(row.notes + ([f"error: {row.error}"] if row.error else []))
        for row in rows
    ]
    return "\n".join([*lines, "", "Notes:", *notes, "", LEGEND])


def cells(row: Row) -> list[str]:
    plan, f = row.plan, row.figures
    sizes = sorted(set(plan.backlogs.values()))
    backlog = (
        f"{'-'.join(f'{n:,}' for n in sizes)} ({plan.backlog_note}; {plan.total_refs:,} in all)"
    )
    wanted = f"{SLOTS} / {row.wanted_at_start:,} at start, {row.wanted_measured:,} measured"
    if row.enough_slots:
        target = f"each >= {RATE_TARGET:g} of its rate"
    else:
        target = f"slowest share >= {SHARE_TARGET:g}"
        target += f", each >= {row.rounds} turns" if plan.turns_counted else ""
    measured = f"{row.period_s:.0f} s" + (f" ({plan.turn_s:g} s)" if plan.takes_turns else "")
    delta = row.memory_parked - row.memory_empty
    memory = (
        f"{row.memory_parked / 2**20:.0f} MB ({delta / plan.count / 1024:,.0f} kB, "
        f"{delta / max(1, plan.total_refs):.0f} B a RefId)"
    )
    missed = row.misses()
    verdict = "yes" if not missed else "**no**: " + ", ".join(missed)
    if f is None:
        return [plan.describe_terms(), backlog, wanted, measured, target, *[""] * 11, verdict]
    cpu = row.cpu_per_1000_requests
    return [
        plan.describe_terms(),
        backlog,
        wanted,
        measured,
        target,
        f"{f.rate_used_min:.3f} / {f.rate_used_median:.3f}",
        f"{f.slowest_share:.2f} ({f.slowest_share_within_terms:.2f})",
        f"{f.slowest_vs_median_within_terms:.2f}",
        f"{f.turns_min} / {f.turns_median:g}" if plan.turns_counted else "-",
        f"{f.idle_accounts:,}",
        f"{f.requests_per_s:.1f} ({f.refs_per_s:,.0f})",
        "" if cpu is None else f"{cpu:.1f}",
        memory,
        f"{f.refused:,}",
        "" if f.min_gap_ratio is None else f"{f.min_gap_ratio:.3f}",
        f"{row.dry:,}",
        verdict,
    ]


LEGEND = """\
How to read it (bench/accounts_figures.py has the exact definitions):
- The period: from the first request of any account, --seconds long, and where turns show
  (below) until every account has had --rounds turns (the last one ended), at most 600 s.
  Turns last --turn-seconds where there are more accounts than slots (the workers run
  bench/accounts_app.py; FAIR_TURN_S is 10 s in production). rate used: an account's
  requests in it x its interval / the period; min and median over the accounts.
- slowest share: the fewest requests of an account over the mean per account; in
  parentheses against the mean of the accounts on its own terms (a 0.2 s account sends at
  most a quarter of a 0.05 s one's requests in the same time on a slot). slowest / median:
  the fewest over the median of the accounts on its terms.
- turns per account: its requests in the period split where two are over 3 turns (at
  least 1 s) apart; a turn cut by the period's ends counts. Shown where a round of the
  others' turns is a longer pause than that (not at 10 accounts on 8 slots).
- pool slots / drainers wanted: 2 workers x 4 processes; ESMS_DRAINERS=auto per account,
  with the assumed request time (start) and the measured one (end). Where the slots suffice,
  each account must keep 0.9 of its rate; where they do not, the slowest share within its
  terms must be at least 0.8 and, where a round of turns is long enough for turns to show
  (100 accounts and more), every account must have had --rounds turns.
- worker CPU: user + system seconds of both workers' process groups over the period, per
  1,000 requests sent in it. Redis: used_memory once every backlog is parked, and its growth
  since the empty server per account and per RefId.
- ran dry: accounts whose whole backlog was answered; their backlog, not the drain, bounded
  them. Code 160 and min gap over the whole run.
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.accounts_bench", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument(
        "--accounts",
        default=None,
        help=f"numbers of accounts, comma-separated (default {DEFAULT_ACCOUNTS}; --quick 1,10,100)",
    )
    parser.add_argument(
        "--seconds", type=float, default=None, help="measured period (default 60; --quick 20)"
    )
    parser.add_argument(
        "--turn-seconds",
        type=float,
        default=DEFAULT_TURN_S,
        help=f"a turn on the pool while others wait (default {DEFAULT_TURN_S:g}; FAIR_TURN_S in "
        "production)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=DEFAULT_ROUNDS,
        help=f"rounds of turns each row with more accounts than slots measures (default "
        f"{DEFAULT_ROUNDS})",
    )
    parser.add_argument("--quick", action="store_true", help="fewer accounts, a shorter period")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for every worker and beat, e.g. ESMS_RELEASE_EVERY=30",
    )
    parser.add_argument("--log-dir", type=Path, help="process logs (default: a new temp dir)")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="also write the table here")
    args = parser.parse_args(argv)
    text = args.accounts or ("1,10,100" if args.quick else DEFAULT_ACCOUNTS)
    try:
        args.counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        parser.error(f"--accounts {text!r}: give numbers, e.g. 1,10,100")
    if not args.counts or any(n < 1 or n > 5000 for n in args.counts):
        parser.error("--accounts: each between 1 and 5000")
    args.seconds = args.seconds or (20.0 if args.quick else 60.0)
    args.overrides = env_overrides(parser, args.env)
    if not 5 <= args.seconds <= 3600:
        parser.error("--seconds must be between 5 and 3600")
    if not 0.1 <= args.turn_seconds <= 60:
        parser.error("--turn-seconds must be between 0.1 and 60")
    if not 1 <= args.rounds <= 20:
        parser.error("--rounds must be between 1 and 20")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_sigterm()
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="esms-accounts-bench-"))
    started = time.monotonic()
    rows: list[Row] = []
    interrupted = False
    try:
        for count in args.counts:
            plan = Plan.make(count, args.seconds, args.turn_seconds, args.rounds)
            rows.append(run_row(plan, log_dir, args.rounds, args.overrides))
    except KeyboardInterrupt:
        interrupted = True
        say("bench: interrupted; every process was stopped")
    heading = (
        f"Accounts benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {_commit()}, "
        f"{os.cpu_count()} CPUs, at least {args.seconds:g} s measured per row, turns of "
        f"{args.turn_seconds:g} s, {args.rounds} rounds, load average {os.getloadavg()[0]:.1f} "
        "at the end, took "
        f"{(time.monotonic() - started) / 60:.1f} min"
        + "".join(f", {k}={v}" for k, v in args.overrides.items())
        + (", INTERRUPTED: partial results" if interrupted else "")
    )
    text = f"{heading}\n\n{render(rows)}\nProcess logs: {log_dir}\n"
    print("\n" + text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    if interrupted:
        return 130
    return 1 if any(row.misses() for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
