"""Settings: the deployment's, one typed object read from the environment at start-up.

An account's own (its terms, secrets and name) are accounts.py's and terms.py's; the terms
read here from the ESMS_* variables are every account's defaults. Every variable is documented
in docs/configuration.md, rendered from these declarations. Malformed values raise ConfigError
naming the variable; credentials never appear in repr().
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from kombu import Connection

from esms_callbacks.errors import ConfigError
from esms_callbacks.terms import Label, Terms, by_variable, redact_url, term_variables
from esms_callbacks.tuning import ASSUMED_REQUEST_TIME_S, MAX_AUTO_DRAINERS, MAX_REPLICA_TIMEOUT_S
from esms_callbacks.variables import (
    APP,
    RECEIVER,
    WORKERS,
    Network,
    Variable,
    choice,
    declared,
    drainers_count,
    env,
    flag,
    integer,
    networks,
    number,
    proxies,
    read_variable,
    seconds,
    text,
)

DEFAULT_BROKER_URL = "redis://localhost:6379/0"
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")  # what redis-py's from_url takes
SENTINEL_SCHEME = "sentinel://"  # Celery's form: sentinel://host:port;sentinel://host:port
# A finished RefId is remembered at least this long: the broker hands a dead worker's
# submission back after its visibility timeout (celeryconfig, 900 s), and that copy must still
# find its RefIds done, or they are asked for again and get a second terminal event.
MIN_DONE_TTL_S = 900.0
# eSMS often does not know a RefId in its first minute (Code 105); a shorter age would expire
# RefIds at their first answer.
MIN_MAX_AGE_S = 60.0

PROCESS_READS = {
    "app": (APP,),  # a producer, beat and Flower: the Celery app alone
    "worker": (APP, WORKERS),
    "receiver": (APP, WORKERS, RECEIVER),
    "operator": (APP, WORKERS, RECEIVER),  # status, show, metrics, run: everything
}


def _redis_url(value: str, read: Mapping[str, Any]) -> str:
    """ESMS_REDIS_URL, else the broker's URL if it is Redis, else '' (a producer needs none;
    `Settings.require_redis_url` says what to set when it is needed)."""
    broker = read.get("broker_url", DEFAULT_BROKER_URL)
    return value or (broker if broker.startswith((*REDIS_SCHEMES, SENTINEL_SCHEME)) else "")


@dataclass(frozen=True)
class RedisTarget:
    """A Redis to connect to (engine/redis_connect.py builds its clients)."""

    url: str = field(repr=False)  # redis://, rediss://, unix:// or sentinel://...;sentinel://...
    sentinel_master: str = ""
    sentinel_password: str = field(default="", repr=False)
    cluster: str = "off"  # auto: ask the server; on; off

    def __repr__(self) -> str:
        return (
            f"RedisTarget(url={redact_url(self.url)!r}, sentinel_master={self.sentinel_master!r}"
            f", cluster={self.cluster!r})"
        )

    @property
    def is_sentinel(self) -> bool:
        return self.url.startswith(SENTINEL_SCHEME)


def _show_networks(networks: tuple[Network, ...]) -> str:
    return ",".join(str(network) for network in networks)


@dataclass(frozen=True, repr=False)
class Settings:
    """Every setting of the deployment, each declared once with its variable."""

    broker_url: str = env(
        "CELERY_BROKER_URL",
        DEFAULT_BROKER_URL,
        text,
        "broker for tasks and status events",
        read_by=APP,
    )
    redis_url: str = env(
        "ESMS_REDIS_URL",
        "",
        _redis_url,
        "Redis for the limiter and the waiting RefIds: `redis://`, `rediss://` or `unix://` (a "
        "single server, or any node of a Redis Cluster: see `ESMS_REDIS_CLUSTER`), or Celery's "
        "Sentinel form `sentinel://host:port;sentinel://host:port` with `ESMS_SENTINEL_MASTER`. "
        "Required with a broker that is not Redis (`amqp://`) by workers, the receiver, `run`, "
        "`status`, `show` and `metrics`, which stop with a message saying so; a producer "
        "(`fetch_callbacks.delay`, `submit`) never needs it",
        readme_default="the broker URL if it is Redis",
    )
    allow_plain_http: bool = env(
        "ESMS_ALLOW_PLAIN_HTTP",
        "",
        lambda v, _: flag(v),
        "`1`: accept an `http://` `ESMS_BASE_URL` on another host (the credentials then cross the "
        "network unencrypted)",
        show=lambda flag: "1" if flag else "",
    )
    status_queue: str = env(
        "ESMS_STATUS_QUEUE",
        "esms.status",
        text,
        "queue that receives status events (declared and bound to the exchange by every "
        "publisher, unless `ESMS_STATUS_DEFAULT_QUEUE=off`)",
    )
    status_exchange: str = env(
        "ESMS_STATUS_EXCHANGE",
        "",
        text,
        "exchange events are published to (direct, routing key its own name); bind your own "
        "queues to it for more consumers",
        readme_default="the queue's name",
    )
    # Off for deployments whose consumers read queues of their own bound to the exchange: the
    # default queue would otherwise fill Redis with events nobody reads.
    status_default_queue: bool = env(
        "ESMS_STATUS_DEFAULT_QUEUE",
        "on",
        lambda v, _: choice("on", "off")(v, _) == "on",
        "`on`: every publisher declares `ESMS_STATUS_QUEUE` and binds it to the exchange, so "
        "events wait there until read. `off`: for consumers that read queues of their own bound "
        "to the exchange; events go only there, nothing piles up in a queue nobody reads, and a "
        "publish that no queue would receive fails (the RefIds wait and are asked again) instead "
        "of being dropped",
        show=lambda on: "on" if on else "off",
    )
    status_queue_warn_events: int = env(
        "ESMS_STATUS_QUEUE_WARN",
        "10000",
        integer(1, 1_000_000_000),
        "events waiting in the default queue past which `status` warns, when the queue grows "
        "(Redis) or has no consumer (RabbitMQ); its depth is the metric "
        "`esms_status_queue_events`",
    )
    phone_numbers: str = env(
        "ESMS_PHONE_NUMBERS",
        "keep",
        choice("keep", "mask", "drop"),
        "the recipient's phone number in events' `record` (personal data under Vietnam's Decree "
        "13/2023): `keep`, `mask` (`090****484`: the first and last 3 digits) or `drop` (null). "
        "The project keeps no phone number anywhere else (a push waits in the inbox only until it "
        "is applied), and logs none",
    )
    http_timeout_s: float = env(
        "ESMS_HTTP_TIMEOUT",
        "30",
        number(0.1),
        "seconds before an eSMS request is given up (and retried)",
    )
    # Not a fixed wait: the floor between two asks of one RefId. Due RefIds are asked longest
    # due first, so re-asks take what budget new RefIds leave, and none is asked twice
    # before another due once (engine/lua/backlog_lease.lua).
    repoll_after_s: float = env(
        "ESMS_REPOLL_AFTER",
        "5",
        number(0.0),
        "at least this many seconds between two asks of one non-terminal RefId (was a fixed "
        "900): whatever budget new RefIds leave goes to the RefIds due longest, so a status "
        "that became final at eSMS reaches the queue within seconds while the budget allows",
    )
    max_age_s: float = env(
        "ESMS_MAX_AGE",
        "604800",
        seconds(MIN_MAX_AGE_S, "eSMS may not know a RefId yet in its first minute", "604800"),
        "seconds after submission when a still non-terminal RefId expires; at least 60 (eSMS "
        "often does not know a RefId in its first minute)",
    )
    done_ttl_s: float = env(
        "ESMS_DONE_TTL",
        "172800",
        seconds(
            MIN_DONE_TTL_S,
            "a submission the broker hands back after a worker died (up to 900 s later) must "
            "still find its RefIds done",
            "172800",
        ),
        "seconds a finished RefId is remembered, so resubmitting it does not produce a second "
        "terminal event; at least 900 (the broker hands a dead worker's submission back up to 900 "
        "s later, and it must still find its RefIds done)",
    )
    drainers: int = env(
        "ESMS_DRAINERS",
        "auto",
        lambda v, _: drainers_count(v),
        "worker processes sending requests for one account at once, across all hosts. `auto`: 2 + "
        "the measured request time (slot to settled) / the spacing, at most 6, so while the "
        "others' requests are under way one drainer waits for the next slot, and one more covers "
        "requests slower than the average. Each holds a worker pool slot while it drains: give "
        "the workers a concurrency above it",
        show=lambda n: str(n or "auto"),
    )
    release_every_s: float = env(
        "ESMS_RELEASE_EVERY",
        "2.0",
        number(0.1),
        "seconds between beat's checks that start draining (bounds how late the first request "
        "after the window opens can be)",
        read_by=APP,
    )
    reconcile_every_s: float = env(
        "ESMS_RECONCILE_EVERY",
        "300",
        number(1.0),
        "seconds between beat's sweeps of eSMS's ledger, for accounts with `ESMS_RECONCILE` on",
        read_by=APP,
    )
    reconcile_lookback_s: float = env(
        "ESMS_RECONCILE_LOOKBACK",
        "86400",
        number(60.0),
        "how far back the first sweep of an account's ledger starts (seconds before it runs); "
        "later sweeps go on from where the last one ended, however long ago",
    )
    reconcile_overlap_s: float = env(
        "ESMS_RECONCILE_OVERLAP",
        "900",
        number(0.0),
        "seconds of the ledger each sweep reads again before where the last one ended, so a "
        "record eSMS creates late is not skipped",
    )
    reconcile_grace_s: float = env(
        "ESMS_RECONCILE_GRACE",
        "3600",
        number(0.0),
        "seconds after its submission before a RefId eSMS has no data for is reported",
    )
    max_retries: int = env(
        "ESMS_MAX_RETRIES",
        "5",
        integer(0, 100),
        "Celery retries of one drain task after failed requests (each shows in Flower as "
        "`task-retried`); after that its RefIds simply wait for the next drain",
    )
    retry_base_s: float = env(
        "ESMS_RETRY_BASE",
        "2.0",
        number(0.0),
        "seconds a failed request's RefIds wait before they are asked again, and the breaker's "
        "first backoff",
    )
    breaker_after: int = env(
        "ESMS_BREAKER_AFTER",
        "5",
        integer(1, 100),
        "transient eSMS failures in a row that make the whole account back off (fewer cost only "
        "themselves). With 10% of requests failing at random, 5 in a row happen about once in "
        "100,000 requests; a real outage is recognised after 5",
    )
    window_guard_s: float = env(
        "ESMS_WINDOW_GUARD",
        "1.0",
        number(0.0),
        "seconds kept clear at both ends of the window, so that no request reaches eSMS outside "
        "it whatever the difference between its clock and Redis's (commit-to-receipt delays: "
        "see [Benchmarks](benchmarks.md)). Must be under half the window (refused at start "
        "otherwise: nothing could be sent); the capacity `status` and the metrics report counts "
        "only the window within the guards",
    )
    backoff_max_s: float = env(
        "ESMS_BACKOFF_MAX",
        "60",
        number(1.0),
        "longest backoff, seconds: while eSMS keeps failing, one probe request per this long",
    )
    account_pause_s: float = env(
        "ESMS_ACCOUNT_PAUSE",
        "300",
        number(1.0),
        "seconds requests stop after eSMS refuses the account (codes 101, 140, 143, 103)",
    )
    sentinel_master: str = env(
        "ESMS_SENTINEL_MASTER",
        "",
        text,
        "the master name Sentinel monitors, for a `sentinel://` `CELERY_BROKER_URL` or "
        "`ESMS_REDIS_URL` (required with either)",
        read_by=APP,
    )
    sentinel_password: str = env(
        "ESMS_SENTINEL_PASSWORD",
        "",
        text,
        "the sentinels' own password (their `requirepass`), if they have one; the master's "
        "password goes in the URL (`sentinel://:password@host:port`)",
        secret=True,
        read_by=APP,
    )
    redis_cluster: str = env(
        "ESMS_REDIS_CLUSTER",
        "auto",
        choice("auto", "on", "off"),
        "`auto`: `ESMS_REDIS_URL` is asked whether it is a Redis Cluster node (`INFO cluster`) "
        "and a Cluster client is used if so; `on` or `off` say it without asking. The broker "
        "cannot be a Cluster (Celery has none: celery#2852)",
    )
    redis_replicas: int = env(
        "ESMS_REDIS_REPLICAS",
        "0",
        integer(0, 16),
        "replicas that must confirm a write before the project acts on it (`WAIT`): RefIds "
        "parked before their task is acknowledged, a push before it is answered 200, a rate "
        "slot before its request goes, a terminal state before its event goes out, the event "
        "on a Redis broker before its RefId is settled, a producer's submission before "
        "`.delay()` returns. A write no replica confirmed in time counts as not done and is "
        "retried. `0`: off (a single Redis; a failover may then lose the last writes before "
        "it)",
        read_by=APP,
    )
    redis_replica_timeout_s: float = env(
        "ESMS_REDIS_REPLICA_TIMEOUT",
        "1.0",
        number(0.01, MAX_REPLICA_TIMEOUT_S),
        "seconds to wait for `ESMS_REDIS_REPLICAS` replicas to confirm a write (at most "
        f"{MAX_REPLICA_TIMEOUT_S:g}: the wait must end before the Redis socket's timeout)",
        read_by=APP,
    )
    accounts_file: str = env(
        "ESMS_ACCOUNTS_FILE",
        "",
        text,
        "a TOML file of eSMS accounts, one `[accounts.NAME]` table each (see [Several "
        "accounts](accounts.md)); read again when it changes, or on SIGHUP. Unset: one account, "
        "`default`, from `ESMS_API_KEY`, `ESMS_SECRET_KEY` and the `ESMS_*` terms",
        read_by=APP,
    )
    simulated: bool = env(
        "ESMS_SIMULATED",
        "",
        lambda v, _: v == "1",
        "set to `1` by `make run` and the demo when they run against the bundled simulator (the "
        "workers' first log line then says so); leave it unset",
        show=lambda flag: "1" if flag else "",
    )
    # The push receiver (push/): eSMS's CallbackUrl is .../esms/push/<an account's push token>.
    receiver_host: str = env(
        "ESMS_RECEIVER_HOST",
        "127.0.0.1",
        text,
        "the address `esms-callbacks receive` listens on (put it behind an HTTPS proxy)",
        read_by=RECEIVER,
    )
    receiver_port: int = env(
        "ESMS_RECEIVER_PORT",
        "8078",
        integer(0, 65535),
        "the port `esms-callbacks receive` listens on",
        read_by=RECEIVER,
    )
    receiver_header_timeout_s: float = env(
        "ESMS_RECEIVER_HEADER_TIMEOUT",
        "10",
        number(0.1),
        "seconds a connection to the receiver has to send a request's headers (from when it "
        "opened, or from the next request's first byte on a kept-alive connection); then it is "
        "closed. An idle kept-alive connection is closed after 75 s",
        read_by=RECEIVER,
    )
    push_allow_from: tuple[Network, ...] = env(
        "ESMS_PUSH_ALLOW_FROM",
        "",
        lambda v, _: networks(v),
        "comma-separated addresses or networks (`203.0.113.0/24, 2001:db8::/32`) allowed to push; "
        "others get 403",
        show=_show_networks,
        readme_default="any",
        read_by=RECEIVER,
    )
    push_trusted_proxies: tuple[Network, ...] = env(
        "ESMS_PUSH_TRUSTED_PROXIES",
        "",
        lambda v, _: proxies(v),
        "addresses or networks of your reverse proxies; only from them is `X-Forwarded-For` "
        "believed (read right to left, the first address not a trusted proxy is the source; "
        "`ip:port` hops are read too). `0.0.0.0/0` and `::/0` are refused: they would let anyone "
        "name any source",
        show=_show_networks,
        readme_default="none",
        read_by=RECEIVER,
    )
    push_rate_per_source: float = env(
        "ESMS_PUSH_RATE",
        "500",
        number(0.0),
        "pushes a second one source may send (with a second's burst), across all receivers (`0`: "
        "no limit). Past it a push waits for its turn (below)",
        read_by=RECEIVER,
    )
    push_rate_wait_s: float = env(
        "ESMS_PUSH_RATE_WAIT",
        "5",
        number(0.0),
        "seconds a push over its source's rate may wait for its turn before it gets 429 (counted, "
        "logged)",
        read_by=RECEIVER,
    )
    push_inbox_max: int = env(
        "ESMS_PUSH_INBOX_MAX",
        "1000000",
        integer(1, 100_000_000),
        "pushes recorded and not yet applied, at most; past it pushes get 503 (eSMS retries)",
        read_by=RECEIVER,
    )
    push_unsubmitted: str = env(
        "ESMS_PUSH_UNSUBMITTED",
        "publish",
        choice("publish", "ignore"),
        "a push for a RefId never submitted: `publish` (and remember it) or `ignore`",
        read_by=RECEIVER,
    )
    push_reclaim_after_s: float = env(
        "ESMS_PUSH_RECLAIM_AFTER",
        "30",
        number(0.1),
        "seconds a recorded push may stay unapplied before another receiver takes it over (its "
        "receiver died, or a request held its RefId)",
        read_by=RECEIVER,
    )
    # The environment's terms: the account `default`'s, and every file table's defaults.
    terms: Terms = field(default_factory=Terms)

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, process: str = "operator"
    ) -> Settings:
        """Read and validate the variables `process` reads (PROCESS_READS); the others keep
        their defaults. ConfigError names the first bad one."""
        env = os.environ if env is None else env
        reads = PROCESS_READS[process]
        read: dict[str, Any] = {}
        for name, variable in declared(cls):
            read[name] = read_variable(env if variable.read_by in reads else {}, variable, read)
        settings = cls(**read, terms=Terms.from_env(env, reads))
        problem = _sentinel_problem(settings, reads)
        if WORKERS in reads:
            problem = problem or settings.terms_problem(settings.terms)
        if problem:
            raise ConfigError(problem)
        return settings

    def terms_problem(self, terms: Terms, label: Label = by_variable) -> str:
        """Why an account on `terms` could not be served by this deployment, or ''."""
        return terms.problem(self.allow_plain_http, self.window_guard_s, label) or (
            self._drainers_problem(terms)
        )

    def to_env(self) -> dict[str, str]:
        """The variables that make `from_env` give these settings again (for subprocesses)."""
        out = {}
        for owner, cls in ((self, Settings), (self.terms, Terms)):
            for name, variable in declared(cls):
                out[variable.name] = variable.show(getattr(owner, name))
        return out

    def require_redis_url(self) -> str:
        """The Redis URL to connect to; ConfigError naming the variable to set when there is
        none. Asked by whoever uses Redis (workers, the receiver, status), never at start-up:
        a producer on another broker needs no Redis."""
        if not self.redis_url:
            raise ConfigError(
                f"ESMS_REDIS_URL is not set and CELERY_BROKER_URL ({redact_url(self.broker_url)})"
                " is not a Redis URL: set ESMS_REDIS_URL=redis://..."
            )
        if not self.redis_url.startswith((*REDIS_SCHEMES, SENTINEL_SCHEME)):
            raise ConfigError(
                f"ESMS_REDIS_URL ({redact_url(self.redis_url)}) is not a Redis URL: set "
                "ESMS_REDIS_URL=redis://... (or rediss://, unix://, sentinel://)"
            )
        return self.redis_url

    def redis_target(self) -> RedisTarget:
        """Where the project's own state lives, and how to reach it."""
        return RedisTarget(
            self.require_redis_url(),
            self.sentinel_master,
            self.sentinel_password,
            self.redis_cluster,
        )

    def broker_redis_target(self) -> RedisTarget | None:
        """The broker's Redis (to confirm its writes with replicas), or None if the broker
        is not Redis."""
        if not self.broker_url.startswith((*REDIS_SCHEMES, SENTINEL_SCHEME)):
            return None
        return RedisTarget(self.broker_url, self.sentinel_master, self.sentinel_password, "off")

    @property
    def broker_transport_options(self) -> dict[str, object]:
        """kombu's transport options for the broker: Sentinel's master name and the
        sentinels' password for a `sentinel://` broker, nothing otherwise."""
        if not self.broker_url.startswith(SENTINEL_SCHEME):
            return {}
        sentinel: dict[str, object] = {"socket_timeout": 5, "socket_connect_timeout": 5}
        if self.sentinel_password:
            sentinel["password"] = self.sentinel_password
        return {
            "master_name": self.sentinel_master,
            "sentinel_kwargs": sentinel,
            # a master gone without a reset must not hang a publish (kombu waits forever)
            "socket_timeout": 10,
            "socket_connect_timeout": 10,
        }

    def broker_connection(self, **options: Any) -> Connection:
        """A kombu connection to the broker (Sentinel's options included)."""
        return Connection(
            self.broker_url, transport_options=self.broker_transport_options, **options
        )

    def lease_s(self, terms: Terms) -> float:
        """How long a request holds its RefIds: the HTTP timeout and publishing its events
        with room to spare, short enough that RefIds of a dead worker are asked again soon."""
        return self.http_timeout_s * 2 + terms.spacing_s * 2 + 5.0

    def drainer_lease_s(self, terms: Terms) -> float:
        """How long a drainer's place lasts unless it renews it (it renews at every slot)."""
        return self.lease_s(terms) + 10.0

    @property
    def events_exchange(self) -> str:
        """The exchange events are published to: ESMS_STATUS_EXCHANGE, else named like the
        status queue (the queue bound to it by default)."""
        return self.status_exchange or self.status_queue

    def drainers_wanted(self, terms: Terms, request_time_s: float | None) -> int:
        """Drainers to keep going: ESMS_DRAINERS, or (auto) enough that while the others'
        requests are under way one is waiting for the next slot, and one more for the
        requests that take longer than the average."""
        if self.drainers:
            return self.drainers
        took_s = ASSUMED_REQUEST_TIME_S if request_time_s is None else request_time_s
        return min(MAX_AUTO_DRAINERS, 2 + math.ceil(took_s / terms.spacing_s))

    def with_changes(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    def with_terms(self, **changes: object) -> Settings:
        """These settings with the environment's terms changed (tests, benchmarks)."""
        return replace(self, terms=replace(self.terms, **changes))  # type: ignore[arg-type]

    def describe(self) -> dict[str, object]:
        """Return the settings for display: credentials and URL passwords redacted."""
        shown: dict[str, object] = {}
        for name, variable in declared(Settings):
            value = getattr(self, name)
            if variable.secret:  # passwords
                value = "<set>" if value else "<unset>"
            elif name.endswith("_url"):
                value = redact_url(value)
            elif name.startswith("push_") and isinstance(value, tuple):
                value = ",".join(str(network) for network in value)
            shown[name] = value
        shown["terms"] = self.terms.describe()
        return shown

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in self.describe().items())
        return f"Settings({shown})"

    def _drainers_problem(self, terms: Terms) -> str:
        # A drainer waits up to (drainers - 1) spacings for its slot before it renews its
        # place; a place that expires meanwhile lets one drainer too many in.
        if self.drainers * terms.spacing_s < self.drainer_lease_s(terms):
            return ""
        lease_s = self.drainer_lease_s(terms)
        return (
            f"ESMS_DRAINERS={self.drainers}: that many drainers cannot all keep their "
            f"place ({lease_s:.0f}s lease) at one request per {terms.spacing_s:g}s; use at most "
            f"{math.ceil(lease_s / terms.spacing_s) - 1}, or auto"
        )


