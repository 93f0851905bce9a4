"""Figures of `bench.accounts_bench`, from the multi-account simulator's request log.

The measured period starts at the first request of any account (the kernel's receipt, on the
simulator's monotonic clock) and lasts `seconds`. Per account:

    requests         its requests received in the period (failed and refused ones included)
    rate used        requests x its interval / the period
    share            its requests / the mean requests per account (all accounts); the
                     slowest account's share is the minimum. "Within its terms": the same
                     against the mean of the accounts on the same terms (a 0.2 s account
                     cannot send as many requests as a 0.05 s one)
    slowest / median the fewest requests of an account over the median of the accounts on
                     its terms
    turns            its requests in the period split where two are more than `turn_gap_s`
                     apart: the turns it got (a turn cut by the period's ends counts)
    min gap          the closest two of its requests over the whole run, over its interval
"""

from __future__ import annotations

import itertools
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.measure import Terms

Request = dict[str, Any]  # one entry of /_sim/requests


@dataclass(frozen=True)
class PeriodFigures:
    accounts: int
    period_s: float
    requests: int  # in the period, every account
    refs_answered: int  # in the period
    rate_used_min: float
    rate_used_median: float
    rate_used_min_by_terms: dict[str, float]  # terms label -> lowest rate used on those terms
    slowest_share: float
    slowest_share_within_terms: float
    slowest_vs_median_within_terms: float
    turns_min: int
    turns_median: float
    idle_accounts: int  # accounts without a request in the period
    refused: int  # Code 160 over the whole run
    failed: int  # neither 100 nor 160, whole run
    min_gap_ratio: float | None  # over every account, whole run

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.period_s

    @property
    def refs_per_s(self) -> float:
        return self.refs_answered / self.period_s


def first_request_s(log: Sequence[Request]) -> float | None:
    """The monotonic receipt of the first request that matched an account."""
    times = [r["received_monotonic_s"] for r in log if r["api_key_ok"]]
    return min(times) if times else None


def period_figures(
    log: Sequence[Request],
    terms_of: Mapping[str, Terms],
    label_of: Mapping[str, str],
    period_s: float,
    turn_gap_s: float,
) -> PeriodFigures:
    """The figures over `period_s` from the first request, every account of `terms_of`
    counted (those without a request too)."""
    start_s = first_request_s(log) or 0.0
    end_s = start_s + period_s
    by_account: defaultdict[str, list[Request]] = defaultdict(list)
    for request in log:
        if request["api_key_ok"]:
            by_account[request["account"]].append(request)
    counts: dict[str, int] = {}
    turns: dict[str, int] = {}
    answered = 0
    min_gaps: list[float] = []
    for name, terms in terms_of.items():
        own = sorted(by_account.get(name, []), key=lambda r: r["received_monotonic_s"])
        inside = [r for r in own if start_s <= r["received_monotonic_s"] < end_s]
        counts[name] = len(inside)
        turns[name] = turns_in(inside, turn_gap_s)
        answered += sum(r["ref_count_answered"] for r in inside if r["code"] == 100)
        times = [r["received_monotonic_s"] for r in own]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        if gaps:
            min_gaps.append(min(gaps) / terms.interval_s)
    rates = {name: counts[name] * terms_of[name].interval_s / period_s for name in terms_of}
    mean = statistics.mean(counts.values()) if counts else 0.0
    group_means = {
        label: statistics.mean(counts[n] for n in terms_of if label_of[n] == label)
        for label in set(label_of.values())
    }
    group_medians = {
        label: statistics.median(counts[n] for n in terms_of if label_of[n] == label)
        for label in set(label_of.values())
    }
    by_terms: dict[str, float] = {}
    for name, rate in rates.items():
        label = label_of[name]
        by_terms[label] = min(rate, by_terms.get(label, rate))
    every = [r for rs in by_account.values() for r in rs]
    return PeriodFigures(
        accounts=len(terms_of),
        period_s=period_s,
        requests=sum(counts.values()),
        refs_answered=answered,
        rate_used_min=min(rates.values()),
        rate_used_median=statistics.median(rates.values()),
        rate_used_min_by_terms=by_terms,
        slowest_share=min(counts.values()) / mean if mean else 0.0,
        slowest_share_within_terms=min(
            (counts[n] / group_means[label_of[n]] if group_means[label_of[n]] else 0.0)
            for n in terms_of
        ),
        slowest_vs_median_within_terms=min(
            (counts[n] / group_medians[label_of[n]] if group_medians[label_of[n]] else 0.0)
            for n in terms_of
        ),
        turns_min=min(turns.values()),
        turns_median=statistics.median(turns.values()),
        idle_accounts=sum(1 for count in counts.values() if count == 0),
        refused=sum(1 for r in every if r["code"] == 160),
        failed=sum(1 for r in every if r["code"] not in (100, 160)),
        min_gap_ratio=min(min_gaps) if min_gaps else None,
    )


def turns_in(requests: Sequence[Request], gap_s: float) -> int:
    """How many runs of requests, split where two (in time order) are over `gap_s` apart."""
    times = [r["received_monotonic_s"] for r in requests]
    if not times:
        return 0
    return 1 + sum(1 for a, b in itertools.pairwise(times) if b - a > gap_s)


def first_requests_s(log: Sequence[Request], names: Sequence[str]) -> dict[str, float | None]:
    """Each account's first request, in seconds after the first of any account (None: it
    had none in the whole run)."""
    start_s = first_request_s(log) or 0.0
    first: dict[str, float] = {}
    for request in log:
        if request["api_key_ok"]:
            name, at_s = request["account"], request["received_monotonic_s"] - start_s
            first[name] = min(at_s, first.get(name, at_s))
    return {name: first.get(name) for name in names}


def ran_dry(log: Sequence[Request], backlogs: Mapping[str, int]) -> int:
    """Accounts whose every RefId was answered by the end of the run: their backlog, not the
    drain, bounded what they sent."""
    answered: defaultdict[str, int] = defaultdict(int)
    for request in log:
        if request["api_key_ok"] and request["code"] == 100:
            answered[request["account"]] += request["ref_count_answered"]
    return sum(1 for name, refs in backlogs.items() if answered[name] >= refs)


class TurnWatch:
    """Each account's turns so far, from the request log read as it grows (`add` the entries
    past `seen`): a request more than `gap_s` after the account's previous one begins a turn."""

    def __init__(self, names: Sequence[str], gap_s: float) -> None:
        self.gap_s = gap_s
        self.seen = 0
        self.turns = dict.fromkeys(names, 0)
        self._last_s: dict[str, float] = {}

    def add(self, requests: Sequence[Request]) -> None:
        self.seen += len(requests)
        for request in requests:
            name, at_s = request["account"], request["received_monotonic_s"]
            if not request["api_key_ok"] or name not in self.turns:
                continue
            last_s = self._last_s.get(name)
            if last_s is None or at_s - last_s > self.gap_s:
                self.turns[name] += 1
            self._last_s[name] = max(at_s, last_s or at_s)

    def fewest(self) -> int:
        return min(self.turns.values(), default=0)
