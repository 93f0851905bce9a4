"""What an app that adds this project gets: one name, its own config, nothing shadowed.

Given a host app folder with its own `celeryconfig.py` and `tasks.py` (common in Celery
projects), expect this project's task to load this project's config, and the host's modules to
stay the host's. The checks run in subprocesses from that folder, as the host app would.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOP_LEVEL = ("tasks", "workers", "receiver", "cli", "simulator", "celeryconfig")


def run_in(folder: Path, code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=folder, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_a_host_app_s_own_celeryconfig_and_tasks_neither_shadow_nor_are_shadowed(tmp_path):
    (tmp_path / "celeryconfig.py").write_text('task_default_queue = "theirs"\n')
    (tmp_path / "tasks.py").write_text('WHO = "the host app"\n')
    out = run_in(
        tmp_path,
        "from esms_callbacks.tasks import fetch_callbacks; import tasks; "
        "print(fetch_callbacks.app.conf.task_default_queue, '|', tasks.WHO)",
    )
    assert out == "esms.fetch | the host app"


def test_settings_are_read_when_first_used_not_at_import(tmp_path):
    out = run_in(
        tmp_path,
        "import os; from esms_callbacks.tasks import app; "
        "os.environ['CELERY_BROKER_URL'] = 'redis://late.example:6379/5'; "
        "print(app.conf.broker_url)",
    )
    assert out == "redis://late.example:6379/5"


def test_the_code_imports_itself_by_its_installed_name_only():
    # A module imported both as `workers.keys` and `esms_callbacks.workers.keys` would exist
    # twice (two Lua script registries, two Settings classes): nothing may use the bare names.
    bare = re.compile(rf"^\s*(from|import) ({'|'.join(TOP_LEVEL)})(\.|\s|$)", re.M)
    offenders = []
    for path in ROOT.rglob("*.py"):
        if ".venv" in path.parts or "esms_callbacks" in path.parts or "build" in path.parts:
            continue
        if bare.search(path.read_text()):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_the_package_links_every_folder_it_installs():
    for name in TOP_LEVEL:
        link = ROOT / "esms_callbacks" / (f"{name}.py" if name == "celeryconfig" else name)
        assert link.is_symlink() and link.resolve() == (ROOT / link.name).resolve(), name
