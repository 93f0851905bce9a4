"""Processes of a test's own: real `celery worker` and `celery beat` (started with
esms_callbacks.cli.processes, as the stack and the benchmark start them), and a throw-away
redis-server."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import redis

from bench.harness import beat_command, simulator_process, worker_command
from esms_callbacks.cli.processes import Child, free_port, simulator_options
from esms_callbacks.settings import Settings
from esms_callbacks.simulator.remote import RemoteSimulator
from tests.helpers import wait_until


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that makes a subprocess read `settings` (every declared variable)."""
    env = dict(os.environ)
    env.update(settings.to_env())
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def start_worker(
    name: str,
    env: dict[str, str],
    log_dir: Path,
    concurrency: int = 2,
    app: str = "esms_callbacks.tasks",
    queues: str = "esms.fetch,esms.drain",
) -> Child:
    """A worker logging to `log_dir/NAME.log`, returned once it is ready."""
    loglevel = env.get("LOG_LEVEL", "INFO")
    command = worker_command(name, concurrency, app=app, queues=queues, loglevel=loglevel)
    return Child(name, command, env, log_dir / f"{name}.log").wait_ready()


def start_beat(env: dict[str, str], log_dir: Path) -> Child:
    """Beat logging to `log_dir/beat.log`, returned once it has started."""
    command = beat_command(log_dir / "beat-schedule")
    return Child("beat", command, env, log_dir / "beat.log").wait_ready()


def remote_simulator(
    api_key: str, secret_key: str, rate_interval_s: float, policy: str
) -> contextlib.AbstractContextManager[RemoteSimulator]:
    """A simulator in its own process (receipt times free of the test process's work)."""
    options = simulator_options(api_key, secret_key, rate_interval_s=rate_interval_s, policy=policy)
    return simulator_process(*options)


class PrivateRedis:
    """A redis-server of the test's own on 127.0.0.1 (on `port`, else a free one), with an
    append-only file in `directory` (fsync on every write), so it can be stopped and started
    again with its data. `options` go on its command line (`--maxmemory-policy`, `noeviction`).
    `with PrivateRedis(...) as server:` starts it and stops it on exit."""

    def __init__(self, directory: Path, port: int = 0, options: tuple[str, ...] = ()) -> None:
        self.port = port or free_port()
        self.directory = directory
        self.options = options
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port)

    def start(self) -> PrivateRedis:
        """Start it and return once it answers a PING."""
        self.directory.mkdir(parents=True, exist_ok=True)
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.directory)]
        self.popen = subprocess.Popen([*argv, *self.options], stdout=subprocess.DEVNULL)
        try:
            wait_until(self._answers, 10, f"redis-server on port {self.port} did not start")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """SIGTERM: redis-server writes what it holds, then exits."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            self.popen.wait(timeout=10)
        self.popen = None

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _answers(self) -> bool:
        if self.popen is not None and self.popen.poll() is not None:
            raise RuntimeError(f"redis-server on port {self.port} exited: {self.popen.returncode}")
        try:
            with redis.Redis(port=self.port, socket_connect_timeout=0.2) as client:
                return bool(client.ping())
        except redis.ConnectionError:
            return False
