"""A producer-only install (no `worker` extra): the worker's commands say what to install, in
one line and at once; the producer's commands work.

Without a second virtualenv: the command runs in a subprocess whose `sitecustomize.py` refuses
to import the extra's packages, as they would be missing from a web app's virtualenv."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kombu import Connection

from esms_callbacks.esms.records import outcome_of
from esms_callbacks.events.publish import EventPublisher, build_event
from esms_callbacks.settings import Settings
from tests.helpers import runtime_of

EXTRA = ("aiohttp", "honcho", "flower", "prometheus_client", "hiredis")
INSTALL = "pip install 'esms-zns-callbacks[worker]'"
TIMEOUT_S = 30.0  # a command that hangs fails the test
OA = "1090257973118325189"
COMMAND = Path(sys.executable).parent / "esms-callbacks"

SITECUSTOMIZE = f"""
import sys
from importlib.abc import MetaPathFinder

BLOCKED = {EXTRA!r}


class NotInstalled(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, NotInstalled())
"""


@pytest.fixture
def without_extra(tmp_path: Path, cli_env: Settings) -> dict[str, str]:
    """The CLI's environment (the test's account on the test Redis) with the extra blocked."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    env["ESMS_PUSH_TOKEN"] = "a-push-token-long-enough"
    env["ESMS_BASE_URL"] = "http://127.0.0.1:1"  # a run that got past the check reaches nothing
    return env


def run_cli(
    args: list[str], env: dict[str, str], stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run the command in a process group of its own, killed whole if it outlives TIMEOUT_S
    (a `run` that got past the check would have started children)."""
    with subprocess.Popen(
        [str(COMMAND), *args],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as child:
        try:
            out, err = child.communicate(stdin, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.communicate()
            pytest.fail(f"esms-callbacks {' '.join(args)} still running after {TIMEOUT_S:g}s")
        return subprocess.CompletedProcess(child.args, child.returncode, out, err)


def test_the_block_stands_for_a_missing_package(without_extra):
    # given the block; when a blocked package is imported; expect it missing, others present
    code = "import redis\ntry:\n import aiohttp\nexcept ModuleNotFoundError as e:\n print(e.name)"
    done = subprocess.run(
        [sys.executable, "-c", code], env=without_extra, capture_output=True, text=True
    )
    assert done.stdout == "aiohttp\n"


@pytest.mark.parametrize(
    "args",
    [
        ["metrics", "--port", "0"],
        ["receive", "--port", "0"],
        ["run", "--demo-refs", "0"],
        ["run", "--no-flower", "--demo-refs", "0"],
        ["demo", "--refs", "1"],
        ["simulate", "--port", "0"],
    ],
)
def test_a_worker_command_names_the_extra_in_one_line_and_exits(without_extra, args):
    # given a producer-only install; when a command that needs the worker extra runs
    done = run_cli(args, without_extra)
    # expect it to fail at once, with one line saying what to install and no traceback
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    [line] = done.stderr.splitlines()
    assert line.startswith(f"esms-callbacks: `esms-callbacks {args[0]}` needs the worker extra")
    assert line.endswith(INSTALL)


def test_help_still_works_without_the_extra(without_extra):
    # given a producer-only install; when help is asked for; expect it printed
    for args in (["--help"], ["status", "--help"], ["submit", "--help"], ["metrics", "--help"]):
        done = run_cli(args, without_extra)
        assert (done.returncode, done.stderr) == (0, ""), args
        assert done.stdout.startswith("usage: esms-callbacks"), args


def test_submit_queues_the_refids_without_the_extra(without_extra, fetch_queue):
    # given a producer-only install; when RefIds are submitted from stdin
    done = run_cli(["submit", OA], without_extra, stdin="x1\nx2\n")
    # expect them queued as one task
    assert done.returncode == 0, done.stderr
    assert [call["args"] for call in fetch_queue()] == [[["x1", "x2"], OA]]


def test_status_show_and_tail_work_without_the_extra(without_extra, cli_env):

    # given a producer-only install, a waiting RefId and an event on the status queue
    runtime = runtime_of(cli_env)
    runtime.backlog.park(OA, ["w1"], runtime.clock.now_s())
    event = build_event("w1", OA, outcome_of({"SMSID": "w1", "SendStatus": 5}), datetime.now(UTC))
    EventPublisher(Connection(cli_env.broker_url), cli_env.status_queue).publish([event])
    # when status, show and tail run; expect each to answer
    status = run_cli(["status", "--json"], without_extra)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["waiting_refs"] == 1
    show = run_cli(["show", "w1"], without_extra)
    assert (show.returncode, show.stdout.split(":")[0]) == (0, f"w1 (OA {OA})"), show.stderr
    tail = run_cli(["tail", "--take", "--json", "--count", "1"], without_extra)
    assert tail.returncode == 0, tail.stderr
    assert json.loads(tail.stdout) == event
