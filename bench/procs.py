"""Subprocesses of a benchmark run: real `celery worker` and `celery beat` processes, each in
its own process group, with the CPU time of the whole group read from /proc."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parent.parent
_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
STOP_GRACE_S = 10.0  # SIGTERM first (warm shutdown); SIGKILL for the group after this


class Service:
    """One command in its own session (so its process group holds it and its pool children),
    logging to `log_dir/NAME.log`."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], log_dir: Path, ready_text: str
    ) -> None:
        self.name = name
        self.ready_text = ready_text
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

    def wait_ready(self, deadline: float) -> None:
        """Wait for the ready line; raise if the process exits or `deadline` (monotonic) passes."""
        while self.ready_text not in self.log:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not print {self.ready_text!r} in time")
            time.sleep(0.1)

    def cpu_s(self) -> float:
        """CPU seconds (user + system) of every live process of the group, plus what the
        processes it waited for used (cutime, cstime: pool children that were replaced)."""
        return group_cpu_s(self.popen.pid)

    def terminate(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM (if not sent yet), wait up to `grace_s`, then SIGKILL the whole group."""
        self.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=grace_s)
        with contextlib.suppress(ProcessLookupError):  # the group may be gone already
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)
        self._log.close()


class Fleet:
    """The services of one run; `with Fleet(...)` stops them all on exit, errors included."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.services: list[Service] = []

    def worker(
        self,
        name: str,
        env: dict[str, str],
        concurrency: int,
        app: str = "esms_callbacks.tasks",
        queues: str = "esms.fetch,esms.drain",
    ) -> Service:
        argv = [sys.executable, "-m", "celery", "-A", app, "worker", "--queues", queues]
        argv += ["--concurrency", str(concurrency), "--hostname", f"{name}@%h"]
        argv += ["--loglevel", "INFO", "--without-mingle", "--without-gossip"]
        return self._add(Service(name, argv, env, self.log_dir, "ready."))

    def beat(self, env: dict[str, str]) -> Service:
        schedule = self.log_dir / "beat-schedule"
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "esms_callbacks.tasks",
            "beat",
            "--loglevel",
            "INFO",
        ]
        argv += ["--schedule", str(schedule)]
        return self._add(Service("beat", argv, env, self.log_dir, "beat: Starting"))

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        for service in self.services:
            service.wait_ready(deadline)

    def cpu_s(self, prefix: str) -> float:
        """CPU seconds of the services whose names start with `prefix`."""
        return sum(s.cpu_s() for s in self.services if s.name.startswith(prefix))

    def stop(self) -> None:
        """Signal every service first, then wait for each: they shut down in parallel."""
        for service in self.services:
            service.terminate()
        for service in self.services:
            service.stop()
        self.services.clear()

    def _add(self, service: Service) -> Service:
        self.services.append(service)
        return service

    def __enter__(self) -> Fleet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def group_cpu_s(pgid: int) -> float:
    """Sum utime + stime + cutime + cstime over the processes of process group `pgid`."""
    ticks = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:  # the process ended meanwhile
            continue
        # Fields after the command name, which is in parentheses and may hold spaces.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:  # pgrp
            ticks += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return ticks / _TICKS_PER_S
