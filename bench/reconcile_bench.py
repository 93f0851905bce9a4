"""The sweep of eSMS's ledger finding what was sent but never submitted: `make bench-reconcile`.

    python -m bench.reconcile_bench [--quick] [--log-dir DIR] [--env KEY=VALUE ...]

The issue's benchmark: a ledger of 100,000 messages (10,000 with --quick), 1% of them never
submitted; the time and requests to find and settle them all, and the Redis memory of the
cursor and the comparison.

On a redis-server of its own (a free port, never the Redis on 6379), one simulator process,
two `celery worker` instances of 4 and `celery beat` of this project, on eSMS's current terms
(GetCallback 0.05 s x 200 RefIds, window always; QueryZnsStatus 0.01 s; GetSmsSentData_V2 at
the project's and the simulator's default, 1 s: eSMS documents none), ESMS_RECONCILE=adopt,
ESMS_QUERY_STATUS=fallback, beat's sweep every 30 s over the last hour:

1. every message is registered in the simulator at once, final (sent) at once, with a
   CallbackUrl; the simulator runs two minutes behind (--clock-offset -120), so its ledger
   rows are past the minute a sweep leaves for later as soon as they exist;
2. the workers and beat start; 99% of the RefIds are submitted with `fetch_callbacks.delay`
   (500 a call); every 100th one never is;
3. the status queue is consumed (exactly one terminal event per RefId is expected, for all of
   them), and twice a second the unsubmitted set (AccountKeys.unsubmitted) and the keys'
   MEMORY USAGE are read, until every RefId has its terminal event and every unsubmitted one
   was found.

Figures, from the first ledger request (the first sweep) on: when every unsubmitted RefId was
in the unsubmitted set (found) and when the last of them had its terminal event (settled);
ledger requests and rows until then and in all, rows a second; QueryZnsStatus requests for
the adopted RefIds; MEMORY USAGE (SAMPLES 0) of the cursor hash, the unsubmitted set, the
notes of the OA "-" (the adopted RefIds' while they wait; the highest seen) and every key of
that OA at the end (the adopted RefIds' done memory). Progress goes to stderr; the markdown
table to stdout and .run/bench-reconcile.md. Every process is stopped by its pid on exit,
Ctrl-C included.
"""

from __future__ import annotations

import argparse
import json
import os
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
    CURRENT_MAX_REFS,
    CURRENT_QUERY_INTERVAL_S,
    STOP_GRACE_S,
    prepare_producer,
    project_env,
)
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
from esms_callbacks.engine.keys import AccountKeys
from esms_callbacks.engine.notes import NO_OA
from esms_callbacks.engine.redis_values import as_text
from esms_callbacks.simulator.remote import RemoteSimulator

CALLBACK_INTERVAL_S, MAX_REFS = CURRENT_CALLBACK_INTERVAL_S, CURRENT_MAX_REFS
QUERY_INTERVAL_S = CURRENT_QUERY_INTERVAL_S
LEDGER_INTERVAL_S = 1.0  # the project's and the simulator's default (eSMS documents none)
WORKERS, CONCURRENCY = 2, 4
SWEEP_EVERY_S, LOOKBACK_S = 30, 3600
CLOCK_OFFSET_S = -120.0  # the simulator's clock: rows are two minutes old when registered
UNSUBMITTED_EVERY = 100  # RefIds n with n % 100 == 99 are never submitted: 1%
SUBMIT_GROUP = 500  # RefIds a .delay() carries
SAMPLE_EVERY_S, PROGRESS_EVERY_S = 0.5, 15.0
LINGER_S = 10.0  # after the last terminal event, for a late duplicate
PREFIX = "rc-"
OUTPUT = ROOT / ".run" / "bench-reconcile.md"


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass
class Watch:
    """What the status queue and Redis showed, at time.time()."""

    terminal_at_s: dict[str, float] = field(default_factory=dict)
    sources: dict[str, int] = field(default_factory=dict)  # of the unsubmitted RefIds' terminal
    oas: set[str] = field(default_factory=set)  # of the unsubmitted RefIds' events
    events: int = 0
    duplicates: int = 0
    found_at_s: float | None = None  # every unsubmitted RefId in the unsubmitted set
    found_other: int = 0  # RefIds in that set that were submitted
    peak_bytes: dict[str, int] = field(default_factory=dict)  # key label -> MEMORY USAGE


