"""Celery settings, read once from the environment (settings.py, docs/configuration.md)."""

from kombu import Exchange, Queue

from esms_callbacks.retry_policy import SUBMIT_RETRY_SENTINEL
from esms_callbacks.settings import Settings

_settings = Settings.from_env(process="app")  # the Celery app reads only its own settings

broker_url = _settings.broker_url
broker_connection_retry_on_startup = True
# A dead worker's unacknowledged tasks come back after this long. No task here runs or waits
# (retry countdowns are capped at 300 s) anywhere near it, and all of them are idempotent.
broker_transport_options = {"visibility_timeout": 900, **_settings.broker_transport_options}
if _settings.broker_url.startswith("sentinel://"):
    task_publish_retry_policy = dict(SUBMIT_RETRY_SENTINEL)  # rides over a failover

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
task_ignore_result = True

# Work must survive a killed worker: ack after the task ran, one task reserved at a time.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1

# Flower sees tasks from the moment they are sent, and every retry.
task_send_sent_event = True
worker_send_task_events = True
task_track_started = True

enable_utc = True
timezone = str(_settings.terms.window.zone)

FETCH_QUEUE = "esms.fetch"  # producers' submissions and beat's releases: short tasks
DRAIN_QUEUE = "esms.drain"  # the drain loops: long, rate-limited tasks
task_default_queue = FETCH_QUEUE
# Each queue its own exchange and routing key; a bare Queue(name) would be bound to the
# default queue's routing key and receive the other queue's tasks.
task_queues = tuple(
    Queue(name, Exchange(name, type="direct"), routing_key=name)
    for name in (FETCH_QUEUE, DRAIN_QUEUE)
)
task_routes = {
    "esms.fetch_callbacks": {"queue": FETCH_QUEUE, "routing_key": FETCH_QUEUE},
    "esms.release": {"queue": FETCH_QUEUE, "routing_key": FETCH_QUEUE},
    "esms.drain": {"queue": DRAIN_QUEUE, "routing_key": DRAIN_QUEUE},
    "esms.reconcile_pulse": {"queue": FETCH_QUEUE, "routing_key": FETCH_QUEUE},
    # a sweep of eSMS's ledger is paced as a drain is: a long task
    "esms.reconcile": {"queue": DRAIN_QUEUE, "routing_key": DRAIN_QUEUE},
}

beat_schedule = {
    "esms-release": {
        "task": "esms.release",
        "schedule": _settings.release_every_s,
        # A release nobody took in time is useless: the next one is coming.
        "options": {"expires": max(10.0, _settings.release_every_s * 5)},
    },
    "esms-reconcile": {  # queues a sweep only for accounts with ESMS_RECONCILE on
        "task": "esms.reconcile_pulse",
        "schedule": _settings.reconcile_every_s,
        "options": {"expires": _settings.reconcile_every_s},
    },
}
