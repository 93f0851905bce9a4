"""An outbox for RefIds: a sent (paid) message's RefId is never lost to a broker outage.

The pattern, for any app with a database:
1. Send the message; eSMS gives back its SMSID (the RefId).
2. In the app's own transaction, record the RefId in `esms_outbox` (beside the app's own row
   for the message, if it keeps one). Once committed, the RefId is as safe as the app's data.
3. After the commit, try to hand it to the broker (`fetch_callbacks.delay`) and mark it
   handed. If the broker is down, the row stays unmarked and the view still answers.
4. A relay (`python -m examples.outbox relay DB`, from cron or a loop) hands over whatever
   is left, oldest first, whenever the broker is back. Handing a RefId twice is harmless: the
   worker files each RefId once.

Plain DB-API, so the Django example (through Django's connection, any database with an
INSERT ... ON CONFLICT DO NOTHING equivalent; SQLite here) and the Flask one (sqlite3) share it.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from kombu.exceptions import OperationalError

log = logging.getLogger(__name__)

Submit = Callable[[list[str], str], Any]  # fetch_callbacks.delay's shape
CREATE_SQL = """
CREATE TABLE IF NOT EXISTS esms_outbox (
    ref_id TEXT NOT NULL,
    oa_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    handed_at REAL,
    PRIMARY KEY (ref_id, oa_id)
)
"""
BATCH = 1000  # RefIds of one OA per task, at most


def ensure_table(db: Any) -> None:
    db.cursor().execute(CREATE_SQL)


def record(cursor: Any, ref_id: str, oa_id: str) -> None:
    """Inside the app's transaction: remember a sent message's RefId."""
    cursor.execute(
        _sql(
            cursor, "INSERT OR IGNORE INTO esms_outbox (ref_id, oa_id, created_at) VALUES (?, ?, ?)"
        ),
        (ref_id, oa_id, time.time()),
    )


def relay(db: Any, submit: Submit, limit: int = 10 * BATCH) -> int:
    """Hand RefIds not handed yet to the broker, oldest first; return how many were handed.

    Stops at the first broker error (logged): what is left waits for the next relay.
    """
    cursor = db.cursor()
    cursor.execute(
        _sql(
            db,
            "SELECT ref_id, oa_id FROM esms_outbox WHERE handed_at IS NULL "
            "ORDER BY created_at LIMIT ?",
        ),
        (limit,),
    )
    rows: Sequence[tuple[str, str]] = cursor.fetchall()
    by_oa: dict[str, list[str]] = {}
    for ref_id, oa_id in rows:
        by_oa.setdefault(oa_id, []).append(ref_id)
    handed = 0
    for oa_id, ref_ids in by_oa.items():
        for start in range(0, len(ref_ids), BATCH):
            chunk = ref_ids[start : start + BATCH]
            try:
                submit(chunk, oa_id)
            except (OperationalError, OSError) as exc:
                log.warning("broker unavailable, %d RefIds wait in the outbox: %s", len(rows), exc)
                return handed
            mark_handed(db, chunk, oa_id)
            handed += len(chunk)
    return handed


def mark_handed(db: Any, ref_ids: list[str], oa_id: str) -> None:
    with _transaction(db):
        db.cursor().executemany(
            _sql(db, "UPDATE esms_outbox SET handed_at = ? WHERE ref_id = ? AND oa_id = ?"),
            [(time.time(), ref_id, oa_id) for ref_id in ref_ids],
        )


def waiting(db: Any) -> int:
    cursor = db.cursor()
    cursor.execute("SELECT COUNT(*) FROM esms_outbox WHERE handed_at IS NULL")
    return int(cursor.fetchone()[0])


def _sql(db_or_cursor: Any, sql: str) -> str:
    """sqlite3 takes `?`; Django's connections (any database) take `%s`."""
    native = isinstance(db_or_cursor, sqlite3.Connection | sqlite3.Cursor)
    return sql if native else sql.replace("?", "%s")


def _transaction(db: Any) -> Any:
    return db if isinstance(db, sqlite3.Connection) else _Autocommitted()


class _Autocommitted:
    """Django's connection commits each statement outside `atomic()`: nothing to do."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def main(argv: list[str]) -> int:
    """python -m examples.outbox relay DB_PATH: hand over what waits (run it every minute)."""
    if len(argv) != 2 or argv[0] != "relay":
        print("usage: python -m examples.outbox relay DB_PATH", file=sys.stderr)
        return 2
    from esms_callbacks import fetch_callbacks

    db = sqlite3.connect(argv[1])
    ensure_table(db)
    print(f"handed {relay(db, fetch_callbacks.delay)} RefIds; {waiting(db)} still wait")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
