"""Where `esms_consume` reads from: the Django settings first, then the environment.

Each Django setting, else the environment variable of the same name:
- `ESMS_BROKER_URL`, else `CELERY_BROKER_URL` (default `redis://localhost:6379/0`): the broker
  the workers publish to;
- `ESMS_STATUS_QUEUE` (`esms.status`): the workers' status queue;
- `ESMS_STATUS_EXCHANGE` (the status queue's name): the exchange events are published to;
- `ESMS_CONSUME_QUEUE` (`ESMS_STATUS_QUEUE`): the queue this app reads, bound to that exchange;
- `ESMS_BROKER_TRANSPORT_OPTIONS`, else `CELERY_BROKER_TRANSPORT_OPTIONS` (settings only, `{}`):
  kombu's transport options (a Sentinel broker's `master_name`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ImproperlyConfigured

DEFAULT_BROKER_URL = "redis://localhost:6379/0"
DEFAULT_STATUS_QUEUE = "esms.status"


@dataclass(frozen=True)
class ConsumerConfig:
    broker_url: str
    status_queue: str
    exchange: str
    consume_queue: str
    transport_options: Mapping[str, object] = field(default_factory=dict)

    @classmethod
    def from_django(cls, settings: Any, environ: Mapping[str, str] | None = None) -> ConsumerConfig:
        """Read `settings` (django.conf.settings), then `environ` (os.environ)."""
        environ = os.environ if environ is None else environ

        def read(*names: str, default: str) -> str:
            for name in names:
                value = getattr(settings, name, None)
                if value is None:
                    value = environ.get(name)
                if value is None:
                    continue
                if not isinstance(value, str) or not value.strip():
                    raise ImproperlyConfigured(f"{name} must be a non-empty string, not {value!r}")
                return value.strip()
            return default

        status_queue = read("ESMS_STATUS_QUEUE", default=DEFAULT_STATUS_QUEUE)
        options = getattr(settings, "ESMS_BROKER_TRANSPORT_OPTIONS", None)
        if options is None:
            options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", None) or {}
        if not isinstance(options, Mapping):
            raise ImproperlyConfigured(
                f"ESMS_BROKER_TRANSPORT_OPTIONS must be a dict of kombu's options, not {options!r}"
            )
        return cls(
            broker_url=read("ESMS_BROKER_URL", "CELERY_BROKER_URL", default=DEFAULT_BROKER_URL),
            status_queue=status_queue,
            exchange=read("ESMS_STATUS_EXCHANGE", default=status_queue),
            consume_queue=read("ESMS_CONSUME_QUEUE", default=status_queue),
            transport_options=dict(options),
        )
