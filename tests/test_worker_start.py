"""A worker that cannot keep the project's promises does not start, and says why."""

from __future__ import annotations

import os
import subprocess

import pytest

from bench.harness import worker_command
from tests.test_events import RABBIT_URL


@pytest.mark.slow
def test_a_worker_on_rabbitmq_without_esms_redis_url_refuses_to_start_naming_it():
    # given a RabbitMQ broker and no ESMS_REDIS_URL (the project's state needs a Redis)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ESMS_", "CELERY_"))}
    env.update(CELERY_BROKER_URL=RABBIT_URL, ESMS_ACCOUNT="start-check", PYTHONUNBUFFERED="1")
    # when a real worker starts
    command = worker_command("start-check", 1)
    try:
        done = subprocess.run(command.argv, env=env, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the worker started (or hung) instead of refusing")
    # expect it to exit at once, non-zero, saying which variable to set, without redis-py's
    # own ValueError
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "ESMS_REDIS_URL is not set" in output
    assert "ValueError" not in output
