"""The Django settings of the test process (and of the `esms_consume` it starts): the
example app's, with its SQLite database as `default` and a PostgreSQL database `postgres`.

Each test session (each pytest-xdist worker) has databases of its own, named here once and
passed on in the environment, so the subprocesses it starts use the same ones: a SQLite file
and a database on ESMS_TEST_POSTGRES_URL's server (scripts/ensure-postgres starts one when
none answers).
tests/contrib_django/conftest.py creates and migrates both, and drops its PostgreSQL one.
"""

import os
import tempfile
from urllib.parse import urlsplit

POSTGRES_URL = os.environ.get(
    "ESMS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
# The names pass to subprocesses in ESMS_TEST_DJANGO_SESSION; a session inherited from
# another process of the run (pytest-xdist's controller) is not this worker's.
_worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
_session = os.environ.get("ESMS_TEST_DJANGO_SESSION", "")
if not _session.startswith(f"{_worker}_"):
    _session = os.environ["ESMS_TEST_DJANGO_SESSION"] = f"{_worker}_{os.getpid()}"
POSTGRES_NAME = f"esms_django_test_{_session}"
SQLITE_PATH = os.path.join(tempfile.gettempdir(), f"esms_django_{_session}.sqlite3")
os.environ.setdefault("EXAMPLE_DB", SQLITE_PATH)

from examples.django_app.settings import *  # noqa: E402, F403

_server = urlsplit(POSTGRES_URL)
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": SQLITE_PATH,
        "OPTIONS": {"timeout": 20},  # type: ignore[dict-item]
    },
    "postgres": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": POSTGRES_NAME,
        "USER": _server.username or "postgres",
        "PASSWORD": _server.password or "",
        "HOST": _server.hostname or "127.0.0.1",
        "PORT": str(_server.port or 5432),
    },
}
