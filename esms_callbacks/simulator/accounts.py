"""The eSMS accounts one simulator serves: each with its own keys, terms and rate clocks.

eSMS limits each account on its own: a request is that account's when both its ApiKey and
SecretKey match, and is answered 160 when it comes closer than that account's interval to that
account's previous request to the same endpoint. Each endpoint (GetCallback, QueryZnsStatus,
GetZaloMessageStatus, GetSmsSentData_V2) has its own budget in eSMS's docs (or none documented),
so each has its own clock and interval.
Accounts are found by ApiKey in a dict, so serving 1,000 costs what serving one does; the keys
are then compared in constant time.
"""

from __future__ import annotations

import hmac
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from esms_callbacks.simulator.state import LoggedRequest

DEFAULT_ACCOUNT = "default"  # the one account of a simulator built from api_key, secret_key
NO_ACCOUNT = ""  # the account logged for a request whose keys match none

# The endpoints a request can hit, each with its own rate clock per account.
Endpoint = Literal["callback", "query", "delivery", "ledger"]
# eSMS's documented budgets: QueryZnsStatus 100 requests/s, GetZaloMessageStatus 30 requests/s.
QUERY_RATE_INTERVAL_S = 0.01
DELIVERY_RATE_INTERVAL_S = 0.034
# GetSmsSentData_V2 has none documented; a page of 500 rows a second is the simulator's guess.
LEDGER_RATE_INTERVAL_S = 1.0
# Each endpoint's interval, by the name SimAccount, configure and /_sim/config give it.
_INTERVAL_NAMES: dict[Endpoint, str] = {
    "callback": "rate_interval_s",
    "query": "query_rate_interval_s",
    "delivery": "delivery_rate_interval_s",
    "ledger": "ledger_rate_interval_s",
}


@dataclass(frozen=True)
class SimAccount:
    """One simulated eSMS account. Its repr never shows the keys."""

    name: str
    api_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    rate_interval_s: float = 1.0  # at most one request per this many seconds; 0 disables
    max_refs: int = 100  # RefIds answered per request; eSMS silently ignores the rest
    query_rate_interval_s: float = QUERY_RATE_INTERVAL_S  # QueryZnsStatus's; 0 disables
    delivery_rate_interval_s: float = DELIVERY_RATE_INTERVAL_S  # GetZaloMessageStatus's
    ledger_rate_interval_s: float = LEDGER_RATE_INTERVAL_S  # GetSmsSentData_V2's

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"an account's name must be a non-empty string, not {self.name!r}")
        for key in ("api_key", "secret_key"):
            if not isinstance(getattr(self, key), str):
                raise ValueError(f"account {self.name!r}: {key} must be a string")
        check_terms(self.rate_interval_s, self.max_refs)
        check_interval("query_rate_interval_s", self.query_rate_interval_s)
        check_interval("delivery_rate_interval_s", self.delivery_rate_interval_s)
        check_interval("ledger_rate_interval_s", self.ledger_rate_interval_s)
        for name in _INTERVAL_NAMES.values():
            object.__setattr__(self, name, float(getattr(self, name)))

    def interval_s(self, endpoint: Endpoint) -> float:
        """The least gap between two of this account's requests to `endpoint`."""
        interval_s: float = getattr(self, _INTERVAL_NAMES[endpoint])
        return interval_s

    def terms(self) -> dict[str, object]:
        """The account's name and limits, never its keys."""
        return {
            "name": self.name,
            "rate_interval_s": self.rate_interval_s,
            "max_refs": self.max_refs,
        }


def check_terms(rate_interval_s: object, max_refs: object) -> None:
    """Raise ValueError on a bad limit (None: not given, fine)."""
    check_interval("rate_interval_s", rate_interval_s)
    if max_refs is not None and (
        isinstance(max_refs, bool) or not isinstance(max_refs, int) or max_refs < 1
    ):
        raise ValueError("max_refs must be an integer >= 1")


def check_interval(name: str, value: object) -> None:
    """Raise ValueError unless `value` is None (not given) or a number of seconds >= 0."""
    if value is not None and (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not value >= 0  # NaN fails too
    ):
        raise ValueError(f"{name} must be a number of seconds >= 0 (0 disables)")


