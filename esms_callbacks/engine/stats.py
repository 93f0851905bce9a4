"""The account's request and event counters and its log of recent requests, in Redis.

`stats` (hash): counters `requests`, `refs_asked`, `events:STATUS`, `errors:CODE`,
`pushes:RESULT` (the receiver's answers), `pushes_applied:OUTCOME`, `not_durable` (writes
no replica confirmed in time, engine.replicas); gauges `request_time_s`
(the drainers' running average, slot to settled), `beat_release_at_s` (beat's last pulse) and
`status_queue_sample` (the status queue's depth a minute ago, `events@time_s`).
`recent` (sorted set): one member `sent_at_s:RefIds` per request, scored by when it was
counted (s), kept RECENT_KEEP_S.

An answered request (and a push applied) is counted by the settle script that settles its
RefIds (backlog_settle.lua, given a Tally), so it costs no extra round trip; a
failed request is counted here, best effort.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

from esms_callbacks.engine.keys import AccountKeys
from esms_callbacks.engine.redis_values import as_text
from esms_callbacks.engine.replicas import NOT_DURABLE
from esms_callbacks.tuning import RECENT_KEEP_S, STATUS_QUEUE_SAMPLE_EVERY_S

log = logging.getLogger(__name__)
STATUS_QUEUE_SAMPLE = "status_queue_sample"  # `events@time_s`: the status queue's depth then


# Gauges of the last sweep of eSMS's ledger, whole numbers in the stats hash.
RECONCILE_NEVER_SUBMITTED = "reconcile_gauge:never_submitted"
RECONCILE_NO_DATA = "reconcile_gauge:no_data_at_esms"
RECONCILE_SWEPT_AT = "reconcile_gauge:swept_at_s"


@dataclass(frozen=True)
class StatsSnapshot:
    counters: dict[str, int]
    request_time_s: float | None  # the drainers' running average, None before any request
    beat_release_at_s: float | None  # beat's last pulse, as a worker received it


class RequestStats:
    def __init__(self, client: redis.Redis, keys: AccountKeys) -> None:
        self._redis = client
        self._stats = keys.stats
        self._recent = keys.recent

    def count_failure(self, ref_count: int, error: str, sent_at_s: float, now_s: float) -> None:
        """Count a request eSMS failed (`error`: its code or the error's kind). Best effort:
        counters never stand between a failure and its handling."""
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.hincrby(self._stats, "requests", 1)
            pipe.hincrby(self._stats, "refs_asked", ref_count)
            pipe.hincrby(self._stats, f"errors:{error}", 1)
            pipe.zadd(self._recent, {f"{sent_at_s:.6f}:{ref_count}": now_s})
            pipe.zremrangebyscore(self._recent, "-inf", now_s - RECENT_KEEP_S)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("could not update request counters: %s", exc)

    def count_not_durable(self) -> None:
        """Count a write no replica confirmed in time (ESMS_REDIS_REPLICAS). Best effort: the
        primary may be the one that was lost."""
        try:
            self._redis.hincrby(self._stats, NOT_DURABLE, 1)
        except redis.RedisError as exc:
            log.warning("could not count a write the replicas did not confirm: %s", exc)

    def count_sweep(self, pages: int, rows: int, adopted: int, settled: int) -> None:
        """Count a sweep of eSMS's ledger (`reconcile:*`; its requests are counted by
        endpoint, `endpoint_requests:ledger`). Best effort, as the other counters."""
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.hincrby(self._stats, "reconcile:sweeps", 1)
            for name, value in (
                ("endpoint_requests:ledger", pages),
                ("reconcile:rows", rows),
                ("reconcile:adopted", adopted),
                ("reconcile:settled", settled),
            ):
                if value:
                    pipe.hincrby(self._stats, name, value)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("could not update the sweep's counters: %s", exc)

    def set_reconcile_gauges(self, never_submitted: int, no_data: int, now_s: float) -> None:
        """What the last sweep of eSMS's ledger found (ops.reconcile_report), for metrics."""
        mapping = {
            RECONCILE_NEVER_SUBMITTED: never_submitted,
            RECONCILE_NO_DATA: no_data,
            RECONCILE_SWEPT_AT: int(now_s),
        }
        self._redis.hset(self._stats, mapping=mapping)  # type: ignore[arg-type]

    def mark_beat_release(self, now_s: float) -> None:
        """Beat's pulse, as a worker received it: `status` tells whether beat and workers run."""
        self._redis.hset(self._stats, "beat_release_at_s", f"{now_s:.3f}")

    def sample_status_queue(self, events: int, now_s: float) -> int | None:
        """Keep a sample of the status queue's depth (one a minute); return the events the
        sample before this one counted (None before any), so a depth that grows shows."""
        raw = self._redis.hget(self._stats, STATUS_QUEUE_SAMPLE)
        previous_events: int | None = None
        previous_at_s = float("-inf")
        if raw:
            count, _, at_s = as_text(raw).partition("@")
            previous_events, previous_at_s = int(count), float(at_s)
        if now_s - previous_at_s >= STATUS_QUEUE_SAMPLE_EVERY_S:
            self._redis.hset(self._stats, STATUS_QUEUE_SAMPLE, f"{events}@{now_s:.0f}")
        return previous_events

    def request_time_s(self) -> float | None:
        """The drainers' running average request time, None before any request."""
        measured = self._redis.hget(self._stats, "request_time_s")
        return None if measured is None else float(measured)

    def snapshot(self) -> StatsSnapshot:
        raw = {as_text(k): as_text(v) for k, v in self._redis.hgetall(self._stats).items()}
        request_time_s = raw.pop("request_time_s", None)
        beat_release_at_s = raw.pop("beat_release_at_s", None)
        raw.pop(STATUS_QUEUE_SAMPLE, None)
        return StatsSnapshot(
            {name: int(value) for name, value in raw.items()},
            float(request_time_s) if request_time_s else None,
            float(beat_release_at_s) if beat_release_at_s else None,
        )

    def recent_requests(self, since_s: float) -> list[int]:
        """The RefIds in each request counted since `since_s`."""
        return [
            int(as_text(member).rsplit(":", 1)[1])
            for member in self._redis.zrangebyscore(self._recent, since_s, "+inf")
        ]
