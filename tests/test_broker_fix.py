"""Where the broker-restart fix (tasks/broker_fix.py) is installed, and when it speaks.

That it keeps a worker alive is tests/test_broker_outage.py's business (real workers)."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis
from kombu.transport import redis as kombu_redis

from esms_callbacks.tasks import broker_fix

ROOT = Path(__file__).resolve().parent.parent


def test_importing_the_tasks_patches_nothing():
    # a web app that imports the task to call .delay() keeps kombu as it is
    check = (
        "import tasks; from esms_callbacks.tasks import broker_fix; "
        "from kombu.transport import redis as r; "
        "print(r.Channel._connparams is broker_fix._connparams)"
    )
    done = subprocess.run(
        [sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "True"


def test_a_kombu_it_was_not_written_for_is_left_alone(monkeypatch):
    monkeypatch.setattr(kombu_redis.Channel, "_connparams", broker_fix._connparams)
    assert broker_fix.install("5.8.0") is False
    assert kombu_redis.Channel._connparams is broker_fix._connparams
    assert broker_fix.install("5.7.0") is True
    assert kombu_redis.Channel._connparams is broker_fix._connparams_of_a_live_connection


def test_it_says_so_when_it_turns_a_lost_connection_into_a_connection_error(caplog):
    lost = SimpleNamespace(connection=SimpleNamespace(client=None))
    with caplog.at_level(logging.WARNING), pytest.raises(redis.ConnectionError):
        broker_fix._connparams_of_a_live_connection(lost)
    assert "broker connection was lost while a task ran" in caplog.text
