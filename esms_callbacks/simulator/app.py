"""A faithful eSMS simulator on aiohttp.web: every way eSMS tells a ZNS message's status.

eSMS endpoints (see docs/esms/getcallback.md, eSMS's own page, for GetCallback's sample):

    POST /ZaloCallback/GetCallback
    {"ApiKey": "...", "SecretKey": "...", "ListRefid": ["<SMSID>", ...], "OAId": "..."}
    -> 200 {"Code": 100, "Message": "Success", "Data_callback": [record, ...]}
    POST /MainService.svc/json/QueryZnsStatus/   (also without the trailing slash)
    {"ApiKey": "...", "SecretKey": "...", "SmsId": "<SMSID>", "SmsType": "24" | "25"}
    -> 200 {"CodeResult": "100", "Data": {"SMSID", "SendStatus", "FinalStatus", "ErrorInfo",
            "ZaloMsgId", ...}}
    POST /MainService.svc/json/GetZaloMessageStatus
    {"ApiKey": "...", "SecretKey": "...", "OAID": "...", "MessageId": "<Partnerids>"}
    -> 200 {"CodeResult": "100", "Data": {"delivery_time", "message", "status"},
            "ErrorMessage": "success. "}
    POST /MainService.svc/json/GetSmsSentData_V2   (also with a trailing slash)
    {"ApiKey": "...", "SecretKey": "...", "SmsType": "25", "From": "2025-01-01 06:00:00",
     "To": "2025-01-02 18:00:00", "Page": 1, "PageSize": 500}
    -> 200 {"CodeResult": "100", "CountTotal": N, "SentData": [{"Campaign", "Content", "Phone",
            "ReferenceId", "SellPrice", "SendResult", "SendStatus", "SentTime", "SmsId",
            "SmsType"}, ...]}

Answers follow simulator.state (GetCallback's codes 99, 101, 160, 100; window closed is 99, the
simulator's choice since eSMS does not document it), simulator.zns_status (QueryZnsStatus and
GetZaloMessageStatus: "99", "101", "160", "851", "854", "100") and simulator.ledger
(GetSmsSentData_V2, the ledger of registered messages: "99", "101", "105" nothing in the range,
"160", "100"), records follow simulator.outcomes, statuses follow simulator.message_book, and
injected faults (GetCallback's only) follow simulator.faults. Each endpoint has its own rate
clock and interval per account.

Control API, so a simulator in another process can be scripted (errors answer 400 {"error"}):

    POST /_sim/script   {"ref_id": "...", "outcomes": ["pending7", "sent"]}  ("ref_ids": [...]
                        scripts many RefIds alike)
    POST /_sim/policy   {"policy": "sent" | "mixed" | "missing"}
    POST /_sim/messages {"ref_ids": [...], "oa_id": "...", "callback_url": true,
                         "type_id": 25, "final_after_s": 0,
                         "final": "sent" | "failed" | "failed_offline" | "rejected",
                         "delivered_after_s": null}
                        register messages sent now (simulator.messages; defaults shown): pending
                        until final_after_s, then final; on the user's phone delivered_after_s
                        after a final "sent" (null: never). GetCallback leaves out those sent
                        without a CallbackUrl. They replace scripts and the policy for their
                        RefIds (scripting a RefId again replaces its message). Each is a row of
                        GetSmsSentData_V2's ledger, created now, its status moving with it.
                        {"ref_id_prefix": "bench-", "count": 100000, ...} instead of "ref_ids"
                        registers "bench-0" to "bench-99999". Answers {"ok", "registered": N}
    POST /_sim/fault    {"kind": "http500|slow|badjson|html|code|reset", "count": 1, ...params}
                        (params: "delay_s" for slow; "code", "message" for code)
    POST /_sim/poison   {"ref_id": "...", "kind": "html", ...params}: every request that
                        carries that RefId fails as `kind` (after one-shot faults, before
                        random ones), as eSMS choking on one record would
    POST /_sim/fault_rate {"kind": "http500", "rate": 0.1, "seed": 7, ...params}
                        make a random share of the coming requests fail as that kind (any
                        kind above, same params) until changed: "rate" 0 turns it off, 1 makes
                        every request fail; several kinds may be on (rates add up, at most 1);
                        "seed" (optional integer) makes the hits reproducible. One-shot faults
                        queued by /_sim/fault come first. Answers {"ok", "fault_rates": {kind:
                        rate}}. Failed requests move the rate clock and are logged with their
                        "fault", like one-shot ones.
    POST /_sim/reset    forget the log, scripts, registered messages (the ledger's rows with
                        them), faults (one-shot and random), ask counts and the rate clocks;
                        drop queued pushes and zero the push counts (only this route:
                        Simulator.reset() knows nothing of pushes)
    POST /_sim/config   {"rate_interval_s": 1.0, "max_refs": 100,
                         "query_rate_interval_s": 0.01, "delivery_rate_interval_s": 0.034,
                         "ledger_rate_interval_s": 1.0,
                         "window": "always" | "closed" | "HH:MM-HH:MM", "timezone": "Asia/...",
                         "account": "shop-a"}
                        the limits are those of "account" (default: the first account):
                        GetCallback's, QueryZnsStatus's, GetZaloMessageStatus's,
                        GetSmsSentData_V2's intervals (0 disables); the window is every
                        account's and GetCallback's only
    GET  /_sim/config   the limits of the default account (?account=NAME: of that one), its
                        name, how many accounts, the policy, pending faults and fault rates
                        (never the credentials)
    GET  /_sim/requests the request log as a JSON list, each entry naming its "account" (""
                        when its keys matched none) and its "endpoint" ("callback", "query",
                        "delivery", "ledger"; with "sms_id" or "message_id" asked; a ledger
                        request's rows returned in "record_count"); ?since=N skips the first
                        N entries, ?account=NAME keeps that account's
    GET  /_sim/stats    GetCallback's {"requests", "min_gap_s", "refs_sent", "refs_answered",
                         "records_returned", "codes", "http_statuses", "faults"} and
                         "endpoints": {"query": {"requests", "min_gap_s", "code_160",
                         "codes"}, "delivery": {...}, "ledger": {...}}
    GET  /_sim/accounts {NAME: {"rate_interval_s", "max_refs", "requests", "refs_sent",
                         "refs_answered", "records_returned", "first_at_s", "last_at_s",
                         "min_gap_s", "code_160", "codes"}} for every account, in order
                        (those without requests too; times are time.time()): GetCallback's
    GET  /_sim/endpoints {NAME: {"query": {"rate_interval_s", "requests", "min_gap_s",
                         "code_160", "codes"}, "delivery": {...}, "ledger": {...}}} for every
                        account, in order
    GET  /_sim/asked?ref_id=...   {"ref_id", "asked"}: GetCallback's lookups of it

Pushes, as eSMS sends each status to the customer's CallbackUrl (simulator.push, .pusher):

    POST /_sim/push     {"url": "http://host:port/path?x=1", "oa_id": "...", "ref_ids": [...],
                         "delay_s": 0, "rate_per_s": 0, "statuses": "final" | "all"}
                        queue a GET of `url` (its query kept, eSMS's parameters added) per
                        status of each RefId: "final" (default) the last outcome of its script,
                        "all" every outcome in order; "missing" is never pushed. Scripts are
                        read, not advanced: GetCallback answers stay as they were. Deliveries
                        start `delay_s` after queuing, at most `rate_per_s` a second for this
                        call's pushes (0: unpaced), at most 20 open at once over all calls.
                        Answers {"ok": true, "queued": N}.
    POST /_sim/push_config {"timeout_s": 5.0, "retries": 5, "retry_delay_s": 2.0}
                        any of them; answers the push settings now in force
    GET  /_sim/push_config the push settings
    GET  /_sim/pushes   {"queued", "attempts", "delivered", "retried", "given_up", "in_flight",
                         "waiting", "answers": {"200": n, "500": n, "error": n, ...}}
                        a delivery is done when answered 200; anything else (another status,
                        a timeout, a refused or reset connection: "error") is retried after
                        retry_delay_s, at most `retries` more times, then given up
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler

from esms_callbacks.simulator.arrival import take_arrival_s
from esms_callbacks.simulator.control import control_routes
from esms_callbacks.simulator.faults import Fault
from esms_callbacks.simulator.ledger import LEDGER_PATH
from esms_callbacks.simulator.pusher import PUSHER_KEY, Pusher, PushSettings
from esms_callbacks.simulator.state import SIM_KEY, Answer, LoggedRequest, Simulator
from esms_callbacks.simulator.zns_status import DELIVERY_PATH, QUERY_PATH

__all__ = [
    "DELIVERY_PATH",
    "GET_CALLBACK_PATH",
    "LEDGER_PATH",
    "QUERY_PATH",
    "LoggedRequest",
    "Simulator",
    "make_app",
]

GET_CALLBACK_PATH = "/ZaloCallback/GetCallback"
ARRIVAL_KEY = web.RequestKey("arrival_s", float)  # see _stamp_arrival; absent: unknown
# A handler runs this long after its request arrived only if the wall clock stepped.
_MAX_ARRIVAL_LAG_S = 60.0

# What a response cut off mid-stream looks like: valid start, no end.
_TRUNCATED_JSON = '{"Code":100,"Message":"Success","Data_callback":[{"SMSID":"4a496110-9fd3-48'
# eSMS runs on ASP.NET/IIS; its error pages look like this rather than like JSON.
_HTML_PAGE = """<!DOCTYPE html>
<html><head><title>Runtime Error</title></head>
<body><h1>Server Error in '/' Application.</h1>
<h2><i>Runtime Error</i></h2>
<p>An application error occurred on the server.</p></body></html>
"""


def make_app(sim: Simulator, push_settings: PushSettings | None = None) -> web.Application:
    """Build the aiohttp application serving eSMS's status endpoints and the /_sim control API
    for `sim`, with a pusher delivering statuses as `push_settings` say (defaults: eSMS's)."""
    app = web.Application(middlewares=[_stamp_arrival])
    app[SIM_KEY] = sim
    pusher = Pusher(push_settings)
    app[PUSHER_KEY] = pusher
    app.cleanup_ctx.append(pusher.session_ctx)
    app.router.add_post(GET_CALLBACK_PATH, _get_callback)
    app.router.add_post(QUERY_PATH, _query_zns_status)
    app.router.add_post(QUERY_PATH.rstrip("/"), _query_zns_status)
    app.router.add_post(DELIVERY_PATH, _get_zalo_message_status)
    app.router.add_post(DELIVERY_PATH + "/", _get_zalo_message_status)
    app.router.add_post(LEDGER_PATH, _get_sms_sent_data)
    app.router.add_post(LEDGER_PATH + "/", _get_sms_sent_data)
    app.router.add_routes(control_routes())
    return app


@web.middleware
async def _stamp_arrival(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give each request the kernel time its first bytes arrived (simulator.arrival)."""
    arrived_s = take_arrival_s(request.transport)
    if arrived_s is not None:
        request[ARRIVAL_KEY] = arrived_s
    try:
        return await handler(request)
    finally:
        # Bytes read after the request began (the rest of its body) are not the next one's.
        take_arrival_s(request.transport)


async def _get_callback(request: web.Request) -> web.StreamResponse:
    answer = await _received(request, request.app[SIM_KEY].receive)
    if answer.fault is None:
        return web.json_response(answer.payload)
    return await _faulted(request, answer.fault, answer.payload)


async def _query_zns_status(request: web.Request) -> web.StreamResponse:
    answer = await _received(request, request.app[SIM_KEY].receive_query)
    return web.json_response(answer.payload)


async def _get_zalo_message_status(request: web.Request) -> web.StreamResponse:
    answer = await _received(request, request.app[SIM_KEY].receive_delivery)
    return web.json_response(answer.payload)


async def _get_sms_sent_data(request: web.Request) -> web.StreamResponse:
    answer = await _received(request, request.app[SIM_KEY].receive_ledger)
    return web.json_response(answer.payload)


Receive = Callable[[bytes, float, float, float], Answer]


async def _received(request: web.Request, receive: Receive) -> Answer:
    """Read the body and let `receive` answer it, timed at its arrival."""
    # eSMS's rate clock sees arrival: the kernel's receive time of the request's first bytes,
    # else the handler's start, before the body is read.
    handler_s, handler_monotonic_s = time.time(), time.monotonic()
    arrived_s = request.get(ARRIVAL_KEY)
    lag_s = handler_s - arrived_s if arrived_s is not None else 0.0
    if not 0.0 <= lag_s < _MAX_ARRIVAL_LAG_S:  # the wall clock stepped: trust the handler's
        lag_s = 0.0
    raw = await request.read()
    return receive(raw, handler_s - lag_s, handler_monotonic_s - lag_s, lag_s)


async def _faulted(
    request: web.Request, fault: Fault, payload: dict[str, object]
) -> web.StreamResponse:
    if fault.kind == "slow":
        await asyncio.sleep(fault.delay_s)
        return web.json_response(payload)
    if fault.kind == "http500":
        return web.Response(status=500, text="500 Internal Server Error\n")
    if fault.kind == "badjson":
        return web.Response(text=_TRUNCATED_JSON, content_type="application/json")
    if fault.kind == "html":
        return web.Response(text=_HTML_PAGE, content_type="text/html")
    if fault.kind == "reset":
        _abort_connection(request)
        raise asyncio.CancelledError  # nothing may be written to the aborted connection
    return web.json_response(payload)  # "code"


def _abort_connection(request: web.Request) -> None:
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # Linger 0 turns close into an RST, so clients see "connection reset by peer".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
