"""Send a ZNS message; record its RefId in the app's own database; hand it over after commit.

Run: flask --app examples.flask_app run   (from the repository root)

The RefId goes into an outbox table in the same transaction as the app's own data, so a
broker outage cannot lose a message that was sent and paid for: the handover is retried by
`python -m examples.outbox relay DB_PATH` (see examples/outbox.py).
"""

from __future__ import annotations

import os
import sqlite3

import click
from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue

from esms_callbacks import InvalidSubmission, fetch_callbacks, validate_submission
from examples import outbox
from examples.send_zns import send_zns_message

app = Flask(__name__)
app.config["DATABASE"] = os.environ.get("EXAMPLE_DB", ".run/flask_example.sqlite3")
app.config["ESMS_SUBMIT"] = fetch_callbacks.delay  # how RefIds reach the broker


@app.post("/send")
def send() -> ResponseReturnValue:
    body = request.get_json(silent=True) or {}
    oa_id = str(body.get("oa_id", ""))
    try:  # refuse bad input before paying for a message
        validate_submission(["placeholder"], oa_id)
    except InvalidSubmission as exc:
        return jsonify(error=str(exc)), 400
    ref_id = send_zns_message(str(body.get("phone", "")), str(body.get("template_id", "")), oa_id)
    os.makedirs(os.path.dirname(app.config["DATABASE"]) or ".", exist_ok=True)
    db = sqlite3.connect(app.config["DATABASE"])
    try:
        outbox.ensure_table(db)
        with db:  # one transaction with the app's own rows (a real app writes its own here)
            outbox.record(db.cursor(), ref_id, oa_id)
        handed = outbox.relay(db, app.config["ESMS_SUBMIT"])  # after commit; may find it down
    finally:
        db.close()
    return jsonify(ref_id=ref_id, handed_to_broker=handed > 0), 202


@app.cli.command("consume-statuses")
@click.option("--max-events", type=int, default=None, help="stop after this many (default: run)")
def consume_statuses(max_events: int | None) -> None:
    """flask --app examples.flask_app consume-statuses: each new status of a message, once.

    consume_events (esms_callbacks.events.handler) drops duplicates and late steps back with
    a Redis store, and acks each event after the function returned: a crash redelivers it.
    """
    from esms_callbacks.events.handler import consume_events
    from esms_callbacks.events.model import StatusEvent

    def on_status(event: StatusEvent) -> None:
        app.logger.warning("ZNS %s: %s", event.ref_id, event.status)  # mark the order here

    consume_events(on_status, max_events=max_events)
