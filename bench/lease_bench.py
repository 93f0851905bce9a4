"""What finding the next due OA costs as an account's OAs grow (issue 23).

    python -m bench.lease_bench [--oas 1,100,1000,10000] [--chunks 3] [--budget 4]

Starts a throw-away redis-server of its own on a free port of 127.0.0.1 (as
bench/memory_bench.py does; stopped by its pid on exit), and for each number of OAs parks,
through engine.backlog.Backlog only, `--chunks` chunks of 10 RefIds in every OA (OA i due
i ms before the next, so the order matters), then measures:

    lease        Backlog.lease_next of 10 RefIds (one chunk), each handed back at once
                 (Backlog.unlease, due now) so the backlog stays the same size
    next due     Backlog.next_due_oa: what beat's release asks before it starts drainers
    capacity     what the capacity check reads on every submission while the window is
                 closed: Backlog.waiting_total, or where it is missing (the code before
                 issue 23) the sum of Backlog.per_oa over the OAs, as dispatch did
    migration    (code with Backlog.migrate) building the queue of OAs and the RefId count
                 of a backlog parked without them: once per account, after the upgrade

Redis time: SLOWLOG with every command logged (slowlog-log-slower-than 0), the durations of
the calls' own commands summed (for the lease, its EVALSHA only), per call; it is the time
Redis is blocked, for every client. Wall: the Python call's round trip, per call. Each
measure runs up to 200 calls or `--budget` seconds (at least 3 calls). Run it from another
tree (`cd OLD && python -m bench.lease_bench`) to measure that tree's code: the heading says
which `esms_callbacks` ran.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

import esms_callbacks
from bench.harness import measured, stop_on_sigterm
from bench.memory_bench import _commit, _redis_version, start_redis
from esms_callbacks.engine.backlog import Backlog
from esms_callbacks.engine.keys import AccountKeys
from esms_callbacks.engine.redis_connect import connect

ACCOUNT = "bench-lease"
NOW_S = 1_764_300_000.0  # a fixed moment: every chunk is due by then
REFS_PER_CHUNK = 10
LEASE_REFS = 10  # one chunk a lease
LEASE_S = 60.0
MAX_CALLS = 200
MIN_CALLS = 3

Say = Callable[[str], None]


@dataclass
class Cost:
    calls: int = 0
    redis_us: float = 0.0  # per call
    wall_ms: float = 0.0  # per call, median

    def cell(self) -> str:
        if not self.calls:
            return "-"
        return f"{self.redis_us:,.0f} µs / {self.wall_ms:.2f} ms"


@dataclass
class Row:
    oas: int
    refs: int
    lease: Cost = field(default_factory=Cost)
    next_due: Cost = field(default_factory=Cost)
    capacity: Cost = field(default_factory=Cost)
    migration_ms: float | None = None  # Redis time of the one-time build


class Slowlog:
    """Every command's duration, read back per measure."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        client.config_set("slowlog-log-slower-than", 0)
        client.config_set("slowlog-max-len", 1_000_000)

    def reset(self) -> None:
        self._client.slowlog_reset()

    def total_us(self, starts_with: bytes | None = None) -> int:
        """Summed durations since the reset: of the commands starting with `starts_with`,
        or of all but the bench's own SLOWLOG and CONFIG."""
        total = 0
        for entry in self._client.slowlog_get(-1):
            command = bytes(entry["command"])
            if starts_with is not None:
                total += entry["duration"] if command.startswith(starts_with) else 0
            elif not command.upper().startswith((b"SLOWLOG", b"CONFIG")):
                total += entry["duration"]
        return total


def park_oas(backlog: Backlog, oas: int, chunks: int) -> int:
    """Park `chunks` full chunks in each of `oas` OAs, OA i due i ms before OA i + 1."""
    refs = 0
    for i in range(oas):
        ids = [f"oa{i}-r{j}" for j in range(chunks * REFS_PER_CHUNK)]
        refs += backlog.park(oa_id(i), ids, NOW_S - 3600 + i / 1000).added
    return refs


def oa_id(i: int) -> str:
    return f"{1090257973118325189 + i}"  # shaped like a Zalo OA id


def timed(
    calls: Callable[[int], Any], slowlog: Slowlog, budget_s: float, starts_with: bytes | None
) -> Cost:
    """Run calls(n) for n = 0, 1, ... (each returns the seconds of the part to time) up to
    MAX_CALLS or `budget_s`, then read the Redis time they cost."""
    slowlog.reset()
    walls: list[float] = []
    started = time.monotonic()
    while len(walls) < MAX_CALLS and (
        len(walls) < MIN_CALLS or time.monotonic() - started < budget_s
    ):
        walls.append(calls(len(walls)))
    redis_us = slowlog.total_us(starts_with) / len(walls)
    return Cost(len(walls), redis_us, statistics.median(walls) * 1000)


