"""The status event as a typed model for Python consumers, and its JSON Schema.

    from esms_callbacks.events.model import StatusEvent
    event = StatusEvent.from_payload(message.payload)  # UnsupportedEvent if not version 1
    if event.terminal and event.status == "failed": ...

The schema file (`schemas/status_event.v1.json`, shipped with the package) says the same for
consumers in any language; `tests/test_event_model.py` checks real published events against
both. Keys added later within version 1 are ignored here; a new version is refused, not
misread.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any, Literal, cast

from esms_callbacks.errors import UnsupportedEvent
from esms_callbacks.esms.records import STATUSES

EVENT_VERSION = 1  # the version events are published with, and the one this model reads
SUPPORTED_VERSION = EVENT_VERSION
Status = Literal["pending", "sent", "failed", "not_found", "expired"]  # records.STATUSES
Source = Literal["poll", "push"]


@dataclass(frozen=True)
class EventError:
    code: int | None
    message: str | None


@dataclass(frozen=True)
class StatusEvent:
    event_id: str
    ref_id: str
    oa_id: str
    status: Status
    terminal: bool
    send_status: int | None
    error: EventError | None
    observed_at: datetime
    submitted_at: datetime | None
    record: dict[str, Any] | None
    decoded: dict[str, Any] | None
    version: int
    source: Source
    account: str = "default"  # absent from events published before accounts

    @classmethod
    def from_payload(cls, payload: object) -> StatusEvent:
        """Read a published event (the message's payload, a dict)."""
        if not isinstance(payload, dict):
            raise UnsupportedEvent(f"an event is a JSON object, not {type(payload).__name__}")
        version = payload.get("version")
        if version != SUPPORTED_VERSION:
            raise UnsupportedEvent(
                f"event version {version!r}; this code reads version {SUPPORTED_VERSION} "
                "(upgrade esms-zns-callbacks)"
            )
        try:
            status = payload["status"]
            if status not in STATUSES:
                raise UnsupportedEvent(f"unknown status {status!r}")
            error = payload["error"]
            submitted_at = payload["submitted_at"]
            return cls(
                event_id=str(payload["event_id"]),
                ref_id=str(payload["ref_id"]),
                oa_id=str(payload["oa_id"]),
                status=cast(Status, status),
                terminal=bool(payload["terminal"]),
                send_status=payload["send_status"],
                error=EventError(error.get("code"), error.get("message")) if error else None,
                observed_at=datetime.fromisoformat(payload["observed_at"]),
                submitted_at=datetime.fromisoformat(submitted_at) if submitted_at else None,
                record=payload["record"],
                decoded=payload["decoded"],
                version=version,
                source=cast(Source, payload.get("source", "poll")),
                account=str(payload.get("account", "default")),
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            if isinstance(exc, UnsupportedEvent):
                raise
            raise UnsupportedEvent(f"not a version-1 status event: {exc!r}") from None


def event_schema() -> dict[str, Any]:
    """The JSON Schema of a version-1 event, as shipped with the package."""
    text = (
        resources.files("esms_callbacks.events")
        .joinpath("schemas/status_event.v1.json")
        .read_text()
    )
    schema: dict[str, Any] = json.loads(text)
    return schema
