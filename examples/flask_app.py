"""Send a ZNS message, then ask this project to fetch its delivery status.

Run: flask --app examples.flask_app run   (from the repository root)
"""

from __future__ import annotations

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue

from examples.send_zns import send_zns_message
from tasks import fetch_callbacks
from workers.errors import InvalidSubmission

app = Flask(__name__)


@app.post("/send")
def send() -> ResponseReturnValue:
    body = request.get_json(silent=True) or {}
    oa_id = str(body.get("oa_id", ""))
    ref_id = send_zns_message(str(body.get("phone", "")), str(body.get("template_id", "")), oa_id)
    try:
        fetch_callbacks.delay([ref_id], oa_id)
    except InvalidSubmission as exc:
        return jsonify(error=str(exc)), 400
    return jsonify(ref_id=ref_id), 202
