"""One push receiver serving many accounts (`make bench-receiver`): what it costs to run.

    python -m bench.receiver_bench [--accounts 1000] [--pushes 10000] [--checkout DIR]
                                   [--exit-wait 130] [--apply-wait 300] [--log-dir DIR]

On a redis-server of its own (a free port, no persistence; never the Redis on 6379), one
`esms-callbacks receive` process with an ESMS_ACCOUNTS_FILE of `--accounts` accounts, each with
a push token of its own. Measured:

    start       seconds from the process's start to /esms/health answering 200
    idle        threads (/proc), Redis connections (CLIENT LIST, the benchmark's own left
                out) and RSS, a few seconds after the start; then, over IDLE_S, the Redis
                commands a second and the receiver's CPU while no push comes
    load        `--pushes` pushes of RefIds never submitted (each becomes an event), spread
                evenly over every account's URL, over 64 connections: answered 200 per
                second, applied per second (until the last event is on the status queue, or
                as many as were by `--apply-wait`), and the most threads, Redis connections
                and RSS seen meanwhile
    stop        half as many pushes again, and SIGTERM once a quarter are answered 200 and the
                inboxes hold work: seconds until the process exits (SIGKILL after
                `--exit-wait`, reported as more than that)
    restart     a new receiver: every push answered 200, before or after the SIGTERM, must
                end as an event within `--apply-wait` (those that did not are counted); what
                the stopped one left pending is taken over after ESMS_PUSH_RECLAIM_AFTER (30 s)

Every setting is the default but ESMS_PUSH_RATE (0: every push comes from this process).

`--checkout DIR` runs the receiver of another checkout of this repository (e.g. an older
commit, `git archive 23c2482 | tar -x -C DIR`) with this environment's packages, to compare.
Progress goes to stderr, the markdown table to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import redis

from bench.env import clean_environ
from bench.harness import group_cpu_s
from bench.memory_bench import start_redis
from bench.status_queue import StatusQueueReader
from esms_callbacks.cli.processes import ROOT, free_port

OA = "1090257973118325189"
STATUS_QUEUE = "bench.status.receiver"
LOAD_CONNECTIONS = 64
BENCH_CLIENT = "receiver-bench"  # our own Redis connection's name, left out of the counts
SETTLE_S = 3.0  # after the start, before the idle figures
IDLE_S = 10.0  # commands and CPU at rest measured over this long
START_TIMEOUT_S = 900.0


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass
class Figures:
    start_s: float = 0.0
    idle_threads: int = 0
    idle_connections: int = 0
    idle_rss_mb: float = 0.0
    idle_commands_per_s: float = 0.0
    idle_cpu_percent: float = 0.0
    peak_threads: int = 0
    peak_connections: int = 0
    peak_rss_mb: float = 0.0
    answered: int = 0
    answered_per_s: float = 0.0
    applied: int = 0  # events on the queue by the end of the wait
    applied_s: float = 0.0
    cpu_s_per_1000: float = 0.0
    not_200: int = 0
    exit_s: float = 0.0
    exited: bool = True
    answered_before_exit: int = 0
    restart_start_s: float = 0.0
    lost: int = 0


class Receiver:
    """An `esms-callbacks receive` process of `checkout`, in a process group of its own."""

    def __init__(self, checkout: Path, env: dict[str, str], port: int, log: Path) -> None:
        self.port = port
        self._log = log.open("ab")
        argv = [sys.executable, "-m", "esms_callbacks.cli.main", "receive", "--port", str(port)]
        # cwd first on sys.path: `-m` runs the checkout's package, not this one's
        self.popen = subprocess.Popen(
            argv, cwd=checkout, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.popen.pid

    def healthy(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.port}/esms/health"
            with urllib.request.urlopen(url, timeout=5) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_healthy(self, timeout_s: float) -> float:
        started = time.monotonic()
        _wait(self.healthy, timeout_s, "health 200", alive=self.popen)
        return time.monotonic() - started

    def threads_and_rss(self) -> tuple[int, float]:
        fields = dict(
            line.split(":", 1) for line in Path(f"/proc/{self.pid}/status").read_text().splitlines()
        )
        return int(fields["Threads"]), int(fields["VmRSS"].split()[0]) / 1024

    def stop(self, wait_s: float) -> tuple[float, bool]:
        """SIGTERM; seconds until it exited, and whether it did before SIGKILL."""
        started = time.monotonic()
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=wait_s)
            exited = True
        except subprocess.TimeoutExpired:
            os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait()
            exited = False
        self._log.close()
        return time.monotonic() - started, exited

    def kill(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait()
        self._log.close()


def _commands(client: redis.Redis) -> int:
    return int(client.info("stats")["total_commands_processed"])


def connections(client: redis.Redis) -> int:
    """Clients of the benchmark's redis-server other than the benchmark itself."""
    return sum(1 for c in client.client_list() if c.get("name") != BENCH_CLIENT)


