"""Django for these tests: tests.django_settings, a SQLite and a PostgreSQL database of this
session's own (created, migrated, and the PostgreSQL one dropped at the end). `alias`
parametrizes a test over both; each test starts with an empty MessageStatus table."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import django
import psycopg
import pytest
from psycopg import sql

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django_settings")
django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connections  # noqa: E402

from esms_callbacks.contrib.django.models import MessageStatus  # noqa: E402
from esms_callbacks.contrib.django.signals import status_changed  # noqa: E402
from tests import django_settings  # noqa: E402

ALIASES = ["default", "postgres"]  # SQLite, PostgreSQL


@pytest.fixture(scope="session")
def django_databases() -> Iterator[None]:
    name = django_settings.POSTGRES_NAME
    try:
        admin = psycopg.connect(django_settings.POSTGRES_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"no PostgreSQL at {django_settings.POSTGRES_URL} ({exc}); run `make test`, which "
            "starts one (scripts/ensure-postgres)",
            pytrace=False,
        )
    with admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    connections.close_all()  # another test of this session may have the old file open
    with contextlib.suppress(FileNotFoundError):
        os.remove(django_settings.SQLITE_PATH)
    for alias in ALIASES:
        call_command("migrate", database=alias, verbosity=0)
    yield
    connections.close_all()
    with psycopg.connect(django_settings.POSTGRES_URL, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
    with contextlib.suppress(FileNotFoundError):
        os.remove(django_settings.SQLITE_PATH)


@pytest.fixture(params=ALIASES, ids=["sqlite", "postgresql"])
def alias(request: pytest.FixtureRequest, django_databases: None) -> str:
    name: str = request.param
    MessageStatus.objects.using(name).all().delete()
    return name


@pytest.fixture
def signals() -> Iterator[list[dict[str, Any]]]:
    """Every status_changed sent during the test: its kwargs, and whether the row was in the
    database (committed, seen from another connection's view) when it was sent."""
    seen: list[dict[str, Any]] = []

    def receive(sender: Any, event: Any, message: Any, **kwargs: Any) -> None:
        seen.append({"event": event, "message": message})

    status_changed.connect(receive, weak=False, dispatch_uid="tests-signals")
    yield seen
    status_changed.disconnect(dispatch_uid="tests-signals")
