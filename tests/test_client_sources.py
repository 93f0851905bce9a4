"""QueryZnsStatus and GetZaloMessageStatus over real HTTP: the shapes eSMS's pages show, the
rate gate, codes to errors, credentials kept out of every message.

A local aiohttp app stands in for eSMS's REST host (rest.esms.vn), answering as its pages do:
devesms/gitbook_esms_for_develop_v2, esms-api/ham-truy-xuat-va-dang-ky/
ham-lay-thong-tin-trang-thai-zns-1.md (QueryZnsStatus) and ham-lay-thong-tin-trang-thai-zns.md
(GetZaloMessageStatus).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from esms_callbacks.errors import (
    AuthError,
    MalformedResponse,
    NotSent,
    RateLimited,
    RequestRejected,
    ServerError,
)
from esms_callbacks.esms.client import EsmsClient
from esms_callbacks.esms.delivery import DeliveryStatus
from esms_callbacks.esms.query import ZnsStatus
from tests.esms_samples import DELIVERY_SAMPLE, QUERY_SAMPLE, QUERY_SAMPLE_SMSID

API_KEY = "FAKE-ApiKey-5e1f0a77-NEVER-PRINT"
SECRET_KEY = "FAKE-Secret-93cd2b10-NEVER-PRINT"
QUERY_PATH = "/MainService.svc/json/QueryZnsStatus/"
DELIVERY_PATH = "/MainService.svc/json/GetZaloMessageStatus"
CALLBACK_PATH = "/ZaloCallback/GetCallback"


@dataclass
class FakeEsms:
    """eSMS's REST host: one canned answer per path; what it received, in order."""

    answers: dict[str, tuple[int, str]] = field(default_factory=dict)
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def answer(self, path: str, body: str | dict[str, Any], status: int = 200) -> None:
        self.answers[path] = (status, body if isinstance(body, str) else json.dumps(body))

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((request.path, await request.json()))
        status, text = self.answers[request.path]
        return web.Response(status=status, text=text, content_type="application/json")


def ask(fake: FakeEsms, call: Callable[[EsmsClient], Awaitable[Any]], **client_options: Any) -> Any:
    """Run `call` with a client whose REST host is `fake`; its result, or the error raised."""

    async def go() -> Any:
        app = web.Application()
        app.router.add_post("/{tail:.*}", fake.handle)
        async with TestServer(app) as server:
            base = str(server.make_url(""))
            client = EsmsClient(
                base, API_KEY, SECRET_KEY, 5.0, rest_base_url=base + "/", **client_options
            )
            try:
                return await call(client)
            except Exception as exc:
                return exc
            finally:
                await client.close()

    return asyncio.run(go())


def query(sms_id: str = QUERY_SAMPLE_SMSID, sms_type: int = 25, **gates: Any) -> Any:
    return lambda client: client.query_zns_status(sms_id, sms_type, **gates)


def delivery(oa_id: str = "oa1", message_id: str = "6dc7499c9ef6baaee3e1", **gates: Any) -> Any:
    return lambda client: client.zalo_message_status(oa_id, message_id, **gates)


# --- the documented shapes --------------------------------------------------------------------


def test_query_zns_status_sends_the_documented_body_and_reads_the_sample_answer():
    # given eSMS answering QueryZnsStatus with its page's sample
    fake = FakeEsms()
    fake.answer(QUERY_PATH, QUERY_SAMPLE)
    # when asked for the sample's SMSID, type 25
    status = ask(fake, query())
    # expect the documented request: path with its trailing slash, SmsType a string
    assert fake.received == [
        (
            QUERY_PATH,
            {
                "ApiKey": API_KEY,
                "SecretKey": SECRET_KEY,
                "SmsId": QUERY_SAMPLE_SMSID,
                "SmsType": "25",
            },
        )
    ]
    # and the answer read field by field, the Data kept as received
    assert status == ZnsStatus(
        sms_id=QUERY_SAMPLE_SMSID,
        send_status=5,
        send_success=1,
        send_failed=0,
        final=True,
        error_info="0",
        zalo_msg_id="6dc7499c9ef6baaee3e1",
        record=json.loads(QUERY_SAMPLE)["Data"],
    )


