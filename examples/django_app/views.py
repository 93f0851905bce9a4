"""Send a ZNS message, then ask this project to fetch its delivery status."""

from __future__ import annotations

import json

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from examples.send_zns import send_zns_message
from tasks import fetch_callbacks
from workers.errors import InvalidSubmission


@csrf_exempt
@require_POST
def send(request: HttpRequest) -> JsonResponse:
    body = json.loads(request.body or b"{}")
    oa_id = str(body.get("oa_id", ""))
    ref_id = send_zns_message(str(body.get("phone", "")), str(body.get("template_id", "")), oa_id)
    try:
        # With a database, wrap this in transaction.on_commit(...) so the task is only queued
        # once the message row is saved.
        fetch_callbacks.delay([ref_id], oa_id)
    except InvalidSubmission as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse({"ref_id": ref_id}, status=202)