def _sentinel_problem(settings: Settings, reads: tuple[str, ...]) -> str:
    """A `sentinel://` URL names sentinels, not the master: Sentinel needs its name."""
    named = [("CELERY_BROKER_URL", settings.broker_url)]
    if WORKERS in reads:
        named.append(("ESMS_REDIS_URL", settings.redis_url))
    for name, url in named:
        if url.startswith(SENTINEL_SCHEME) and not settings.sentinel_master:
            return (
                f"{name} is a Sentinel URL: set ESMS_SENTINEL_MASTER to the name of the master "
                "the sentinels monitor (their `sentinel monitor NAME ...` line)"
            )
    return ""


def read_setting(name: str, env: Mapping[str, str] | None = None) -> Any:
    """One setting, read and parsed as from_env reads it, for a path too hot to read them
    all (a producer's `.delay()`); only for settings that need no other to be parsed."""
    variable = next(v for field_name, v in declared(Settings) if field_name == name)
    return read_variable(os.environ if env is None else env, variable, {})


def variables() -> list[Variable]:
    """Every declared variable: the deployment's, the terms', the account `default`'s."""
    from esms_callbacks.accounts import account_variables  # accounts.py reads Settings

    return [v for _, v in declared(Settings)] + term_variables() + account_variables()


def reference_markdown() -> str:
    """The configuration reference (docs/configuration.md, `make docs-config`): one row per
    variable, the deployment's in declaration order, then the terms (each also a key of an
    accounts file's table), then the account `default`'s name and secrets."""
    rows = ["| variable | default | read by | meaning |", "| --- | --- | --- | --- |"]
    for variable in variables():
        default = variable.readme_default or (
            f"`{variable.default}`" if variable.default else "none"
        )
        meaning = variable.doc.replace("|", "\\|")
        if variable.file_key:
            meaning += f"; in an accounts file: `{variable.file_key}`"
            if variable.secret:
                meaning += f" (or `{variable.file_key}_env`, `{variable.file_key}_file`)"
        rows.append(f"| `{variable.name}` | {default} | {variable.read_by} | {meaning} |")
    return "\n".join(rows) + "\n"