def write_accounts(path: Path, count: int) -> list[str]:
    """An accounts file of `count` accounts, each with a push token; return the tokens."""
    tokens = [f"bench-receiver-token-{i:06d}" for i in range(count)]
    path.write_text(
        "".join(
            f'[accounts.acct-{i:06d}]\napi_key = "bench-key-{i}"\nsecret_key = "s"\n'
            f'push_token = "{token}"\n\n'
            for i, token in enumerate(tokens)
        )
    )
    return tokens


async def send(base_url: str, tokens: list[str], ref_ids: list[str], answered: list[str]) -> int:
    """Push each RefId on the URL of the account `i % accounts`; RefIds answered 200 go to
    `answered`; return how many were not (refused, or no connection)."""
    connector = aiohttp.TCPConnector(limit=LOAD_CONNECTIONS)
    not_200 = 0
    async with aiohttp.ClientSession(connector=connector) as session:
        semaphore = asyncio.Semaphore(LOAD_CONNECTIONS * 2)

        async def one(i: int, ref_id: str) -> None:
            nonlocal not_200
            params = {"SMSID": ref_id, "SendStatus": "5", "SendFailed": "0", "SendSuccess": "1"}
            params.update({"TypeId": "25", "oaid": OA, "TotalReceiver": "1", "TotalSent": "1"})
            url = f"{base_url}/esms/push/{tokens[i % len(tokens)]}"
            try:
                async with semaphore, session.get(url, params=params) as answer:
                    await answer.read()
                    if answer.status == 200:
                        answered.append(ref_id)
                        return
            except (aiohttp.ClientError, OSError):
                pass
            not_200 += 1

        await asyncio.gather(*(one(i, ref) for i, ref in enumerate(ref_ids)))
    return not_200


def waiting_pushes(client: redis.Redis, accounts: int) -> int:
    """Entries recorded and not yet applied, over every account's inbox."""
    with client.pipeline(transaction=False) as pipe:
        for i in range(accounts):
            pipe.xlen(f"esms:{{acct-{i:06d}}}:pushes")
        return sum(pipe.execute())


