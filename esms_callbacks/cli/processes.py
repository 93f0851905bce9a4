"""Child processes of the stack (`esms-callbacks run`, `demo`), and their command lines; the
tests and the benchmarks start theirs with these too (bench/harness.py adds what only they
need: worker and beat command lines, CPU time, a simulator at a raised priority).

A `Child` runs one `Command` in the repository root, in its own process group (which holds it
and whatever it forks: a worker's pool, honcho's processes), its output in a log file of its
own, an open file, or the terminal. It can be waited on (a line in its log, or any condition,
with a deadline), measured (CPU time of its group) and stopped: SIGTERM to the main process,
which lets a Celery worker finish its running tasks (its pool processes reset SIGTERM to "die
at once", so they must not get it), then SIGKILL for the whole group after a grace period.
`Children` starts several and stops them together, in parallel.

The stack a user runs (`esms-callbacks run`, `demo`) stays in the user's process group
instead (`own_group=False`): a closed terminal (SIGHUP) or a signal to the whole group then
reaches it too, as it would a Procfile run by hand.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]  # the checkout: esms_callbacks/cli/processes.py
STOP_GRACE_S = 20.0  # after SIGTERM, this long to shut down warm before the group is killed
READY_TIMEOUT_S = 60.0
_POLL_S = 0.1
_LOG_TAIL_CHARS = 3000


@dataclass(frozen=True)
class Command:
    """A command line, and the text its output shows once it serves ("" if none is known)."""

    argv: list[str]
    ready_text: str = ""


def simulator_options(
    api_key: str,
    secret_key: str,
    *,
    rate_interval_s: float,
    policy: str,
    max_refs: int | None = None,
    window: str | None = None,
    timezone: str | None = None,
    fault_rates: Sequence[str] = (),
    fault_seed: int | None = None,
) -> list[str]:
    """The options of `python -m esms_callbacks.simulator` but its port: eSMS's keys, terms
    and behaviour; one left out takes the simulator's default. `fault_rates` are
    `KIND:RATE[:NAME=VALUE,...]` texts."""
    options = ["--api-key", api_key, "--secret-key", secret_key]
    options += ["--rate-interval", repr(float(rate_interval_s)), "--policy", policy]
    if max_refs is not None:
        options += ["--max-refs", str(max_refs)]
    if window is not None:
        options += ["--window", window]
    if timezone is not None:
        options += ["--timezone", timezone]
    for fault_rate in fault_rates:
        options += ["--fault-rate", fault_rate]
    if fault_seed is not None:
        options += ["--fault-seed", str(fault_seed)]
    return options


def simulator_command(options: Sequence[str], port: int | str = 0) -> Command:
    """The eSMS simulator on `port` (0 picks a free one, which it prints)."""
    argv = [sys.executable, "-m", "esms_callbacks.simulator", "--port", str(port), *options]
    return Command(argv, "listening on")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a child to bind)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Child:
    """`command` started as `name` in the repository root, in a process group of its own.

    `log` is a file to create for its output (a Path: `.log` reads it back), an open file to
    write it to, or None for this process's terminal."""

    def __init__(
        self,
        name: str,
        command: Command,
        env: Mapping[str, str],
        log: Path | IO[bytes] | None = None,
        *,
        own_group: bool = True,
    ) -> None:
        self.name = name
        self.command = command
        self.own_group = own_group
        self._killed = False
        self.log_path: Path | None = None
        self._own_log: IO[bytes] | None = None
        if isinstance(log, Path):
            self.log_path, self._own_log = log, log.open("wb")
            output: IO[bytes] | None = self._own_log
        else:
            output = log
        try:
            self.popen = subprocess.Popen(
                command.argv,
                cwd=ROOT,
                env=dict(env),
                stdout=output,
                stderr=subprocess.STDOUT if output is not None else None,
                start_new_session=own_group,
            )
        except BaseException:
            self._close_log()
            raise

    @property
    def log(self) -> str:
        """Its output so far ("" when it does not go to a file of its own)."""
        if self.log_path is None:
            return ""
        return self.log_path.read_text(errors="replace")

    def poll(self) -> int | None:
        """Its exit code, or None while it runs."""
        return self.popen.poll()

    def wait_until(self, predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Return once `predicate()` holds; RuntimeError if the process exits first,
        TimeoutError naming `what` after `timeout_s`, each with the end of its log."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log[-_LOG_TAIL_CHARS:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.name} did not {what} within {timeout_s:.0f}s:\n"
                    f"{self.log[-_LOG_TAIL_CHARS:]}"
                )
            time.sleep(_POLL_S)

    def wait_for(self, text: str, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Return once `text` is in its log."""
        self.wait_until(lambda: text in self.log, timeout_s, f"print {text!r}")

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> Child:
        """Wait for its command's ready text; one that never gets there is stopped, not
        orphaned, and the error raised."""
        try:
            self.wait_for(self.command.ready_text, timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def terminate(self) -> None:
        """SIGTERM to the main process (a warm shutdown for a Celery worker), if it runs."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM, up to `grace_s` to exit, then SIGKILL for what is left of the group."""
        self.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=grace_s)
        self.kill()

    def kill(self) -> None:
        """SIGKILL the whole process group (the main process and what it forked), or the
        process alone when it has no group of its own; once."""
        if self._killed:  # its pid, as a group id, may belong to someone else by now
            return
        self._killed = True
        try:
            with contextlib.suppress(ProcessLookupError):  # the group may be gone already
                if self.own_group:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                else:
                    self.popen.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=10)
        finally:
            self._close_log()

    def _close_log(self) -> None:
        if self._own_log is not None:
            self._own_log.close()


def stop_all(children: Iterable[Child], grace_s: float = STOP_GRACE_S) -> None:
    """Stop `children` in parallel: SIGTERM to each, then `grace_s` for them all, then SIGKILL
    for any group left."""
    children = list(children)
    for child in children:
        child.terminate()
    deadline = time.monotonic() + grace_s
    try:
        for child in children:
            child.stop(grace_s=max(0.1, deadline - time.monotonic()))
    finally:  # one that failed to stop leaves none of the others running
        for child in children:
            with contextlib.suppress(Exception):
                child.kill()


class Children:
    """Children started together and stopped together (`with Children(...) as children:`
    stops them on exit, errors included). Each logs to `log_dir/NAME.log`, or without a
    `log_dir` to `output` (an open file; None: the terminal)."""

    def __init__(
        self,
        log_dir: Path | None = None,
        *,
        output: IO[bytes] | None = None,
        stop_grace_s: float = STOP_GRACE_S,
        own_groups: bool = True,
    ) -> None:
        self.log_dir = log_dir
        self.output = output
        self.own_groups = own_groups
        self.stop_grace_s = stop_grace_s
        self._started: list[Child] = []

    def start(self, name: str, command: Command, env: Mapping[str, str]) -> Child:
        log = self.log_dir / f"{name}.log" if self.log_dir is not None else self.output
        child = Child(name, command, env, log, own_group=self.own_groups)
        self._started.append(child)
        return child

    def __iter__(self) -> Iterator[Child]:
        return iter(self._started)

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        """Wait for every child's ready text, `timeout_s` for them all."""
        deadline = time.monotonic() + timeout_s
        for child in self._started:
            child.wait_ready(max(0.0, deadline - time.monotonic()))

    def stop(self) -> None:
        stop_all(self._started, self.stop_grace_s)
        self._started.clear()

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
