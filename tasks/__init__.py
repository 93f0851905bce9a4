"""Celery tasks: `from tasks import fetch_callbacks` is the producers' entry point."""

from tasks.app import app
from tasks.drain import drain, release
from tasks.fetch import fetch_callbacks

__all__ = ["app", "drain", "fetch_callbacks", "release"]
