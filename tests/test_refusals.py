"""A submission the worker refuses (bad input sent by name, past the producer's checks) is
expected, not a crash: one line in a real worker's log, no traceback."""

from __future__ import annotations

import uuid

import pytest

from esms_callbacks.cli.processes import stop_all
from esms_callbacks.tasks import app
from tests.procs import settings_env, start_worker

pytestmark = pytest.mark.slow


def test_each_refused_submission_is_one_line_of_the_workers_log(make_settings, tmp_path):
    settings = make_settings()
    worker = start_worker(
        "refusals", settings_env(settings), tmp_path, concurrency=1, queues="esms.fetch"
    )
    try:
        # given submissions sent by name, as any producer may: an argument fetch_callbacks
        # does not take, and an account the deployment does not serve
        run = uuid.uuid4().hex[:8]
        bad_argument, bad_account = f"colour_{run}", f"nobody-{run}"
        good = {"ref_ids": ["r1"], "oa_id": "oa-1"}
        app.send_task("esms.fetch_callbacks", kwargs={**good, bad_argument: 1})
        app.send_task("esms.fetch_callbacks", kwargs={**good, "account": bad_account})
        # then a good one: one pool process takes them in order, so once it is accepted the
        # refusals' lines are all written
        app.send_task("esms.fetch_callbacks", kwargs={"ref_ids": [f"ok-{run}"], "oa_id": "oa-1"})
        worker.wait_for("accepted 1 RefIds", timeout_s=60)
    finally:
        stop_all([worker])
    log = worker.log
    # expect one line for each refusal, naming the problem, and no traceback
    for token in (bad_argument, bad_account):
        lines = [line for line in log.splitlines() if token in line]
        assert len(lines) == 1, "\n".join(lines)
        assert "rejected a submission" in lines[0]
    assert "Traceback" not in log
    assert "raised unexpected" not in log
