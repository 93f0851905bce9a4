"""Minimal Django settings for the example: a SQLite database holds the RefId outbox."""

import os

from esms_callbacks import fetch_callbacks

SECRET_KEY = "example-only-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "examples.django_app.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
DATABASE_PATH = os.environ.get("EXAMPLE_DB", ".run/django_example.sqlite3")
os.makedirs(os.path.dirname(DATABASE_PATH) or ".", exist_ok=True)
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": DATABASE_PATH}}
ESMS_SUBMIT = fetch_callbacks.delay  # how RefIds reach the broker
USE_TZ = True
