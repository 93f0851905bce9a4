"""esms.reconcile: sweep one account's ledger at eSMS (engine.ledger_sweep); and beat's
pulse that queues it for every account with ESMS_RECONCILE on."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from esms_callbacks.engine.locks import Lock
from esms_callbacks.ops.log_context import for_account
from esms_callbacks.ops.reconcile_report import reconcile_report
from esms_callbacks.tasks.app import app
from esms_callbacks.tasks.context import RuntimeTask
from esms_callbacks.terms import RECONCILE_OFF
from esms_callbacks.tuning import LEDGER_LOCK_S

log = logging.getLogger(__name__)
RECONCILE_TASK = "esms.reconcile"
# A sweep ends well before the next pulse queues the next one.
SWEEP_SHARE_OF_PERIOD = 0.8


@app.task(name=RECONCILE_TASK, base=RuntimeTask, bind=True, acks_late=True)
def reconcile(self: RuntimeTask, account: str) -> dict[str, Any]:
    """Read the account's ledger from where the last sweep ended; one sweep per account at
    a time (a lock renewed at every page)."""
    runtime = self.runtimes.get(account)
    with for_account(runtime.name):
        if runtime.terms.reconcile == RECONCILE_OFF:
            return {"account": runtime.name, "skipped": "ESMS_RECONCILE is off"}
        lock = Lock(runtime.redis, runtime.keys.ledger_lock, LEDGER_LOCK_S)
        with lock.acquire() as held:
            if not held:
                return {"account": runtime.name, "skipped": "another worker sweeps it"}
            budget_s = runtime.settings.reconcile_every_s * SWEEP_SHARE_OF_PERIOD
            report = runtime.ledger_sweep().sweep(budget_s, keep_going=lock.extend)
        runtime.stats.count_sweep(report.pages, report.rows, report.adopted, report.settled)
        now_s = runtime.clock.now_s()
        found = reconcile_report(runtime, now_s - runtime.settings.reconcile_lookback_s, now_s)
        runtime.stats.set_reconcile_gauges(
            len(found.never_submitted), len(found.no_data_at_esms), now_s
        )
        log.info(
            "ledger sweep: %d pages, %d rows, %d adopted, %d settled, %d events; %s. Over "
            "ESMS_RECONCILE_LOOKBACK: %d sent but never submitted, %d submitted that eSMS has "
            "no data for (esms-callbacks reconcile lists them)",
            report.pages,
            report.rows,
            report.adopted,
            report.settled,
            report.events,
            "caught up" if report.caught_up else f"goes on next time ({report.stopped})",
            len(found.never_submitted),
            len(found.no_data_at_esms),
        )
        return {"account": runtime.name, **asdict(report)}


@app.task(
    name="esms.reconcile_pulse", base=RuntimeTask, bind=True, ignore_result=True, send_events=False
)
def reconcile_pulse(self: RuntimeTask) -> None:
    """Beat's pulse: a sweep for every account with ESMS_RECONCILE on (out of Flower's list,
    as the release pulse is)."""
    expires_s = self.runtimes.book.settings.reconcile_every_s
    for runtime in self.runtimes.all():
        if runtime.terms.reconcile != RECONCILE_OFF:
            app.send_task(RECONCILE_TASK, kwargs={"account": runtime.name}, expires=expires_s)
