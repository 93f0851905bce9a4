"""Real `celery worker` and `celery beat` subprocesses for multi-process tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from esms_callbacks.workers.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that makes a subprocess read `settings` (every declared variable)."""
    env = dict(os.environ)
    env.update(settings.to_env())
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Proc:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.log:
                return
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log[-3000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} did not print {text!r}:\n{self.log[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the whole process group: the main process and its pool children."""
        with contextlib.suppress(ProcessLookupError):  # the group may be gone already
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self) -> None:
        """Warm shutdown: SIGTERM to the main process, which lets running tasks finish (as a
        supervisor stopping one worker does); SIGKILL for the whole group after 20 s."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=20)
            self.kill()  # pool children a dead main process left behind, if any
        self._log.close()


def start_worker(
    name: str,
    env: dict[str, str],
    log_dir: Path,
    concurrency: int = 2,
    app: str = "esms_callbacks.tasks",
    queues: str = "esms.fetch,esms.drain",
) -> Proc:
    argv = [sys.executable, "-m", "celery", "-A", app, "worker", "--queues", queues]
    argv += ["--concurrency", str(concurrency), "--hostname", f"{name}@%h"]
    argv += ["--loglevel", env.get("LOG_LEVEL", "INFO"), "--without-mingle", "--without-gossip"]
    return _started(Proc(name, argv, env, log_dir), "ready.")


def start_beat(env: dict[str, str], log_dir: Path) -> Proc:
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "esms_callbacks.tasks",
        "beat",
        "--loglevel",
        "INFO",
        "--schedule",
        str(log_dir / "beat-schedule"),
    ]
    return _started(Proc("beat", argv, env, log_dir), "beat: Starting")


def _started(proc: Proc, text: str) -> Proc:
    """Wait for `text` in the log; a process that never gets there is stopped, not orphaned."""
    try:
        proc.wait_for(text)
    except BaseException:
        proc.stop()
        raise
    return proc


class PrivateRedis:
    """A redis-server of the test's own on `port`, with an append-only file in `directory`
    (fsync on every write), so it can be stopped and started again with its data."""

    def __init__(self, port: int, directory: Path) -> None:
        self.port = port
        self.directory = directory
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.directory)]
        self.popen = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not self._answers():
            if time.monotonic() > deadline:
                raise TimeoutError(f"redis-server on port {self.port} did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()  # SIGTERM: redis-server writes what it holds, then exits
            self.popen.wait(timeout=10)
        self.popen = None

    def _answers(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.2).ping())
        except redis.ConnectionError:
            return False
