"""The simulator's configuration, state and request log, and how one request is answered.

Checks run in this order, each answering HTTP 200 with eSMS's `Code` (a JSON number):
body not a JSON object -> 99; ApiKey/SecretKey not both an account's -> 101; closer than that
account's `rate_interval_s` to its previous request -> 160; window closed -> 99 (eSMS does not
document its code for this; 99 is the simulator's choice); ListRefid not a non-empty list of
strings or OAId not a non-empty string -> 99; otherwise 100 with one record per known RefId among
the account's first `max_refs`. A simulator serves one account (`default`) or many
(simulator.accounts): each has its own keys, limits and rate clock; scripts, faults, the window
and the log are shared.

Faults replace that answer: first the one-shot faults queued by `add_fault`, in order; when
none is queued, the fault of a poisoned RefId the request carries (`poison`); else a random
fault drawn from the rates set by `set_fault_rate`.

Every request that carries an account's credentials moves that account's rate clock, whatever
it is answered (160 and faults, one-shot or random, included): the simulator assumes eSMS counts
what it receives, which is the strict reading, so a client that passes here passes there.

QueryZnsStatus, GetZaloMessageStatus (simulator.zns_status) and GetSmsSentData_V2
(simulator.ledger) are checked alike, each against the account's own clock and interval for
that endpoint: body not a JSON object -> 99; keys -> 101; too soon -> 160; then the endpoint's
own checks and answer (simulator.message_book). The window and the faults are GetCallback's
only.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise

from aiohttp import web

from esms_callbacks.simulator.accounts import (
    DEFAULT_ACCOUNT,
    NO_ACCOUNT,
    STATUS_ENDPOINTS,
    AccountTable,
    Endpoint,
    SimAccount,
    account_stats,
    endpoint_stats,
    endpoint_summary,
)
from esms_callbacks.simulator.faults import Fault, RandomFaults, make_fault
from esms_callbacks.simulator.ledger import read_ledger
from esms_callbacks.simulator.message_book import MessageBook
from esms_callbacks.simulator.messages import parse_messages
from esms_callbacks.simulator.outcomes import (
    Outcome,
    Policy,
    ScriptBook,
    parse_policy,
)
from esms_callbacks.simulator.zns_status import (
    Refused,
    delivery_answer,
    query_answer,
    read_delivery,
    read_query,
    refusal,
)

WindowCheck = Callable[[], bool]
Clock = Callable[[], float]  # seconds since the epoch, as time.time()

_FAULT_HTTP_STATUS = {"http500": 500, "slow": 200, "badjson": 200, "html": 200, "code": 200}


@dataclass(frozen=True)
class LoggedRequest:
    """One request as received, to any endpoint. Never holds the ApiKey or SecretKey."""

    received_at_s: float  # time.time() at arrival (simulator.arrival), eSMS's rate clock
    received_monotonic_s: float  # time.monotonic() at arrival, for gaps
    api_key_ok: bool  # both ApiKey and SecretKey matched an account's
    account: str  # the name of that account; NO_ACCOUNT ("") when none matched
    oa_id: str | None
    ref_count_sent: int  # len(ListRefid) as received
    ref_count_answered: int  # RefIds looked up: at most max_refs
    record_count: int  # records in Data_callback (GetSmsSentData_V2: rows in SentData)
    code: int | None  # eSMS Code answered; None when the fault sent no JSON
    http_status: int | None  # None when the connection was aborted
    fault: str | None  # the fault kind applied, if any
    handler_lag_s: float = 0.0  # from arrival (the kernel's receipt) to its handler starting
    endpoint: Endpoint = "callback"  # GetCallback, QueryZnsStatus ("query"),
    # GetZaloMessageStatus ("delivery", oa_id its OAID) or GetSmsSentData_V2 ("ledger"); the
    # RefId counts are GetCallback's only
    sms_id: str | None = None  # QueryZnsStatus's SmsId as received
    message_id: str | None = None  # GetZaloMessageStatus's MessageId as received

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Answer:
    """What the HTTP layer should send: a JSON payload, shaped or replaced by a fault."""

    payload: dict[str, object]
    fault: Fault | None = None


@dataclass(frozen=True)
class _Request:
    body: dict[str, object] | None
    account: SimAccount | None  # the account whose keys it carries
    too_soon: bool


@dataclass(frozen=True)
class _Receipt:
    at_s: float  # time.time() at arrival
    monotonic_s: float  # time.monotonic() at arrival
    handler_lag_s: float


class Simulator:
    """Configuration, scripts, faults and the request log of simulated eSMS accounts.

    `accounts` serves those (the first is the default one that `configure` and the
    `api_key`, `rate_interval_s`... attributes stand for); without it, one account named
    "default" with `api_key`, `secret_key`, `max_refs` and `rate_interval_s`. `clock` (default
    time.time) is the time registered messages move by: tests pass their own. Safe to script
    from any thread while the app serves on another.
    """

    def __init__(
        self,
        *,
        api_key: str = "sim-api-key",
        secret_key: str = "sim-secret-key",
        max_refs: int = 100,
        rate_interval_s: float = 1.0,
        is_open: WindowCheck | None = None,
        policy: str = "mixed",
        accounts: Sequence[SimAccount] | None = None,
        clock: Clock = time.time,
    ) -> None:
        if accounts is None:
            accounts = [SimAccount(DEFAULT_ACCOUNT, api_key, secret_key, rate_interval_s, max_refs)]
        self._accounts = AccountTable(accounts)
        self.is_open = is_open
        self.requests: list[LoggedRequest] = []
        self.clock = clock
        self._book = ScriptBook(parse_policy(policy))
        self._messages = MessageBook(self._book)
        self._faults: deque[Fault] = deque()
        self._random_faults = RandomFaults()
        self._poisoned: dict[str, Fault] = {}  # RefId -> the fault of every request carrying it
        self._lock = threading.Lock()

    @property
    def policy(self) -> Policy:
        return self._book.policy

    @property
    def accounts(self) -> list[SimAccount]:
        """The accounts served, the default one first."""
        with self._lock:
            return self._accounts.all()

    def account(self, name: str | None = None) -> SimAccount:
        """The account named `name` (None: the default one); raise ValueError if none is."""
        with self._lock:
            return self._accounts.get(name)

    @property
    def api_key(self) -> str:
        return self.account().api_key

    @property
    def secret_key(self) -> str:
        return self.account().secret_key

    @property
    def rate_interval_s(self) -> float:
        return self.account().rate_interval_s

    @rate_interval_s.setter
    def rate_interval_s(self, value: float) -> None:
        self.configure(rate_interval_s=value)

    @property
    def max_refs(self) -> int:
        return self.account().max_refs

    @max_refs.setter
    def max_refs(self, value: int) -> None:
        self.configure(max_refs=value)

    def script(self, ref_id: str, outcomes: Sequence[str]) -> None:
        """Make the next asks of `ref_id` follow `outcomes`; the last one sticks.

        Raise ValueError on an unknown outcome (see simulator.outcomes).
        """
        with self._lock:
            self._messages.script(ref_id, outcomes)

    def register_messages(self, spec: Mapping[str, object]) -> int:
        """Register messages sent now (the clock's), as `POST /_sim/messages` takes them
        (simulator.messages); return how many. Raise ValueError, changing nothing, if bad."""
        with self._lock:
            messages = parse_messages(spec, self.clock())
            self._messages.register(messages)
        return len(messages)

    def set_policy(self, policy: str) -> None:
        """Choose the default script of RefIds without one: "sent" or "mixed"."""
        with self._lock:
            self._book.policy = parse_policy(policy)

    def add_fault(self, kind: str, count: int = 1, **params: object) -> None:
        """Make the next `count` requests fail as `kind` (see simulator.faults)."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError("fault count must be an integer >= 1")
        fault = make_fault(kind, **params)
        with self._lock:
            self._faults.extend([fault] * count)

    def poison(self, ref_id: str, kind: str, **params: object) -> None:
        """Make every request that carries `ref_id` fail as `kind`, as eSMS choking on one
        record would (an HTML error page, a cut-off answer, Code 99)."""
        fault = make_fault(kind, **params)
        with self._lock:
            self._poisoned[ref_id] = fault

    def set_fault_rate(
        self, kind: str, rate: float, seed: int | None = None, **params: object
    ) -> None:
        """Make a random share `rate` (0 to 1) of the coming requests fail as `kind`.

        0 turns the kind off; several kinds may be on at once (their rates add up, at most 1).
        `seed` makes the hits reproducible. Raise ValueError, changing nothing, on a bad value.
        """
        with self._lock:
            self._random_faults.set_rate(kind, rate, seed, **params)

    def fault_rates(self) -> dict[str, float]:
        """Return the random fault rates now on, by kind."""
        with self._lock:
            return self._random_faults.rates()

    def configure(
        self,
        *,
        rate_interval_s: float | None = None,
        max_refs: int | None = None,
        account: str | None = None,
        query_rate_interval_s: float | None = None,
        delivery_rate_interval_s: float | None = None,
        ledger_rate_interval_s: float | None = None,
    ) -> None:
        """Change the limits of `account` (None: the default one) while serving; raise
        ValueError, changing nothing, on a bad value or an unknown account."""
        with self._lock:
            self._accounts.configure(
                account,
                rate_interval_s=rate_interval_s,
                max_refs=max_refs,
                query_rate_interval_s=query_rate_interval_s,
                delivery_rate_interval_s=delivery_rate_interval_s,
                ledger_rate_interval_s=ledger_rate_interval_s,
            )

    def reset(self) -> None:
        """Forget the log, scripts, registered messages (the ledger's rows with them), pending
        faults, random fault rates, ask counts and the rate clocks."""
        with self._lock:
            self.requests.clear()
            self._messages.clear()
            self._faults.clear()
            self._random_faults.clear()
            self._poisoned.clear()
            self._accounts.reset_clocks()

    def asked(self, ref_id: str) -> int:
        """Return how many times GetCallback looked `ref_id` up."""
        with self._lock:
            return self._book.asked(ref_id)

    def scripts_of(self, ref_ids: Sequence[str]) -> list[tuple[Outcome, ...]]:
        """Return the script each RefId follows, in order, without counting an ask: pushes
        must leave what GetCallback answers unchanged."""
        with self._lock:
            return [self._messages.script_of(ref_id) for ref_id in ref_ids]

    def pending_faults(self) -> int:
        with self._lock:
            return len(self._faults)

    def stats(self) -> dict[str, object]:
        """Summarise the GetCallback requests of the log: counts, the smallest gap between
        requests, codes seen; and under "endpoints" QueryZnsStatus's ("query"),
        GetZaloMessageStatus's ("delivery") and GetSmsSentData_V2's ("ledger") requests,
        smallest gap, 160s and codes."""
        with self._lock:
            everything = list(self.requests)
        log = sorted(
            (r for r in everything if r.endpoint == "callback"),
            key=lambda r: r.received_monotonic_s,
        )
        gaps = [b.received_monotonic_s - a.received_monotonic_s for a, b in pairwise(log)]
        endpoints = {
            endpoint: endpoint_summary([r for r in everything if r.endpoint == endpoint])
            for endpoint in STATUS_ENDPOINTS
        }
        return {
            "requests": len(log),
            "min_gap_s": min(gaps) if gaps else None,
            "refs_sent": sum(r.ref_count_sent for r in log),
            "refs_answered": sum(r.ref_count_answered for r in log),
            "records_returned": sum(r.record_count for r in log),
            "codes": dict(Counter(str(r.code) for r in log)),
            "http_statuses": dict(Counter(str(r.http_status) for r in log)),
            "faults": dict(Counter(r.fault for r in log if r.fault)),
            "endpoints": endpoints,
        }

    def account_stats(self) -> dict[str, dict[str, object]]:
        """Summarise the log per account, every account (see simulator.accounts)."""
        with self._lock:
            log, accounts = list(self.requests), self._accounts.all()
        return account_stats(log, accounts)

    def endpoint_stats(self) -> dict[str, dict[str, dict[str, object]]]:
        """Per account, QueryZnsStatus's, GetZaloMessageStatus's and GetSmsSentData_V2's
        figures (see simulator.accounts.endpoint_stats)."""
        with self._lock:
            log, accounts = list(self.requests), self._accounts.all()
        return endpoint_stats(log, accounts)

    def receive(
        self,
        raw: bytes,
        received_at_s: float,
        received_monotonic_s: float,
        handler_lag_s: float = 0.0,
    ) -> Answer:
        """Decide the answer to one GetCallback body received (arrived) at the given times,
        and log it; `handler_lag_s` is how long after arrival its handler started."""
        received = _Receipt(received_at_s, received_monotonic_s, handler_lag_s)
        with self._lock:
            request = self._read(raw, received_monotonic_s)
            fault = self._faults.popleft() if self._faults else self._poison_in(request)
            fault = fault or self._random_faults.draw()
            if fault is not None and fault.kind != "slow":
                payload: dict[str, object] = {"Code": fault.code, "Message": fault.message}
                self._log(request, received, fault, payload)
                return Answer(payload, fault)
            payload = self._answer(request)
            self._log(request, received, fault, payload)
            return Answer(payload, fault)

    def receive_query(
        self,
        raw: bytes,
        received_at_s: float,
        received_monotonic_s: float,
        handler_lag_s: float = 0.0,
    ) -> Answer:
        """Decide and log the answer to one QueryZnsStatus body received at the given times."""
        received = _Receipt(received_at_s, received_monotonic_s, handler_lag_s)
        return self._receive_status(raw, received, "query")

    def receive_delivery(
        self,
        raw: bytes,
        received_at_s: float,
        received_monotonic_s: float,
        handler_lag_s: float = 0.0,
    ) -> Answer:
        """Decide and log the answer to one GetZaloMessageStatus body received then."""
        received = _Receipt(received_at_s, received_monotonic_s, handler_lag_s)
        return self._receive_status(raw, received, "delivery")

    def receive_ledger(
        self,
        raw: bytes,
        received_at_s: float,
        received_monotonic_s: float,
        handler_lag_s: float = 0.0,
    ) -> Answer:
        """Decide and log the answer to one GetSmsSentData_V2 body received then."""
        received = _Receipt(received_at_s, received_monotonic_s, handler_lag_s)
        return self._receive_status(raw, received, "ledger")

    def _receive_status(self, raw: bytes, received: _Receipt, endpoint: Endpoint) -> Answer:
        with self._lock:
            request = self._read(raw, received.monotonic_s, endpoint)
            try:
                payload = self._status_answer(request, endpoint)
            except Refused as refused:
                payload = refusal(refused.code, refused.message)
            self._log(request, received, None, payload, endpoint)
            return Answer(payload)

    def _status_answer(self, request: _Request, endpoint: Endpoint) -> dict[str, object]:
        body, account = request.body, request.account
        if body is None:
            raise Refused(99, "Request body is not a JSON object")
        if account is None:
            raise Refused(101, "Authorize Failed: wrong ApiKey or SecretKey")
        if request.too_soon:
            raise Refused(160, "Exceed TPS")
        now_s = self.clock()
        if endpoint == "query":
            ask = read_query(body)
            outcome = self._messages.query_outcome(ask.sms_id, ask.sms_type, now_s)
            return query_answer(ask.sms_id, outcome, ask.sms_type)
        if endpoint == "ledger":
            return self._messages.ledger(read_ledger(body), now_s)
        delivery = read_delivery(body)
        status, delivered_at_s = self._messages.delivery(delivery.message_id, delivery.oa_id, now_s)
        return delivery_answer(status, delivered_at_s)

    def _poison_in(self, request: _Request) -> Fault | None:
        refs = request.body.get("ListRefid") if request.body else None
        if not self._poisoned or not isinstance(refs, list):
            return None
        return next((self._poisoned[r] for r in refs if r in self._poisoned), None)

    def _read(
        self, raw: bytes, received_monotonic_s: float, endpoint: Endpoint = "callback"
    ) -> _Request:
        try:
            parsed = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            parsed = None
        body = parsed if isinstance(parsed, dict) else None
        if body is None:
            return _Request(None, None, too_soon=False)
        account = self._accounts.match(body.get("ApiKey"), body.get("SecretKey"))
        if account is None:
            return _Request(body, None, too_soon=False)
        too_soon = self._accounts.too_soon(account, received_monotonic_s, endpoint)
        return _Request(body, account, too_soon)

    def _answer(self, request: _Request) -> dict[str, object]:
        body, account = request.body, request.account
        if body is None:
            return _error(99, "Request body is not a JSON object")
        if account is None:
            return _error(101, "Authorize Failed: wrong ApiKey or SecretKey")
        if request.too_soon:
            return _error(160, f"Too many requests: at most one every {account.rate_interval_s} s")
        if self.is_open is not None and not self.is_open():
            return _error(99, "Outside the allowed time window for GetCallback")
        ref_ids, oa_id = body.get("ListRefid"), body.get("OAId")
        if not isinstance(ref_ids, list) or not ref_ids:
            return _error(99, "ListRefid must be a non-empty list of RefId strings")
        if not all(isinstance(ref_id, str) for ref_id in ref_ids):
            return _error(99, "ListRefid must contain only strings")
        if not isinstance(oa_id, str) or not oa_id:
            return _error(99, "OAId is required")
        records = []
        now_s = self.clock() if self._messages.has_messages() else 0.0
        for ref_id in ref_ids[: account.max_refs]:  # eSMS silently ignores the rest
            record = self._messages.callback_record(ref_id, oa_id, now_s)
            if record is not None:
                records.append(record)
        return {"Code": 100, "Message": "Success", "Data_callback": records}

    def _log(
        self,
        request: _Request,
        received: _Receipt,
        fault: Fault | None,
        payload: dict[str, object],
        endpoint: Endpoint = "callback",
    ) -> None:
        body = request.body or {}
        oa_id, ref_ids, records = (
            body.get("OAID" if endpoint == "delivery" else "OAId"),
            body.get("ListRefid") if endpoint == "callback" else None,
            payload.get("SentData" if endpoint == "ledger" else "Data_callback"),
        )
        sms_id = body.get("SmsId") if endpoint == "query" else None
        message_id = body.get("MessageId") if endpoint == "delivery" else None
        answered = "Data_callback" in payload  # only a real success looked RefIds up
        code = _code_of(payload) if fault is None or fault.kind in ("code", "slow") else None
        http_status = 200 if fault is None else _FAULT_HTTP_STATUS.get(fault.kind)
        ref_count_sent = len(ref_ids) if isinstance(ref_ids, list) else 0
        account = request.account
        self.requests.append(
            LoggedRequest(
                received_at_s=received.at_s,
                received_monotonic_s=received.monotonic_s,
                api_key_ok=account is not None,
                account=account.name if account is not None else NO_ACCOUNT,
                oa_id=oa_id if isinstance(oa_id, str) else None,
                ref_count_sent=ref_count_sent,
                ref_count_answered=(
                    min(ref_count_sent, account.max_refs) if answered and account else 0
                ),
                record_count=len(records) if isinstance(records, list) else 0,
                code=code,
                http_status=http_status,
                fault=fault.kind if fault is not None else None,
                handler_lag_s=received.handler_lag_s,
                endpoint=endpoint,
                sms_id=sms_id if isinstance(sms_id, str) else None,
                message_id=message_id if isinstance(message_id, str) else None,
            )
        )


def _error(code: int, message: str) -> dict[str, object]:
    return {"Code": code, "Message": message}


def _code_of(payload: dict[str, object]) -> int | None:
    """The eSMS code answered: GetCallback's `Code` (a number) or the others' `CodeResult`
    (a string of digits)."""
    code = payload.get("Code", payload.get("CodeResult"))
    if isinstance(code, str) and code.isdigit():
        return int(code)
    return code if isinstance(code, int) and not isinstance(code, bool) else None


SIM_KEY = web.AppKey("simulator", Simulator)
