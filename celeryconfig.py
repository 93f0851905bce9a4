"""Celery's settings, from a checkout (`celery --config celeryconfig`); the code is
esms_callbacks/celeryconfig.py, which the app loads by that name."""

from esms_callbacks.celeryconfig import *  # noqa: F403