def run(args: argparse.Namespace, figures: Figures, log_dir: Path) -> None:
    server, url = start_redis(log_dir)
    receiver: Receiver | None = None
    try:
        client = redis.Redis.from_url(url, client_name=BENCH_CLIENT)
        accounts_file = log_dir / "accounts.toml"
        tokens = write_accounts(accounts_file, args.accounts)
        env = clean_environ()
        env.update(
            {
                "CELERY_BROKER_URL": url,
                "ESMS_REDIS_URL": url,
                "ESMS_ACCOUNTS_FILE": str(accounts_file),
                "ESMS_STATUS_QUEUE": STATUS_QUEUE,
                "ESMS_PUSH_RATE": "0",  # one source (this process) for every push
                "ESMS_WINDOW": "always",
                "PYTHONUNBUFFERED": "1",
            }
        )
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        say(f"starting a receiver of {args.accounts:,} accounts ({args.checkout})")
        receiver = Receiver(args.checkout, env, port, log_dir / "receiver.log")
        figures.start_s = receiver.wait_healthy(START_TIMEOUT_S)
        time.sleep(SETTLE_S)  # the figures of a receiver at rest, not of its first second
        figures.idle_threads, figures.idle_rss_mb = receiver.threads_and_rss()
        figures.idle_connections = connections(client)
        commands, cpu_s, started = _commands(client), group_cpu_s(receiver.pid), time.monotonic()
        time.sleep(IDLE_S)  # a receiver at rest: what it asks of Redis and the CPU meanwhile
        idle_s = time.monotonic() - started
        figures.idle_commands_per_s = (_commands(client) - commands - 1) / idle_s  # - INFO
        figures.idle_cpu_percent = 100 * (group_cpu_s(receiver.pid) - cpu_s) / idle_s
        say(f"  up in {figures.start_s:.1f}s; {args.pushes:,} pushes")

        reader = StatusQueueReader(client, STATUS_QUEUE)
        sampling = threading.Event()
        sampler = threading.Thread(target=_sample, args=(receiver, client, figures, sampling))
        sampler.start()
        answered: list[str] = []
        ref_ids = [f"bench-load-{i:07d}" for i in range(args.pushes)]
        cpu_s, started = group_cpu_s(receiver.pid), time.monotonic()
        try:
            figures.not_200 = asyncio.run(send(base_url, tokens, ref_ids, answered))
            figures.answered = len(answered)
            figures.answered_per_s = len(answered) / (time.monotonic() - started)
            _wait_at_most(lambda: reader.queued() >= len(answered), args.apply_wait)
            figures.applied = min(reader.queued(), len(answered))
            figures.applied_s = time.monotonic() - started
            figures.cpu_s_per_1000 = (group_cpu_s(receiver.pid) - cpu_s) / len(answered) * 1000
        finally:
            sampling.set()
            sampler.join()
        say(f"  applied {figures.applied:,} in {figures.applied_s:.1f}s; SIGTERM in flight")

        late = [f"bench-stop-{i:07d}" for i in range(args.pushes // 2)]
        answered_late: list[str] = []
        sender = threading.Thread(
            target=lambda: asyncio.run(send(base_url, tokens, late, answered_late))
        )
        sender.start()
        _wait(lambda: len(answered_late) >= len(late) // 4, 120, "a quarter answered")
        _wait(lambda: waiting_pushes(client, args.accounts) > 0, 30, "work in the inboxes")
        figures.exit_s, figures.exited = receiver.stop(args.exit_wait)
        sender.join()
        figures.answered_before_exit = len(answered_late)
        say(f"  exited in {figures.exit_s:.1f}s; restarting to apply what was left")

        receiver = Receiver(args.checkout, env, port, log_dir / "receiver-2.log")
        figures.restart_start_s = receiver.wait_healthy(START_TIMEOUT_S)
        expected = set(answered) | set(answered_late)
        _wait_at_most(lambda: reader.poll().finished >= len(expected), args.apply_wait)
        figures.lost = len(expected - set(reader.tally.terminal))
        receiver.stop(args.exit_wait)
        receiver = None
    finally:
        if receiver is not None:
            receiver.kill()
        server.stop()


def _sample(
    receiver: Receiver, client: redis.Redis, figures: Figures, done: threading.Event
) -> None:
    while not done.wait(0.5):
        threads, rss_mb = receiver.threads_and_rss()
        figures.peak_threads = max(figures.peak_threads, threads)
        figures.peak_rss_mb = max(figures.peak_rss_mb, rss_mb)
        figures.peak_connections = max(figures.peak_connections, connections(client))


def render(args: argparse.Namespace, f: Figures) -> str:
    exit_text = f"{f.exit_s:.1f}" if f.exited else f"> {args.exit_wait:.0f} (SIGKILL)"
    applied_text = f"{f.applied / f.applied_s:,.0f}" if f.applied_s else "-"
    if f.applied < f.answered:
        applied_text += f" (only {f.applied:,} of {f.answered:,} within {f.applied_s:.0f} s)"
    rows = [
        ("accounts with a push token", f"{args.accounts:,}"),
        ("start: process start to health 200 (s)", f"{f.start_s:.1f}"),
        ("threads at rest / most under load", f"{f.idle_threads} / {f.peak_threads}"),
        (
            "Redis connections at rest / most under load",
            f"{f.idle_connections} / {f.peak_connections}",
        ),
        ("RSS at rest / most under load (MB)", f"{f.idle_rss_mb:.0f} / {f.peak_rss_mb:.0f}"),
        ("at rest: Redis commands per s", f"{f.idle_commands_per_s:,.0f}"),
        ("at rest: receiver CPU (% of a core)", f"{f.idle_cpu_percent:.1f}"),
        (f"{args.pushes:,} pushes, every account: answered 200 per s", f"{f.answered_per_s:,.0f}"),
        ("... applied per s (events on the queue)", applied_text),
        ("... receiver CPU s per 1,000 pushes", f"{f.cpu_s_per_1000:.2f}"),
        ("... not answered 200", f"{f.not_200}"),
        ("SIGTERM with pushes in flight: exit (s)", exit_text),
        ("restart to health 200 (s)", f"{f.restart_start_s:.1f}"),
        (
            f"pushes answered 200 not applied {args.apply_wait:.0f} s after the restart (0)",
            f"{f.lost} of {f.answered + f.answered_before_exit:,}",
        ),
    ]
    lines = ["| figure | value |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def _wait_at_most(done: Callable[[], bool], wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while not done() and time.monotonic() < deadline:
        time.sleep(0.1)


def _wait(
    done: Callable[[], bool],
    timeout_s: float,
    what: str,
    alive: subprocess.Popen[bytes] | None = None,
) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if alive is not None and alive.poll() is not None:
            raise RuntimeError(f"the receiver exited ({alive.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout_s:.0f}s")
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.receiver_bench")
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--pushes", type=int, default=10000)
    parser.add_argument("--checkout", type=Path, default=ROOT, help="the receiver's code")
    parser.add_argument("--exit-wait", type=float, default=130.0, help="s before SIGKILL")
    parser.add_argument("--apply-wait", type=float, default=300.0, help="s for pushes applied")
    parser.add_argument("--log-dir", type=Path)
    args = parser.parse_args(argv)
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="esms-receiver-bench-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    say(f"receiver benchmark; logs in {log_dir}")
    figures = Figures()
    try:
        run(args, figures, log_dir)
    finally:
        print(render(args, figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
