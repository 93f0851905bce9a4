"""Push receiver benchmark (`make bench-push`): what pushes save, and what one receiver takes.

    python -m bench.push_bench [--refs 4000] [--pushes 20000] [--redis URL] [--log-dir DIR]

1. Nightly requests. A real worker, beat and receiver (`esms-callbacks receive`) against a
   simulator process (1 s x 100, eSMS's seed terms, scaled to 0.2 s so a run takes seconds):
   `--refs` RefIds submitted while the window is closed; then, in three runs, the simulator
   pushes (its own pacing and retries) no RefIds, half of them before the window opens, or
   half of them from the window's opening on, slower than the drain moves, so that the drain
   catches up and pushes and polls race for the same RefIds. Measured: GetCallback requests
   and RefIds asked, seconds from the window opening to the last terminal event, RefIds with
   more than one distinct terminal event.
2. Pushes per second. One receiver process, `--pushes` pushes of RefIds never submitted (each
   becomes an event), sent by this process over 64 connections: 200 answers per second, events
   per second (until the last is on the status queue), receiver CPU per 1,000 pushes. Once with
   no per-source limit, once (a quarter as many) at the default ESMS_PUSH_RATE: one source over
   it is slowed down, not refused.

Progress goes to stderr, the markdown tables to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import redis

from bench.env import (
    API_KEY,
    SECRET_KEY,
    STOP_GRACE_S,
    prepare_producer,
    project_env,
    window_opening_at,
)
from bench.harness import (
    beat_command,
    child_cpu_s,
    receiver_command,
    simulator_process,
    worker_command,
)
from bench.status_queue import StatusQueueReader
from esms_callbacks.cli.processes import Children, free_port, simulator_options

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
OA = "1090257973118325189"
TOKEN = "bench-push-token-5d2c8a1f9e"
INTERVAL_S = 0.2
MAX_REFS = 100
OPENS_IN_S = 30.0  # time to start the processes, submit, and (run b) have half pushed
LOAD_CONNECTIONS = 64
RACING_PUSHES_PER_S = 150  # run c: the drain covers 500 RefIds a second, half of them pushed


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass
class NightRun:
    title: str
    requests: int = 0
    refs_asked: int = 0
    pushed_before_open: int = 0
    drain_s: float = 0.0
    finished: int = 0
    conflicting: int = 0
    by_source: str = ""


def night(title: str, refs: int, push_when: str, redis_url: str, log_dir: Path) -> NightRun:
    """One run of part 1; `push_when` is '', 'before' or 'during'."""
    from esms_callbacks.tasks import fetch_callbacks

    run = NightRun(title)
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    tag = uuid.uuid4().hex[:6]
    opens_at = datetime.now(UTC) + timedelta(seconds=OPENS_IN_S)
    port = free_port()
    env = project_env(
        redis_url=redis_url,
        base_url="",
        account=f"bench-push-{tag}",
        status_queue=f"bench.status.push.{tag}",
        interval_s=INTERVAL_S,
        max_refs=MAX_REFS,
        window=window_opening_at(opens_at),
        overrides={
            "ESMS_PUSH_TOKEN": TOKEN,
            "ESMS_RECEIVER_PORT": str(port),
            "ESMS_REPOLL_AFTER": "5",
        },
    )
    ref_ids = [f"push-{tag}-{i:06d}" for i in range(refs)]
    pushed = ref_ids[::2] if push_when else []
    sim_args = simulator_options(
        API_KEY, SECRET_KEY, rate_interval_s=INTERVAL_S, policy="sent", max_refs=MAX_REFS
    )
    run_dir = log_dir / tag
    with (
        simulator_process(*sim_args) as sim,
        Children(run_dir, stop_grace_s=STOP_GRACE_S) as fleet,
    ):
        env["ESMS_BASE_URL"] = env["ESMS_REST_BASE_URL"] = sim.base_url
        run_dir.mkdir(parents=True, exist_ok=True)
        fleet.start("worker1", worker_command("worker1", 4), env)
        fleet.start("beat", beat_command(run_dir / "beat-schedule"), env)
        fleet.start("receiver", receiver_command(), env)
        fleet.wait_ready()
        for start in range(0, len(ref_ids), 10):
            fetch_callbacks.delay(ref_ids[start : start + 10], OA)
        reader = StatusQueueReader(client, env["ESMS_STATUS_QUEUE"])
        receiver_url = f"http://127.0.0.1:{port}/esms/push/{TOKEN}"
        if push_when == "before":
            sim.push(receiver_url, OA, pushed, rate_per_s=500)
            _wait(lambda: reader.poll().finished >= len(pushed), 60, "pushes applied")
            run.pushed_before_open = reader.tally.finished
        seconds_left = opens_at.timestamp() - time.time()
        if seconds_left < 0:
            say(f"  ! the window opened {-seconds_left:.1f}s before the pushes were applied")
        time.sleep(max(0.0, seconds_left))  # until the window opens: a moment on the clock
        requests_before = sim.stats()["requests"]
        if push_when == "during":
            # Slower than the drain moves through the backlog, so that the drain catches up
            # with the pushes and they race for the same RefIds.
            sim.push(receiver_url, OA, pushed, rate_per_s=RACING_PUSHES_PER_S)
        _wait(lambda: reader.poll().finished >= refs, 180, "every RefId terminal")
        run.drain_s = time.time() - opens_at.timestamp()
        stats = sim.stats()
        run.requests = stats["requests"] - requests_before
        run.refs_asked = stats["refs_sent"]
        run.finished = reader.tally.finished
        run.conflicting = reader.tally.conflicting
        run.by_source = _sources(client, env["ESMS_STATUS_QUEUE"])
    return run


def _sources(client: redis.Redis, queue: str) -> str:
    from bench.status_queue import decode

    counts: dict[str, int] = {}
    for raw in client.lrange(queue, 0, -1):
        event = decode(raw)
        if event.get("terminal"):
            counts[event.get("source", "?")] = counts.get(event.get("source", "?"), 0) + 1
    return ", ".join(f"{name} {count:,}" for name, count in sorted(counts.items()))


@dataclass
class LoadRun:
    title: str
    pushes: int
    accept_s: float = 0.0
    applied_s: float = 0.0
    not_200: int = 0
    cpu_s: float = 0.0


def load(title: str, pushes: int, rate: str, redis_url: str, log_dir: Path) -> LoadRun:
    """Part 2: one receiver process, as many pushes as it takes from one source, with
    `rate` as ESMS_PUSH_RATE."""
    run = LoadRun(title, pushes)
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    tag = uuid.uuid4().hex[:6]
    port = free_port()
    env = project_env(
        redis_url=redis_url,
        base_url="http://127.0.0.1:9",
        account=f"bench-load-{tag}",
        status_queue=f"bench.status.load.{tag}",
        interval_s=1.0,
        max_refs=MAX_REFS,
        window="always",
        overrides={
            "ESMS_PUSH_TOKEN": TOKEN,
            "ESMS_RECEIVER_PORT": str(port),
            "ESMS_PUSH_RATE": rate,
        },
    )
    (log_dir / tag).mkdir(parents=True, exist_ok=True)
    with Children(log_dir / tag, stop_grace_s=STOP_GRACE_S) as fleet:
        receiver = fleet.start("receiver", receiver_command(), env)
        fleet.wait_ready()
        cpu_before_s = child_cpu_s(receiver)
        url = f"http://127.0.0.1:{port}/esms/push/{TOKEN}"
        started = time.monotonic()
        run.not_200 = asyncio.run(_send_all(url, pushes, tag))
        run.accept_s = time.monotonic() - started
        queue = env["ESMS_STATUS_QUEUE"]
        _wait(lambda: int(client.llen(queue)) >= pushes, 300, "every push published")
        run.applied_s = time.monotonic() - started
        run.cpu_s = child_cpu_s(receiver) - cpu_before_s
    return run


async def _send_all(url: str, pushes: int, tag: str) -> int:
    connector = aiohttp.TCPConnector(limit=LOAD_CONNECTIONS)
    not_200 = 0
    async with aiohttp.ClientSession(connector=connector) as session:
        semaphore = asyncio.Semaphore(LOAD_CONNECTIONS * 2)

        async def one(i: int) -> None:
            nonlocal not_200
            params = {"SMSID": f"load-{tag}-{i:07d}", "SendStatus": "5", "SendFailed": "0"}
            params.update({"SendSuccess": "1", "TypeId": "25", "oaid": OA, "error_info": ""})
            params.update({"TotalReceiver": "1", "TotalSent": "1"})
            async with semaphore, session.get(url, params=params) as answer:
                await answer.read()
                not_200 += answer.status != 200

        await asyncio.gather(*(one(i) for i in range(pushes)))
    return not_200


def _wait(done: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout_s:.0f}s")
        time.sleep(0.1)


def render(nights: list[NightRun], refs: int, loads: list[LoadRun]) -> str:
    baseline = nights[0].requests or 1
    lines = [
        f"Nightly requests: {refs:,} RefIds waiting for a window of one request per "
        f"{INTERVAL_S:g}s x {MAX_REFS} RefIds, a simulator that pushes as eSMS does.",
        "",
        "| run | pushed before the window opened | GetCallback requests | requests / without "
        "pushes | RefIds asked | window open to last terminal event (s) | terminal events by "
        "source | RefIds terminal | RefIds with 2+ distinct terminal events (0) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in nights:
        lines.append(
            f"| {run.title} | {run.pushed_before_open:,} | {run.requests:,} | "
            f"{run.requests / baseline:.2f} | {run.refs_asked:,} | {run.drain_s:.1f} | "
            f"{run.by_source} | {run.finished:,}/{refs:,} | {run.conflicting} |"
        )
    lines += [
        "",
        f"One receiver process, pushes from one source over {LOAD_CONNECTIONS} connections "
        "from the benchmark process (same machine):",
        "",
        "| run | pushes | answered 200 per second | published per second (events on the "
        "queue) | not 200 | receiver CPU s per 1,000 pushes |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for loaded in loads:
        lines.append(
            f"| {loaded.title} | {loaded.pushes:,} | {loaded.pushes / loaded.accept_s:,.0f} | "
            f"{loaded.pushes / loaded.applied_s:,.0f} | {loaded.not_200} | "
            f"{loaded.cpu_s / loaded.pushes * 1000:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.push_bench")
    parser.add_argument("--refs", type=int, default=4000)
    parser.add_argument("--pushes", type=int, default=20000)
    parser.add_argument("--redis", default=DEFAULT_REDIS_URL)
    parser.add_argument("--log-dir", type=Path)
    args = parser.parse_args(argv)
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="esms-push-bench-"))
    prepare_producer(args.redis, {})
    say(f"push benchmark; logs in {log_dir}")
    nights = []
    for title, when in [
        ("a. no pushes", ""),
        ("b. half pushed before the window", "before"),
        ("c. half pushed during the drain (races)", "during"),
    ]:
        say(title)
        nights.append(night(title, args.refs, when, args.redis, log_dir))
    say("d. one receiver under load")
    loads = [
        load("d. no per-source limit", args.pushes, "0", args.redis, log_dir),
        load("e. the default limit, 500/s", args.pushes // 4, "500", args.redis, log_dir),
    ]
    print(render(nights, args.refs, loads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
