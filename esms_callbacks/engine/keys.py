"""Every Redis key of the project, built in one place.

All keys of one account share the prefix `esms:{account_id}`: the braces are a Redis Cluster
hash tag, so every key of an account is in one slot, on one shard, and a script may touch
any of them atomically (the backlog's scripts build the per-OA keys, chunks and buckets, from
a prefix; Cluster runs them since they share the slot of the keys they declare). RefIds and
OA ids are never parsed back out of keys; RefIds are only ever members, so a RefId that
looks like a key cannot reach another key.
"""

from __future__ import annotations

# The deployment's own keys, shared by its accounts (single-key commands only: a Redis
# Cluster puts them wherever their names hash), but for the turns' two keys, which share the
# hash tag `{:turns}` so that one script may change both; no account's name holds a ':', so
# no account's keys (`esms:{NAME}:...`) share it.
TURNS_WAITING = "esms:{:turns}:waiting"
"""Sorted set: accounts (their names) waiting for a turn on the worker pool, scored by when
they began waiting (ms): the order of turns (engine.waiting, engine.turns)."""
TURNS_RENEWED = "esms:{:turns}:renewed"
"""Sorted set: the same accounts, scored by when their own pulses last said they still wait
(ms); an entry not renewed for WAITING_STALE_S is dropped from both."""
RELEASE_LOCK = "esms:release-lock"
"""String with a TTL: a worker runs beat's pulse (esms.release) now; the next waits for it."""
PUSHES_READY = "esms:pushes-ready"
"""Sorted set: accounts (their keys' name) whose inbox got pushes no applier has looked at
yet, scored by when first named (ms, Redis clock): the receivers' applier threads block on it
(BZPOPMIN), a few per process whatever the number of accounts. Written right after the push's
own script, as a separate command (in a Cluster it lives in another slot), so a crash or a
failover may lose a name: the appliers' periodic sweep of every inbox finds those pushes."""
UNNAMED_PUSHES = "esms:pushes-unnamed"
"""Hash: counts of pushes no account can be named for (a wrong token), `pushes:RESULT`, when
the receiver serves several accounts (with one, its own stats hold them)."""


