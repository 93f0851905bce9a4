"""The receiver's background thread: apply what the inbox holds, as it comes in.

Each receiver process runs one, as a consumer of the inbox's group: several receivers behind a
load balancer share the work, and entries a dead one left pending are reclaimed by the others.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid

from redis.exceptions import RedisError

from esms_callbacks.errors import PushApplyFailed
from esms_callbacks.push.apply import PushApplier
from esms_callbacks.push.inbox import InboxEntry, PushInbox
from esms_callbacks.retry_policy import APPLIER_RETRY_FIRST_S, APPLIER_RETRY_MOST_S
from esms_callbacks.tuning import (
    APPLIER_BATCH,
    APPLIER_BLOCK_MS,
    APPLIER_CONSUMER_IDLE_S,
    APPLIER_STALLED_AFTER_S,
    APPLIER_TIDY_EVERY_S,
)

log = logging.getLogger("esms.receiver")


class ApplierThread(threading.Thread):
    def __init__(self, applier: PushApplier, inbox: PushInbox, reclaim_after_s: float) -> None:
        super().__init__(name="push-applier", daemon=True)
        self.applier = applier
        self.inbox = inbox
        self.consumer = f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.stopping = threading.Event()
        self.applied = 0
        self.alive_at_s = time.monotonic()
        # An entry pending this long is taken over: its applier died, or its RefId was held by
        # a request. Longer than a batch takes, broker retries included, so live work is
        # rarely taken (and when it is, the lease in Redis keeps it from being applied twice).
        self.reclaim_after_s = reclaim_after_s

    def run(self) -> None:
        pause_s, next_reclaim_s, next_tidy_s, grouped = APPLIER_RETRY_FIRST_S, 0.0, 0.0, False
        while not self.stopping.is_set():
            self.alive_at_s = time.monotonic()
            try:
                if not grouped:  # again after any error: Redis may have come back empty
                    self.inbox.ensure_group()
                    grouped = True
                self._apply(self.inbox.read(self.consumer, APPLIER_BATCH, APPLIER_BLOCK_MS))
                if time.monotonic() >= next_reclaim_s:
                    self._reclaim()
                    next_reclaim_s = time.monotonic() + self.reclaim_after_s / 4
                if time.monotonic() >= next_tidy_s:
                    self.inbox.forget_idle_consumers(APPLIER_CONSUMER_IDLE_S)
                    next_tidy_s = time.monotonic() + APPLIER_TIDY_EVERY_S
                pause_s = APPLIER_RETRY_FIRST_S
            except Exception as exc:
                # The entries stay pending: reclaimed and applied once Redis or the broker is
                # back. Nothing answered 200 is dropped, and the thread never ends on an error.
                grouped = False
                if isinstance(exc, RedisError | OSError | PushApplyFailed):
                    log.warning("applying pushes failed, trying again in %.0fs: %s", pause_s, exc)
                else:
                    log.exception("applying pushes failed unexpectedly; trying again")
                self.stopping.wait(pause_s)
                pause_s = min(APPLIER_RETRY_MOST_S, pause_s * 2)

    def healthy(self) -> bool:
        """Running, and its loop went round recently (a read waits at most APPLIER_BLOCK_MS)."""
        return self.is_alive() and time.monotonic() - self.alive_at_s < APPLIER_STALLED_AFTER_S

    def _reclaim(self) -> None:
        """Take over entries pending too long, batch after batch, until none is left."""
        idle_ms = int(self.reclaim_after_s * 1000)
        while not self.stopping.is_set():
            entries = self.inbox.reclaim(self.consumer, idle_ms, APPLIER_BATCH)
            self._apply(entries)
            if len(entries) < APPLIER_BATCH:
                return

    def _apply(self, entries: list[InboxEntry]) -> None:
        if entries:
            self.applied += len(self.applier.apply(entries).acked)

    def stop(self, timeout_s: float = 10.0) -> None:
        self.stopping.set()
        self.join(timeout_s)
        with contextlib.suppress(RedisError, OSError):
            self.inbox.forget_consumer(self.consumer)
