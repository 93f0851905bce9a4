"""The simulator's GetSmsSentData_V2 over real HTTP: a ledger row per registered message, its
status moving with an injected clock, pages, the range in Vietnam time, the SmsType filter, its
own rate clock, and the personal data eSMS's rows carry (there, as eSMS's are)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from esms_callbacks.esms.client import EsmsClient
from esms_callbacks.esms.ledger import LedgerPage, outcome_of_ledger
from esms_callbacks.simulator import RunningSimulator, Simulator, serve_in_thread
from esms_callbacks.simulator.ledger import LEDGER_PATH, message_text_of
from esms_callbacks.simulator.outcomes import phone_number_of
from esms_callbacks.simulator.remote import RemoteSimulator
from tests.helpers import SIM_API_KEY, SIM_SECRET_KEY, T0
from tests.test_simulator_sources import KEYS, OA_ID, FakeClock, get, post

T0_VIETNAM = "2027-01-15 15:00:00"  # T0 is 08:00:00 UTC; Vietnam is UTC+7 all year
ROW_FIELDS = [  # eSMS's sample, in its order
    "Campaign",
    "Content",
    "Phone",
    "ReferenceId",
    "SellPrice",
    "SendResult",
    "SendStatus",
    "SentTime",
    "SmsId",
    "SmsType",
]


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def served(clock: FakeClock) -> Iterator[RunningSimulator]:
    sim = Simulator(api_key=SIM_API_KEY, secret_key=SIM_SECRET_KEY, policy="sent", clock=clock)
    with serve_in_thread(sim) as running:
        yield running


@pytest.fixture
def running(served: RunningSimulator, clock: FakeClock) -> RunningSimulator:
    """The module's simulator, reset: no log or messages, no rate limits, clock at T0."""
    served.sim.reset()
    served.sim.configure(
        rate_interval_s=0,
        query_rate_interval_s=0,
        delivery_rate_interval_s=0,
        ledger_rate_interval_s=0,
    )
    clock.now_s = T0
    return served


def vietnam(at_s: float) -> str:
    return (datetime.fromtimestamp(at_s, UTC) + timedelta(hours=7)).strftime("%Y-%m-%d %H:%M:%S")


def register(running: RunningSimulator, ref_ids: list[str], **spec: object) -> None:
    reply = post(running.base_url + "/_sim/messages", {"ref_ids": ref_ids, "oa_id": OA_ID, **spec})
    assert reply == {"ok": True, "registered": len(ref_ids)}


def ledger(
    running: RunningSimulator,
    *,
    sms_type: object = "25",
    from_s: float = T0 - 60,
    to_s: float = T0 + 86_400,
    page: object = 1,
    page_size: object = 500,
    **fields: object,
) -> Any:
    body = {
        **KEYS,
        "SmsType": sms_type,
        "From": vietnam(from_s),
        "To": vietnam(to_s),
        "Page": page,
        "PageSize": page_size,
        **fields,
    }
    return post(running.base_url + LEDGER_PATH, body)


def states(answer: dict[str, Any]) -> dict[str, tuple[int, int]]:
    return {r["ReferenceId"]: (r["SendStatus"], r["SendResult"]) for r in answer["SentData"]}


def test_every_registered_message_is_a_row_with_or_without_a_callback_url(
    running: RunningSimulator,
) -> None:
    register(running, ["with-cb"])
    register(running, ["without-cb"], callback_url=False)

    answer = ledger(running)

    assert answer["CodeResult"] == "100" and answer["CountTotal"] == 2
    first, second = answer["SentData"]
    assert list(first) == ROW_FIELDS
    assert [first["ReferenceId"], second["ReferenceId"]] == ["with-cb", "without-cb"]
    assert isinstance(first["SmsId"], int) and second["SmsId"] > first["SmsId"]
    assert first["SentTime"] == f"/Date({int(T0 * 1000)}+0700)/"
    assert (first["SmsType"], first["SendStatus"], first["SendResult"]) == (25, 5, 1)
    assert first["SellPrice"] > 0


