"""The status event as a typed model for Python consumers, and its JSON Schema.

    from esms_callbacks.events.model import StatusEvent
    event = StatusEvent.from_payload(message.payload)  # UnsupportedEvent if not 1 or 2
    if event.terminal and event.status == "failed": ...

Version 1 is what an account publishes without delivery tracking; version 2 with
ESMS_TRACK_DELIVERY=on (`sent` not terminal, `delivered` with `delivered_at`), so a consumer
can tell which rules its events follow. The schema files (`schemas/status_event.v1.json`,
`.v2.json`, shipped with the package) say the same for consumers in any language;
`tests/test_event_model.py` checks real published events against both. Keys added later
within a version are ignored here; a newer version is refused, not misread.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any, Literal, cast

from esms_callbacks.errors import UnsupportedEvent
from esms_callbacks.esms.records import STATUSES, state_key_of, state_rank

EVENT_VERSION = 1  # the version events are published with when delivery is not tracked
DELIVERY_EVENT_VERSION = 2  # with ESMS_TRACK_DELIVERY=on: `sent` not terminal, `delivered`
SUPPORTED_VERSIONS = (EVENT_VERSION, DELIVERY_EVENT_VERSION)
SUPPORTED_VERSION = DELIVERY_EVENT_VERSION  # the newest this model reads
# records.STATUSES
Status = Literal["pending", "sent", "failed", "not_found", "expired", "delivered"]
Source = Literal["poll", "push", "query", "delivery", "reconcile"]


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
    delivered_at: datetime | None = None  # version 2, `delivered`: when it reached the phone

    @property
    def state_key(self) -> str:
        """The event's state as the project names it (`pending:7`, `sent:5`)."""
        return state_key_of(self.status, self.send_status)

    @property
    def rank(self) -> int:
        """How far along the message is (esms.records.state_rank): a consumer keeps the
        event of the highest rank and drops the others (`pending` after `sent`, duplicates)."""
        return state_rank(self.state_key)

    @classmethod
    def from_payload(cls, payload: object) -> StatusEvent:
        """Read a published event (the message's payload, a dict)."""
        if not isinstance(payload, dict):
            raise UnsupportedEvent(f"an event is a JSON object, not {type(payload).__name__}")
        version = payload.get("version")
        if version not in SUPPORTED_VERSIONS:
            raise UnsupportedEvent(
                f"event version {version!r}; this code reads versions 1 and "
                f"{SUPPORTED_VERSION} (upgrade esms-zns-callbacks)"
            )
        try:
            status = payload["status"]
            if status not in STATUSES:
                raise UnsupportedEvent(f"unknown status {status!r}")
            error = payload["error"]
            submitted_at = payload["submitted_at"]
            delivered_at = payload["delivered_at"] if version >= DELIVERY_EVENT_VERSION else None
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
                delivered_at=datetime.fromisoformat(delivered_at) if delivered_at else None,
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            if isinstance(exc, UnsupportedEvent):
                raise
            raise UnsupportedEvent(f"not a version-{version} status event: {exc!r}") from None


def event_schema(version: int = EVENT_VERSION) -> dict[str, Any]:
    """The JSON Schema of an event of `version` (1 or 2), as shipped with the package."""
    text = (
        resources.files("esms_callbacks.events")
        .joinpath(f"schemas/status_event.v{version}.json")
        .read_text()
    )
    schema: dict[str, Any] = json.loads(text)
    return schema
