"""The eSMS client (aiohttp): GetCallback, QueryZnsStatus, GetZaloMessageStatus and
GetSmsSentData_V2 (the ledger), each one POST through the same rate gate, one parsed answer or
one typed error."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp

from esms_callbacks.errors import (
    MalformedResponse,
    NotSent,
    ServerError,
    TransportError,
    printable,
)
from esms_callbacks.esms.answers import load_object, result_code, snippet, text_field
from esms_callbacks.esms.codes import SUCCESS_CODE, error_for_code
from esms_callbacks.esms.delivery import (
    ZALO_MESSAGE_STATUS_PATH,
    DeliveryStatus,
    parse_delivery_answer,
)
from esms_callbacks.esms.ledger import (
    SENT_DATA_PATH,
    LedgerPage,
    ledger_request,
    parse_ledger_page,
)
from esms_callbacks.esms.query import (
    QUERY_ZNS_STATUS_PATH,
    ZNS_SMS_TYPES,
    ZnsStatus,
    parse_query_answer,
)
from esms_callbacks.terms import redact_url

GET_CALLBACK_PATH = "/ZaloCallback/GetCallback"
# GetCallback is on its own host; the other endpoints on the REST API's.
DEFAULT_REST_BASE_URL = "https://rest.esms.vn"
# 200 records are ~150 KB; anything near this is not an eSMS answer.
MAX_ANSWER_BYTES = 8 * 1024 * 1024
log = logging.getLogger(__name__)

Gate = Callable[[], bool]
OnSent = Callable[[], None]


@dataclass(frozen=True)
class CallbackAnswer:
    """A successful answer: records keyed by SMSID, plus what was skipped and why."""

    records: dict[str, dict[str, Any]]
    skipped: list[str]


class EsmsClient:
    """Ask eSMS for message statuses; one instance per event loop, reusing one session."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        secret_key: str,
        timeout_s: float,
        *,
        rest_base_url: str = DEFAULT_REST_BASE_URL,
    ) -> None:
        self._url = base_url.rstrip("/") + GET_CALLBACK_PATH
        rest_base_url = rest_base_url.rstrip("/")
        self._query_url = rest_base_url + QUERY_ZNS_STATUS_PATH
        self._delivery_url = rest_base_url + ZALO_MESSAGE_STATUS_PATH
        self._sent_data_url = rest_base_url + SENT_DATA_PATH
        self._credentials = {"ApiKey": api_key, "SecretKey": secret_key}
        self._timeout = aiohttp.ClientTimeout(
            total=timeout_s, connect=min(timeout_s, 10.0), sock_read=timeout_s
        )
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"EsmsClient({redact_url(self._url)!r})"  # never the credentials

    async def get_callback(
        self,
        ref_ids: list[str],
        oa_id: str,
        gate: Gate | None = None,
        on_sent: OnSent | None = None,
    ) -> CallbackAnswer:
        """POST GetCallback for `ref_ids`; raise an EsmsError subclass on any failure.

        `gate`, if given, is called once the request is built and its connection held (after
        DNS, TCP and TLS), right before its bytes are written: the rate slot is committed as
        close to eSMS's receipt as we can. If it returns False nothing is sent and NotSent is
        raised; if it raises, nothing is sent and its error is raised. `on_sent`, if given, is
        called once the request has been handed to the socket (right after the write, before
        the answer is awaited).
        """
        body = {**self._credentials, "ListRefid": ref_ids, "OAId": oa_id}
        text = await self._post(self._url, body, gate, on_sent)
        return parse_answer(text, set(ref_ids))

    async def query_zns_status(
        self,
        sms_id: str,
        sms_type: int,
        gate: Gate | None = None,
        on_sent: OnSent | None = None,
    ) -> ZnsStatus | None:
        """POST QueryZnsStatus for one SmsId of type 24 or 25; None when eSMS has no data for
        it (Code 854). `gate` and `on_sent` as for get_callback."""
        if sms_type not in ZNS_SMS_TYPES:
            raise ValueError(f"QueryZnsStatus answers for SmsType 24 or 25 only, not {sms_type!r}")
        body = {**self._credentials, "SmsId": sms_id, "SmsType": str(sms_type)}
        text = await self._post(self._query_url, body, gate, on_sent)
        return parse_query_answer(text, sms_id)

    async def zalo_message_status(
        self,
        oa_id: str,
        message_id: str,
        gate: Gate | None = None,
        on_sent: OnSent | None = None,
    ) -> DeliveryStatus:
        """POST GetZaloMessageStatus for a Zalo message id (GetCallback's Partnerids,
        QueryZnsStatus's ZaloMsgId) of the OA `oa_id`. `gate` and `on_sent` as for
        get_callback."""
        body = {**self._credentials, "OAID": oa_id, "MessageId": message_id}
        text = await self._post(self._delivery_url, body, gate, on_sent)
        return parse_delivery_answer(text)

    async def sent_data(
        self,
        sms_type: int,
        from_local: datetime,
        to_local: datetime,
        page: int,
        page_size: int,
        gate: Gate | None = None,
        on_sent: OnSent | None = None,
    ) -> LedgerPage:
        """POST GetSmsSentData_V2: page `page` (from 1) of `page_size` (1 to 500) of the
        account's messages of `sms_type` created from `from_local` to `to_local` (aware: any
        zone, sent in Vietnam time; naive: Vietnam time). Raise ValueError on a bad argument
        before sending. Phone numbers and texts are dropped at parse (esms.ledger). `gate`
        and `on_sent` as for get_callback."""
        body = {
            **self._credentials,
            **ledger_request(sms_type, from_local, to_local, page, page_size),
        }
        text = await self._post(self._sent_data_url, body, gate, on_sent, quote_answer=False)
        return parse_ledger_page(text)

    async def _post(
        self,
        url: str,
        body: dict[str, Any],
        gate: Gate | None,
        on_sent: OnSent | None,
        *,
        quote_answer: bool = True,
    ) -> str:
        """POST `body` as JSON through the gate; the answer's text if eSMS answered HTTP 200.
        Every transport failure becomes a TransportError, and no error carries the body.
        `quote_answer` False keeps even a scrubbed snippet of a non-200 answer out of the
        error (an answer that may carry personal data)."""
        session = await self._ensure_session()
        request_gate = _Gate(gate, on_sent)
        try:
            # Never follow a redirect: it would carry the credentials to another host, outside
            # the rate gate. A 3xx is an answer like any other non-200.
            async with session.post(
                url,
                json=body,
                trace_request_ctx=request_gate,
                allow_redirects=False,
            ) as response:
                text = await _read_capped(response)
                status = response.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            # aiohttp writes the body in a task of its own and reports whatever stopped it as a
            # connection error: the gate's own error (NotSent, Redis down) is raised as itself.
            if request_gate.error is not None:
                raise request_gate.error from None
            if isinstance(exc, TimeoutError):
                raise TransportError(f"eSMS did not answer within {self._timeout.total}s") from None
            raise TransportError(f"eSMS connection failed: {type(exc).__name__}: {exc}") from None
        if status != 200:
            quoted = snippet(text) if quote_answer else f"({len(text)} characters, not quoted)"
            raise ServerError(f"eSMS answered HTTP {status}: {quoted}")
        return text

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            trace = aiohttp.TraceConfig()
            trace.on_request_chunk_sent.append(_body_going_out)
            self._session = aiohttp.ClientSession(timeout=self._timeout, trace_configs=[trace])
        return self._session


