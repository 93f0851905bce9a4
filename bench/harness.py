"""What the benchmarks and the tests need of child processes beyond what the stack uses
(esms_callbacks.cli.processes): worker, beat and receiver command lines, the CPU time of a
process group, and a simulator at a raised CPU priority. Not installed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

from bench.env import API_KEY, CURRENT_CALLBACK_INTERVAL_S, CURRENT_MAX_REFS, SECRET_KEY, ZONE
from esms_callbacks.cli.processes import (
    Child,
    Children,
    Command,
    simulator_command,
    simulator_options,
)
from esms_callbacks.simulator.remote import RemoteSimulator

_LISTENING = re.compile(r"listening on (http://[^/\s]+)")


def worker_command(
    name: str,
    concurrency: int = 2,
    *,
    app: str = "esms_callbacks.tasks",
    queues: str = "esms.fetch,esms.drain",
    loglevel: str = "INFO",
) -> Command:
    """`celery worker` named `name@host`, without mingle and gossip (a worker that starts
    beside others must not wait on them)."""
    argv = [sys.executable, "-m", "celery", "-A", app, "worker", "--queues", queues]
    argv += ["--concurrency", str(concurrency), "--hostname", f"{name}@%h"]
    argv += ["--loglevel", loglevel, "--without-mingle", "--without-gossip"]
    return Command(argv, "ready.")


def beat_command(schedule: Path, loglevel: str = "INFO") -> Command:
    """`celery beat` keeping its schedule state in the file `schedule`."""
    argv = [sys.executable, "-m", "celery", "-A", "esms_callbacks.tasks", "beat"]
    argv += ["--loglevel", loglevel, "--schedule", str(schedule)]
    return Command(argv, "beat: Starting")


def receiver_command(port: int | None = None) -> Command:
    """`esms-callbacks receive`, on `port` if given (else ESMS_RECEIVER_PORT)."""
    argv = [sys.executable, "-m", "esms_callbacks.cli.main", "receive"]
    argv += ["--port", str(port)] if port is not None else []
    return Command(argv, "receiving eSMS pushes")


class PrioritizedSimulator(RemoteSimulator):
    """A simulator in its own process, and the CPU priority it got."""

    nice = 0  # the simulator process's scheduling priority
    autogroup_nice: int | None = None  # its autogroup's, where autogroups are on


def current_terms_simulator_options(*extra: str) -> list[str]:
    """The simulator's options for eSMS's current terms (bench.env), every RefId `sent`,
    no window: what the status-source benches run against (`extra` appended)."""
    options = simulator_options(
        API_KEY,
        SECRET_KEY,
        rate_interval_s=CURRENT_CALLBACK_INTERVAL_S,
        policy="sent",
        max_refs=CURRENT_MAX_REFS,
        window="always",
        timezone=ZONE,
    )
    return [*options, *extra]


@contextlib.contextmanager
def simulator_process(
    *options: str,
    log_dir: Path | None = None,
    nice: int = 0,
    timeout_s: float = 20.0,
    accounts_file: Path | str | None = None,
) -> Iterator[PrioritizedSimulator]:
    """The eSMS simulator with `options` on a free port, in its own process (logging to
    `log_dir/simulator.log`, else a temporary file); yield its controller; stop it on exit.
    `accounts_file` makes it serve that file's accounts (`--accounts-file`, the format of
    ESMS_ACCOUNTS_FILE; esms_callbacks.simulator.accounts_file.accounts_toml writes one).

    `nice` < 0 raises its CPU priority where this process may (root), so that on a machine it
    shares with the workers it stands in for eSMS's own servers: its receipt times then carry
    less of the workers' CPU contention. `.nice` says what it got."""
    with tempfile.TemporaryDirectory(prefix="esms-sim-") as scratch:
        log = Path(log_dir or scratch) / "simulator.log"
        if accounts_file is not None:
            options = (*options, "--accounts-file", str(accounts_file))
        child = Child("simulator", simulator_command(options), os.environ, log)
        try:
            if nice:
                _raise_priority(child.popen.pid, nice)
            child.wait_ready(timeout_s)
            listening = _LISTENING.search(child.log)
            if listening is None:
                raise RuntimeError(f"the simulator gave no address:\n{child.log}")
            remote = PrioritizedSimulator(listening.group(1))
            remote.nice = os.getpriority(os.PRIO_PROCESS, child.popen.pid)
            remote.autogroup_nice = _autogroup_nice(child.popen.pid)
            yield remote
        finally:
            child.stop(grace_s=10)


def _raise_priority(pid: int, nice: int) -> None:
    """Change `pid`'s CPU priority by `nice` where this process may (root).

    Under Linux's autogroup scheduling (`/proc/sys/kernel/sched_autogroup_enabled`), a child
    started in a session of its own is weighed against the other sessions by its autogroup's
    nice, and its own nice only counts inside that group: both are set."""
    priority = os.getpriority(os.PRIO_PROCESS, 0) + nice
    with contextlib.suppress(PermissionError):
        os.setpriority(os.PRIO_PROCESS, pid, priority)
    with contextlib.suppress(OSError):  # no autogroups here, or not allowed
        Path(f"/proc/{pid}/autogroup").write_text(f"{priority}\n")


def _autogroup_nice(pid: int) -> int | None:
    """The nice of `pid`'s autogroup, or None where there are none (or autogroups are off)."""
    try:
        if Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() != "1":
            return None
        found = re.search(r"nice (-?\d+)", Path(f"/proc/{pid}/autogroup").read_text())
    except OSError:
        return None
    return int(found.group(1)) if found else None


def child_cpu_s(child: Child) -> float:
    """CPU seconds used by `child`'s process group so far (see `group_cpu_s`)."""
    return group_cpu_s(child.popen.pid)


def fleet_cpu_s(children: Children, prefix: str = "") -> float:
    """CPU seconds of the children whose names start with `prefix`."""
    return sum(child_cpu_s(c) for c in children if c.name.startswith(prefix))


def group_cpu_s(pgid: int) -> float:
    """CPU seconds (user + system) of every live process of process group `pgid`, plus what
    the processes it waited for used (cutime, cstime: pool processes that were replaced)."""
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
    return ticks / os.sysconf("SC_CLK_TCK")


def env_overrides(parser: argparse.ArgumentParser, items: list[str]) -> dict[str, str]:
    """`--env KEY=VALUE` options as a mapping (the parser's error for a malformed one)."""
    overrides: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--env {item!r}: give KEY=VALUE")
        overrides[name] = value
    return overrides


def stop_on_sigterm() -> None:
    """SIGTERM ends a bench as Ctrl-C does: its processes and servers are stopped on the way."""
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def measured(measure: Callable[[], object]) -> tuple[str, int]:
    """Run a bench's measurement; what its heading adds and its exit code if it stopped
    early (the partial results are printed all the same)."""
    try:
        measure()
    except KeyboardInterrupt:
        return "INTERRUPTED: partial results", 130
    except Exception as exc:
        traceback.print_exc()
        return f"FAILED ({type(exc).__name__}: {exc}): partial results", 1
    return "", 0