@dataclass
class Result:
    count: int
    unsubmitted: list[str]
    watch: Watch = field(default_factory=Watch)
    sweep_started_s: float | None = None  # the first ledger request's arrival
    ledger: list[dict[str, Any]] = field(default_factory=list)  # the ledger's log entries
    query_for_adopted: int = 0
    callback_requests: int = 0
    end_bytes: dict[str, int] = field(default_factory=dict)
    no_oa_keys: int = 0
    sweeps: list[str] = field(default_factory=list)  # the workers' "ledger sweep:" lines
    error: str = ""

    @property
    def lost(self) -> int:
        return self.count - len(self.watch.terminal_at_s)

    @property
    def settled_at_s(self) -> float | None:
        times = [self.watch.terminal_at_s.get(ref) for ref in self.unsubmitted]
        return None if None in times else max(t for t in times if t is not None)

    def since_sweep(self, at_s: float | None) -> float | None:
        if at_s is None or self.sweep_started_s is None:
            return None
        return at_s - self.sweep_started_s

    def ledger_until(self, at_s: float | None) -> tuple[int, int]:
        """Ledger requests received up to `at_s` (all if None), and the rows they returned."""
        entries = [e for e in self.ledger if at_s is None or e["received_at_s"] <= at_s]
        return len(entries), sum(int(e.get("record_count") or 0) for e in entries)

    def misses(self) -> list[str]:
        missed = []
        if self.error:
            missed.append("did not run to the end")
        if self.lost:
            missed.append(f"{self.lost:,} without a terminal event")
        if self.watch.duplicates:
            missed.append(f"{self.watch.duplicates:,} duplicate terminal events")
        if self.watch.found_at_s is None:
            missed.append("not every unsubmitted RefId found")
        if self.watch.found_other:
            missed.append(f"{self.watch.found_other:,} submitted RefIds taken as unsubmitted")
        if any(str(e.get("code")) == "160" for e in self.ledger):
            missed.append("ledger Code 160")
        return missed


def refs_of(count: int) -> tuple[list[str], list[str]]:
    """The RefIds to submit and those never submitted (every UNSUBMITTED_EVERY-th)."""
    every = [f"{PREFIX}{n}" for n in range(count)]
    lost = [ref for n, ref in enumerate(every) if n % UNSUBMITTED_EVERY == UNSUBMITTED_EVERY - 1]
    lost_set = set(lost)
    return [ref for ref in every if ref not in lost_set], lost