class AccountKeys:
    def __init__(self, account_id: str) -> None:
        self.account_id = account_id  # what names the account in the deployment's own keys
        self.prefix = f"esms:{{{account_id}}}"

    @property
    def rate(self) -> str:
        """Hash: `tat_us` (next free slot), `last_us` (last request sent), `extra_us` and
        `extra_at_us` (margin added after a Code 160, and when), `strict_us` and
        `strict_at_us` (the strictest interval + margin a host used, and when), Redis clock."""
        return f"{self.prefix}:rate"

    def rate_of(self, endpoint: str) -> str:
        """The rate hash (as `rate`) of one eSMS endpoint: GetCallback's is `rate` itself;
        QueryZnsStatus and GetZaloMessageStatus each have a budget of their own."""
        return self.rate if endpoint == "callback" else f"{self.rate}:{endpoint}"

    def health_of(self, endpoint: str) -> str:
        """The circuit breaker (as `health`) of one eSMS endpoint: a failing QueryZnsStatus
        does not stop GetCallback."""
        return self.health if endpoint == "callback" else f"{self.health}:{endpoint}"

    @property
    def ledger_cursor(self) -> str:
        """Hash: where the sweep of eSMS's ledger stands, per SmsType T: `from_ms:T`,
        `to_ms:T` (the range of creation times being read, epoch ms) and `page:T` (the next
        page of it); the range after it starts ESMS_RECONCILE_OVERLAP before `to_ms:T`
        (engine.ledger_sweep)."""
        return f"{self.prefix}:ledger"

    @property
    def unsubmitted(self) -> str:
        """Sorted set: RefIds eSMS's ledger lists that were never submitted, scored by when
        eSMS sent them (ms); kept ESMS_RECONCILE_LOOKBACK (`esms-callbacks reconcile`)."""
        return f"{self.prefix}:unsubmitted"

    @property
    def ledger_lock(self) -> str:
        """String with a TTL: a worker sweeps the account's ledger now."""
        return f"{self.prefix}:ledger-lock"

    @property
    def oas(self) -> str:
        """Set: OA ids that have RefIds waiting or leased."""
        return f"{self.prefix}:oas"

    @property
    def oa_queue(self) -> str:
        """Sorted set: OA ids that have RefIds waiting or leased, scored by the moment their
        earliest chunk is due or their earliest lease expires (ms): its head is the OA the
        next lease takes (engine/lua/backlog_prelude.lua, `place_oa`)."""
        return f"{self.prefix}:oa-queue"

    @property
    def backlog_meta(self) -> str:
        """Hash: `layout` ('2' once `oa_queue` and `refs` exist: built from `oas` the first
        time a backlog parked before them is used), `refs` (RefIds waiting or leased, over
        every OA of the account: what the capacity check compares with the window)."""
        return f"{self.prefix}:backlog"

    @property
    def drainers(self) -> str:
        """Sorted set: drainer tokens scored by lease expiry (ms)."""
        return f"{self.prefix}:drainers"

    @property
    def drains_queued(self) -> str:
        """Sorted set: drain tasks queued for the account and not yet started (their ids),
        scored by when they expire unrun (ms)."""
        return f"{self.prefix}:drains-queued"

    @property
    def fence(self) -> str:
        """String: written right before a WAIT, so the replicas' confirmation covers every
        write this process finished before (engine.replicas)."""
        return f"{self.prefix}:fence"

    def stopping(self, hostname: str) -> str:
        """String with a TTL: the worker instance `hostname` is shutting down; its drainers
        give their places up at the next step."""
        return f"{self.prefix}:stopping:{hostname}"

    @property
    def spawn_lock(self) -> str:
        """String with a short TTL: someone just asked for drainers."""
        return f"{self.prefix}:spawn-lock"

    @property
    def paused(self) -> str:
        """String with a TTL: the account is paused after an auth or balance error."""
        return f"{self.prefix}:paused"

    @property
    def health(self) -> str:
        """Hash: the circuit breaker (engine.health): `failures` in a row, `open_until_us`,
        `probe_until_us` (Redis clock)."""
        return f"{self.prefix}:health"

    @property
    def stats(self) -> str:
        """Hash of counters: requests, refs asked, events by status, errors by code."""
        return f"{self.prefix}:stats"

    @property
    def recent(self) -> str:
        """Sorted set: the last minutes' requests (`time:RefIds`), scored by time (s)."""
        return f"{self.prefix}:recent"

    @property
    def capacity_warned(self) -> str:
        """String with a TTL: the backlog-exceeds-capacity warning was logged recently."""
        return f"{self.prefix}:capacity-warned"

    @property
    def pushes(self) -> str:
        """Stream: eSMS pushes recorded by a receiver, waiting to be applied (push.inbox);
        consumer group `appliers`."""
        return f"{self.prefix}:pushes"

    def push_source(self, source_ip: str) -> str:
        """String with a TTL: the per-source push rate of one IP address (its next free time,
        GCRA). An address is a member of no other key."""
        return f"{self.prefix}:push-source:{source_ip}"

    @property
    def oa_prefix(self) -> str:
        """What every per-OA key starts with: `{oa_prefix}{oa_id}:{due|leased|...}`. Only the
        lease script (for the OA at the head of `oa_queue`) and the layout migration (for the
        OAs in `oas`) build keys from it."""
        return f"{self.prefix}:oa:"

    @property
    def known_oas(self) -> str:
        """Set: OA ids ever parked or pushed to (their done memory is swept)."""
        return f"{self.prefix}:known-oas"

    def oa(self, oa_id: str) -> str:
        """What every key of one OA starts with (engine/lua/backlog_prelude.lua lists them:
        `due`, `leased`, `owner`, chunks `c:ID`, buckets `b:HHHH`, `forget`, `meta`)."""
        return f"{self.oa_prefix}{oa_id}:"

    def notes(self, oa_id: str) -> str:
        """Hash: RefId -> what the sources learnt of it that the next ask needs (engine.notes:
        its SmsType, that GetCallback does not know it, Zalo's message id); a RefId's entry
        goes when it is done, the hash with its OA (backlog_settle.lua, backlog_sweep.lua)."""
        return f"{self.oa(oa_id)}notes"

    def due(self, oa_id: str) -> str:
        """Sorted set: an OA's waiting chunks (ids) scored by when to ask their RefIds (ms)."""
        return f"{self.oa(oa_id)}due"

    def leased(self, oa_id: str) -> str:
        """Sorted set: an OA's chunks in a request right now, scored by lease expiry (ms)."""
        return f"{self.oa(oa_id)}leased"

    def owner(self, oa_id: str) -> str:
        """Hash: leased chunk id -> token of the request (or push) holding it."""
        return f"{self.oa(oa_id)}owner"
