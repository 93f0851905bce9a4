"""The worker refuses a Redis that may evict keys (checked against real redis-servers)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from bench.harness import worker_command
from esms_callbacks.cli.processes import Child
from esms_callbacks.engine.redis_policy import eviction_problem
from tests.procs import PrivateRedis

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")


@pytest.fixture
def redis_with_policy(tmp_path: Path) -> Iterator[Callable[[str], PrivateRedis]]:
    servers: list[PrivateRedis] = []

    def start(policy: str) -> PrivateRedis:
        server = PrivateRedis(tmp_path / policy, options=("--maxmemory-policy", policy))
        servers.append(server.start())
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-ttl", "volatile-lru", "allkeys-lfu"])
def test_an_evicting_redis_is_refused_with_the_fix_in_the_message(redis_with_policy, policy):
    problem = eviction_problem(redis_with_policy(policy).client())
    assert policy in problem and "CONFIG SET maxmemory-policy noeviction" in problem


def test_a_redis_that_never_evicts_is_accepted(redis_with_policy):
    assert eviction_problem(redis_with_policy("noeviction").client()) == ""


def test_a_redis_that_hides_its_config_is_accepted_with_a_warning(caplog):
    class NoConfig:
        def config_get(self, _: str) -> dict[str, str]:
            raise redis.ResponseError("unknown command 'CONFIG'")

    assert eviction_problem(NoConfig()) == ""  # type: ignore[arg-type]
    assert "must be noeviction" in caplog.text


@pytest.mark.slow
def test_a_worker_does_not_start_on_an_evicting_redis(redis_with_policy, tmp_path):
    # given a Redis that evicts (allkeys-lru), as broker and as the project's Redis
    url = redis_with_policy("allkeys-lru").url
    # when a worker is started on it
    env = {**os.environ, "CELERY_BROKER_URL": url, "ESMS_REDIS_URL": url}
    worker = Child("worker", worker_command("evicting", 1), env, tmp_path / "worker.log")
    try:
        returncode = worker.popen.wait(timeout=120)
    finally:
        worker.stop()
    # expect it to stop at once, saying why and how to fix it
    assert returncode != 0
    assert "not starting: Redis's maxmemory-policy is allkeys-lru" in worker.log