async def _read_capped(response: aiohttp.ClientResponse) -> str:
    """The body as text, refusing one larger than MAX_ANSWER_BYTES (a broken proxy or a
    hostile host must not fill the worker's memory)."""
    if (response.content_length or 0) > MAX_ANSWER_BYTES:
        raise MalformedResponse(f"eSMS answer is {response.content_length} bytes; too large")
    body = bytearray()
    async for chunk in response.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > MAX_ANSWER_BYTES:
            raise MalformedResponse(f"eSMS answer is over {MAX_ANSWER_BYTES} bytes; too large")
    return body.decode("utf-8", errors="replace")  # eSMS answers JSON, which is UTF-8


class _Gate:
    """A request's gate, passed through aiohttp's tracing; opened at most once."""

    def __init__(self, gate: Gate | None, on_sent: OnSent | None = None) -> None:
        self.gate = gate
        self.opened = gate is None
        self.error: Exception | None = None  # why the gate did not open
        self.on_sent = on_sent

    def open(self) -> None:
        if self.opened:
            return
        assert self.gate is not None
        try:
            if not self.gate():
                raise NotSent("the request was held back before sending")
        except Exception as exc:
            self.error = exc
            raise
        self.opened = True


async def _body_going_out(_: aiohttp.ClientSession, context: Any, __: object) -> None:
    """aiohttp calls this right before it writes the body (headers coalesced), and writes it
    as soon as this returns, without yielding to the loop: the gate is the last thing before
    the write, and a callback scheduled now runs once the request is in the socket."""
    gate = context.trace_request_ctx
    if not isinstance(gate, _Gate):
        return
    gate.open()  # NotSent: aiohttp drops the connection, and nothing was written on it
    if gate.on_sent is not None:
        on_sent, gate.on_sent = gate.on_sent, None
        asyncio.get_running_loop().call_soon(on_sent)


def parse_answer(text: str, asked: set[str]) -> CallbackAnswer:
    """Parse a GetCallback body; keep records of RefIds we asked for, skip the rest."""
    payload = load_object(text)
    code = result_code(payload, "Code", text)
    if code != SUCCESS_CODE:
        raise error_for_code(code, text_field(payload, "Message"))
    data = payload.get("Data_callback")
    if data is None:
        data = []
    if not isinstance(data, list):
        raise MalformedResponse("eSMS answer's Data_callback is not a list")
    records: dict[str, dict[str, Any]] = {}
    skipped: list[str] = []
    for item in data:
        ref_id = item.get("SMSID") if isinstance(item, dict) else None
        if not isinstance(item, dict) or not isinstance(ref_id, str):
            skipped.append(f"record without a string SMSID: {_shape(item)}")
        elif ref_id not in asked:
            skipped.append(f"record for a RefId not asked: {printable(ref_id)}")
        else:
            if ref_id in records:
                skipped.append(f"duplicate record for {printable(ref_id)}; the last one wins")
            records[ref_id] = item
    return CallbackAnswer(records, skipped)


def _shape(item: object) -> str:
    """Describe a record by its field names only: its values may be personal data."""
    if not isinstance(item, dict):
        return f"a {type(item).__name__}, not an object"
    ref_id = item.get("SMSID")
    names = ", ".join(printable(str(name), 40) for name in list(item)[:30])
    smsid = "no SMSID" if ref_id is None else f"SMSID a {type(ref_id).__name__}"
    return f"{smsid}; fields: {names or 'none'}"
