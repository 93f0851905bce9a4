"""esms-zns-callbacks: Zalo ZNS delivery statuses from eSMS, under its limits, as status events.

    from esms_callbacks import fetch_callbacks, StatusEvent, InvalidSubmission

    tasks/      the Celery app and its tasks (fetch_callbacks, drain, release)
    engine/     the waiting set, leases, limiter, window, breaker and the drain loop, on Redis
    esms/       eSMS's status endpoints: the client, their answers and codes, what a RefId may be
    events/     status events: the model consumers read, publishing, the JSON Schema
    push/       eSMS's pushes: the receiver, its inbox and the applier
    ops/        what operators look at: status, metrics, one RefId's whereabouts
    cli/        the `esms-callbacks` command
    simulator/  an eSMS simulator for the stack without credentials, the tests and benchmarks

Names are loaded when first used, so a consumer that reads events does not import Celery.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from esms_callbacks.errors import (
        AccountNotServed,
        BrokerFull,
        ConfigError,
        EsmsCallbacksError,
        InvalidSubmission,
        NotDurable,
        UnsupportedEvent,
    )
    from esms_callbacks.esms.validation import validate_submission
    from esms_callbacks.events.consumer import read_events
    from esms_callbacks.events.model import StatusEvent
    from esms_callbacks.settings import Settings
    from esms_callbacks.tasks import app, fetch_callbacks

_HOME = {
    "fetch_callbacks": "esms_callbacks.tasks",
    "app": "esms_callbacks.tasks",
    "StatusEvent": "esms_callbacks.events.model",
    "UnsupportedEvent": "esms_callbacks.errors",
    "AccountNotServed": "esms_callbacks.errors",
    "read_events": "esms_callbacks.events.consumer",
    "EsmsCallbacksError": "esms_callbacks.errors",
    "InvalidSubmission": "esms_callbacks.errors",
    "ConfigError": "esms_callbacks.errors",
    "BrokerFull": "esms_callbacks.errors",
    "NotDurable": "esms_callbacks.errors",
    "Settings": "esms_callbacks.settings",
    "validate_submission": "esms_callbacks.esms.validation",
}
__all__ = [
    "AccountNotServed",
    "BrokerFull",
    "ConfigError",
    "EsmsCallbacksError",
    "InvalidSubmission",
    "NotDurable",
    "Settings",
    "StatusEvent",
    "UnsupportedEvent",
    "app",
    "fetch_callbacks",
    "read_events",
    "validate_submission",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'esms_callbacks' has no attribute {name!r}")
    return getattr(import_module(home), name)
