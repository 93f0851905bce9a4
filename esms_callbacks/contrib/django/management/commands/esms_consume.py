"""python manage.py esms_consume: read the status events into MessageStatus until stopped.

Each event is applied in one transaction (applying.apply_event), its `status_changed`
signal sent when that commits, and only then acknowledged: a crash before the commit
leaves the event on the broker, to be applied again. SIGTERM or Ctrl-C stops it after the
event in hand.
"""

from __future__ import annotations

import signal
import threading
from functools import partial
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import DEFAULT_DB_ALIAS, close_old_connections

from esms_callbacks.contrib.django.applying import apply_event
from esms_callbacks.contrib.django.conf import ConsumerConfig
from esms_callbacks.events.handler import consume_messages
from esms_callbacks.events.model import StatusEvent
from esms_callbacks.events.publish import status_queue
from esms_callbacks.terms import redact_url


class Command(BaseCommand):
    help = "Read eSMS status events from the broker into MessageStatus (until SIGTERM)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--queue", help="the queue to read, bound to the events exchange (ESMS_CONSUME_QUEUE)"
        )
        parser.add_argument(
            "--exchange", help="the exchange events are published to (ESMS_STATUS_EXCHANGE)"
        )
        parser.add_argument(
            "--database", default=DEFAULT_DB_ALIAS, help="the database alias to write to"
        )
        parser.add_argument(
            "--max-events", type=int, default=None, help="stop after this many events"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        config = ConsumerConfig.from_django(settings)
        queue_name = options["queue"] or config.consume_queue
        exchange = options["exchange"] or config.exchange
        database = options["database"]
        stopping = threading.Event()

        def stop(signum: int, frame: FrameType | None) -> None:
            stopping.set()

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        self.stdout.write(
            f"esms_consume: reading {queue_name!r} (exchange {exchange!r}) on "
            f"{redact_url(config.broker_url)} into database {database!r}"
        )
        try:
            taken = consume_messages(
                partial(_apply, using=database),
                broker_url=config.broker_url,
                queue=status_queue(queue_name, exchange),
                stop=stopping.is_set,
                max_events=options["max_events"],
                transport_options=config.transport_options,
            )
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.stdout.write(f"esms_consume: stopped after {taken} events")


def _apply(event: StatusEvent, *, using: str) -> None:
    close_old_connections()  # a long-running process: drop a connection the server closed
    apply_event(event, using=using)
