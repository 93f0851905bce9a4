"""The environment of the processes under test, built from plain variables.

Deliberately not from the project's Settings object: the processes must be configured the way
users configure them (environment variables only), and settings other developers add are
passed through as extra variables (`--env KEY=VALUE`, a scenario's own overrides).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

API_KEY = "bench-api-key-7Yq2"
SECRET_KEY = "bench-secret-key-Pw81"
ZONE = "Asia/Ho_Chi_Minh"
WINDOW_LENGTH = timedelta(hours=1)
# eSMS's current terms (its newest docs): GetCallback 20 requests/s x 200 RefIds, no window;
# QueryZnsStatus 100/s; GetZaloMessageStatus 30/s.
CURRENT_CALLBACK_INTERVAL_S, CURRENT_MAX_REFS = 0.05, 200
CURRENT_QUERY_INTERVAL_S, CURRENT_DELIVERY_INTERVAL_S = 0.01, 0.034
STOP_GRACE_S = 10.0  # after SIGTERM (a warm shutdown), then SIGKILL for a process's group
# Variables the processes read that must come from the benchmark, not the caller's shell.
_OWN_PREFIXES = ("ESMS_", "CELERY_", "BENCH_")


def clean_environ() -> dict[str, str]:
    """The caller's environment without any project setting (PATH, HOME... stay)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIXES)}


def window_opening_at(opens_at: datetime) -> str:
    """An `ESMS_WINDOW` value (in ZONE) that opens at `opens_at` and lasts an hour."""
    local = opens_at.astimezone(ZoneInfo(ZONE))
    return f"{local:%H:%M:%S}-{local + WINDOW_LENGTH:%H:%M:%S}"


def project_env(
    *,
    redis_url: str,
    base_url: str,
    account: str,
    status_queue: str,
    interval_s: float,
    max_refs: int,
    window: str,
    overrides: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of this project's worker and beat processes for one run."""
    env = clean_environ()
    env.update(
        {
            "CELERY_BROKER_URL": redis_url,
            "ESMS_REDIS_URL": redis_url,
            "ESMS_API_KEY": API_KEY,
            "ESMS_SECRET_KEY": SECRET_KEY,
            "ESMS_BASE_URL": base_url,
            "ESMS_REST_BASE_URL": base_url,
            "ESMS_RATE_INTERVAL": f"{interval_s:g}",
            "ESMS_MAX_REFS": str(max_refs),
            "ESMS_WINDOW": window,
            "ESMS_TIMEZONE": ZONE,
            "ESMS_STATUS_QUEUE": status_queue,
            "ESMS_ACCOUNT": account,
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(overrides or {})
    return env


def naive_env(*, redis_url: str, base_url: str, interval_s: float) -> dict[str, str]:
    """The environment of bench/naive_app.py's workers (Celery's own rate_limit)."""
    env = clean_environ()
    env.update(
        {
            "CELERY_BROKER_URL": redis_url,
            "ESMS_API_KEY": API_KEY,
            "ESMS_SECRET_KEY": SECRET_KEY,
            "ESMS_BASE_URL": base_url,
            "ESMS_REST_BASE_URL": base_url,
            "BENCH_RATE_PER_S": f"{1 / interval_s:g}",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def prepare_producer(redis_url: str, overrides: Mapping[str, str]) -> None:
    """Point this process's Celery apps at `redis_url`; call before importing `tasks`
    (celeryconfig reads the environment once, at import)."""
    for name in [k for k in os.environ if k.startswith(_OWN_PREFIXES)]:
        del os.environ[name]
    os.environ.update({"CELERY_BROKER_URL": redis_url, "ESMS_REDIS_URL": redis_url})
    os.environ.update(overrides)