def run(
    count: int, url: str, sim: RemoteSimulator, log_dir: Path, extra: Mapping[str, str]
) -> Result:
    submitted, unsubmitted = refs_of(count)
    result = Result(count, unsubmitted)
    client = redis.Redis.from_url(url)
    fresh_broker(client, naive_too=False)
    account = f"bench-reconcile-{uuid.uuid4().hex[:6]}"
    status_queue = f"bench.status.reconcile.{uuid.uuid4().hex[:6]}"
    env = project_env(
        redis_url=url,
        base_url=sim.base_url,
        account=account,
        status_queue=status_queue,
        interval_s=CALLBACK_INTERVAL_S,
        max_refs=MAX_REFS,
        window="always",
        overrides={
            "ESMS_QUERY_RATE_INTERVAL": f"{QUERY_INTERVAL_S:g}",
            "ESMS_QUERY_STATUS": "fallback",
            "ESMS_RECONCILE": "adopt",
            "ESMS_RECONCILE_EVERY": str(SWEEP_EVERY_S),
            "ESMS_RECONCILE_LOOKBACK": str(LOOKBACK_S),
            **extra,
        },
    )
    oa = oa_id(0)
    started = time.time()
    registered = sim.register_many(count, oa, ref_id_prefix=PREFIX, final="sent")
    say(f"registered {registered:,} messages in {time.time() - started:.1f} s")
    with Children(log_dir, stop_grace_s=STOP_GRACE_S) as fleet:
        for name in (f"worker{i + 1}" for i in range(WORKERS)):
            fleet.start(name, worker_command(name, CONCURRENCY), env)
        fleet.start("beat", beat_command(log_dir / "beat-schedule"), env)
        fleet.wait_ready()
        say(f"{WORKERS} workers x {CONCURRENCY} and beat ready")
        submit(submitted, oa)
        watch(result, client, AccountKeys(account), url, status_queue)
        result.end_bytes = key_bytes(client, AccountKeys(account), whole_oa=True)
        result.no_oa_keys = len(
            list(client.scan_iter(match=_no_oa_match(AccountKeys(account)), count=1000))
        )
        fleet.stop()
    log = sim.requests()
    (log_dir / "requests.json").write_text(json.dumps(log))
    lost = set(unsubmitted)
    result.ledger = [e for e in log if e.get("endpoint") == "ledger"]
    result.sweep_started_s = min((e["received_at_s"] for e in result.ledger), default=None)
    result.query_for_adopted = sum(
        1 for e in log if e.get("endpoint") == "query" and e.get("sms_id") in lost
    )
    result.callback_requests = sum(1 for e in log if e.get("endpoint") == "callback")
    for worker in log_dir.glob("worker*.log"):
        result.sweeps += [
            ln for ln in worker.read_text(errors="replace").splitlines() if "ledger sweep:" in ln
        ]
    return result


def submit(refs: list[str], oa: str) -> None:
    from esms_callbacks import fetch_callbacks  # after prepare_producer

    started = time.time()
    for start in range(0, len(refs), SUBMIT_GROUP):
        fetch_callbacks.delay(refs[start : start + SUBMIT_GROUP], oa)
    say(f"submitted {len(refs):,} RefIds in {time.time() - started:.1f} s")


def _no_oa_match(keys: AccountKeys) -> str:
    return keys.oa(NO_OA) + "*"  # account names hold no glob characters


def key_bytes(client: redis.Redis, keys: AccountKeys, whole_oa: bool = False) -> dict[str, int]:
    """MEMORY USAGE (exact: SAMPLES 0) of the sweep's keys, 0 for a key that does not exist;
    with `whole_oa`, "oa -": the sum over every key of the adopted RefIds' OA (a SCAN)."""
    named = {
        "cursor": keys.ledger_cursor,
        "unsubmitted": keys.unsubmitted,
        "notes -": keys.notes(NO_OA),
    }
    sizes = {label: int(client.memory_usage(key, samples=0) or 0) for label, key in named.items()}
    if whole_oa:
        sizes["oa -"] = sum(
            int(client.memory_usage(key, samples=0) or 0)
            for key in client.scan_iter(match=_no_oa_match(keys), count=1000)
        )
    return sizes


def watch(result: Result, client: redis.Redis, keys: AccountKeys, url: str, queue: str) -> None:
    """Consume the status queue and sample Redis until every RefId has a terminal event and
    every unsubmitted one was found, or the time is up."""
    seen, lost = result.watch, set(result.unsubmitted)
    timeout_s = 300.0 + result.count * 0.015  # 100,000: 28 min
    deadline = time.monotonic() + timeout_s
    next_sample = next_say = time.monotonic()
    done_at: float | None = None
    with Connection(url) as conn:
        simple = conn.SimpleQueue(queue, no_ack=True)
        try:
            while time.monotonic() < deadline:
                now = time.monotonic()
                if now >= next_sample:
                    next_sample = now + SAMPLE_EVERY_S
                    sample(result, client, keys)
                if now >= next_say:
                    next_say = now + PROGRESS_EVERY_S
                    found = client.zcard(keys.unsubmitted)
                    say(
                        f"{len(seen.terminal_at_s):,}/{result.count:,} terminal, {found:,}/"
                        f"{len(lost):,} found, {sum(1 for r in lost if r in seen.terminal_at_s):,} "
                        "of them terminal"
                    )
                complete = len(seen.terminal_at_s) == result.count and seen.found_at_s is not None
                if complete and done_at is None:
                    done_at = now
                if done_at is not None and now - done_at >= LINGER_S:
                    break
                try:
                    message = simple.get(timeout=0.2)
                except simple.Empty:
                    continue
                take(result, message.payload, time.time(), lost)
        finally:
            simple.close()
    if done_at is None:
        result.error = f"not complete after {timeout_s:.0f} s"


