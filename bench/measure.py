"""Figures computed from the simulator's request log (receipt times on its monotonic clock)
and from what the benchmark submitted.

The backlog span, over which the rate used is measured: walk the requests in order of receipt,
keeping per OA the RefIds submitted before the request arrived minus the RefIds answered
(Code 100) by the requests before it. A request belongs to the span if, when it arrived, some
OA still had at least one full request (`max_refs`) of RefIds that no earlier request had
answered. The span runs from the first request to the last such request, so the trailing
partial requests, sent when no full request was left, are excluded; failed and refused
requests answer nothing, so they extend the span (they used slots).

    rate used        = (requests in the span - 1) x interval / (last - first receipt)
    RefIds/s         = RefIds answered by the span's requests but the last / the same time
    RefIds/request   = mean RefIds sent per request / max_refs, each OA's last request
                       excluded (it may legitimately be short)
    min gap          = smallest gap between consecutive receipts (every request of the
                       account, failed and refused included), over the interval
"""

from __future__ import annotations

import bisect
import itertools
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Request = dict[str, Any]  # one entry of /_sim/requests


@dataclass(frozen=True)
class Submission:
    at_s: float  # time.time() once .delay() returned
    oa_id: str
    count: int


@dataclass(frozen=True)
class Terms:
    interval_s: float
    max_refs: int

    @property
    def refs_per_s(self) -> float:
        return self.max_refs / self.interval_s


@dataclass(frozen=True)
class LogFigures:
    requests: int
    span_requests: int
    span_s: float | None
    rate_used: float | None
    refs_per_request: float | None
    min_gap_ratio: float | None
    median_gap_ratio: float | None  # over the backlog span: what the drain keeps up, typically
    closer_than_interval: int
    refused: int  # Code 160
    failed: int  # neither Code 100 nor 160: faults, 99 (e.g. outside the window), ...
    outside_window: int  # Code 99: the answer outside the window (or to bad input)
    oversize: int  # requests carrying more than max_refs RefIds
    refs_answered: int
    refs_per_s: float | None


def account_requests(log: Sequence[Request]) -> list[Request]:
    """The requests that carried the account's credentials, in order of receipt."""
    return sorted((r for r in log if r["api_key_ok"]), key=lambda r: r["received_monotonic_s"])


def backlog_span(
    requests: Sequence[Request], submissions: Sequence[Submission], max_refs: int
) -> list[Request]:
    """The requests from the first to the last one sent while a full request waited."""
    waiting: dict[str, int] = defaultdict(int)
    pending = sorted(submissions, key=lambda s: s.at_s)
    taken, last = 0, -1
    for index, request in enumerate(requests):
        while taken < len(pending) and pending[taken].at_s <= request["received_at_s"]:
            waiting[pending[taken].oa_id] += pending[taken].count
            taken += 1
        if any(count >= max_refs for count in waiting.values()):
            last = index
        if request["code"] == 100 and request["oa_id"] is not None:
            waiting[request["oa_id"]] -= request["ref_count_answered"]
    return list(requests[: last + 1])


def gaps_s(requests: Sequence[Request]) -> list[float]:
    times = [r["received_monotonic_s"] for r in requests]
    return [b - a for a, b in itertools.pairwise(times)]


def handler_lag(log: Sequence[Request], interval_s: float) -> str:
    """How long after arrival (the kernel's receipt, the receipt time of every other figure)
    the simulator's handler ran, and how many gaps would have looked shorter than the interval
    had receipts been timed by the handler, as before simulator.arrival."""
    requests = account_requests(log)
    lags_s = sorted(r.get("handler_lag_s", 0.0) for r in requests)
    if not lags_s:
        return ""
    handler_s = sorted(r["received_monotonic_s"] + r.get("handler_lag_s", 0.0) for r in requests)
    short = sum(1 for a, b in itertools.pairwise(handler_s) if b - a < interval_s)
    return (
        f"simulator handler started after arrival: median {statistics.median(lags_s) * 1e3:.1f} "
        f"ms, max {lags_s[-1] * 1e3:.1f} ms; gaps < interval by handler start: {short}"
    )


def log_figures(
    log: Sequence[Request], submissions: Sequence[Submission], terms: Terms
) -> LogFigures:
    requests = account_requests(log)
    span = backlog_span(requests, submissions, terms.max_refs)
    span_s = (
        span[-1]["received_monotonic_s"] - span[0]["received_monotonic_s"]
        if len(span) > 1
        else None
    )
    gaps = gaps_s(requests)
    answered = [r for r in requests if r["code"] == 100]
    return LogFigures(
        requests=len(requests),
        span_requests=len(span),
        span_s=span_s,
        rate_used=(len(span) - 1) * terms.interval_s / span_s if span_s else None,
        refs_per_request=_mean_size(requests, terms.max_refs),
        min_gap_ratio=min(gaps) / terms.interval_s if gaps else None,
        median_gap_ratio=(
            statistics.median(gaps_s(span)) / terms.interval_s if len(span) > 1 else None
        ),
        closer_than_interval=sum(1 for gap in gaps if gap < terms.interval_s),
        refused=sum(1 for r in requests if r["code"] == 160),
        failed=sum(1 for r in requests if r["code"] not in (100, 160)),
        outside_window=sum(1 for r in requests if r["code"] == 99),
        oversize=sum(1 for r in requests if r["ref_count_sent"] > terms.max_refs),
        refs_answered=sum(r["ref_count_answered"] for r in answered),
        refs_per_s=(
            sum(r["ref_count_answered"] for r in span[:-1] if r["code"] == 100) / span_s
            if span_s
            else None
        ),
    )


