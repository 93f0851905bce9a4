"""The Celery app; configuration comes from celeryconfig.py."""

from typing import Any

from celery import Celery
from celery.signals import worker_process_shutdown

from workers.runtime import close_runtime

app = Celery("esms")
app.config_from_object("celeryconfig")


@worker_process_shutdown.connect
def _close_runtime(**_: Any) -> None:
    close_runtime()  # a clean goodbye to eSMS's keep-alive connection