def take(result: Result, event: dict[str, Any], at_s: float, lost: set[str]) -> None:
    seen = result.watch
    seen.events += 1
    ref = str(event.get("ref_id"))
    if ref in lost:
        seen.oas.add(str(event.get("oa_id")))
    if not event.get("terminal"):
        return
    if ref in seen.terminal_at_s:
        seen.duplicates += 1
        return
    seen.terminal_at_s[ref] = at_s
    if ref in lost:
        source = str(event.get("source"))
        seen.sources[source] = seen.sources.get(source, 0) + 1


def sample(result: Result, client: redis.Redis, keys: AccountKeys) -> None:
    seen = result.watch
    for label, size in key_bytes(client, keys).items():
        seen.peak_bytes[label] = max(seen.peak_bytes.get(label, 0), size)
    if seen.found_at_s is None:
        scores = client.zmscore(keys.unsubmitted, result.unsubmitted)
        if all(score is not None for score in scores):
            seen.found_at_s = time.time()
            members = {as_text(m) for m in client.zrange(keys.unsubmitted, 0, -1)}
            seen.found_other = len(members - set(result.unsubmitted))


def render(result: Result) -> str:
    lost_n = len(result.unsubmitted)
    found_s = result.since_sweep(result.watch.found_at_s)
    settled_s = result.since_sweep(result.settled_at_s)
    req_found, rows_found = result.ledger_until(result.watch.found_at_s)
    req_settled, _ = result.ledger_until(result.settled_at_s)
    req_all, rows_all = result.ledger_until(None)
    peak, end = result.watch.peak_bytes, result.end_bytes

    def secs(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}"

    rate = f"{rows_found / found_s:.0f}" if found_s else "-"
    missed = result.misses()
    rows = [
        ("messages in the ledger / never submitted", f"{result.count:,} / {lost_n:,}"),
        (
            "terminal / lost / duplicate (all RefIds)",
            f"{len(result.watch.terminal_at_s):,} / {result.lost:,} / {result.watch.duplicates:,}",
        ),
        ("first sweep to all found, s", secs(found_s)),
        ("first sweep to all settled, s", secs(settled_s)),
        (
            "ledger requests to all found / settled / in all",
            f"{req_found:,} / {req_settled:,} / {req_all:,}",
        ),
        ("ledger rows read to all found / in all", f"{rows_found:,} / {rows_all:,}"),
        ("rows read a second (to all found)", rate),
        ("QueryZnsStatus requests for the adopted", f"{result.query_for_adopted:,}"),
        (
            "terminal source of the adopted",
            ", ".join(f"{k} {v:,}" for k, v in sorted(result.watch.sources.items())) or "-",
        ),
        ("cursor hash, bytes", f"{end.get('cursor', 0):,}"),
        (
            "unsubmitted set, bytes (per RefId)",
            f"{end.get('unsubmitted', 0):,} ({end.get('unsubmitted', 0) / max(lost_n, 1):.0f})",
        ),
        (
            'notes of OA "-", bytes: highest seen / at the end',
            f"{peak.get('notes -', 0):,} / {end.get('notes -', 0):,}",
        ),
        (
            'every key of OA "-" at the end, bytes (per adopted RefId)',
            f"{end.get('oa -', 0):,} in {result.no_oa_keys} keys "
            f"({end.get('oa -', 0) / max(lost_n, 1):.0f})",
        ),
        ("meets", "yes" if not missed else "**no**: " + ", ".join(missed)),
    ]
    lines = ["| figure | value |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in rows)]
    notes = [
        f"- GetCallback requests {result.callback_requests:,}; events {result.watch.events:,}; "
        f"OA of the adopted RefIds' events: {', '.join(sorted(result.watch.oas)) or '-'}; "
        f"sweeps logged: {len(result.sweeps)}",
        *(f"- error: {result.error}" for _ in [0] if result.error),
    ]
    return "\n".join([*lines, "", *notes, "", LEGEND])


LEGEND = """\
How to read it:
- first sweep: the simulator's receipt of the first GetSmsSentData_V2 request (time.time());
  found: the first sample (every 0.5 s) in which the unsubmitted set held all of them;
  settled: the arrival on the status queue of the last one's terminal event.
- ledger requests and rows: the simulator's log (`endpoint: "ledger"`, `record_count`), by
  receipt; "in all" runs to the end of the run, later sweeps reading again the last
  ESMS_RECONCILE_OVERLAP (15 min) before where the one before ended.
- bytes: MEMORY USAGE ... SAMPLES 0 at the end (the notes also at their highest in the
  samples: a note goes when its RefId is done); the comparison (Backlog.locate) keeps nothing.
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.reconcile_bench", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="10,000 messages, not 100,000")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for every worker and beat, e.g. ESMS_RECONCILE_EVERY=10",
    )
    parser.add_argument("--log-dir", type=Path, help="process logs (default: a new temp dir)")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="also write the table here")
    args = parser.parse_args(argv)
    args.overrides = env_overrides(parser, args.env)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_sigterm()
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="esms-reconcile-bench-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    count = 10_000 if args.quick else 100_000
    started = time.monotonic()
    result = Result(count, refs_of(count)[1])
    interrupted = False
    server, url = start_redis(log_dir)
    try:
        prepare_producer(url, {})
        options = current_terms_simulator_options("--clock-offset", f"{CLOCK_OFFSET_S:g}")
        with ExitStack() as stack:
            sim = stack.enter_context(simulator_process(*options, log_dir=log_dir))
            sim.configure(
                query_rate_interval_s=QUERY_INTERVAL_S, ledger_rate_interval_s=LEDGER_INTERVAL_S
            )
            say(
                f"{count:,} messages, {count // UNSUBMITTED_EVERY:,} never submitted; "
                f"logs {log_dir}"
            )
            result = run(count, url, sim, log_dir, args.overrides)
    except KeyboardInterrupt:
        interrupted = True
        say("bench: interrupted; every process was stopped")
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        say(f"bench: failed: {result.error}")
    finally:
        server.stop()
    heading = (
        f"Reconcile benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {_commit()}, "
        f"{os.cpu_count()} CPUs, {WORKERS} workers x {CONCURRENCY} and beat, "
        f"ESMS_RECONCILE=adopt, ESMS_QUERY_STATUS=fallback, sweep every {SWEEP_EVERY_S} s, "
        f"lookback {LOOKBACK_S} s, GetCallback {CALLBACK_INTERVAL_S:g} s x {MAX_REFS}, "
        f"QueryZnsStatus {QUERY_INTERVAL_S:g} s, GetSmsSentData_V2 {LEDGER_INTERVAL_S:g} s "
        "(the default), window always, every message final at once with a CallbackUrl"
        + (", quick" if args.quick else "")
        + "".join(f", {k}={v}" for k, v in args.overrides.items())
        + f", load average {os.getloadavg()[0]:.1f} at the end, took "
        f"{(time.monotonic() - started) / 60:.1f} min"
        + (", INTERRUPTED: partial results" if interrupted else "")
    )
    text = f"{heading}\n\n{render(result)}\nProcess logs: {log_dir}\n"
    print("\n" + text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    if interrupted:
        return 130
    return 1 if result.misses() else 0


if __name__ == "__main__":
    sys.exit(main())
