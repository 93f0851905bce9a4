"""What an app that adds this project gets: one name, its own config, nothing shadowed.

Given a host app folder with its own `celeryconfig.py` and `tasks.py` (common in Celery
projects), expect this project's task to load this project's config, and the host's modules to
stay the host's. The checks run in subprocesses from that folder, as the host app would.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHECKOUT_ONLY = ("tasks", "workers", "celeryconfig", "bench", "tests")


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


def test_the_package_never_imports_the_checkout_s_entry_points():
    # tasks/, workers/ and celeryconfig.py are not installed: the package must not need them,
    # and a module imported both as `tasks.x` and `esms_callbacks.tasks.x` would exist twice.
    bare = re.compile(rf"^\s*(from|import) ({'|'.join(CHECKOUT_ONLY)})(\.|\s|$)", re.M)
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "esms_callbacks").rglob("*.py")
        if bare.search(path.read_text())
    ]
    assert offenders == []


def test_no_file_of_the_repository_is_a_link():
    listed = subprocess.run(
        ["git", "ls-files", "-s"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert [line for line in listed if line.startswith("120000")] == []


def test_the_checkout_s_entry_points_are_short_and_hand_the_package_on():
    for name in ("tasks/__init__.py", "workers/__init__.py", "celeryconfig.py"):
        text = (ROOT / name).read_text()
        assert len(text.splitlines()) <= 20, name
        imports = re.findall(r"^(?:from|import) (\S+)", text, re.M)
        assert imports and all(module.startswith("esms_callbacks") for module in imports), name


def test_from_tasks_import_fetch_callbacks_works_from_a_checkout():
    out = run_in(
        ROOT,
        "import esms_callbacks, tasks; "
        "print(tasks.fetch_callbacks is esms_callbacks.fetch_callbacks, tasks.app.main)",
    )
    assert out == "True esms"


def test_the_public_api_is_at_the_root_and_a_consumer_does_not_load_celery(tmp_path):
    out = run_in(
        tmp_path,
        "import sys, esms_callbacks; "
        "from esms_callbacks import StatusEvent, InvalidSubmission, EsmsCallbacksError; "
        "print(issubclass(InvalidSubmission, EsmsCallbacksError), 'celery' in sys.modules); "
        "from esms_callbacks import fetch_callbacks; "
        "print(fetch_callbacks.name, sorted(esms_callbacks.__all__) == esms_callbacks.__all__, "
        "all(getattr(esms_callbacks, name) for name in esms_callbacks.__all__))",
    )
    assert out.splitlines() == ["True False", "esms.fetch_callbacks True True"]


def test_every_error_the_project_raises_has_one_root():
    import inspect

    from esms_callbacks import errors
    from esms_callbacks.events import model

    raised = [
        value
        for module in (errors, model)
        for value in vars(module).values()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == module.__name__
    ]
    assert len(raised) > 10
    assert [
        kind.__name__ for kind in raised if not issubclass(kind, errors.EsmsCallbacksError)
    ] == []


def test_a_wheel_holds_the_package_alone_with_its_lua_and_schema(tmp_path):
    # built from a copy, so that setuptools' build/ stays out of the checkout
    source = tmp_path / "source"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("esms_callbacks", "tasks", "workers", "bench", "tests", "examples"):
        shutil.copytree(ROOT / name, source / name, ignore=skip)
    for name in ("pyproject.toml", "README.md", "celeryconfig.py"):
        shutil.copy(ROOT / name, source / name)
    build = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "-q",
        "-w",
        str(tmp_path),
        str(source),
    ]
    subprocess.run(build, check=True, capture_output=True)
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"esms_callbacks"}
    assert "esms_callbacks/engine/lua/backlog_lease.lua" in names
    assert "esms_callbacks/events/schemas/status_event.v1.json" in names
