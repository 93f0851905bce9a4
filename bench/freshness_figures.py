"""The figures of `bench.freshness_bench`, from what the status queue delivered and what the
simulator logged: how late each terminal event came after eSMS had the final status, and how
much of an endpoint's rate was used while RefIds waited for it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Lag:
    """Seconds from "final at eSMS" to the terminal event on the queue, over the RefIds."""

    count: int
    p50_s: float
    p90_s: float
    p99_s: float
    max_s: float


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (`share` 0.5 is the median) of sorted `values`."""
    rank = max(1, math.ceil(share * len(values)))
    return values[rank - 1]


def lag_figures(final_at_s: Mapping[str, float], terminal_at_s: Mapping[str, float]) -> Lag | None:
    """The lag of every RefId that has both a final moment and a terminal event (time.time())."""
    lags = sorted(
        terminal_at_s[ref] - final_at_s[ref] for ref in terminal_at_s if ref in final_at_s
    )
    if not lags:
        return None
    return Lag(
        len(lags), percentile(lags, 0.5), percentile(lags, 0.9), percentile(lags, 0.99), lags[-1]
    )


@dataclass(frozen=True)
class EndpointUse:
    """One endpoint's requests as the simulator received them."""

    endpoint: str
    requests: int
    waited_s: float  # first request to the first ask of the last RefId asked
    rate_used: float | None  # requests in that span x interval / span
    min_gap_s: float | None  # between two arrivals, over the whole run
    early: int  # gaps under the interval at arrival
    refused: int  # code 160 answers


def endpoint_use(
    log: Iterable[Mapping[str, Any]], endpoint: str, interval_s: float, key: str
) -> EndpointUse:
    """`endpoint`'s use in the simulator's request `log` (its entries' `key` names the message
    asked: "sms_id" or "message_id"). RefIds wait until the last one is first asked: from the
    first request to that one, the endpoint always had a RefId to ask, so its requests over
    that span are what the rate allowed it."""
    entries = sorted(
        (r for r in log if r.get("endpoint") == endpoint and r.get("api_key_ok", True)),
        key=lambda r: r["received_monotonic_s"],
    )
    times = [r["received_monotonic_s"] for r in entries]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    refused = sum(1 for r in entries if str(r.get("code")) == "160")
    if not entries:
        return EndpointUse(endpoint, 0, 0.0, None, None, 0, 0)
    first_asked: dict[str, float] = {}
    for r in entries:
        first_asked.setdefault(str(r.get(key)), r["received_monotonic_s"])
    last_new_s = max(first_asked.values())
    span_s = last_new_s - times[0]
    in_span = sum(1 for t in times if t <= last_new_s)
    rate = (in_span - 1) * interval_s / span_s if span_s > 0 else None
    early = sum(1 for gap in gaps if gap < interval_s)
    return EndpointUse(
        endpoint, len(entries), span_s, rate, min(gaps) if gaps else None, early, refused
    )
