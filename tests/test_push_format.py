"""What a push must carry to be taken as eSMS's: the fields eSMS sends with every status, and
counts that agree with each other (docs/esms/getcallback.md; a real push in simulator/push.py).

Given query parameters, expect `parse_esms_push` to take eSMS's own pushes (the real sample and
every push the bundled simulator makes) and to refuse, naming the parameter, what a forger who
knows only a RefId and the URL would send.
"""

from __future__ import annotations

import urllib.parse

import pytest

from esms_callbacks.errors import MalformedPush
from esms_callbacks.push.parse import parse_esms_push
from esms_callbacks.simulator.outcomes import OUTCOMES
from esms_callbacks.simulator.push import push_params

OA = "1397492183140006179"
# A real ZNS push from eSMS (simulator/push.py's docstring, tests/test_simulator_push.py).
REAL_PUSH = (
    "SMSID=f66545d2-c7e2-4603-984e-d2238c363c8292&SendFailed=1&SendStatus=5&SendSuccess=0"
    "&TotalPrice=0.0000&TotalReceiver=1&TotalSent=0&RequestId=&TypeId=25&telcoid=2"
    "&phonenumber=0901888484&partnerids="
    '&error_info="{\\"error\\":-114,\\"message\\":\\"User is inactive\\"}"'
    "&oaid=1397492183140006179&tempid=2056446"
)


def real_push(**changes: str | None) -> list[tuple[str, str]]:
    """The real push with parameters changed (None: left out)."""
    params = dict(urllib.parse.parse_qsl(REAL_PUSH, keep_blank_values=True))
    for name, value in changes.items():
        if value is None:
            del params[name]
        else:
            params[name] = value
    return list(params.items())


def test_the_real_push_from_esms_is_taken():
    # given eSMS's own push, as it came
    params = urllib.parse.parse_qsl(REAL_PUSH, keep_blank_values=True)
    # when it is read
    push = parse_esms_push(params)
    # expect its RefId, its OA and GetCallback's shape
    assert (push.ref_id, push.oa_id) == ("f66545d2-c7e2-4603-984e-d2238c363c8292", OA)
    assert (push.record["SendStatus"], push.record["SendFailed"], push.record["RequestId"]) == (
        5,
        1,
        None,
    )


@pytest.mark.parametrize("outcome", sorted(OUTCOMES - {"missing"}))
def test_every_push_the_simulator_makes_is_taken(outcome):
    # given the simulator's pushes (eSMS's format) for many RefIds with this outcome
    for i in range(50):
        params = push_params(f"ref-{outcome}-{i}", OA, outcome)
        assert params is not None
        # when read / expect taken
        assert parse_esms_push(params.items()).ref_id == f"ref-{outcome}-{i}"


def test_the_three_parameter_forgery_is_refused_naming_what_is_missing():
    # given what a forger who knows a RefId sends to settle it as sent
    forged = [("SMSID", "X"), ("oaid", OA), ("SendStatus", "5")]
    # when read / expect refused, naming every field eSMS always sends that is not there
    with pytest.raises(MalformedPush) as refused:
        parse_esms_push(forged)
    assert str(refused.value).startswith(
        "SendFailed, SendSuccess, TotalReceiver, TotalSent, TypeId are missing"
    )


# SendStatus -> SendSuccess, SendFailed of one message: sent, rejected, waiting for approval
COUNTS = {"5": ("1", "0"), "4": ("0", "1"), "1": ("0", "0")}


@pytest.mark.parametrize(
    "missing", ["SendFailed", "SendSuccess", "TotalReceiver", "TotalSent", "TypeId"]
)
@pytest.mark.parametrize("send_status", sorted(COUNTS))
def test_each_field_esms_sends_with_every_status_is_required(missing, send_status):
    # given eSMS's push of this status without one of the fields it always sends
    success, failed = COUNTS[send_status]
    complete = real_push(SendStatus=send_status, SendSuccess=success, SendFailed=failed)
    assert parse_esms_push(complete).record["SendStatus"] == int(send_status)
    params = [(name, value) for name, value in complete if name != missing]
    # when read / expect refused, naming it
    with pytest.raises(MalformedPush, match=f"^{missing} is missing"):
        parse_esms_push(params)


@pytest.mark.parametrize("optional", ["RequestId", "partnerids", "error_info", "TotalPrice"])
def test_fields_esms_may_leave_empty_are_not_required(optional):
    # given eSMS's push without a field that is null or empty in eSMS's own examples
    params = real_push(**{optional: None})
    # when read / expect taken
    assert parse_esms_push(params).ref_id.startswith("f66545d2")


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"SendSuccess": "yes"}, "SendSuccess must be a whole number >= 0, got 'yes'"),
        ({"SendFailed": ""}, "SendFailed must be a whole number >= 0, got ''"),
        ({"SendFailed": "-1", "SendSuccess": "2"}, "SendFailed must be a whole number >= 0"),
        ({"TotalReceiver": "1.0"}, "TotalReceiver must be a whole number >= 0"),
        ({"TypeId": "zns"}, "TypeId must be a whole number >= 0"),
        # a done push counts every message as a success or a failure
        ({"SendFailed": "0"}, r"SendSuccess \(0\) \+ SendFailed \(0\) is not TotalReceiver \(1\)"),
        ({"SendSuccess": "1"}, r"SendSuccess \(1\) \+ SendFailed \(1\) is not TotalReceiver"),
        # any status: successes and failures are some of the messages, never more
        (
            {"SendStatus": "4", "SendFailed": "2"},
            r"SendSuccess \(0\) \+ SendFailed \(2\) is more than TotalReceiver \(1\)",
        ),
    ],
)
def test_counts_that_cannot_come_from_esms_are_refused(changes, reason):
    # given eSMS's push with counts changed
    params = real_push(**changes)
    # when read / expect refused with the reason
    with pytest.raises(MalformedPush, match=reason):
        parse_esms_push(params)


def test_total_sent_is_not_checked_against_the_counts():
    # given eSMS's two examples of one failed message: TotalSent 1 (GetCallback's sample) and
    # 0 (the real push), so TotalSent tells nothing about SendSuccess + SendFailed
    for total_sent in ("0", "1"):
        # when read / expect taken
        assert parse_esms_push(real_push(TotalSent=total_sent)).record["TotalSent"] == int(
            total_sent
        )