def test_rows_carry_a_phone_number_and_a_text_as_esms_rows_do(running: RunningSimulator) -> None:
    register(running, ["r1"])

    row = ledger(running)["SentData"][0]

    assert row["Phone"] == phone_number_of("r1") and row["Phone"].startswith("0")
    assert row["Content"] == message_text_of("r1") and "r1" not in row["Content"]
    assert row["Campaign"]


@pytest.mark.parametrize(
    ("final", "pending", "settled"),
    [
        ("sent", (7, 2), (5, 1)),
        ("failed", (7, 2), (5, 0)),
        ("failed_offline", (7, 2), (5, 0)),
        ("rejected", (1, 2), (4, 0)),
    ],
)
def test_a_row_status_moves_with_its_message(
    running: RunningSimulator, clock: FakeClock, final: str, pending: tuple[int, int], settled: Any
) -> None:
    register(running, ["later"], final=final, final_after_s=60)

    before = states(ledger(running))["later"]
    clock.advance(60)
    after = states(ledger(running))["later"]

    assert (before, after) == (pending, settled)


def test_pages_count_from_one_and_count_total_is_the_range(running: RunningSimulator) -> None:
    register(running, [f"r{n}" for n in range(5)])

    pages = [ledger(running, page=page, page_size=2) for page in (1, 2, 3, 4)]

    assert [p["CountTotal"] for p in pages] == [5, 5, 5, 5]
    assert [[r["ReferenceId"] for r in p["SentData"]] for p in pages] == [
        ["r0", "r1"],
        ["r2", "r3"],
        ["r4"],  # the last, partial page
        [],  # past the end: an empty page, still 100
    ]
    assert pages[3]["CodeResult"] == "100"


def test_rows_are_ordered_by_creation_then_sms_id(
    running: RunningSimulator, clock: FakeClock
) -> None:
    clock.advance(10)
    register(running, ["late-but-first-registered"])
    clock.advance(-10)
    register(running, ["early-a", "early-b"])

    rows = ledger(running)["SentData"]

    assert [r["ReferenceId"] for r in rows] == [
        "early-a",
        "early-b",
        "late-but-first-registered",
    ]
    assert rows[0]["SmsId"] < rows[1]["SmsId"]


def test_the_range_is_by_creation_in_vietnam_time_both_ends_included(
    running: RunningSimulator, clock: FakeClock
) -> None:
    register(running, ["at-t0"])
    clock.advance(3600)
    register(running, ["an-hour-later"])

    def refs(from_s: float, to_s: float) -> list[str]:
        answer = ledger(running, from_s=from_s, to_s=to_s)
        return [r["ReferenceId"] for r in answer.get("SentData", [])]

    assert vietnam(T0) == T0_VIETNAM
    assert refs(T0, T0) == ["at-t0"]  # From and To both the creation second
    assert refs(T0 + 1, T0 + 3600) == ["an-hour-later"]
    assert refs(T0 - 3600, T0 + 3599) == ["at-t0"]
    # UTC wall-clock text is seven hours off: it finds nothing
    utc_text = datetime.fromtimestamp(T0, UTC).strftime("%Y-%m-%d %H:%M:%S")
    wrong_zone = ledger(running, From=utc_text, To=utc_text)
    assert wrong_zone == {"CodeResult": "105", "ErrorMessage": "Không tìm thấy dữ liệu"}


def test_sms_type_filters_rows(running: RunningSimulator) -> None:
    register(running, ["normal"], type_id=25)
    register(running, ["priority"], type_id=24)

    normal = ledger(running, sms_type="25")
    priority = ledger(running, sms_type=24)
    sms = ledger(running, sms_type="2")

    assert [r["ReferenceId"] for r in normal["SentData"]] == ["normal"]
    assert [(r["ReferenceId"], r["SmsType"]) for r in priority["SentData"]] == [("priority", 24)]
    assert sms["CodeResult"] == "105"


