"""Send a ZNS message; record its RefId in the app's own database; hand it over on commit.

The RefId goes into an outbox table in the same transaction as the app's own data, and is
handed to the broker by `transaction.on_commit`: a broker outage cannot lose a message that
was sent and paid for; `python -m examples.outbox relay DB_PATH` (cron) retries the handover.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.db import connection, transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from esms_callbacks import InvalidSubmission, validate_submission
from examples import outbox
from examples.send_zns import send_zns_message


@csrf_exempt
@require_POST
def send(request: HttpRequest) -> JsonResponse:
    body = json.loads(request.body or b"{}")
    oa_id = str(body.get("oa_id", ""))
    try:  # refuse bad input before paying for a message
        validate_submission(["placeholder"], oa_id)
    except InvalidSubmission as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    ref_id = send_zns_message(str(body.get("phone", "")), str(body.get("template_id", "")), oa_id)
    outbox.ensure_table(connection)
    with transaction.atomic():  # the app's own rows go in the same transaction
        with connection.cursor() as cursor:
            outbox.record(cursor, ref_id, oa_id)
        transaction.on_commit(lambda: outbox.relay(connection, settings.ESMS_SUBMIT))
    return JsonResponse({"ref_id": ref_id}, status=202)
