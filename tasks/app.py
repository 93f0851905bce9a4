"""The Celery app; configuration comes from celeryconfig.py."""

from celery import Celery

app = Celery("esms")
app.config_from_object("celeryconfig")
