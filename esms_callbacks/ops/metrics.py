"""Prometheus metrics of an account, through prometheus_client: a collector over the state
snapshot (ops/status.py), read from Redis at each scrape, so any process can serve them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# name, help, key in the state snapshot
GAUGES = [
    ("esms_waiting_refs", "RefIds waiting or in a request", "waiting_refs"),
    ("esms_window_open", "1 while the eSMS window is open", "window_open"),
    (
        "esms_window_capacity_refs",
        "RefIds the coming window can carry",
        "coming_window_capacity_refs",
    ),
    ("esms_backlog_fits", "1 if the backlog fits in the coming window", "backlog_fits"),
    ("esms_account_paused", "1 while eSMS refuses the account (auth, balance)", "paused"),
    (
        "esms_failures_in_a_row",
        "transient eSMS failures since the last success",
        "failures_in_a_row",
    ),
    (
        "esms_backing_off_seconds",
        "seconds the breaker still holds requests back",
        "backing_off_for_s",
    ),
    (
        "esms_rate_margin_extra_seconds",
        "margin added after Code 160s (fades)",
        "rate_margin_extra_s",
    ),
    ("esms_drainers", "worker processes sending requests now", "drainers"),
    ("esms_drainers_wanted", "drainers the interval and request time call for", "drainers_wanted"),
    ("esms_request_seconds", "recent requests' time from slot to settled", "request_time_s"),
    ("esms_requests_last_minute", "requests sent in the last 60 s", "requests_last_minute"),
    ("esms_rate_used", "requests in the last 60 s / the allowed number", "rate_used"),
    ("esms_push_inbox_waiting", "pushes recorded, not yet applied", "push_inbox_waiting"),
    (
        "esms_reconcile_never_submitted",
        "RefIds eSMS's ledger lists that were never submitted (ESMS_RECONCILE_LOOKBACK)",
        "reconcile_never_submitted",
    ),
    (
        "esms_reconcile_no_data_at_esms",
        "RefIds submitted over ESMS_RECONCILE_GRACE ago that eSMS has no data for",
        "reconcile_no_data_at_esms",
    ),
    (
        "esms_reconcile_swept_seconds_ago",
        "seconds since the last sweep of eSMS's ledger ended",
        "reconcile_swept_seconds_ago",
    ),
]
PER_OA = [
    ("waiting", "RefIds waiting, by OA"),
    ("due_now", "RefIds due now, by OA"),
    ("leased", "RefIds in a request now, by OA"),
]
COUNTERS = {  # counter name in Redis -> metric (exposed with _total)
    "requests": ("esms_requests", "GetCallback requests sent"),
    "refs_asked": ("esms_refs_asked", "RefIds asked in requests"),
    "not_durable": (
        "esms_not_durable",
        "writes no replica confirmed in time (ESMS_REDIS_REPLICAS): retried, never acted on",
    ),
    "reconcile:rows": ("esms_reconcile_rows", "rows of eSMS's ledger read"),
    "reconcile:adopted": ("esms_reconcile_adopted", "RefIds never submitted taken in (adopt)"),
    "reconcile:settled": ("esms_reconcile_settled", "waiting RefIds the ledger settled"),
}
LABELLED_COUNTERS = [  # prefix in Redis, metric, label, help
    ("events:", "esms_events", "status", "status events published, by status"),
    ("errors:", "esms_errors", "code", "failed requests, by eSMS code or error kind"),
    ("pushes:", "esms_pushes", "result", "pushes received, by the receiver's answer"),
    (
        "pushes_applied:",
        "esms_pushes_applied",
        "outcome",
        "recorded pushes applied: published, duplicate (already terminal), ignored",
    ),
]
# QueryZnsStatus's and GetZaloMessageStatus's requests and failures, by endpoint (and code):
# `endpoint_requests:ENDPOINT`, `endpoint_errors:ENDPOINT:CODE` in Redis (engine.message_asks).
ENDPOINT_REQUESTS = ("esms_endpoint_requests", "requests sent, by endpoint (query, delivery)")
ENDPOINT_ERRORS = ("esms_endpoint_errors", "failed requests, by endpoint and eSMS code or kind")
STATUS_QUEUE = [  # name, help, key in the snapshot's status_queue
    (
        "esms_status_queue_events",
        "events waiting in the default status queue (NaN when it is off)",
        "events",
    ),
    (
        "esms_status_queue_consumers",
        "consumers of the default status queue (RabbitMQ; NaN where the broker cannot tell)",
        "consumers",
    ),
]
FLAGS = ("window_open", "backlog_fits", "paused")  # shown as 0 or 1


class AccountCollector(Collector):
    """Every series of every account's snapshot, each labelled with its account (the name its
    Redis keys have; never a credential)."""

    def __init__(self, snapshots: Callable[[], list[dict[str, Any]]]) -> None:
        self._snapshots = snapshots

    def collect(self) -> Iterator[Metric]:
        states = self._snapshots()
        for name, help_text, key in GAUGES:
            gauge = GaugeMetricFamily(name, help_text, labels=["account"])
            for state in states:
                value = state.get(key)
                number = float(bool(value)) if key in FLAGS else value
                gauge.add_metric(
                    [str(state["account"])], float("nan") if number is None else float(number)
                )
            yield gauge
        for key, help_text in PER_OA:
            gauge = GaugeMetricFamily(f"esms_oa_{key}_refs", help_text, labels=["account", "oa_id"])
            for state in states:
                for oa in state["per_oa"]:
                    gauge.add_metric([str(state["account"]), str(oa["oa_id"])], float(oa[key]))
            yield gauge
        yield from _status_queue_gauges(states[:1])  # the deployment's, with the first account
        for key, (name, help_text) in COUNTERS.items():
            counter = CounterMetricFamily(name, help_text, labels=["account"])
            for state in states:
                counter.add_metric([str(state["account"])], float(state["counters"].get(key, 0)))
            yield counter
        yield from _endpoint_counters(states)
        for prefix, name, label, help_text in LABELLED_COUNTERS:
            counter = CounterMetricFamily(name, help_text, labels=["account", label])
            for state in states:
                for key, value in sorted(state["counters"].items()):
                    if key.startswith(prefix):
                        counter.add_metric(
                            [str(state["account"]), key[len(prefix) :]], float(value)
                        )
            yield counter


def _status_queue_gauges(states: list[dict[str, Any]]) -> Iterator[Metric]:
    for name, help_text, key in STATUS_QUEUE:
        gauge = GaugeMetricFamily(name, help_text, labels=["account", "queue"])
        for state in states:
            queue = state.get("status_queue") or {}
            value = queue.get(key)
            gauge.add_metric(
                [str(state["account"]), str(queue.get("name", ""))],
                float("nan") if value is None else float(value),
            )
        yield gauge


def _endpoint_counters(states: list[dict[str, Any]]) -> Iterator[Metric]:
    requests = CounterMetricFamily(*ENDPOINT_REQUESTS, labels=["account", "endpoint"])
    errors = CounterMetricFamily(*ENDPOINT_ERRORS, labels=["account", "endpoint", "code"])
    for state in states:
        account = str(state["account"])
        for key, value in sorted(state["counters"].items()):
            kind, _, rest = key.partition(":")
            if kind == "endpoint_requests":
                requests.add_metric([account, rest], float(value))
            elif kind == "endpoint_errors":
                endpoint, _, code = rest.partition(":")
                errors.add_metric([account, endpoint, code], float(value))
    yield requests
    yield errors
