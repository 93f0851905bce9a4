"""Where one RefId is now: waiting, in a request, or finished; its asks and its last event.

    from esms_callbacks.workers.lookup import find_ref
    found = find_ref(get_runtime(), "f66545d2-...", oa_id=None)  # [] when nothing is known

Answers for as long as the RefId waits, and after its terminal event for as long as the done
memory (ESMS_DONE_TTL) lasts. Without an OA every OA of the account with waiting or finished
RefIds is looked at (a scan of the account's keys: a command for people, not a hot path).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from esms_callbacks.workers.clock import as_datetime
from esms_callbacks.workers.runtime import Runtime

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
    last_event: dict[str, Any] | None  # event_id, status, send_status, error, observed_at

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
    prefix = runtime.keys.oa_prefix
    oas = set(runtime.backlog.oa_ids())
    for key in runtime.redis.scan_iter(match=f"{_glob_escape(prefix)}*:done", count=1000):
        text = key.decode() if isinstance(key, bytes) else key
        oas.add(text[len(prefix) : -len(":done")])
    return sorted(oas)


def _state_in(runtime: Runtime, ref_id: str, oa_id: str) -> RefState | None:
    k = runtime.keys
    pipe = runtime.redis.pipeline(transaction=False)
    pipe.hget(k.submitted(oa_id), ref_id)
    pipe.zscore(k.due(oa_id), ref_id)
    pipe.zscore(k.leased(oa_id), ref_id)
    pipe.zscore(k.done(oa_id), ref_id)
    pipe.hget(k.state(oa_id), ref_id)
    pipe.hget(k.history(oa_id), ref_id)
    submitted, due, leased, done, state, history = pipe.execute()
    if submitted is None and done is None:
        return None
    asks, last_event = _history(history)
    where = FINISHED if done is not None else IN_A_REQUEST if leased is not None else WAITING
    return RefState(
        ref_id=ref_id,
        oa_id=oa_id,
        where=where,
        submitted_at=_at_ms(submitted),
        next_ask_at=_at_ms(due) if where == WAITING else None,
        lease_until=_at_ms(leased) if where == IN_A_REQUEST else None,
        finished_at=_at_ms(done),
        last_state=_text(state) if state else None,
        asks=asks,
        last_event=last_event,
    )


def _history(raw: bytes | None) -> tuple[int, dict[str, Any] | None]:
    if not raw:
        return 0, None
    asks, _, last = _text(raw).partition("|")
    try:
        event = json.loads(last) if last else None
    except ValueError:
        event = None
    return int(asks) if asks.isdigit() else 0, event


def _at_ms(value: Any) -> str | None:
    if value is None:
        return None
    return as_datetime(float(value) / 1000).isoformat(timespec="seconds")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)