def measure_one(client: redis.Redis, oas: int, chunks: int, budget_s: float, say: Say) -> Row:
    client.flushdb()
    keys = AccountKeys(ACCOUNT)
    backlog = Backlog(client, keys, done_ttl_s=172_800, chunk_refs=REFS_PER_CHUNK)
    started = time.monotonic()
    row = Row(oas, park_oas(backlog, oas, chunks))
    say(f"{oas:,} OAs: parked {row.refs:,} RefIds in {time.monotonic() - started:.1f}s")
    slowlog = Slowlog(client)
    migrate = getattr(backlog, "migrate", None)
    if migrate is not None:  # the code with the queue: its one-time build, from scratch
        client.delete(keys.oa_queue, keys.backlog_meta)
        slowlog.reset()
        migrate()
        row.migration_ms = slowlog.total_us() / 1000
    backlog.next_due_oa(NOW_S)  # (a no-op, or the build if the line above did not run)

    def lease(n: int) -> float:
        token = f"bench-{n}"
        t0 = time.perf_counter()
        got = backlog.lease_next(NOW_S, LEASE_REFS, LEASE_S, token)
        took = time.perf_counter() - t0
        if got is None:
            raise RuntimeError("nothing to lease: the backlog should never run dry here")
        backlog.unlease(got[0], token, [item.ref_id for item in got[1]], NOW_S)
        return took

    lease_sha = f"EVALSHA {backlog._lease.sha}".encode()
    row.lease = timed(lease, slowlog, budget_s, lease_sha)
    say(f"{oas:,} OAs: lease {row.lease.cell()} ({row.lease.calls} calls)")

    def next_due(_: int) -> float:
        t0 = time.perf_counter()
        if backlog.next_due_oa(NOW_S) is None:
            raise RuntimeError("no OA due")
        return time.perf_counter() - t0

    row.next_due = timed(next_due, slowlog, budget_s, None)
    say(f"{oas:,} OAs: next_due_oa {row.next_due.cell()} ({row.next_due.calls} calls)")

    def capacity(_: int) -> float:
        t0 = time.perf_counter()
        waiting = capacity_figure(backlog, NOW_S)
        took = time.perf_counter() - t0
        if waiting != row.refs:
            raise RuntimeError(f"the capacity check saw {waiting:,} RefIds of {row.refs:,}")
        return took

    row.capacity = timed(capacity, slowlog, budget_s, None)
    say(f"{oas:,} OAs: capacity {row.capacity.cell()} ({row.capacity.calls} calls)")
    return row


def capacity_figure(backlog: Backlog, now_s: float) -> int:
    """What the capacity check compares with the window: RefIds waiting or leased."""
    waiting_total = getattr(backlog, "waiting_total", None)
    if waiting_total is not None:
        return int(waiting_total())
    return sum(oa.waiting + oa.leased for oa in backlog.per_oa(now_s))


def capacity_method() -> str:
    return "waiting_total" if hasattr(Backlog, "waiting_total") else "sum(per_oa)"


def measure(args: argparse.Namespace, rows: list[Row], say: Say) -> None:
    with tempfile.TemporaryDirectory(prefix="esms-lease-bench-") as directory:
        server, url = start_redis(Path(directory))
        say(f"redis-server pid {server.popen.pid} at {url}")
        try:
            client = connect(url)
            for oas in args.oas:
                rows.append(measure_one(client, oas, args.chunks, args.budget, say))
            client.close()
        finally:
            try:
                server.stop()  # SIGTERM to its pid (nothing to save), SIGKILL if it lingers
            except BaseException:
                server.kill()
                raise
            say(f"redis-server pid {server.popen.pid} stopped")


def render(rows: list[Row]) -> str:
    lines = [
        "| OAs | RefIds | lease_next | next_due_oa | capacity check "
        f"({capacity_method()}) | migration (once) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        migration = "-" if r.migration_ms is None else f"{r.migration_ms:,.1f} ms"
        lines.append(
            f"| {r.oas:,} | {r.refs:,} | {r.lease.cell()} | {r.next_due.cell()} | "
            f"{r.capacity.cell()} | {migration} |"
        )
    return "\n".join(lines)


def heading(args: argparse.Namespace, elapsed_s: float, note: str) -> str:
    parts = [
        f"Lease cost benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"commit {_commit()}",
        f"esms_callbacks from {Path(esms_callbacks.__file__).parent}",
        _redis_version(),
        f"{args.chunks} chunks of {REFS_PER_CHUNK} RefIds an OA",
        f"took {elapsed_s:.0f} s",
    ]
    if note:
        parts.append(note)
    return (
        "\n" + ", ".join(parts) + "\n\nEach cell: Redis time per call (SLOWLOG, the time Redis "
        "is blocked) / wall time per call (median, the Python call's round trip).\n"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.lease_bench", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument(
        "--oas",
        type=lambda text: [int(x) for x in text.split(",")],
        default=[1, 100, 1000, 10000],
        help="numbers of OAs, comma-separated (default 1,100,1000,10000)",
    )
    parser.add_argument(
        "--chunks", type=int, default=3, help="chunks of 10 RefIds an OA (default %(default)s)"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=4.0,
        help="seconds a measure runs at most, past 3 calls (default %(default)s)",
    )
    args = parser.parse_args(argv)
    if min(args.oas) < 1 or args.chunks < 1:
        parser.error("--oas and --chunks must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stop_on_sigterm()
    started = time.monotonic()
    rows: list[Row] = []
    note, code = measured(lambda: measure(args, rows, _say))
    print(heading(args, time.monotonic() - started, note))
    print(render(rows))
    return code


def _say(text: str) -> None:
    print(f"lease_bench: {text}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
