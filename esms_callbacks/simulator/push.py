"""What eSMS pushes to a customer's CallbackUrl: which statuses, and the query parameters of each.

eSMS sends the GetCallback fields as a GET query, some names in another case (a real ZNS push):

    GET /receivecallback/?SMSID=f66545d2-...&SendFailed=1&SendStatus=5&SendSuccess=0
        &TotalPrice=0.0000&TotalReceiver=1&TotalSent=0&RequestId=&TypeId=25&telcoid=2
        &phonenumber=0901888484&partnerids=&error_info="{\\"error\\":-114,...}"
        &oaid=1397492183140006179&tempid=2056446

The parameters come from `outcomes.build_record`, so a push and a GetCallback answer about the
same RefId and outcome agree on every field.
"""

from __future__ import annotations

import json
from typing import Literal, TypeGuard, get_args

from esms_callbacks.simulator.outcomes import Outcome, build_record

Statuses = Literal["final", "all"]
STATUSES: frozenset[str] = frozenset(get_args(Statuses))


def is_statuses(value: object) -> TypeGuard[Statuses]:
    return isinstance(value, str) and value in STATUSES


def pushed_outcomes(script: tuple[Outcome, ...], statuses: Statuses) -> tuple[Outcome, ...]:
    """Return the outcomes pushed for a RefId following `script`, in order.

    "final": only where the script ends; "all": every step. eSMS never pushes a message it does
    not know, so "missing" steps are skipped.
    """
    steps = script[-1:] if statuses == "final" else script
    return tuple(outcome for outcome in steps if outcome != "missing")


def push_params(ref_id: str, oa_id: str, outcome: Outcome) -> dict[str, str] | None:
    """Return the query parameters of one push, in eSMS's order; None for "missing"."""
    record = build_record(ref_id, oa_id, outcome)
    if record is None:
        return None
    error_info = record["ErrorInfo"]
    return {
        "SMSID": ref_id,
        "SendFailed": str(record["SendFailed"]),
        "SendStatus": str(record["SendStatus"]),
        "SendSuccess": str(record["SendSuccess"]),
        "TotalPrice": f"{record['TotalPrice']:.4f}",  # .NET decimal(18,4), as in the sample
        "TotalReceiver": str(record["TotalReceiver"]),
        "TotalSent": str(record["TotalSent"]),
        "RequestId": str(record["RequestId"] or ""),
        "TypeId": str(record["TypeId"]),
        "telcoid": str(record["Telcoid"]),
        "phonenumber": str(record["PhoneNumber"]),
        "partnerids": str(record["Partnerids"]),
        # eSMS sends ErrorInfo as a JSON string literal (quoted, inner quotes escaped).
        "error_info": json.dumps(error_info) if error_info else "",
        "oaid": oa_id,
        "tempid": str(record["ZnsTempId"]),
    }


def pushes_of(
    ref_id: str, oa_id: str, script: tuple[Outcome, ...], statuses: Statuses
) -> list[dict[str, str]]:
    """Return the query parameters of each push of `ref_id` following `script`, in order."""
    found = (push_params(ref_id, oa_id, outcome) for outcome in pushed_outcomes(script, statuses))
    return [params for params in found if params is not None]
