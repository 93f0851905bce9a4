"""The account's gate: requests of one account spaced at least the interval apart, and none
while the account is paused, backing off, or outside the window.

Four steps, all atomic Lua on the Redis server's clock (engine/lua/limiter_*.lua):
- reserve: claim the next free slot (GCRA-style theoretical arrival time), so each waiter
  sleeps exactly until its own slot instead of polling Redis;
- hand_back: a waiter that found nothing to send gives its slot back to the next reserver;
- commit: right before sending, check everything that may forbid the send (pause, breaker,
  window) and the spacing against the last request actually sent (a waiter that overslept
  must not squeeze the next one), and record the send. Nothing but commit decides that a
  request may go, so a slot reserved before eSMS refused the account is never used. A commit
  made up to COMMIT_AHEAD_S before the spacing allows is granted for that moment, and the
  caller waits it out on its own monotonic clock: the send then leaves at the moment itself,
  not a sleep's wake-up and a Redis round trip after it;
- mark_sent: once the request is in the socket, move the recorded send to that moment.

Spacing = interval + margin. The margin absorbs the jitter between our commit and eSMS's
receipt: a small base (ESMS_RATE_MARGIN) plus an extra part that each Code 160 raises and
that halves every MARGIN_HALF_LIFE_S, so a network that really jitters pays for it and a
quiet one does not.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import redis

from esms_callbacks.engine.redis_connect import node_for, refreshing_cluster
from esms_callbacks.engine.redis_time import RedisTimeBounds
from esms_callbacks.engine.scripts import register_file
from esms_callbacks.tuning import (
    COMMIT_AHEAD_S,
    MARGIN_HALF_LIFE_S,
    MARGIN_STEP_S,
    MARGIN_STEP_SHARE,
    MAX_WAITERS,
    STRICTEST_KEPT_S,
    WRITE_TIMEOUT_S,
)


class Verdict(IntEnum):
    """What the commit script answered (its first reply, limiter_commit.lua)."""

    GRANTED = 0  # the send is recorded for the moment granted
    SPACING = 1  # too soon after the last send (or it is not in its socket yet): wait
    BACKING_OFF = 2  # the breaker is open, or a half-open probe is under way
    WINDOW_CLOSED = -1
    PAUSED = -2  # eSMS refused the account


@dataclass(frozen=True)
class Commit:
    verdict: Verdict
    # granted: write the request no sooner than this from when commit returned (0, or at
    # most COMMIT_AHEAD_S). Spacing or backing off: sleep this long, then commit again.
    wait_s: float = 0.0
    at_us: int = 0  # when granted: the moment, on the Redis clock (us)
    failures: int = 0  # the breaker's current failure streak

    @property
    def go(self) -> bool:
        return self.verdict is Verdict.GRANTED

    @property
    def closed(self) -> bool:
        return self.verdict is Verdict.WINDOW_CLOSED

    @property
    def paused(self) -> bool:
        return self.verdict is Verdict.PAUSED

    @property
    def backing_off(self) -> bool:
        return self.verdict is Verdict.BACKING_OFF

    @property
    def at_s(self) -> float:
        return self.at_us / 1e6

    @property
    def refused(self) -> str:
        """Why this commit can never go by waiting a spacing, or '' if it can."""
        if self.closed:
            return "window closed"
        if self.paused:
            return "account paused"
        return "backing off after failures" if self.backing_off else ""


class RateLimiter:
    def __init__(
        self,
        client: redis.Redis,
        keys: tuple[str, str, str],
        interval_s: float,
        margin_s: float,
        probe_timeout_s: float = 60.0,
        max_backoff_s: float = 3600.0,
        write_timeout_s: float = WRITE_TIMEOUT_S,
        replicas: int = 0,
        replica_timeout_s: float = 1.0,
    ) -> None:
        """`keys`: the account's rate hash, paused flag and health hash. `replicas`: a grant
        counts only once that many replicas hold it (ESMS_REDIS_REPLICAS): a primary that
        Sentinel demoted but that still answers (a planned failover) has none following it,
        so it can grant nothing while the new one grants too."""
        self._redis = client
        self._replicas = replicas
        self._replica_timeout_ms = max(1, int(replica_timeout_s * 1000))
        self._write_timeout_us = int(write_timeout_s * 1e6)
        self._keys = list(keys)
        self._interval_us = int(interval_s * 1e6)
        self._margin_us = int(margin_s * 1e6)
        # What a 160 adds at least: MARGIN_STEP_S, at most MARGIN_STEP_SHARE of the interval
        # (2 ms is a fifth of QueryZnsStatus's 10 ms: a fifth of its budget per 160).
        self._margin_step_us = int(min(MARGIN_STEP_S, interval_s * MARGIN_STEP_SHARE) * 1e6)
        self._probe_timeout_us = int(probe_timeout_s * 1e6)
        self._max_backoff_us = int(max_backoff_s * 1e6)
        self._reserve = register_file(client, "limiter_spacing", "gcra", "limiter_reserve")
        self._hand_back = register_file(client, "limiter_spacing", "limiter_hand_back")
        self._commit = register_file(client, "limiter_spacing", "breaker", "limiter_commit")
        self._widen = register_file(client, "limiter_spacing", "limiter_widen")
        self._mark_sent = register_file(client, "limiter_mark_sent")
        # Where this host's clock stands against Redis's, from every commit's and mark's TIME
        self.redis_time = RedisTimeBounds()
        # This process's own floor, on its monotonic clock: its next request leaves no sooner
        # than a spacing after its last. A Redis whose clock jumped forward (a failover to a
        # host whose clock is ahead) would grant too early; this process never sends so.
        self._next_leave_s = 0.0

    def reserve(self, not_after_s: float | None = None) -> float | None:
        """Reserve the next slot; return seconds to wait for it, or None if it is too late."""
        limit_us = 0 if not_after_s is None else int(not_after_s * 1e6)
        wait_us = int(self._reserve(keys=self._keys[:1], args=[*self._spacing_args, limit_us]))
        return None if wait_us < 0 else wait_us / 1e6

    def hand_back(self) -> None:
        """Give back a reserved slot that was not used, so the next reserver can take it."""
        self._hand_back(keys=self._keys[:1], args=self._spacing_args)

    def commit(self, window_s: tuple[float, float] | None = None) -> Commit:
        """Record a send if pause, breaker, window (open, close epoch s) and spacing allow it
        now or within COMMIT_AHEAD_S; when go, the caller writes once `wait_s` has passed."""
        opens_us, closes_us = (
            (0, 0) if window_s is None else (int(window_s[0] * 1e6), int(window_s[1] * 1e6))
        )
        args = [
            *self._spacing_args,
            opens_us,
            closes_us,
            self._probe_timeout_us,
            self._max_backoff_us,
            self._write_timeout_us,
            int(COMMIT_AHEAD_S * 1e6),
        ]
        sent_s = time.monotonic()
        if self._replicas:
            (status, value, failures, now_us), confirmed = self._commit_confirmed(args)
        else:
            status, value, failures, now_us = self._commit(keys=self._keys, args=args)
            confirmed = True
        received_s = time.monotonic()
        self.redis_time.sample(int(now_us) / 1e6, sent_s, received_s)
        verdict, failures = Verdict(int(status)), int(failures)
        if verdict is Verdict.GRANTED and not confirmed:  # no replica follows this primary
            return Commit(Verdict.SPACING, wait_s=self._floor_s, failures=failures)
        if verdict is not Verdict.GRANTED:
            return Commit(verdict, wait_s=int(value) / 1e6, failures=failures)
        at_us = int(value)
        now_s = time.monotonic()
        leave_s = self.redis_time.local_deadline_s(at_us / 1e6, now_s)
        assert leave_s is not None  # sampled above
        if leave_s < self._next_leave_s:  # the Redis clock jumped ahead: this slot goes unused
            # and frees the way (as a send now would: the next counts from now, not earlier)
            self._mark_sent(keys=self._keys[:1], args=[at_us, 0])
            return Commit(Verdict.SPACING, wait_s=self._next_leave_s - now_s, failures=failures)
        self._next_leave_s = leave_s + self._floor_s
        wait_s = max(0.0, leave_s - now_s)
        return Commit(verdict, wait_s=wait_s, at_us=at_us, failures=failures)

    def mark_sent(self, committed_at_us: int) -> None:
        """The request committed for `committed_at_us` is in the socket (limiter_mark_sent.lua):
        dated by this host's clock through the bounds, as late as its write can have been."""
        sent_s = time.monotonic()
        latest_s = self.redis_time.redis_latest_s(sent_s)
        written_us = 0 if latest_s is None else math.ceil(latest_s * 1e6)
        now_us = self._mark_sent(keys=self._keys[:1], args=[committed_at_us, written_us])
        self.redis_time.sample(int(now_us) / 1e6, sent_s, time.monotonic())
        self._next_leave_s = max(self._next_leave_s, sent_s + self._floor_s)

    def widen_margin(self) -> float:
        """eSMS answered 160: widen the margin; return the extra margin now (s)."""
        extra_us = self._widen(
            keys=self._keys[:1],
            args=[*self._spacing_args, self._interval_us, self._margin_step_us],
        )
        return int(extra_us) / 1e6

    def added_margin_s(self) -> float:
        """What Code 160s last added to the margin (s), before it fades (for status)."""
        return float(self._redis.hget(self._keys[0], "extra_us") or 0) / 1e6

    def _commit_confirmed(self, args: list[int]) -> tuple[list[Any], bool]:
        """The commit, then WAIT on its connection: whether enough replicas hold it."""
        with refreshing_cluster(self._redis):
            pipe = node_for(self._redis, self._keys[0]).pipeline(transaction=False)
            self._commit(keys=self._keys, args=args, client=pipe)
            pipe.execute_command("WAIT", self._replicas, self._replica_timeout_ms)  # type: ignore[no-untyped-call]
            answer, acked = pipe.execute()
        return answer, int(acked) >= self._replicas

    @property
    def _floor_s(self) -> float:
        return (self._interval_us + self._margin_us) / 1e6

    @property
    def _spacing_args(self) -> list[int]:
        """ARGV[1..5] of every script with limiter_spacing.lua."""
        return [
            self._interval_us,
            self._margin_us,
            int(MARGIN_HALF_LIFE_S * 1e6),
            int(STRICTEST_KEPT_S * 1e6),
            MAX_WAITERS,
        ]
