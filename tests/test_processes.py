"""The one process launcher (cli/processes.py) of the stack, the tests and the benchmark."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from bench.harness import simulator_process
from esms_callbacks.cli.processes import Child, Command
from esms_callbacks.cli.stack import processes
from tests.helpers import wait_until

# Prints its pid and its child's, then sleeps: a process with a descendant, as a worker's pool.
PARENT_OF_ONE = (
    "import subprocess, sys, time; "
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
    "print(f'ready {child.pid}', flush=True); time.sleep(60)"
)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for our purpose
    return "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_the_stack_stays_in_the_callers_process_group_and_stops_with_it():
    sleeper = Command([sys.executable, "-c", "import time; time.sleep(60)"])
    with processes({"sleeper": sleeper}, dict(os.environ)) as started:
        pid = started["sleeper"].popen.pid
        # a closed terminal (SIGHUP to the group) reaches it as it reaches the command line
        assert os.getpgid(pid) == os.getpgrp()
    assert started["sleeper"].poll() is not None


def test_a_child_of_its_own_group_is_stopped_with_what_it_forked(tmp_path):
    child = Child(
        "parent",
        Command([sys.executable, "-c", PARENT_OF_ONE], "ready"),
        os.environ,
        tmp_path / "parent.log",
    )
    child.wait_ready(30)
    grandchild = int(child.log.split()[1])
    assert os.getpgid(child.popen.pid) == child.popen.pid != os.getpgrp()
    child.stop(grace_s=0.1)
    assert child.poll() is not None
    wait_until(lambda: not alive(grandchild), 10, "the grandchild to be killed")


def test_a_group_is_killed_once(tmp_path, monkeypatch):
    child = Child(
        "sleeper",
        Command([sys.executable, "-c", "import time; time.sleep(60)"]),
        os.environ,
        tmp_path / "sleeper.log",
    )
    killed: list[int] = []
    real_killpg = os.killpg

    def killpg(pgid: int, signum: int) -> None:
        killed.append(pgid)
        real_killpg(pgid, signum)

    monkeypatch.setattr(os, "killpg", killpg)
    child.kill()
    # stopped again (a fixture's teardown after the test's own stop): its pid may name another
    # group by now, which must not be signalled
    child.stop(grace_s=0.1)
    assert killed == [child.popen.pid]


@pytest.mark.skipif(os.geteuid() != 0, reason="raising a priority needs root")
def test_the_simulator_gets_the_priority_asked_for_its_process_and_its_autogroup():
    # Under autogroup scheduling a process's own nice only counts inside its session's group:
    # a simulator in a session of its own needs its group's nice raised too, or it gains nothing.
    with simulator_process(nice=-5) as sim:
        assert sim.nice == os.getpriority(os.PRIO_PROCESS, 0) - 5
        if Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1":
            assert sim.autogroup_nice == sim.nice
        else:
            assert sim.autogroup_nice is None
