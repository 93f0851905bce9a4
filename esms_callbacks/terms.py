"""An eSMS account's terms: where its eSMS is and what eSMS allows it.

Each term is declared once, with its environment variable (the deployment's default, and the
terms of the account `default`) and its key in an ESMS_ACCOUNTS_FILE table, which overrides it
for that account. docs/configuration.md is rendered from these declarations.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from esms_callbacks.errors import ConfigError
from esms_callbacks.esms.window import Window
from esms_callbacks.variables import (
    APP,
    Variable,
    choice,
    declared,
    env,
    http_url,
    integer,
    is_local,
    number,
    parse_given,
    read_variable,
    zone,
)

DEFAULT_BASE_URL = "https://status-sms.esms.vn"
DEFAULT_REST_BASE_URL = "https://rest.esms.vn"  # QueryZnsStatus, GetZaloMessageStatus
DEFAULT_ZONE = "Asia/Ho_Chi_Minh"
ESMS_MAX_REFS_CEILING = 200  # eSMS's own table; past it RefIds are silently dropped
# Covers the jitter between our commit and eSMS's receipt that `make bench` measures
# (docs/benchmarks.md); networks that jitter more get a wider margin from eSMS's own 160s.
DEFAULT_RATE_MARGIN_S = 0.002

# Past this share of an endpoint's interval the margin would cost more budget than the
# jitter it absorbs: 10 ms apart (QueryZnsStatus at 100/s), the 2 ms margin alone would leave
# 0.83 of the rate; capped at 3% it leaves 0.97, and the closest arrivals stay 1.05
# intervals apart (the write is dated as late as it can have been: docs/benchmarks.md).
MARGIN_MOST_SHARE = 0.03

# The eSMS endpoints an account asks (the sources of esms_callbacks.events.publish).
CALLBACK, QUERY, DELIVERY, LEDGER = "callback", "query", "delivery", "ledger"
# ESMS_QUERY_STATUS: when QueryZnsStatus is asked.
QUERY_FALLBACK, QUERY_ONLY, QUERY_OFF = "fallback", "only", "off"
# ESMS_RECONCILE: what the sweep of eSMS's ledger (GetSmsSentData_V2) does.
RECONCILE_OFF, RECONCILE_REPORT, RECONCILE_ADOPT = "off", "report", "adopt"

# How a problem names a term: by its variable (the environment) or its key (a file's table).
Label = Callable[[Variable], str]


def by_variable(variable: Variable) -> str:
    return variable.name


def by_file_key(variable: Variable) -> str:
    return f"{variable.file_key} ({variable.name})"


def _window(value: str, read: Mapping[str, Any]) -> Window:
    return Window.parse(value, read.get("timezone") or ZoneInfo(DEFAULT_ZONE))


def show_window(window: Window) -> str:
    if window.always:
        return "always"
    return f"{window.opens:%H:%M:%S}-{window.closes:%H:%M:%S}"


@dataclass(frozen=True)
class EndpointTerms:
    """What one eSMS endpoint allows an account: its own interval, margin and window (each
    endpoint its own budget, limiter and breaker: engine.limiter, engine.health)."""

    endpoint: str  # CALLBACK, QUERY or DELIVERY
    rate_interval_s: float
    rate_margin_s: float
    window: Window

    @property
    def spacing_s(self) -> float:
        """Seconds the limiter keeps between two requests of the account to this endpoint."""
        return self.rate_interval_s + self.rate_margin_s


@dataclass(frozen=True)
class Terms:
    """One account's terms (every account's by default: the ESMS_* variables)."""

    base_url: str = env(
        "ESMS_BASE_URL",
        DEFAULT_BASE_URL,
        lambda v, _: http_url(v),
        "eSMS host. Every request carries the ApiKey and SecretKey, so plain `http://` is refused "
        "at start unless the host is this machine (`localhost`, `127.0.0.0/8`, `::1`, as the "
        "bundled simulator is) or `ESMS_ALLOW_PLAIN_HTTP=1`",
        file_key="base_url",
    )
    rate_interval_s: float = env(
        "ESMS_RATE_INTERVAL",
        "1.0",
        number(0.001),
        "seconds between two requests of one account, as eSMS receives them",
        file_key="rate_interval",
    )
    # Extra spacing on top of rate_interval_s so that jitter between our commit and eSMS's
    # receipt cannot bring two requests closer than rate_interval_s where eSMS sees them; each
    # Code 160 widens it further for a while (engine.limiter).
    rate_margin_s: float = env(
        "ESMS_RATE_MARGIN",
        str(DEFAULT_RATE_MARGIN_S),
        number(0.0),
        "seconds added to the interval to absorb jitter between our commit and eSMS's receipt; "
        "each Code 160 widens it further for a while (see "
        "[Limits](operations.md#limits-and-capacity))",
        file_key="rate_margin",
    )
    max_refs_per_request: int = env(
        "ESMS_MAX_REFS",
        "100",
        integer(1, ESMS_MAX_REFS_CEILING),
        "RefIds per request, 1 to 200 (eSMS silently drops RefIds past its limit)",
        file_key="max_refs",
    )
    timezone: ZoneInfo = env(  # noqa: RUF009 (ZoneInfo is immutable and cached)
        "ESMS_TIMEZONE",
        DEFAULT_ZONE,
        lambda v, _: zone(v),
        "IANA zone of the window (and of beat's schedule)",
        read_by=APP,
        file_key="timezone",
    )
    window: Window = env(  # noqa: RUF009 (a field with a default_factory, as env() builds it)
        "ESMS_WINDOW",
        "01:00-02:00",
        _window,
        "`HH:MM[:SS]-HH:MM[:SS]` in `ESMS_TIMEZONE`, may cross midnight; `always` for none",
        show=show_window,
        file_key="window",
    )

    rest_base_url: str = env(
        "ESMS_REST_BASE_URL",
        DEFAULT_REST_BASE_URL,
        lambda v, _: http_url(v),
        "where eSMS's `MainService.svc/json/...` endpoints live (QueryZnsStatus, "
        "GetZaloMessageStatus); plain `http://` as for `ESMS_BASE_URL`",
        file_key="rest_base_url",
    )
    query_status: str = env(
        "ESMS_QUERY_STATUS",
        QUERY_FALLBACK,
        choice(QUERY_FALLBACK, QUERY_ONLY, QUERY_OFF),
        "when QueryZnsStatus is asked: `fallback`, for a RefId GetCallback does not know (a "
        "message sent without a CallbackUrl); `only`, instead of GetCallback (an account that "
        "sends without one); `off`, never ([Status sources](sources.md))",
        file_key="query_status",
    )
    query_rate_interval_s: float = env(
        "ESMS_QUERY_RATE_INTERVAL",
        "0.01",
        number(0.001),
        "seconds between two QueryZnsStatus requests of one account (eSMS: 100 a second)",
        file_key="query_rate_interval",
    )
    query_window: Window = env(  # noqa: RUF009 (a field with a default_factory)
        "ESMS_QUERY_WINDOW",
        "always",
        _window,
        "when QueryZnsStatus may be asked, as `ESMS_WINDOW` (eSMS documents no window for it)",
        show=show_window,
        file_key="query_window",
    )
    track_delivery: bool = env(
        "ESMS_TRACK_DELIVERY",
        "off",
        lambda v, _: choice("on", "off")(v, _) == "on",
        "`on`: a sent message is asked with GetZaloMessageStatus until Zalo says it reached the "
        "phone; `sent` is then not terminal and a RefId ends `delivered`, `failed` or `expired` "
        "(events of version 2). `off`: `sent` is terminal, as before",
        show=lambda on: "on" if on else "off",
        file_key="track_delivery",
    )
    delivery_rate_interval_s: float = env(
        "ESMS_DELIVERY_RATE_INTERVAL",
        "0.034",
        number(0.001),
        "seconds between two GetZaloMessageStatus requests of one account (eSMS: 30 a second)",
        file_key="delivery_rate_interval",
    )
    delivery_window: Window = env(  # noqa: RUF009 (a field with a default_factory)
        "ESMS_DELIVERY_WINDOW",
        "always",
        _window,
        "when GetZaloMessageStatus may be asked, as `ESMS_WINDOW` (eSMS documents none)",
        show=show_window,
        file_key="delivery_window",
    )

    reconcile: str = env(
        "ESMS_RECONCILE",
        RECONCILE_OFF,
        choice(RECONCILE_OFF, RECONCILE_REPORT, RECONCILE_ADOPT),
        "what the sweep of eSMS's ledger (GetSmsSentData_V2) does: `off`; `report`: which sent "
        "messages were never submitted, and which submitted ones eSMS has no data for, as "
        "metrics, a log line a sweep and `esms-callbacks reconcile`; `adopt`: also track the "
        "ones never submitted to a terminal event ([Reconcile](reconcile.md))",
        file_key="reconcile",
    )
    ledger_rate_interval_s: float = env(
        "ESMS_LEDGER_RATE_INTERVAL",
        "1.0",
        number(0.001),
        "seconds between two GetSmsSentData_V2 requests of one account (eSMS documents no rate)",
        file_key="ledger_rate_interval",
    )
    ledger_window: Window = env(  # noqa: RUF009 (a field with a default_factory)
        "ESMS_LEDGER_WINDOW",
        "always",
        _window,
        "when GetSmsSentData_V2 may be asked, as `ESMS_WINDOW`",
        show=show_window,
        file_key="ledger_window",
    )

    def __post_init__(self) -> None:
        # One zone: the window's (the declaration of `timezone` is how it is read and shown).
        if self.window.zone is not self.timezone:
            object.__setattr__(self, "timezone", self.window.zone)
        for name in ("query_window", "delivery_window", "ledger_window"):  # in the same zone
            window = getattr(self, name)
            if window.zone is not self.timezone:
                object.__setattr__(self, name, replace(window, zone=self.timezone))

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in self.describe().items())
        return f"Terms({shown})"

    @classmethod
    def from_env(cls, env: Mapping[str, str], reads: tuple[str, ...]) -> Terms:
        """The terms the variables `reads` names give in `env` (the others' defaults);
        ConfigError naming the first malformed one."""
        read: dict[str, Any] = {}
        for name, variable in declared(cls):
            read[name] = read_variable(env if variable.read_by in reads else {}, variable, read)
        return cls(**read)

    def with_table(self, table: Mapping[str, Any], where: str) -> Terms:
        """These terms with a file table's own in their place, each parsed as its variable
        is; ConfigError naming `where` and the key."""
        read: dict[str, Any] = {}
        for name, variable in declared(Terms):
            if variable.file_key not in table:
                read[name] = getattr(self, name)
                if isinstance(read[name], Window) and "timezone" in table:  # its own zone
                    read[name] = _window(variable.show(self.window), read)
                continue
            given = table[variable.file_key]
            if isinstance(given, bool):  # TOML's true/false, as a flag's on/off
                given = "on" if given else "off"
            if not isinstance(given, str | int | float):
                raise ConfigError(f"{where}: {by_file_key(variable)} must be a string or a number")
            try:
                read[name] = parse_given(variable, str(given), read, by_file_key(variable))
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        return replace(self, **read)

    @property
    def spacing_s(self) -> float:
        """Seconds the limiter keeps between two GetCallback requests of the account."""
        return self.rate_interval_s + self.rate_margin_s

    def endpoint(self, name: str) -> EndpointTerms:
        """The terms of one endpoint: its interval, its window, and the margin, at most
        MARGIN_MOST_SHARE of its interval (GetCallback's is the margin as set)."""
        interval_s, window = {
            CALLBACK: (self.rate_interval_s, self.window),
            QUERY: (self.query_rate_interval_s, self.query_window),
            DELIVERY: (self.delivery_rate_interval_s, self.delivery_window),
            LEDGER: (self.ledger_rate_interval_s, self.ledger_window),
        }[name]
        margin_s = self.rate_margin_s
        if name != CALLBACK:
            margin_s = min(margin_s, interval_s * MARGIN_MOST_SHARE)
        return EndpointTerms(name, interval_s, margin_s, window)

    @property
    def drain_window(self) -> Window:
        """When this account's RefIds are asked: GetCallback's window, or QueryZnsStatus's for
        an account that asks only it."""
        return self.query_window if self.query_status == QUERY_ONLY else self.window

    def window_capacity_refs(self, sendable_s: float) -> int:
        """RefIds that `sendable_s` seconds in which requests may go out (the window within its
        guards: engine.capacity) can carry at these terms: GetCallback's full requests, or one
        message a QueryZnsStatus request for an account that asks only it."""
        if self.query_status == QUERY_ONLY:
            return math.floor(max(0.0, sendable_s) / self.endpoint(QUERY).spacing_s)
        return math.floor(max(0.0, sendable_s) / self.spacing_s) * self.max_refs_per_request

    def problem(self, allow_plain_http: bool, window_guard_s: float, label: Label) -> str:
        """Why an account on these terms could not be served, or ''; terms named by `label`."""
        return _plain_http_problem(self, allow_plain_http, label) or _guard_problem(
            self, window_guard_s, label
        )

    def describe(self) -> dict[str, str]:
        """The terms as their variables show them (credentials are not terms; a URL's password
        is hidden)."""
        return {
            name: redact_url(shown) if name in _URLS else shown
            for name, variable in declared(Terms)
            for shown in [variable.show(getattr(self, name))]
        }


_URLS = ("base_url", "rest_base_url")


def term_variables() -> list[Variable]:
    return [variable for _, variable in declared(Terms)]


def _variable(name: str) -> Variable:
    return next(variable for field_name, variable in declared(Terms) if field_name == name)


def _plain_http_problem(terms: Terms, allow_plain_http: bool, label: Label) -> str:
    """The ApiKey and SecretKey are in every request's body: unencrypted only to this host."""
    for name in _URLS:
        url = getattr(terms, name)
        if url.startswith("http://") and not allow_plain_http and not is_local(url):
            break
    else:
        return ""
    https = urlunsplit(urlsplit(url)._replace(scheme="https"))
    return (
        f"{label(_variable(name))}={redact_url(url)!r} would send the eSMS keys "
        f"unencrypted: use {redact_url(https)} (eSMS's own is {DEFAULT_BASE_URL}), or set "
        "ESMS_ALLOW_PLAIN_HTTP=1 to allow plain HTTP anyway"
    )


def _guard_problem(terms: Terms, window_guard_s: float, label: Label) -> str:
    """The guard is kept clear at both ends of the window: half the window or more leaves no
    moment at which a request may go."""
    window = terms.window
    if window.always:
        return ""
    length_s = window_length_s(window)
    if 2 * window_guard_s < length_s:
        return ""
    return (
        f"ESMS_WINDOW_GUARD={window_guard_s:g} is kept clear at both ends of the window "
        f"{label(_variable('window'))}={show_window(window)}, so no request could ever go: "
        f"half of it is {length_s / 2:g} s; use a guard under that (default 1.0) or a longer "
        "window"
    )


def window_length_s(window: Window) -> float:
    """Seconds from the window's opening to its closing on a day without a clock change."""
    assert window.opens is not None and window.closes is not None
    opens, closes = (
        t.hour * 3600 + t.minute * 60 + t.second for t in (window.opens, window.closes)
    )
    return float((closes - opens) % 86400)


def redact_url(url: str) -> str:
    """Hide the password of a URL such as redis://:password@host:6379/0 (each of
    Sentinel's `;`-separated ones)."""
    if ";" in url:
        return ";".join(redact_url(part) for part in url.split(";"))
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
