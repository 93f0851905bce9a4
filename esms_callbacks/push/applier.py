"""The receiver's applier threads: a few per process, whatever the number of accounts.

A push is recorded in its account's inbox, and the account named in the deployment's ready
set right after (push.inbox.ReadyAccounts). Each thread waits on that set (one blocking
command, so one Redis connection a thread, not one blocking read per account), takes the
account named longest ago, reads its new entries without waiting and applies them
(PushApplier.apply); an account with more than a batch waiting is named again, behind the
others. One thread at a time applies an account: another that takes its name meanwhile leaves
it to the first, which names it again when done (batches stay whole, and two pushes of one
RefId are never in two batches at once, which would leave one to the reclaim).

The name is a hint written after the entry (in a Redis Cluster, in another slot): one lost to
a crash or a failover delays its pushes, never drops them, since the threads also sweep every
inbox each `sweep_every_s`: what waits there is applied, and entries pending too long (a dead
receiver's, or held back by a request) are taken over.

Several receivers share the ready set and each inbox's consumer group: each account's entries
go to one of them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import redis
from redis.exceptions import RedisError

from esms_callbacks.errors import PushApplyFailed
from esms_callbacks.push.apply import PushApplier
from esms_callbacks.push.inbox import (
    InboxEntry,
    PushInbox,
    ReadyAccounts,
    forget_idle_consumers,
    leave_groups,
    waiting_in,
)
from esms_callbacks.retry_policy import APPLIER_RETRY_FIRST_S, APPLIER_RETRY_MOST_S
from esms_callbacks.tuning import (
    APPLIER_BATCH,
    APPLIER_BLOCK_MS,
    APPLIER_CONSUMER_IDLE_S,
    APPLIER_LOG_EVERY_S,
    APPLIER_STALLED_AFTER_S,
    APPLIER_SWEEP_MIN_S,
    APPLIER_THREADS,
    APPLIER_TIDY_EVERY_S,
)

log = logging.getLogger("esms.receiver")


@dataclass(frozen=True)
class AccountInbox:
    """What the appliers need of one account: its inbox, and how to apply what it holds."""

    name: str  # for log lines
    keys_name: str  # as the ready set names it (Settings.account_id)
    inbox: PushInbox
    applier: PushApplier


class Appliers:
    """The applier threads of one receiver process, for every account it serves."""

    def __init__(
        self,
        client: redis.Redis,
        reclaim_after_s: float,
        threads: int = APPLIER_THREADS,
        monotonic_s: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = client
        self._ready = ReadyAccounts(client)
        self._monotonic_s = monotonic_s
        # One consumer for the whole process (host-pid-random): its threads read disjoint
        # entries, and what it leaves pending is taken over after reclaim_after_s.
        self.consumer = f"{os.uname().nodename}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        # An entry pending this long is taken over: its applier died, or its RefId was held
        # by a request. Longer than a batch takes, broker retries included, so live work is
        # rarely taken (and when it is, the lease in Redis keeps it from being applied twice).
        self.reclaim_after_s = reclaim_after_s
        self.sweep_every_s = max(APPLIER_SWEEP_MIN_S, reclaim_after_s / 4)
        self.stopping = threading.Event()
        self._stop_asked_s = 0.0
        self.applied = 0
        self.sweeps = 0  # sweeps finished
        self._accounts: Mapping[str, AccountInbox] = {}  # by keys name; swapped whole
        self._touched: set[str] = set()  # accounts whose group knows this consumer
        # Accounts a thread applies now -> whether another thread took their name meanwhile.
        self._held: dict[str, bool] = {}
        self._lock = threading.Lock()  # the counters above, and who sweeps
        self._sweeping = False
        self._next_sweep_s = 0.0  # a sweep at once: pushes recorded while none ran
        self._next_tidy_s = 0.0
        self._logged_at_s: dict[str, float] = {}
        self._threads = [
            threading.Thread(target=self._run, args=(i,), name=f"push-applier-{i}", daemon=True)
            for i in range(threads)
        ]
        self._alive_at_s = [self._monotonic_s()] * threads

    def serve(self, accounts: Mapping[str, AccountInbox]) -> None:
        """Apply the pushes of `accounts` (by their keys' name) from now on."""
        self._accounts = dict(accounts)  # one swap: a thread sees the old map or the new

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def healthy(self) -> bool:
        """Every thread running, and its loop gone round recently (a wait for a ready
        account lasts APPLIER_BLOCK_MS, a sweep checks in between accounts)."""
        now_s = self._monotonic_s()
        return all(
            thread.is_alive() and now_s - alive_at_s < APPLIER_STALLED_AFTER_S
            for thread, alive_at_s in zip(self._threads, self._alive_at_s, strict=True)
        )

    def stop_soon(self) -> None:
        """Take no new work: each thread ends after the batch it is applying."""
        if not self.stopping.is_set():
            self._stop_asked_s = self._monotonic_s()
            self.stopping.set()

    def stop(self, within_s: float) -> None:
        """Stop the threads, waiting for them until `within_s` after the stop was first
        asked for: a thread still applying then is left behind (a daemon, it ends with the
        process), its entries pending for another receiver, or this one restarted, to take
        over. Then, once every thread is done, leave the consumer group of each account read
        from (with one left behind, the consumer stays, for the others' tidy-up to remove:
        the thread may still take entries in its name)."""
        self.stop_soon()
        deadline_s = self._stop_asked_s + within_s
        for thread in self._threads:
            if thread.is_alive():
                thread.join(max(0.0, deadline_s - self._monotonic_s()))
        if any(thread.is_alive() for thread in self._threads):
            return
        with self._lock:
            touched = [self._accounts[name] for name in self._touched if name in self._accounts]
        with contextlib.suppress(RedisError, OSError):
            leave_groups(self._redis, [account.inbox for account in touched], self.consumer)

    def _run(self, index: int) -> None:
        pause_s = APPLIER_RETRY_FIRST_S
        while not self.stopping.is_set():
            self._alive_at_s[index] = self._monotonic_s()
            try:
                if self._take_sweep():
                    try:
                        self._sweep(index)
                    finally:
                        self._end_sweep()
                name = self._ready.take(APPLIER_BLOCK_MS / 1000)
                if name is not None:
                    self._take_account(name)
                pause_s = APPLIER_RETRY_FIRST_S
            except Exception as exc:
                # Redis (or its ready set) is away: wait, as much longer each time. What was
                # taken stays pending, applied once Redis and the broker are back. Nothing
                # answered 200 is dropped, and the thread never ends on an error.
                self._failed("", exc, f"trying again in {pause_s:.0f}s")
                self.stopping.wait(pause_s)
                pause_s = min(APPLIER_RETRY_MOST_S, pause_s * 2)

    def _take_account(self, name: str) -> None:
        account = self._accounts.get(name)
        if account is None:
            # Another deployment's, or one this process no longer serves (or not yet: the
            # accounts file is read again within a second): whoever serves it sweeps it.
            log.debug("an account this receiver does not serve was named ready")
            return
        if not self._hold(name):
            return  # another thread applies it, and reads it again when done
        taken = 0
        try:
            taken = self._apply_new(account)
        except (RedisError, OSError, PushApplyFailed) as exc:  # the other accounts still go
            self._failed(account.name, exc, "its pushes stay pending, taken over later")
        finally:
            named_meanwhile = self._let_go(name)
        if named_meanwhile or taken >= APPLIER_BATCH:
            self._ready.name(name)  # the rest after the other accounts waiting

    def _hold(self, name: str) -> bool:
        """Whether this thread may apply the account now; if another does, it is told to
        have the account read again when it lets go."""
        with self._lock:
            if name in self._held:
                self._held[name] = True
                return False
            self._held[name] = False
            return True

    def _let_go(self, name: str) -> bool:
        """Let the account go; whether its name was taken meanwhile (pushes came)."""
        with self._lock:
            return self._held.pop(name)

    def _apply_new(self, account: AccountInbox) -> int:
        """Apply the account's new entries, a batch at most; how many were read."""
        with self._lock:
            self._touched.add(account.keys_name)
        entries = account.inbox.read(self.consumer, APPLIER_BATCH)
        self._apply(account, entries)
        return len(entries)

    def _sweep(self, index: int) -> None:
        """Every inbox holding entries: its new ones applied, those pending too long taken
        over; then, every APPLIER_TIDY_EVERY_S, consumers gone for good left out."""
        accounts = list(self._accounts.values())
        for account, waiting in zip(
            accounts, waiting_in(self._redis, [a.inbox for a in accounts]), strict=True
        ):
            if self.stopping.is_set():
                return
            self._alive_at_s[index] = self._monotonic_s()
            if not waiting or not self._hold(account.keys_name):
                continue  # nothing there, or a thread applies it now (and reads it again)
            try:
                while self._apply_new(account) >= APPLIER_BATCH and not self.stopping.is_set():
                    pass
                self._reclaim(account)
            except (RedisError, OSError, PushApplyFailed) as exc:
                self._failed(account.name, exc, "its pushes stay pending, tried again later")
            finally:
                named_meanwhile = self._let_go(account.keys_name)
            if named_meanwhile:
                self._ready.name(account.keys_name)
        if self._monotonic_s() >= self._next_tidy_s:
            self._next_tidy_s = self._monotonic_s() + APPLIER_TIDY_EVERY_S
            inboxes = [account.inbox for account in accounts]
            forget_idle_consumers(self._redis, inboxes, APPLIER_CONSUMER_IDLE_S)

    def _reclaim(self, account: AccountInbox) -> None:
        """Take over the account's entries pending too long, batch after batch."""
        idle_ms = int(self.reclaim_after_s * 1000)
        while not self.stopping.is_set():
            entries = account.inbox.reclaim(self.consumer, idle_ms, APPLIER_BATCH)
            self._apply(account, entries)
            if len(entries) < APPLIER_BATCH:
                return

    def _apply(self, account: AccountInbox, entries: list[InboxEntry]) -> None:
        if entries:
            acked = len(account.applier.apply(entries).acked)
            with self._lock:
                self.applied += acked

    def _take_sweep(self) -> bool:
        """Whether this thread sweeps now (one at a time, each sweep_every_s)."""
        with self._lock:
            if self._sweeping or self._monotonic_s() < self._next_sweep_s:
                return False
            self._sweeping = True
            return True

    def _end_sweep(self) -> None:
        with self._lock:
            self.sweeps += 1
            self._sweeping = False
            self._next_sweep_s = self._monotonic_s() + self.sweep_every_s

    def _failed(self, account: str, exc: Exception, then: str) -> None:
        """One line per account (and one for the threads' own waits) every
        APPLIER_LOG_EVERY_S at most: a thousand accounts failing alike do not flood the log."""
        now_s = self._monotonic_s()
        with self._lock:
            if now_s - self._logged_at_s.get(account, -APPLIER_LOG_EVERY_S) < APPLIER_LOG_EVERY_S:
                return
            self._logged_at_s[account] = now_s
        whose = f" of account {account}" if account else ""
        if isinstance(exc, RedisError | OSError | PushApplyFailed):
            log.warning("applying pushes%s failed, %s: %s", whose, then, exc)
        else:
            log.error("applying pushes%s failed unexpectedly, %s", whose, then, exc_info=exc)
