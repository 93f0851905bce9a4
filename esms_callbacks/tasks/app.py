"""The Celery app; configuration comes from celeryconfig.py, the worker's collaborators from
context.py."""

import logging
from typing import Any

from celery import Celery
from celery.signals import beat_init, worker_init

from esms_callbacks.tasks import broker_fix

app = Celery("esms")
app.config_from_object("esms_callbacks.celeryconfig")


@worker_init.connect
def _install_broker_fix(**_: Any) -> None:
    """Only workers run tasks while the broker may restart; web apps, beat and Flower that
    import this module are left untouched (pool children inherit the patch)."""
    broker_fix.install()


@beat_init.connect
def _no_sent_events_from_beat(sender: Any = None, **_: Any) -> None:
    """Beat sends one task, the release pulse (esms.release), every ESMS_RELEASE_EVERY: its
    task-sent events would fill Flower's task list and push the drains out of its memory.
    The pulse sends no worker events either (send_events=False, tasks/drain.py). Beat runs
    as a process of its own (the Procfile's `beat`), which sends nothing else."""
    beat_app = getattr(sender, "app", None) or app
    beat_app.conf.task_send_sent_event = False


class ExpectedOnce(logging.Filter):
    """Drop Celery's own line for an exception a task declares in `throws` ("raised
    expected"): such a task (esms.fetch_callbacks refusing bad input) logs it itself, in one
    line that names the problem."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = getattr(record, "data", None)
        return not (isinstance(context, dict) and context.get("description") == "raised expected")


logging.getLogger("celery.app.trace").addFilter(ExpectedOnce())
