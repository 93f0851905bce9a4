"""One receiver serving many accounts: what it costs does not grow with them, and it stops in
time. Real `esms-callbacks receive` processes, real HTTP, real Redis.

Given an accounts file of 2 and then 200 accounts, each with a push token, expect the same
threads and the same few Redis connections (a redis-server of the test's own, CLIENT LIST),
and every push to every account applied. Given pushes in flight to 200 accounts, expect the
receiver out within 5 s of SIGTERM, and, started again, every push answered 200 applied.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis

from bench.harness import receiver_command
from bench.status_queue import StatusQueueReader, decode
from esms_callbacks.cli.processes import Child, free_port
from esms_callbacks.engine.keys import AccountKeys
from esms_callbacks.settings import Settings
from tests.helpers import wait_until
from tests.procs import PrivateRedis, settings_env
from tests.receiving import get, push_params

pytestmark = pytest.mark.slow
OA = "1397492183140006179"
TEST_CLIENT = "receiver-test"  # the test's own connections, left out of the counts
STOP_WITHIN_S = 5.0  # an orchestrator's grace before SIGKILL is often this short
CONNECTIONS_MOST = 12  # 2 appliers, 1 request and 1 flush at a time, 3 producers x 2, 1 spare


def write_accounts(path: Path, count: int) -> list[str]:
    """`count` accounts, each with a push token of its own; their tokens."""
    tokens = [f"token-of-account-{i:05d}-abcdef" for i in range(count)]
    path.write_text(
        "".join(
            f'[accounts.acct-{i:05d}]\napi_key = "key-{i}"\nsecret_key = "s"\n'
            f'push_token = "{token}"\n\n'
            for i, token in enumerate(tokens)
        )
    )
    return tokens


def start_receiver(settings: Settings, log: Path) -> tuple[Child, str]:
    port = free_port()
    env = settings_env(settings, ESMS_PUSH_RATE="0")
    receiver = Child("receiver", receiver_command(port), env, log)
    receiver.wait_ready(timeout_s=60)
    base_url = f"http://127.0.0.1:{port}"
    wait_until(lambda: get(f"{base_url}/esms/health").status == 200, 30, "receiver healthy")
    return receiver, base_url


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError(f"no thread count for {pid}")


def connections(client: redis.Redis) -> int:
    return sum(1 for c in client.client_list() if c.get("name") != TEST_CLIENT)


def waiting(client: redis.Redis, accounts: int) -> int:
    """Pushes recorded and not yet applied, over every account's inbox."""
    with client.pipeline(transaction=False) as pipe:
        for i in range(accounts):
            pipe.xlen(AccountKeys(f"acct-{i:05d}").pushes)
        return sum(pipe.execute())


def stop(receiver: Child, wait_s: float) -> float:
    """SIGTERM; seconds until the process exited (SIGKILL, and `wait_s`, if it had not)."""
    started = time.monotonic()
    receiver.popen.send_signal(signal.SIGTERM)
    try:
        receiver.popen.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        os.killpg(receiver.popen.pid, signal.SIGKILL)
        receiver.popen.wait()
    return time.monotonic() - started


def test_threads_and_redis_connections_stay_the_same_from_2_to_200_accounts(
    make_settings, tmp_path
):
    figures = {count: pushed_to_every_account(count, make_settings, tmp_path) for count in (2, 200)}
    # expect the same threads, and the same few connections: one per applier thread, one per
    # HTTP request at a time and the counters' flush, the broker's producers (one per thread
    # publishing at once, and the first). Pools open theirs when uses meet, so a run may end
    # with one or two more than another, never one per account.
    (threads_2, connections_2), (threads_200, connections_200) = figures[2], figures[200]
    assert threads_200 == threads_2 <= 8, figures
    assert abs(connections_200 - connections_2) <= 3, figures
    assert max(connections_2, connections_200) <= CONNECTIONS_MOST, figures


