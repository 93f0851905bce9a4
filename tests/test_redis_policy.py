"""The worker refuses a Redis that may evict keys (checked against real redis-servers)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from esms_callbacks.workers.redis_policy import eviction_problem

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def redis_with_policy() -> Iterator[object]:
    servers: list[subprocess.Popen[bytes]] = []

    def start(policy: str) -> redis.Redis:
        port = free_port()
        argv = ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"]
        servers.append(subprocess.Popen([*argv, "--maxmemory-policy", policy]))
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return client
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    yield start
    for server in servers:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-ttl", "volatile-lru", "allkeys-lfu"])
def test_an_evicting_redis_is_refused_with_the_fix_in_the_message(redis_with_policy, policy):
    problem = eviction_problem(redis_with_policy(policy))
    assert policy in problem and "CONFIG SET maxmemory-policy noeviction" in problem


def test_a_redis_that_never_evicts_is_accepted(redis_with_policy):
    assert eviction_problem(redis_with_policy("noeviction")) == ""


def test_a_redis_that_hides_its_config_is_accepted_with_a_warning(caplog):
    class NoConfig:
        def config_get(self, _: str) -> dict[str, str]:
            raise redis.ResponseError("unknown command 'CONFIG'")

    assert eviction_problem(NoConfig()) == ""  # type: ignore[arg-type]
    assert "must be noeviction" in caplog.text


@pytest.mark.slow
def test_a_worker_does_not_start_on_an_evicting_redis(redis_with_policy):
    # given a Redis that evicts (allkeys-lru), as broker and as the project's Redis
    client = redis_with_policy("allkeys-lru")
    url = f"redis://127.0.0.1:{client.connection_pool.connection_kwargs['port']}/0"
    # when a worker is started on it
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "esms_callbacks.tasks",
            "worker",
            "--concurrency",
            "1",
        ],
        cwd=ROOT,
        env={**os.environ, "CELERY_BROKER_URL": url, "ESMS_REDIS_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    # expect it to stop at once, saying why and how to fix it
    assert done.returncode != 0
    assert "not starting: Redis's maxmemory-policy is allkeys-lru" in done.stdout + done.stderr
