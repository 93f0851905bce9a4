"""Benchmark: the global limiter against Celery's own rate_limit, with several workers.

    python -m bench.rate_bench [--interval 0.5] [--workers 3] [--concurrency 2] [--refs 5000]

Both runs use the same simulator process (which logs when each request arrived and answers
Code 160 to requests closer than the interval), the same worker count and the same RefIds.
Ours: RefIds submitted with fetch_callbacks.delay() in groups of 3 while the window is
closed; the window opens a few seconds later. Celery's: tasks of 100 RefIds each (already full
requests, the most favourable case for it) with rate_limit set to the allowed rate.
Prints one table; ratios are what to compare across machines.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis

from simulator.process import RemoteSimulator, simulator_process
from tests.procs import Proc, settings_env, start_beat, start_worker
from workers.settings import Settings
from workers.window import Window

API_KEY, SECRET_KEY = "bench-api-key", "bench-secret-key"
OA = "1090257973118325189"
ZONE = "Asia/Ho_Chi_Minh"
OPENS_AFTER_S = 45  # time to start the workers and submit, before the window opens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--interval", type=float, default=0.5, help="eSMS interval, seconds")
    parser.add_argument("--margin", type=float, default=0.02, help="ESMS_RATE_MARGIN, seconds")
    parser.add_argument("--workers", type=int, default=3, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=2, help="pool size of each worker")
    parser.add_argument("--refs", type=int, default=5000, help="RefIds to fetch")
    parser.add_argument(
        "--redis", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    )
    args = parser.parse_args()
    redis.Redis.from_url(args.redis).flushdb()
    log_dir = Path(tempfile.mkdtemp(prefix="esms-bench-"))
    with simulator_process(
        "--api-key",
        API_KEY,
        "--secret-key",
        SECRET_KEY,
        "--rate-interval",
        str(args.interval),
        "--policy",
        "sent",
    ) as sim:
        ours = run_ours(args, sim, log_dir)
        sim.reset()
        naive = run_naive(args, sim, log_dir)
    print_table(
        args, {"global limiter (this project)": ours, "Celery rate_limit (per worker)": naive}
    )
    print(f"\nworker logs: {log_dir}")


def run_ours(args: argparse.Namespace, sim: RemoteSimulator, log_dir: Path) -> dict[str, Any]:
    opens_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=OPENS_AFTER_S)
    local = opens_at.astimezone(Window.parse("always", ZONE).zone)
    closes = local + timedelta(hours=1)
    settings = Settings(
        broker_url=args.redis,
        redis_url=args.redis,
        api_key=API_KEY,
        secret_key=SECRET_KEY,
        base_url=sim.base_url,
        rate_interval_s=args.interval,
        rate_margin_s=args.margin,
        window=Window.parse(f"{local:%H:%M:%S}-{closes:%H:%M:%S}", ZONE),
        status_queue=f"bench.status.{uuid.uuid4().hex[:8]}",
        release_every_s=0.5,
        drainers=max(2, args.workers),
        account=f"bench-{uuid.uuid4().hex[:8]}",
    )
    os.environ.update({"CELERY_BROKER_URL": args.redis, "ESMS_REDIS_URL": args.redis})
    from tasks import app, fetch_callbacks

    app.conf.broker_url = args.redis
    env = settings_env(settings)
    procs: list[Proc] = []
    try:
        procs += [
            start_worker(f"ours{i}", env, log_dir, args.concurrency) for i in range(args.workers)
        ]
        procs.append(start_beat(env, log_dir))
        ref_ids = [f"bench-{i:06d}" for i in range(args.refs)]
        for start in range(0, len(ref_ids), 3):
            fetch_callbacks.delay(ref_ids[start : start + 3], OA)
        if datetime.now(UTC) >= opens_at:
            sys.exit(f"bench: start-up and submission took over {OPENS_AFTER_S}s")
        expected = -(-args.refs // 100)
        requests = wait_for_requests(sim, expected, timeout_s=expected * args.interval * 3 + 60)
        result = measure(requests, args.interval)
        result["first request after opening (s)"] = (
            min(r["received_at_s"] for r in requests) - opens_at.timestamp()
        )
        return result
    finally:
        for proc in procs:
            proc.stop()


def run_naive(args: argparse.Namespace, sim: RemoteSimulator, log_dir: Path) -> dict[str, Any]:
    env = dict(
        os.environ,
        CELERY_BROKER_URL=args.redis,
        ESMS_API_KEY=API_KEY,
        ESMS_SECRET_KEY=SECRET_KEY,
        ESMS_BASE_URL=sim.base_url,
        BENCH_RATE_PER_S=f"{1 / args.interval:g}",
        PYTHONUNBUFFERED="1",
    )
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ["BENCH_RATE_PER_S"] = env["BENCH_RATE_PER_S"]
    os.environ.setdefault("ESMS_API_KEY", "-")
    os.environ.setdefault("ESMS_SECRET_KEY", "-")
    os.environ.setdefault("ESMS_BASE_URL", sim.base_url)
    os.environ["CELERY_BROKER_URL"] = args.redis
    from bench.naive_app import naive_fetch

    procs: list[Proc] = []
    try:
        procs += [
            start_worker(
                f"naive{i}",
                env,
                log_dir,
                args.concurrency,
                app="bench.naive_app",
                queues="bench.naive",
            )
            for i in range(args.workers)
        ]
        ref_ids = [f"bench-{i:06d}" for i in range(args.refs)]
        for start in range(0, len(ref_ids), 100):
            naive_fetch.delay(ref_ids[start : start + 100], OA)
        expected = -(-args.refs // 100)
        return measure(
            # Celery's tasks do not retry a refused request: wait for all of them, not for 100s
            wait_for_requests(
                sim, expected, timeout_s=expected * args.interval * 3 + 60, answered_only=False
            ),
            args.interval,
        )
    finally:
        for proc in procs:
            proc.stop()


def wait_for_requests(
    sim: RemoteSimulator, count: int, timeout_s: float, answered_only: bool = True
) -> list[dict[str, Any]]:
    """Wait until `count` requests arrived (answered 100, if `answered_only`) or time is up;
    return the log."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        requests = sim.requests()
        if sum(1 for r in requests if r["code"] == 100 or not answered_only) >= count:
            return requests
        time.sleep(0.5)
    return sim.requests()


