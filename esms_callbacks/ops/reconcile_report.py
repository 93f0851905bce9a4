"""What the sweep of eSMS's ledger found (ESMS_RECONCILE=report or adopt), for
`esms-callbacks reconcile`, the metrics and the sweep's log line: RefIds and times, never a
phone number or a message's text.

- never submitted: RefIds eSMS's ledger lists that no producer handed over (remembered by the
  sweep for ESMS_RECONCILE_LOOKBACK, AccountKeys.unsubmitted);
- eSMS has no data: RefIds submitted over ESMS_RECONCILE_GRACE ago, asked, and still
  `not_found` (GetCallback, and with QueryZnsStatus as its fallback that too, know nothing).
"""

from __future__ import annotations

from dataclasses import dataclass

from esms_callbacks.engine.clock import as_datetime
from esms_callbacks.engine.redis_values import as_text
from esms_callbacks.esms.records import NOT_FOUND
from esms_callbacks.runtime import Runtime


@dataclass(frozen=True)
class Gap:
    ref_id: str
    at: str  # ISO 8601: when eSMS sent it (never submitted), or when it was submitted
    oa_id: str = ""  # submitted ones only: its OA


@dataclass(frozen=True)
class ReconcileReport:
    account: str
    never_submitted: list[Gap]
    no_data_at_esms: list[Gap]


def reconcile_report(runtime: Runtime, since_s: float, now_s: float) -> ReconcileReport:
    """The gaps since `since_s` (epoch s) for one account."""
    sent: list[tuple[bytes, float]] = runtime.redis.zrangebyscore(  # type: ignore[assignment]
        runtime.keys.unsubmitted, int(since_s * 1000), "+inf", withscores=True
    )
    never = [Gap(as_text(ref), _iso(score / 1000)) for ref, score in sent]
    return ReconcileReport(runtime.name, never, no_data_at_esms(runtime, since_s, now_s))


def no_data_at_esms(runtime: Runtime, since_s: float, now_s: float) -> list[Gap]:
    grace_ends_s = now_s - runtime.settings.reconcile_grace_s
    gaps = []
    for oa_id in runtime.backlog.oa_ids():
        for record in runtime.backlog.waiting_records(oa_id):
            if (
                since_s <= record.submitted_s <= grace_ends_s
                and record.asks > 0
                and record.state_key.partition(":")[0] == NOT_FOUND
            ):
                gaps.append(Gap(record.ref_id, _iso(record.submitted_s), oa_id))
    return sorted(gaps, key=lambda gap: (gap.at, gap.ref_id))


def _iso(seconds: float) -> str:
    return as_datetime(seconds).isoformat(timespec="seconds")