def test_zalo_message_status_sends_the_documented_body_and_reads_the_sample_answer():
    fake = FakeEsms()
    fake.answer(DELIVERY_PATH, DELIVERY_SAMPLE)
    status = ask(fake, delivery("1090257973118325189", "6dc7499c9ef6baaee3e1"))
    assert fake.received == [
        (
            DELIVERY_PATH,
            {
                "ApiKey": API_KEY,
                "SecretKey": SECRET_KEY,
                "OAID": "1090257973118325189",
                "MessageId": "6dc7499c9ef6baaee3e1",
            },
        )
    ]
    assert status == DeliveryStatus(
        status=1,
        delivered_at_ms=1767678030984,
        message="The message was delivered to the user's phone",
        record=json.loads(DELIVERY_SAMPLE)["Data"],
    )


@pytest.mark.parametrize("code", ["100", 100, " 100 "])
def test_code_result_may_be_a_string_or_a_number(code):
    fake = FakeEsms()
    fake.answer(QUERY_PATH, {**json.loads(QUERY_SAMPLE), "CodeResult": code})
    fake.answer(DELIVERY_PATH, {**json.loads(DELIVERY_SAMPLE), "CodeResult": code})
    assert isinstance(ask(fake, query()), ZnsStatus)
    assert isinstance(ask(fake, delivery()), DeliveryStatus)


def test_get_callback_still_goes_to_its_own_host_with_the_positional_arguments():
    # given one app serving both hosts' paths
    fake = FakeEsms()
    fake.answer(CALLBACK_PATH, {"Code": 100, "Data_callback": []})
    # when GetCallback is asked
    answer = ask(fake, lambda client: client.get_callback(["r1"], "oa1"))
    # expect it at its own path, as before
    assert answer.records == {}
    assert [path for path, _ in fake.received] == [CALLBACK_PATH]


# --- codes and failures -----------------------------------------------------------------------


@pytest.mark.parametrize("code", ["854", 854])
def test_no_data_for_the_sms_id_is_none_not_an_error(code):
    fake = FakeEsms()
    fake.answer(QUERY_PATH, {"CodeResult": code, "ErrorMessage": "Không tìm thấy dữ liệu"})
    assert ask(fake, query()) is None


@pytest.mark.parametrize("call", [query(), delivery()], ids=["query", "delivery"])
@pytest.mark.parametrize(
    ("code", "error"),
    [("160", RateLimited), ("101", AuthError), (143, AuthError), ("851", RequestRejected)],
)
def test_codes_raise_their_errors_keeping_esms_code_and_message(call, code, error):
    fake = FakeEsms()
    answer = {"CodeResult": code, "ErrorMessage": "Exceed TPS"}
    fake.answer(QUERY_PATH, answer)
    fake.answer(DELIVERY_PATH, answer)
    raised = ask(fake, call)
    assert type(raised) is error
    assert (raised.code, raised.esms_message) == (int(code), "Exceed TPS")


def test_no_data_from_get_zalo_message_status_is_an_error_it_does_not_document():
    # 854 is QueryZnsStatus's "no data"; GetZaloMessageStatus says so with status -1
    fake = FakeEsms()
    fake.answer(DELIVERY_PATH, {"CodeResult": "854", "ErrorMessage": "no data"})
    assert isinstance(ask(fake, delivery()), RequestRejected)


@pytest.mark.parametrize("call", [query(), delivery()], ids=["query", "delivery"])
@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (200, "{not json", MalformedResponse),
        (200, "<html>Service Unavailable</html>", MalformedResponse),
        (200, '{"Data": {}}', MalformedResponse),
        (200, '{"CodeResult": "100", "Data": "a text"}', MalformedResponse),
        (500, "<html>oops, for 0909090909</html>", ServerError),
        (502, "", ServerError),
    ],
)
def test_failures_become_typed_errors_without_the_credentials(call, status, body, error):
    fake = FakeEsms()
    fake.answer(QUERY_PATH, body, status)
    fake.answer(DELIVERY_PATH, body, status)
    raised = ask(fake, call)
    assert type(raised) is error
    shown = str(raised) + repr(raised)
    assert API_KEY not in shown and SECRET_KEY not in shown
    assert "0909090909" not in shown  # eSMS's text is scrubbed of phone numbers


