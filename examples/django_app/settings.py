"""Minimal Django settings for the example: a SQLite database holds the RefId outbox and the
statuses (esms_callbacks.contrib.django); the admin shows them at /admin/.

    python -m examples.django_app.manage migrate
    python -m examples.django_app.manage esms_consume      # statuses into the table
    python -m examples.django_app.manage createsuperuser && ... runserver 8000
"""

import os

from esms_callbacks import fetch_callbacks

SECRET_KEY = "example-only-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "examples.django_app.urls"
INSTALLED_APPS: list[str] = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "esms_callbacks.contrib.django",  # MessageStatus, status_changed, esms_consume
    "examples.django_app",  # its status_changed receiver (apps.py)
]
MIDDLEWARE: list[str] = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
DATABASE_PATH = os.environ.get("EXAMPLE_DB", ".run/django_example.sqlite3")
os.makedirs(os.path.dirname(DATABASE_PATH) or ".", exist_ok=True)
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": DATABASE_PATH}}
ESMS_SUBMIT = fetch_callbacks.delay  # how RefIds reach the broker
# esms_consume reads CELERY_BROKER_URL and ESMS_STATUS_QUEUE from here, else the environment.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://localhost:6379/0")
USE_TZ = True
