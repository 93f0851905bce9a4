"""Celery tasks: `from tasks import fetch_callbacks` is the producers' entry point."""

from esms_callbacks.tasks.app import app
from esms_callbacks.tasks.context import worker_context
from esms_callbacks.tasks.drain import drain, release
from esms_callbacks.tasks.fetch import fetch_callbacks
from esms_callbacks.tasks.reconcile import reconcile, reconcile_pulse

__all__ = [
    "app",
    "drain",
    "fetch_callbacks",
    "reconcile",
    "reconcile_pulse",
    "release",
    "worker_context",
]