def pushed_to_every_account(count: int, make_settings: Any, tmp_path: Path) -> tuple[int, int]:
    """Given a redis-server of its own and a receiver of `count` accounts, when 400 pushes
    spread over every account were answered 200, expect each of them applied; return the
    receiver's threads and Redis connections then."""
    with PrivateRedis(tmp_path / f"redis-{count}", options=("--appendonly", "no")) as server:
        client = redis.Redis(port=server.port, client_name=TEST_CLIENT)
        tokens = write_accounts(tmp_path / f"accounts-{count}.toml", count)
        settings = make_settings(
            redis_url=server.url,
            broker_url=server.url,
            accounts_file=str(tmp_path / f"accounts-{count}.toml"),
        )
        receiver, base_url = start_receiver(settings, tmp_path / f"receiver-{count}.log")
        try:
            refs = [f"r{count}-{i}" for i in range(400)]
            for i, ref in enumerate(refs):  # one after the other: one HTTP request at a time
                url = f"{base_url}/esms/push/{tokens[i % count]}"
                assert get(url, push_params(ref, OA)).status == 200
            queue = settings.status_queue
            wait_until(lambda: client.llen(queue) >= len(refs), 60, "pushes applied")
            events = [decode(raw) for raw in client.lrange(queue, 0, -1)]
            whose = {e["ref_id"]: e["account"] for e in events}
            assert whose == {ref: f"acct-{i % count:05d}" for i, ref in enumerate(refs)}
            return threads_of(receiver.popen.pid), connections(client)
        finally:
            receiver.stop()


def test_sigterm_with_pushes_in_flight_exits_within_5s_and_loses_nothing(make_settings, tmp_path):
    # given a receiver of 200 accounts taking pushes from 8 senders
    accounts = 200
    tokens = write_accounts(tmp_path / "accounts.toml", accounts)
    settings = make_settings(accounts_file=str(tmp_path / "accounts.toml"))
    client = redis.Redis.from_url(settings.redis_url, client_name=TEST_CLIENT)
    receiver, base_url = start_receiver(settings, tmp_path / "receiver-1.log")
    answered: list[str] = []
    refs = [f"in-flight-{i}" for i in range(3000)]

    def deliver(i: int) -> None:
        try:
            url = f"{base_url}/esms/push/{tokens[i % accounts]}"
            if get(url, push_params(refs[i], OA)).status == 200:
                answered.append(refs[i])
        except OSError:
            pass  # the receiver stopped: not answered 200, eSMS would push it again

    sending = ThreadPoolExecutor(8)
    try:
        futures = [sending.submit(deliver, i) for i in range(len(refs))]
        wait_until(lambda: len(answered) >= 300, 60, "pushes answered")
        wait_until(lambda: waiting(client, accounts) > 0, 30, "pushes waiting to be applied")
        # when it gets SIGTERM with pushes in flight and in its inboxes
        exit_s = stop(receiver, wait_s=3 * STOP_WITHIN_S)
        for future in futures:
            future.result(timeout=60)
    finally:
        sending.shutdown(cancel_futures=True)
        if receiver.popen.poll() is None:
            receiver.kill()
    # expect it out within 5 s (an orchestrator would SIGKILL it after its grace)
    assert exit_s < STOP_WITHIN_S, f"still running {exit_s:.1f}s after SIGTERM"
    # and, started again, every push it answered 200 for applied: none lost
    receiver, _ = start_receiver(settings, tmp_path / "receiver-2.log")
    try:
        reader = StatusQueueReader(client, settings.status_queue)
        wait_until(
            lambda: set(reader.poll().terminal) >= set(answered),
            60,
            "every push answered 200 applied after the restart",
        )
    finally:
        receiver.stop()
    assert waiting(client, accounts) == 0


def test_on_a_redis_cluster_every_account_s_pushes_are_applied(make_settings, tmp_path):
    from tests.topology import ClusterTopology

    # given the project's state on a Redis Cluster (the broker stays the test's Redis) and 30
    # accounts, whose keys hash to slots all over its three shards
    accounts = 30
    tokens = write_accounts(tmp_path / "accounts.toml", accounts)
    with ClusterTopology(tmp_path / "cluster") as cluster:
        settings = make_settings(
            redis_url=cluster.url(), accounts_file=str(tmp_path / "accounts.toml")
        )
        owners = {cluster.owner_port(AccountKeys(f"acct-{i:05d}").pushes) for i in range(accounts)}
        assert len(owners) == 3
        receiver, base_url = start_receiver(settings, tmp_path / "receiver.log")
        try:
            # when each account gets three pushes
            refs = [f"c-{i}" for i in range(3 * accounts)]
            for i, ref in enumerate(refs):
                url = f"{base_url}/esms/push/{tokens[i % accounts]}"
                assert get(url, push_params(ref, OA)).status == 200
            # expect every one applied, as its account's event
            client = redis.Redis.from_url(settings.broker_url, client_name=TEST_CLIENT)
            reader = StatusQueueReader(client, settings.status_queue)
            wait_until(lambda: set(reader.poll().terminal) >= set(refs), 60, "pushes applied")
        finally:
            receiver.stop()