def measure(requests: list[dict[str, Any]], interval_s: float) -> dict[str, Any]:
    times = sorted(r["received_at_s"] for r in requests)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    ok = [r for r in requests if r["code"] == 100]
    span_s = times[-1] - times[0] if len(times) > 1 else float("nan")
    return {
        "requests sent": len(requests),
        "refused by eSMS (Code 160)": sum(1 for r in requests if r["code"] == 160),
        "smallest gap / interval": min(gaps) / interval_s if gaps else float("nan"),
        "achieved rate / allowed rate": (len(times) - 1) / span_s * interval_s,
        "mean RefIds per request / 100": sum(r["ref_count_sent"] for r in ok)
        / max(1, len(ok))
        / 100,
        "RefIds answered": sum(r["ref_count_answered"] for r in ok),
    }


def print_table(args: argparse.Namespace, results: dict[str, dict[str, Any]]) -> None:
    print(
        f"\nrate benchmark: interval {args.interval}s, margin {args.margin}s, {args.workers} "
        f"workers x {args.concurrency} processes, {args.refs} RefIds"
    )
    names = list(results)
    metrics = list(results[names[0]])
    for name in names[1:]:
        metrics += [m for m in results[name] if m not in metrics]
    width = max(len(m) for m in metrics)
    print(f"| {'metric':{width}} | " + " | ".join(names) + " |")
    print(f"| {'-' * width} | " + " | ".join("-" * len(n) for n in names) + " |")
    for metric in metrics:
        cells = []
        for name in names:
            value = results[name].get(metric, "")
            text = f"{value:.3f}" if isinstance(value, float) else str(value)
            cells.append(f"{text:>{len(name)}}")
        print(f"| {metric:{width}} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