def test_the_ledger_has_its_own_rate_clock(running: RunningSimulator) -> None:
    running.sim.configure(ledger_rate_interval_s=5, query_rate_interval_s=5)
    register(running, ["r1"])

    first = ledger(running)
    too_soon = ledger(running)
    query = post(
        running.base_url + "/MainService.svc/json/QueryZnsStatus/",
        {**KEYS, "SmsId": "r1", "SmsType": "25"},
    )
    still_too_soon = ledger(running)

    assert first["CodeResult"] == "100"
    assert too_soon == {"CodeResult": "160", "ErrorMessage": "Exceed TPS"}
    assert query["CodeResult"] == "100"  # its own clock, untouched by the ledger's
    assert still_too_soon["CodeResult"] == "160"
    figures = get(running.base_url + "/_sim/endpoints")["default"]
    assert figures["ledger"] == {
        "rate_interval_s": 5.0,
        "requests": 3,
        "min_gap_s": figures["ledger"]["min_gap_s"],
        "code_160": 2,
        "codes": {"100": 1, "160": 2},
    }
    assert figures["query"]["requests"] == 1 and figures["query"]["code_160"] == 0
    assert RemoteSimulator(running.base_url).endpoint_stats()["default"]["ledger"]["requests"] == 3


def test_the_default_ledger_interval_is_a_second_and_configurable() -> None:
    sim = Simulator()
    assert sim.account().ledger_rate_interval_s == 1.0
    sim.configure(ledger_rate_interval_s=0.25)
    assert sim.account().interval_s("ledger") == 0.25
    with pytest.raises(ValueError, match="ledger_rate_interval_s"):
        sim.configure(ledger_rate_interval_s=-1)


def test_config_takes_and_shows_the_ledger_interval(running: RunningSimulator) -> None:
    changed = post(running.base_url + "/_sim/config", {"ledger_rate_interval_s": 2.5})
    assert changed["ledger_rate_interval_s"] == 2.5
    assert get(running.base_url + "/_sim/config")["ledger_rate_interval_s"] == 2.5


@pytest.mark.parametrize(
    "fields",
    [
        {"PageSize": 501},
        {"PageSize": 0},
        {"Page": 0},
        {"Page": "first"},
        {"SmsType": None},
        {"From": "2027/01/15 15:00:00"},
        {"To": None},
    ],
)
def test_bad_asks_are_99(running: RunningSimulator, fields: dict[str, Any]) -> None:
    register(running, ["r1"])
    assert ledger(running, **fields)["CodeResult"] == "99"


def test_wrong_keys_and_bodies_that_are_not_objects(running: RunningSimulator) -> None:
    register(running, ["r1"])

    wrong = ledger(running, SecretKey="not-the-secret")
    not_json = post(running.base_url + LEDGER_PATH, None, raw=b"From=today")
    with_slash = post(running.base_url + LEDGER_PATH + "/", {**KEYS})

    assert wrong == {
        "CodeResult": "101",
        "ErrorMessage": "Authorize Failed: wrong ApiKey or SecretKey",
    }
    assert not_json["CodeResult"] == "99" and with_slash["CodeResult"] == "99"


def test_the_log_names_ledger_requests_and_counts_their_rows(running: RunningSimulator) -> None:
    register(running, ["r1", "r2", "r3"])

    ledger(running, page_size=2)
    log = get(running.base_url + "/_sim/requests")
    stats = get(running.base_url + "/_sim/stats")

    assert [(e["endpoint"], e["code"], e["record_count"]) for e in log] == [("ledger", 100, 2)]
    assert stats["requests"] == 0 and stats["endpoints"]["ledger"]["requests"] == 1


def test_reset_and_scripts_forget_rows(running: RunningSimulator) -> None:
    register(running, ["kept", "scripted"])
    running.sim.script("scripted", ["sent"])
    assert [r["ReferenceId"] for r in ledger(running)["SentData"]] == ["kept"]

    post(running.base_url + "/_sim/reset", {})

    assert ledger(running)["CodeResult"] == "105"


def test_registering_again_replaces_the_row(running: RunningSimulator, clock: FakeClock) -> None:
    register(running, ["r1"], final="failed")
    clock.advance(5)
    register(running, ["r1"])

    rows = ledger(running)["SentData"]

    assert len(rows) == 1 and (rows[0]["SendStatus"], rows[0]["SendResult"]) == (5, 1)
    assert rows[0]["SentTime"] == f"/Date({int((T0 + 5) * 1000)}+0700)/"