class AccountTable:
    """The accounts, found by name or by their keys, and each one's rate clock.

    Not locked: the Simulator's lock guards it."""

    def __init__(self, accounts: Sequence[SimAccount]) -> None:
        if not accounts:
            raise ValueError("a simulator needs at least one account")
        self._by_name: dict[str, SimAccount] = {}
        self._name_by_api_key: dict[str, str] = {}
        for account in accounts:
            if account.name in self._by_name:
                raise ValueError(f"two accounts are named {account.name!r}")
            if account.api_key in self._name_by_api_key:
                other = self._name_by_api_key[account.api_key]
                raise ValueError(f"accounts {other!r} and {account.name!r} share an api_key")
            self._by_name[account.name] = account
            self._name_by_api_key[account.api_key] = account.name
        self.default_name = accounts[0].name
        self._last_request_monotonic_s: dict[tuple[Endpoint, str], float] = {}

    def __len__(self) -> int:
        return len(self._by_name)

    def all(self) -> list[SimAccount]:
        return list(self._by_name.values())

    def get(self, name: str | None = None) -> SimAccount:
        """The account named `name` (None: the default, the first given); ValueError if none."""
        found = self._by_name.get(self.default_name if name is None else name)
        if found is None:
            raise ValueError(f"no account named {name!r} (the simulator serves {len(self)})")
        return found

    def configure(
        self,
        name: str | None = None,
        *,
        rate_interval_s: float | None = None,
        max_refs: int | None = None,
        query_rate_interval_s: float | None = None,
        delivery_rate_interval_s: float | None = None,
        ledger_rate_interval_s: float | None = None,
    ) -> None:
        """Change one account's limits (None: unchanged); raise ValueError, changing nothing,
        on a bad value."""
        check_terms(rate_interval_s, max_refs)
        check_interval("query_rate_interval_s", query_rate_interval_s)
        check_interval("delivery_rate_interval_s", delivery_rate_interval_s)
        check_interval("ledger_rate_interval_s", ledger_rate_interval_s)
        account = self.get(name)
        given = {
            "rate_interval_s": rate_interval_s,
            "max_refs": max_refs,
            "query_rate_interval_s": query_rate_interval_s,
            "delivery_rate_interval_s": delivery_rate_interval_s,
            "ledger_rate_interval_s": ledger_rate_interval_s,
        }
        changes: dict[str, Any] = {key: value for key, value in given.items() if value is not None}
        self._by_name[account.name] = replace(account, **changes)

    def match(self, api_key: object, secret_key: object) -> SimAccount | None:
        """The account whose ApiKey and SecretKey both are these, or None."""
        if not isinstance(api_key, str) or not isinstance(secret_key, str):
            return None
        account = self._by_name.get(self._name_by_api_key.get(api_key, ""))
        if account is None:
            return None
        if _same(api_key, account.api_key) and _same(secret_key, account.secret_key):
            return account
        return None

    def too_soon(
        self, account: SimAccount, received_monotonic_s: float, endpoint: Endpoint = "callback"
    ) -> bool:
        """Whether a request of `account` to `endpoint` received then comes closer than the
        account's interval for that endpoint to its previous one; move that clock either way."""
        clock = (endpoint, account.name)
        last_s = self._last_request_monotonic_s.get(clock)
        interval_s = account.interval_s(endpoint)
        # abs(): two handlers may reach this point out of receipt order.
        gap_s = abs(received_monotonic_s - last_s) if last_s is not None else None
        too_soon = interval_s > 0 and gap_s is not None and gap_s < interval_s
        self._last_request_monotonic_s[clock] = max(received_monotonic_s, last_s or 0.0)
        return too_soon

    def reset_clocks(self) -> None:
        self._last_request_monotonic_s.clear()


def account_stats(
    log: Iterable[LoggedRequest], accounts: Sequence[SimAccount]
) -> dict[str, dict[str, object]]:
    """Summarise the GetCallback requests of the log per account, in the accounts' order (those
    without requests too): its terms, requests, RefIds sent and answered, records returned,
    first and last arrival (time.time()), the smallest gap between two of its requests, its
    160s and codes."""
    by_account: defaultdict[str, list[LoggedRequest]] = defaultdict(list)
    for entry in log:
        if entry.endpoint == "callback":
            by_account[entry.account].append(entry)
    return {account.name: _summary(account, by_account[account.name]) for account in accounts}


def endpoint_stats(
    log: Iterable[LoggedRequest], accounts: Sequence[SimAccount]
) -> dict[str, dict[str, dict[str, object]]]:
    """Summarise the QueryZnsStatus ("query"), GetZaloMessageStatus ("delivery") and
    GetSmsSentData_V2 ("ledger") requests of the log per account, in the accounts' order: each
    endpoint's interval, requests, smallest gap, 160s and codes."""
    by_clock: defaultdict[tuple[str, str], list[LoggedRequest]] = defaultdict(list)
    for entry in log:
        by_clock[(entry.endpoint, entry.account)].append(entry)
    return {
        account.name: {
            endpoint: endpoint_summary(
                by_clock[(endpoint, account.name)], account.interval_s(endpoint)
            )
            for endpoint in STATUS_ENDPOINTS
        }
        for account in accounts
    }


STATUS_ENDPOINTS: tuple[Endpoint, ...] = ("query", "delivery", "ledger")  # all but GetCallback


def endpoint_summary(
    entries: Sequence[LoggedRequest], rate_interval_s: float | None = None
) -> dict[str, object]:
    """Requests, the smallest gap between two, 160s and codes of some log entries."""
    ordered = sorted(entries, key=lambda r: r.received_monotonic_s)
    gaps = [b.received_monotonic_s - a.received_monotonic_s for a, b in pairwise(ordered)]
    codes = Counter(str(r.code) for r in ordered)
    summary: dict[str, object] = {}
    if rate_interval_s is not None:
        summary["rate_interval_s"] = rate_interval_s
    summary.update(
        requests=len(ordered),
        min_gap_s=min(gaps) if gaps else None,
        code_160=codes.get("160", 0),
        codes=dict(codes),
    )
    return summary


def _summary(account: SimAccount, entries: list[LoggedRequest]) -> dict[str, object]:
    entries.sort(key=lambda r: r.received_monotonic_s)
    gaps = [b.received_monotonic_s - a.received_monotonic_s for a, b in pairwise(entries)]
    codes = Counter(str(r.code) for r in entries)
    return {
        "rate_interval_s": account.rate_interval_s,
        "max_refs": account.max_refs,
        "requests": len(entries),
        "refs_sent": sum(r.ref_count_sent for r in entries),
        "refs_answered": sum(r.ref_count_answered for r in entries),
        "records_returned": sum(r.record_count for r in entries),
        "first_at_s": min((r.received_at_s for r in entries), default=None),
        "last_at_s": max((r.received_at_s for r in entries), default=None),
        "min_gap_s": min(gaps) if gaps else None,
        "code_160": codes.get("160", 0),
        "codes": dict(codes),
    }


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())
