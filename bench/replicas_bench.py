"""What confirming writes with a replica costs (ESMS_REDIS_REPLICAS): `make bench-replicas`.

Starts a redis-server primary and a replica of it of its own (free ports, no persistence;
never the Redis on 6379), then times, in producer processes of their own, `.delay()` of
100-RefId submissions with ESMS_REDIS_REPLICAS=0 and =1, and the fence itself (the WAIT a
worker adds after parking RefIds, before publishing events and before settling them), which
bounds what it costs the requests per second. Prints a markdown table.

    python -m bench.replicas_bench [--calls 300] [--rate-rounds 2]

`--rate-rounds N` also runs scenario f of `make bench` (eSMS's 20 requests/s x 200) on the
same primary, N times with ESMS_REDIS_REPLICAS=0 and N times with 1, alternating: the rate
used with and without the confirmation.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from esms_callbacks.cli.processes import free_port
from esms_callbacks.engine.replicas import ReplicaFence

PRODUCER = """
import json, sys, time
from esms_callbacks import fetch_callbacks
calls = int(sys.argv[1])
took = []
for i in range(calls):
    start = time.perf_counter()
    fetch_callbacks.delay([f"rb-{i}-{j}" for j in range(100)], "oa-bench")
    took.append(time.perf_counter() - start)
print(json.dumps(took[10:]))  # the first calls open connections
"""


def server(directory: Path, port: int, *options: str) -> subprocess.Popen[bytes]:
    directory.mkdir(parents=True, exist_ok=True)
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--appendonly", "no", "--repl-diskless-sync-delay", "0", "--dir", str(directory)]
    argv += options
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL)


def wait_synced(replica: redis.Redis) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if replica.info("replication").get("master_link_status") == "up":
                return
        except redis.ConnectionError:
            pass
        time.sleep(0.1)
    raise TimeoutError("the replica did not sync")


def delay_latencies_s(url: str, replicas: int, calls: int) -> list[float]:
    env = {**os.environ, "CELERY_BROKER_URL": url, "ESMS_REDIS_REPLICAS": str(replicas)}
    done = subprocess.run(
        [sys.executable, "-c", PRODUCER, str(calls)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    latencies: list[float] = json.loads(done.stdout.strip().splitlines()[-1])
    return latencies


def fence_latencies_s(client: redis.Redis, replicas: int, calls: int) -> list[float]:
    fence = ReplicaFence(client, "esms:{bench}:fence", replicas, timeout_s=1.0)
    took = []
    for i in range(calls):
        client.set(f"esms:{{bench}}:w{i}", "x")  # a write of the kind it confirms
        start = time.perf_counter()
        fence.confirm()
        took.append(time.perf_counter() - start)
    return took


def rate_used(url: str, replicas: int) -> str:
    """Scenario f's row (rate used, RefIds/s, worker CPU) on `url` with `replicas`."""
    argv = [sys.executable, "-m", "bench.perf_bench", "--only", "f", "--no-naive"]
    done = subprocess.run(
        [*argv, "--redis", url, "--env", f"ESMS_REDIS_REPLICAS={replicas}"],
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(line for line in done.stdout.splitlines() if line.startswith("| f."))
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    return f"rate used {cells[1]}, worker CPU {cells[8]} s/1k RefIds"


def row(name: str, off: list[float], on: list[float]) -> str:
    def ms(values: list[float], q: float) -> str:
        return f"{statistics.quantiles(values, n=100)[int(q) - 1] * 1000:.2f}"

    median_off, median_on = statistics.median(off) * 1000, statistics.median(on) * 1000
    return (
        f"| {name} | {median_off:.2f} | {ms(off, 99)} | {median_on:.2f} | {ms(on, 99)} | "
        f"{median_on - median_off:+.2f} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rate-rounds", type=int, default=0)
    args = parser.parse_args(argv)
    rates: dict[int, list[str]] = {0: [], 1: []}
    with tempfile.TemporaryDirectory(prefix="esms-replicas-bench-") as scratch:
        primary_port, replica_port = free_port(), free_port()
        primary = server(Path(scratch, "primary"), primary_port)
        replica = server(
            Path(scratch, "replica"), replica_port, "--replicaof", "127.0.0.1", str(primary_port)
        )
        try:
            wait_synced(redis.Redis(port=replica_port))
            url = f"redis://127.0.0.1:{primary_port}/0"
            client = redis.Redis(port=primary_port)
            delay_off = delay_latencies_s(url, 0, args.calls)
            delay_on = delay_latencies_s(url, 1, args.calls)
            fence_off = fence_latencies_s(client, 0, args.calls)
            fence_on = fence_latencies_s(client, 1, args.calls)
            for _ in range(args.rate_rounds):
                for replicas in (0, 1):
                    rates[replicas].append(rate_used(url, replicas))
        finally:
            for process in (replica, primary):
                process.terminate()
                process.wait(timeout=10)
    print(
        f"Replica confirmation cost, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{os.cpu_count()} CPUs, {args.calls} calls each, one local replica\n"
    )
    print("| what | off: median ms | off: p99 ms | on: median ms | on: p99 ms | cost ms |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(row("`.delay()` of 100 RefIds", delay_off, delay_on))
    print(row("fence (WAIT 1) after a write", fence_off, fence_on))
    cost_ms = 2 * (statistics.median(fence_on) - statistics.median(fence_off)) * 1000
    print(
        f"\nA drained request is settled with up to two fences (its states before its events go "
        f"out, its events on a Redis broker before the settle): about {cost_ms:.2f} ms of worker "
        "time per request, against a 50 ms slot at eSMS's 20/s; the other drainers take the "
        "next slots meanwhile."
        + ("" if args.rate_rounds else " Give --rate-rounds to measure the drain's rate too.")
    )
    for replicas, runs in rates.items():
        if runs:
            print(f"- scenario f, ESMS_REDIS_REPLICAS={replicas}: " + "; ".join(runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
