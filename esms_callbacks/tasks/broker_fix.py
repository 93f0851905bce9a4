"""Keep workers alive when the Redis broker goes away while a task runs.

With Celery 5.7.0 and kombu 5.7.0, a lost broker connection is collected by dropping the
transport's client; channels of that connection are still used afterwards: closed a second
time (giving back unacknowledged tasks) and asked to acknowledge a task that finishes after
the reconnect. Both build a new Redis client from the dropped one and raise AttributeError,
which Celery treats as unrecoverable: the worker exits instead of reconnecting, and a broker
restart during a drain takes every busy worker down (tests/test_broker_outage.py).

Raising the transport's own connection error instead lets Celery's handlers do what they do
for a dead connection: log and carry on. Nothing is lost: the Redis transport keeps a
delivered task in its `unacked` hash until it is acknowledged, and delivers it again after
the visibility timeout (every task here is idempotent).
"""

from __future__ import annotations

import logging
from typing import Any

import kombu
import redis
from kombu.transport import redis as kombu_redis

log = logging.getLogger(__name__)
WRITTEN_FOR_KOMBU = "5.7."  # the versions whose Channel._connparams this was checked against
_connparams = kombu_redis.Channel._connparams


def _connparams_of_a_live_connection(channel: Any, asynchronous: bool = False) -> Any:
    if channel.connection is None or channel.connection.client is None:
        log.warning(
            "the broker connection was lost while a task ran; carrying on (the task is "
            "delivered again after the visibility timeout)"
        )
        raise redis.ConnectionError("this broker connection was lost and closed")
    return _connparams(channel, asynchronous=asynchronous)


def treat_a_full_broker_as_unreachable() -> None:
    """A broker Redis out of memory (maxmemory under noeviction) refuses writes, MULTI
    included, with OutOfMemoryError, which kombu counts as a channel error: Celery gives up
    ("Unrecoverable error") and the worker exits. Counted as a connection error instead, the
    worker does what it does for a broker that went away: logs, reconnects with backoff and
    carries on once there is room; a task it could not acknowledge stays in the broker's
    `unacked` hash (the transaction that would remove it was refused whole) and is delivered
    again after the visibility timeout. Idempotent."""
    errors = kombu_redis.Transport.connection_errors
    if redis.exceptions.OutOfMemoryError not in errors:
        kombu_redis.Transport.connection_errors = (*errors, redis.exceptions.OutOfMemoryError)


def install(kombu_version: str = kombu.__version__) -> bool:
    """Patch kombu's Redis channel in this (worker) process, for the kombu versions this was
    written for; return whether it did. Idempotent."""
    treat_a_full_broker_as_unreachable()
    if not kombu_version.startswith(WRITTEN_FOR_KOMBU):
        log.info("kombu %s: the broker-restart fix is not installed", kombu_version)
        return False
    kombu_redis.Channel._connparams = _connparams_of_a_live_connection
    return True