def test_the_client_repr_never_shows_the_credentials():
    client = EsmsClient(
        "https://status-sms.esms.vn", API_KEY, SECRET_KEY, 5.0, rest_base_url="https://rest.x"
    )
    for text in (repr(client), str(client)):
        assert API_KEY not in text and SECRET_KEY not in text


def test_an_sms_type_other_than_zns_is_refused_before_sending():
    fake = FakeEsms()
    raised = ask(fake, query(sms_type=2))
    assert isinstance(raised, ValueError) and "24 or 25" in str(raised)
    assert fake.received == []


def test_a_redirect_is_not_followed():
    async def moved(_: web.Request) -> web.StreamResponse:
        raise web.HTTPTemporaryRedirect("/elsewhere")

    seen: list[str] = []

    async def go() -> Any:
        app = web.Application()

        async def elsewhere(request: web.Request) -> web.StreamResponse:
            seen.append(request.path)
            return web.Response(text=QUERY_SAMPLE)

        app.router.add_post(QUERY_PATH, moved)
        app.router.add_post("/elsewhere", elsewhere)
        async with TestServer(app) as server:
            base = str(server.make_url(""))
            client = EsmsClient(base, API_KEY, SECRET_KEY, 5.0, rest_base_url=base)
            try:
                return await client.query_zns_status(QUERY_SAMPLE_SMSID, 25)
            except Exception as exc:
                return exc
            finally:
                await client.close()

    raised = asyncio.run(go())
    assert isinstance(raised, ServerError) and "HTTP 307" in str(raised)
    assert seen == []


# --- the rate gate ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "sample", "make_call"),
    [(QUERY_PATH, QUERY_SAMPLE, query), (DELIVERY_PATH, DELIVERY_SAMPLE, delivery)],
    ids=["query", "delivery"],
)
def test_the_gate_opens_once_before_the_request_arrives_then_on_sent_runs(path, sample, make_call):
    # given eSMS answering with its sample, and a gate and on_sent that note what eSMS had
    fake = FakeEsms()
    fake.answer(path, sample)
    calls: list[tuple[str, int]] = []

    def gate() -> bool:
        calls.append(("gate", len(fake.received)))
        return True

    def on_sent() -> None:
        calls.append(("sent", 0))

    # when asked
    result = ask(fake, make_call(gate=gate, on_sent=on_sent))

    # expect the gate first, with nothing received yet, then on_sent; one request
    assert calls == [("gate", 0), ("sent", 0)]
    assert not isinstance(result, Exception)
    assert len(fake.received) == 1


@pytest.mark.parametrize("make_call", [query, delivery], ids=["query", "delivery"])
def test_a_closed_gate_sends_nothing(make_call):
    fake = FakeEsms()
    raised = ask(fake, make_call(gate=lambda: False))
    assert isinstance(raised, NotSent)
    assert fake.received == []


def test_a_gate_closed_on_a_kept_connection_lets_the_next_request_go():
    # given a client that asked once (its connection kept), then is held back once
    fake = FakeEsms()
    fake.answer(QUERY_PATH, QUERY_SAMPLE)
    fake.answer(DELIVERY_PATH, DELIVERY_SAMPLE)

    async def three(client: EsmsClient) -> Any:
        await client.query_zns_status(QUERY_SAMPLE_SMSID, 25)
        with pytest.raises(NotSent):
            await client.zalo_message_status("oa1", "m1", lambda: False)
        return await client.zalo_message_status("oa1", "m2", lambda: True)

    # when the third request goes
    status = ask(fake, three)
    # expect eSMS to have received the first and the third only
    assert isinstance(status, DeliveryStatus)
    assert [(path, body.get("MessageId")) for path, body in fake.received] == [
        (QUERY_PATH, None),
        (DELIVERY_PATH, "m2"),
    ]