def _mean_size(requests: Sequence[Request], max_refs: int) -> float | None:
    """Mean RefIds per request over max_refs, each OA's last request left out."""
    last_of_oa = {r["oa_id"]: i for i, r in enumerate(requests)}
    sizes = [
        r["ref_count_sent"]
        for i, r in enumerate(requests)
        if r["ref_count_sent"] > 0 and last_of_oa[r["oa_id"]] != i
    ]
    return sum(sizes) / len(sizes) / max_refs if sizes else None


def goodput(log: Sequence[Request], length_s: float, interval_s: float) -> float | None:
    """Code 100 requests per second over the first `length_s` after the first request, over
    the allowed rate."""
    requests = account_requests(log)
    if not requests:
        return None
    start = requests[0]["received_monotonic_s"]
    ok = sum(
        1 for r in requests if r["code"] == 100 and r["received_monotonic_s"] - start < length_s
    )
    return ok / (length_s / interval_s)


@dataclass(frozen=True)
class Probing:
    """How often requests went out while every one failed."""

    requests: int  # received while every request failed
    period_s: float
    per_minute: float
    largest_gaps_s: list[float]  # largest first, up to the first success after the failures


def probing(log: Sequence[Request], failures_end_at_s: float, tail: int = 5) -> Probing | None:
    """The requests received before `failures_end_at_s` (time.time()): how many a minute; and
    the largest gaps between requests up to the first Code 100 after it, so the gap that
    waited out the end of the failures counts too."""
    requests = account_requests(log)
    during = [r for r in requests if r["received_at_s"] < failures_end_at_s]
    if not during:
        return None
    period_s = failures_end_at_s - during[0]["received_at_s"]
    recovered = next(
        (
            i
            for i, r in enumerate(requests)
            if r["received_at_s"] >= failures_end_at_s and r["code"] == 100
        ),
        len(requests) - 1,
    )
    gaps = sorted(gaps_s(requests[: recovered + 1]), reverse=True)
    return Probing(len(during), period_s, len(during) / period_s * 60, gaps[:tail])


@dataclass(frozen=True)
class Delays:
    """Commit (the limiter's Redis time) to receipt (the simulator's wall clock), seconds."""

    count: int
    median_s: float
    p99_s: float
    max_s: float
    spread_s: float  # max - min: what the rate margin has to absorb


def _commit_before(commits: Sequence[float], at_s: float) -> int | None:
    """Index of the latest of the sorted `commits` at or before `at_s` (requests are a spacing
    apart, delays a few ms: the commit of the request received at `at_s`), if any."""
    index = bisect.bisect_right(commits, at_s) - 1
    return index if index >= 0 else None


def commit_to_receipt(committed_s: Sequence[float], log: list[Request]) -> Delays | None:
    """Pair each request the simulator received with the latest commit before it (requests
    are a spacing apart, delays a few ms) and measure the delays. Both clocks are this
    machine's wall clock (Redis TIME and time.time())."""
    commits = sorted(committed_s)
    delays = []
    for request in log:
        if not request["api_key_ok"]:
            continue
        at_s = request["received_at_s"]
        index = _commit_before(commits, at_s)
        if index is not None:
            delays.append(at_s - commits[index])
    if not delays:
        return None
    delays.sort()
    p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))]
    return Delays(len(delays), statistics.median(delays), p99, delays[-1], delays[-1] - delays[0])


def too_close(committed_s: Sequence[float], log: Sequence[Request], interval_s: float) -> list[str]:
    """For each two requests that reached the simulator closer than `interval_s`: how far
    apart the limiter committed them and how long each took from commit to receipt, which
    says whether the time was lost before the send or at the receiving end."""
    commits = sorted(committed_s)
    requests = account_requests(log)
    found = []
    for first, second in itertools.pairwise(requests):
        gap_s = second["received_monotonic_s"] - first["received_monotonic_s"]
        if gap_s >= interval_s:
            continue
        receipt_a, receipt_b = first["received_at_s"], second["received_at_s"]
        index_a, index_b = _commit_before(commits, receipt_a), _commit_before(commits, receipt_b)
        if index_a is None or index_b is None or index_a == index_b:
            # the first took longer than a spacing to arrive: no commit tells them apart
            found.append(f"receipts {gap_s * 1e3:.1f} ms apart (their commits not told apart)")
            continue
        commit_a, commit_b = commits[index_a], commits[index_b]
        found.append(
            f"receipts {gap_s * 1e3:.1f} ms apart, commits {(commit_b - commit_a) * 1e3:.1f} ms "
            f"apart, commit to receipt {(receipt_a - commit_a) * 1e3:.1f} then "
            f"{(receipt_b - commit_b) * 1e3:.1f} ms"
        )
    return found
