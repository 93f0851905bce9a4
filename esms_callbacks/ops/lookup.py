"""Where one RefId is now: waiting, in a request, or finished; its asks and its last event.

    from esms_callbacks.ops.lookup import find_ref
    found = find_ref(Runtime(settings), "f66545d2-...", oa_id=None)  # [] when nothing is known

Answers for as long as the RefId waits, and after its terminal event for as long as the done
memory (ESMS_DONE_TTL) lasts. Without an OA every OA of the account with waiting or finished
RefIds is looked at (the account's OAs ever parked: a command for people, not a hot path).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from esms_callbacks.engine.backlog import DONE, LEASED
from esms_callbacks.engine.clock import as_datetime
from esms_callbacks.events.publish import summary_event
from esms_callbacks.runtime import Runtime

WAITING, IN_A_REQUEST, FINISHED = "waiting", "in a request", "finished"


@dataclass(frozen=True)
class RefState:
    ref_id: str
    oa_id: str
    where: str  # waiting, in a request, finished
    submitted_at: str | None
    next_ask_at: str | None  # waiting: when it is asked again (or as soon as a slot comes)
    lease_until: str | None  # in a request: until when the request holds it
    finished_at: str | None
    last_state: str | None  # the last state published, e.g. "pending:7"
    asks: int  # requests that asked eSMS for it (as long as its history is kept)
    last_event: dict[str, Any] | None  # event_id, status, send_status, error code, observed_at,
    # and source: which endpoint (or a push) said it
    # What the sources learnt that its next ask needs (engine.notes), while it waits:
    # its SmsType, whether GetCallback does not know it, whether Zalo's message id is known.
    learnt: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def find_ref(runtime: Runtime, ref_id: str, oa_id: str | None = None) -> list[RefState]:
    """Every OA under which `ref_id` is known (usually one)."""
    oas = [oa_id] if oa_id else known_oas(runtime)
    found = []
    for oa in oas:
        state = _state_in(runtime, ref_id, oa)
        if state is not None:
            found.append(state)
    return found


def known_oas(runtime: Runtime) -> list[str]:
    """OAs with RefIds waiting, or remembered as finished."""
    return sorted(set(runtime.backlog.oa_ids()) | set(runtime.backlog.known_oa_ids()))


def _state_in(runtime: Runtime, ref_id: str, oa_id: str) -> RefState | None:
    found = runtime.backlog.where(oa_id, ref_id)
    if found is None:
        return None
    where = {DONE: FINISHED, LEASED: IN_A_REQUEST}.get(found.where, WAITING)
    return RefState(
        ref_id=ref_id,
        oa_id=oa_id,
        where=where,
        submitted_at=_at(found.submitted_s),
        next_ask_at=_at(found.due_s) if where == WAITING else None,
        lease_until=_at(found.lease_until_s) if where == IN_A_REQUEST else None,
        finished_at=_at(found.done_s),
        last_state=found.state_key or None,
        asks=found.asks,
        last_event=summary_event(ref_id, oa_id, found.summary, runtime.name),
        learnt=_learnt(runtime, oa_id, ref_id) if where != FINISHED else None,
    )


def _learnt(runtime: Runtime, oa_id: str, ref_id: str) -> dict[str, Any] | None:
    note = runtime.notes.read(oa_id, [ref_id]).get(ref_id)
    if note is None:
        return None
    names = {"q": "QueryZnsStatus", "d": "GetZaloMessageStatus"}
    return {
        "sms_type": note.sms_type,
        "asked_with_query_zns_status": note.by_query,
        "zalo_message_id_known": bool(note.message_id),
        "heard": {
            names.get(letter, letter): {"state": state, "at": _at(at_s)}
            for letter, state, at_s in note.heard
        },
    }


def _at(seconds: float | None) -> str | None:
    return None if seconds is None else as_datetime(seconds).isoformat(timespec="seconds")