def test_many_messages_register_in_one_small_request_and_page_through(
    running: RunningSimulator,
) -> None:
    remote = RemoteSimulator(running.base_url)

    assert remote.register_many(1_200, OA_ID, ref_id_prefix="bulk-", final="failed") == 1_200
    pages = [ledger(running, page=page) for page in (1, 2, 3)]

    refs = [r["ReferenceId"] for p in pages for r in p["SentData"]]
    assert [len(p["SentData"]) for p in pages] == [500, 500, 200]
    assert refs == [f"bulk-{n}" for n in range(1_200)]
    assert {(r["SendStatus"], r["SendResult"]) for p in pages for r in p["SentData"]} == {(5, 0)}


@pytest.mark.parametrize(
    "body",
    [
        {"count": 0, "oa_id": OA_ID},
        {"count": 2, "ref_id_prefix": "x", "ref_ids": ["a"], "oa_id": OA_ID},
        {"count": "2", "oa_id": OA_ID},
        {"count": 2, "ref_id_prefix": 7, "oa_id": OA_ID},
    ],
)
def test_a_bad_count_is_refused(running: RunningSimulator, body: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        running.sim.register_messages(body)


def test_the_client_reads_the_simulator_ledger_without_its_personal_data(
    running: RunningSimulator, clock: FakeClock
) -> None:
    # given messages sent and settled, one rejected, one still pending
    register(running, ["sent"], final="sent")
    register(running, ["rejected"], final="rejected")
    register(running, ["pending"], final_after_s=600)
    phones = [phone_number_of(ref) for ref in ("sent", "rejected", "pending")]
    texts = [message_text_of(ref) for ref in ("sent", "rejected", "pending")]

    # when the client reads the ledger, in UTC datetimes
    async def read() -> LedgerPage:
        client = EsmsClient(
            running.base_url, SIM_API_KEY, SIM_SECRET_KEY, 5.0, rest_base_url=running.base_url
        )
        try:
            start = datetime.fromtimestamp(T0, UTC)
            return await client.sent_data(25, start, start + timedelta(hours=1), 1, 500)
        finally:
            await client.close()

    page = asyncio.run(read())

    # expect each row's outcome, and no phone number or text anywhere in what was parsed
    outcomes = {row.reference_id: outcome_of_ledger(row) for row in page.rows}
    assert page.count_total == 3 and page.skipped == []
    assert {ref: o.state_key if o else None for ref, o in outcomes.items()} == {
        "sent": "sent:5",
        "rejected": "failed:4",
        "pending": None,
    }
    assert page.rows[0].sent_at == datetime.fromtimestamp(T0, UTC)
    shown = repr(page) + repr(outcomes)
    assert not any(value in shown for value in phones + texts)


def test_a_clock_offset_registers_messages_as_sent_that_long_ago() -> None:
    # given a simulator started with --clock-offset -120
    from esms_callbacks.simulator.__main__ import build_simulator, parse_args

    keys = ["--api-key", SIM_API_KEY, "--secret-key", SIM_SECRET_KEY, "--policy", "sent"]
    sim = build_simulator(parse_args([*keys, "--clock-offset", "-120"]))
    with serve_in_thread(sim) as running:
        # when a message is registered now
        before_s = time.time()
        register(running, ["offset-1"])
        after_s = time.time()

        # expect its row created two minutes ago: in a range that ends a minute ago
        answer = ledger(running, from_s=before_s - 180, to_s=before_s - 60)
    assert [r["ReferenceId"] for r in answer["SentData"]] == ["offset-1"]
    created_ms = int(answer["SentData"][0]["SentTime"][len("/Date(") :].split("+")[0])
    assert (before_s - 120) * 1000 - 1 <= created_ms <= (after_s - 120) * 1000 + 1
    assert parse_args(keys).clock_offset == 0.0  # the wall clock by default
