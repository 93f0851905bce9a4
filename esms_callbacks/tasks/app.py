"""The Celery app; configuration comes from celeryconfig.py, the worker's collaborators from
context.py."""

from typing import Any

from celery import Celery
from celery.signals import worker_init

from esms_callbacks.tasks import broker_fix

app = Celery("esms")
app.config_from_object("esms_callbacks.celeryconfig")


@worker_init.connect
def _install_broker_fix(**_: Any) -> None:
    """Only workers run tasks while the broker may restart; web apps, beat and Flower that
    import this module are left untouched (pool children inherit the patch)."""
    broker_fix.install()
