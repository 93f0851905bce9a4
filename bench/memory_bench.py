"""Redis memory per RefId, through the project's own backlog (`make bench-memory`).

    python -m bench.memory_bench [--refs 1000000]

Starts a redis-server of its own on a free port (no persistence, noeviction), parks RefIds
shaped like eSMS's SMSIDs (a UUID and two digits, 38 characters) in submissions of 1,000,
drives each through one pending(7) answer as a drainer settles it (lease 100, publish-free
settle with the event summary a drainer keeps), then through a sent answer, and reads
`used_memory` after each phase. The targets are fixed here; a row that misses one says so.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import redis

from esms_callbacks.cli.processes import free_port
from esms_callbacks.workers.backlog import Backlog, Requeue, Tally
from esms_callbacks.workers.events import build_event, event_summary
from esms_callbacks.workers.keys import AccountKeys
from esms_callbacks.workers.records import Outcome, outcome_of
from esms_callbacks.workers.redis_connect import connect

OA = "1090257973118325189"
NOW_S = 1_764_300_000.0
SUBMISSION = 1000
REQUEST_REFS = 100
TARGET_BYTES = {"parked": 120, "pending": 200, "done (remembered)": 100}  # per RefId


def sms_ids(count: int, seed: int = 7) -> list[str]:
    """RefIds shaped like eSMS's: `4a496110-9fd3-4838-ac8b-bcaa36616f7011`."""
    rnd = random.Random(seed)
    return [
        f"{uuid.UUID(int=rnd.getrandbits(128), version=4)}{rnd.randrange(100):02d}"
        for _ in range(count)
    ]


def drive(backlog: Backlog, at_s: float, outcome: Outcome, finish: bool) -> int:
    """Lease every due RefId in requests of 100 and settle each as a drainer does; return
    the requests."""
    observed_at = datetime.fromtimestamp(at_s, UTC)
    requests = 0
    while True:
        token = uuid.uuid4().hex
        picked = backlog.lease_next(at_s, REQUEST_REFS, 60.0, token)
        if picked is None:
            return requests
        oa_id, batch = picked
        summaries = {
            item.ref_id: event_summary(build_event(item.ref_id, oa_id, outcome, observed_at))
            for item in batch
        }
        tally = Tally(counters={"requests": 1, "refs_asked": len(batch)})
        if finish:
            finished = [item.ref_id for item in batch]
            backlog.settle(oa_id, token, at_s, finished, [], tally, summaries, asked=True)
        else:
            requeue = [
                Requeue(item.ref_id, at_s + 900, outcome.state_key, summaries[item.ref_id])
                for item in batch
            ]
            backlog.settle(oa_id, token, at_s, [], requeue, tally, asked=True)
        requests += 1


def measure(refs: int, say: Callable[[str], None]) -> list[tuple[str, int, float, float]]:
    """Run the phases on a redis-server of our own; (phase, used bytes, bytes/RefId, s)."""
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--appendonly", "no", "--maxmemory-policy", "noeviction"]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    try:
        client = connect(f"redis://127.0.0.1:{port}/0")
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        backlog = Backlog(client, AccountKeys("bench-mem"), 172_800, REQUEST_REFS)
        ids = sms_ids(refs)
        base = int(client.info("memory")["used_memory"])
        rows = []

        def row(phase: str, started: float) -> None:
            used = int(client.info("memory")["used_memory"]) - base
            rows.append((phase, used, used / refs, time.monotonic() - started))
            say(f"{phase}: {used / refs:.0f} B a RefId, {client.dbsize()} keys")

        started = time.monotonic()
        for i in range(0, refs, SUBMISSION):
            backlog.park(OA, ids[i : i + SUBMISSION], NOW_S)
        row("parked", started)
        started = time.monotonic()
        pending = outcome_of({"SendStatus": 7, "SendFailed": 0, "SendSuccess": 0})
        drive(backlog, NOW_S, pending, finish=False)
        row("pending", started)
        started = time.monotonic()
        sent = outcome_of({"SendStatus": 5, "SendFailed": 0, "SendSuccess": 1})
        drive(backlog, NOW_S + 901, sent, finish=True)
        row("done (remembered)", started)
        return rows
    finally:
        server.terminate()
        server.wait(timeout=10)


def render(refs: int, rows: list[tuple[str, int, float, float]]) -> str:
    lines = [
        "| phase | RefIds | used_memory (MB) | bytes per RefId | target (B) | met | phase s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for phase, used, per_ref, took_s in rows:
        target = TARGET_BYTES[phase]
        met = "yes" if per_ref <= target else "no"
        lines.append(
            f"| {phase} | {refs:,} | {used / 1e6:.1f} | {per_ref:.0f} | {target} | {met} | "
            f"{took_s:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.memory_bench", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--refs", type=int, default=1_000_000, help="RefIds (default 1,000,000)")
    args = parser.parse_args(argv)
    rows = measure(args.refs, lambda text: print(text, flush=True))
    print(render(args.refs, rows))
    return 0 if all(per_ref <= TARGET_BYTES[p] for p, _, per_ref, _ in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
