"""Settings: one typed object read from the environment at start-up.

Every variable is documented in docs/configuration.md, rendered from these declarations.
Malformed values raise ConfigError naming the variable; credentials never appear in repr().
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from kombu import Connection

from esms_callbacks.errors import AccountUnknown, ConfigError
from esms_callbacks.esms.window import Window
from esms_callbacks.tuning import ASSUMED_REQUEST_TIME_S, MAX_AUTO_DRAINERS, MAX_REPLICA_TIMEOUT_S
from esms_callbacks.variables import (
    APP,
    RECEIVER,
    WORKERS,
    Network,
    Variable,
    choice,
    drainers_count,
    env,
    flag,
    http_url,
    integer,
    is_local,
    networks,
    number,
    proxies,
    read_variable,
    seconds,
    text,
    zone,
)

DEFAULT_BROKER_URL = "redis://localhost:6379/0"
DEFAULT_ACCOUNT = "default"  # the one account of a deployment without ESMS_ACCOUNTS_FILE
DEFAULT_BASE_URL = "https://status-sms.esms.vn"
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")  # what redis-py's from_url takes
SENTINEL_SCHEME = "sentinel://"  # Celery's form: sentinel://host:port;sentinel://host:port
# A finished RefId is remembered at least this long: the broker hands a dead worker's
# submission back after its visibility timeout (celeryconfig, 900 s), and that copy must still
# find its RefIds done, or they are asked for again and get a second terminal event.
MIN_DONE_TTL_S = 900.0
# eSMS often does not know a RefId in its first minute (Code 105); a shorter age would expire
# RefIds at their first answer.
MIN_MAX_AGE_S = 60.0
ESMS_MAX_REFS_CEILING = 200  # eSMS's own table; past it RefIds are silently dropped
# Covers the jitter between our commit and eSMS's receipt that `make bench` measures
# (docs/benchmarks.md); networks that jitter more get a wider margin from eSMS's own 160s.
DEFAULT_RATE_MARGIN_S = 0.002

MIN_PUSH_TOKEN_CHARS = 16
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_-]+")

DEFAULT_ZONE = "Asia/Ho_Chi_Minh"

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


ZONE_VARIABLE = Variable(
    "ESMS_TIMEZONE", DEFAULT_ZONE, lambda v, _: zone(v), doc="IANA zone of the window", read_by=APP
)


def _window(value: str, read: Mapping[str, Any]) -> Window:
    return Window.parse(value, read.get("zone") or ZoneInfo(DEFAULT_ZONE))


def _show_window(window: Window) -> str:
    if window.always:
        return "always"
    return f"{window.opens:%H:%M:%S}-{window.closes:%H:%M:%S}"


def _show_networks(networks: tuple[Network, ...]) -> str:
    return ",".join(str(network) for network in networks)


@dataclass(frozen=True, repr=False)
class Settings:
    """Every setting, each declared once with its variable (see docs/configuration.md)."""

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
    api_key: str = env(
        "ESMS_API_KEY",
        "",
        text,
        "the eSMS account's ApiKey (with `ESMS_SECRET_KEY`); unset: `make run` uses the "
        "simulator, a worker sends nothing and says so",
        secret=True,
    )
    secret_key: str = env(
        "ESMS_SECRET_KEY",
        "",
        text,
        "the eSMS account's SecretKey (with `ESMS_API_KEY`); unset: `make run` uses the "
        "simulator, a worker sends nothing and says so",
        secret=True,
    )
    base_url: str = env(
        "ESMS_BASE_URL",
        DEFAULT_BASE_URL,
        lambda v, _: http_url(v),
        "eSMS host. Every request carries the ApiKey and SecretKey, so plain `http://` is refused "
        "at start unless the host is this machine (`localhost`, `127.0.0.0/8`, `::1`, as the "
        "bundled simulator is) or `ESMS_ALLOW_PLAIN_HTTP=1`",
    )
    allow_plain_http: bool = env(
        "ESMS_ALLOW_PLAIN_HTTP",
        "",
        lambda v, _: flag(v),
        "`1`: accept an `http://` `ESMS_BASE_URL` on another host (the credentials then cross the "
        "network unencrypted)",
        show=lambda flag: "1" if flag else "",
    )
    rate_interval_s: float = env(
        "ESMS_RATE_INTERVAL",
        "1.0",
        number(0.001),
        "seconds between two requests of one account, as eSMS receives them",
    )
    # Extra spacing on top of rate_interval_s so that jitter between our commit and eSMS's
    # receipt cannot bring two requests closer than rate_interval_s where eSMS sees them; each
    # Code 160 widens it further for a while (engine.limiter).
    rate_margin_s: float = env(
        "ESMS_RATE_MARGIN",
        str(DEFAULT_RATE_MARGIN_S),
        number(0.0),
        "seconds added to the interval to absorb jitter between our commit and eSMS's receipt; "
        "each Code 160 widens it further for a while (see "
        "[Limits](operations.md#limits-and-capacity))",
    )
    max_refs_per_request: int = env(
        "ESMS_MAX_REFS",
        "100",
        integer(1, ESMS_MAX_REFS_CEILING),
        "RefIds per request, 1 to 200 (eSMS silently drops RefIds past its limit)",
    )
    window: Window = env(  # noqa: RUF009 (a field with a default_factory, as env() builds it)
        "ESMS_WINDOW",
        "01:00-02:00",
        _window,
        "`HH:MM[:SS]-HH:MM[:SS]` in `ESMS_TIMEZONE`, may cross midnight; `always` for none",
        show=_show_window,
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
    repoll_after_s: float = env(
        "ESMS_REPOLL_AFTER",
        "900",
        number(0.0),
        "seconds before a non-terminal RefId is asked again",
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
    account: str = env(
        "ESMS_ACCOUNT",
        "",
        text,
        "name of the account in Redis keys; set it to keep the waiting RefIds when you rotate the "
        "ApiKey. With neither it nor `ESMS_API_KEY` there is no account: a worker keeps "
        "submissions in the broker (retrying) instead of filing them where no drainer looks, and "
        "`status`/`metrics` refuse to show an account that does not exist. Every worker's first "
        "log line, and `status`, say which account and what named it",
        readme_default="hash of the ApiKey",
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
    # The push receiver (receiver/): eSMS's CallbackUrl is .../esms/push/<push_token>.
    push_token: str = env(
        "ESMS_PUSH_TOKEN",
        "",
        text,
        "the secret in the push URL `/esms/push/<token>`: at least 16 of `A-Z a-z 0-9 - _`. Never "
        "logged or shown",
        secret=True,
        readme_default="none (required by the receiver)",
        read_by=RECEIVER,
    )
    # Taken beside push_token while eSMS's CallbackUrl changes (docs/pushes.md: rotating the token).
    push_token_previous: str = env(
        "ESMS_PUSH_TOKEN_PREVIOUS",
        "",
        text,
        "a second token taken beside `ESMS_PUSH_TOKEN` while eSMS's CallbackUrl changes (same "
        "rules, must differ from it; its pushes are counted as `pushes:previous_token`). Never "
        "logged or shown. See [rotating the token](pushes.md#rotating-the-token)",
        secret=True,
        read_by=RECEIVER,
    )
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
    # Not read from the environment: the account's name for producers (`account=`), events,
    # logs and metrics. `default` without ESMS_ACCOUNTS_FILE; the table's name in the file.
    account_name: str = DEFAULT_ACCOUNT

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, process: str = "operator"
    ) -> Settings:
        """Read and validate the variables `process` reads (PROCESS_READS); the others keep
        their defaults. ConfigError names the first bad one."""
        env = os.environ if env is None else env
        reads = PROCESS_READS[process]
        read: dict[str, Any] = {"zone": read_variable(env, ZONE_VARIABLE, {})}
        for f in fields(cls):
            if "env" in f.metadata:
                variable: Variable = f.metadata["env"]
                read[f.name] = read_variable(
                    env if variable.read_by in reads else {}, variable, read
                )
        del read["zone"]
        settings = cls(**read)
        problem = _sentinel_problem(settings, reads)
        if problem:
            raise ConfigError(problem)
        if WORKERS not in reads:
            return settings
        for check in (_drainers_problem, _plain_http_problem, _guard_problem):
            problem = check(settings)
            if problem:
                raise ConfigError(problem)
        return settings

    def to_env(self) -> dict[str, str]:
        """The variables that make `from_env` give these settings again (for subprocesses)."""
        out = {ZONE_VARIABLE.name: str(self.window.zone)}
        for f in fields(self):
            if "env" in f.metadata:
                variable: Variable = f.metadata["env"]
                out[variable.name] = variable.show(getattr(self, f.name))
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

    def push_token_problem(self) -> str:
        """Why the receiver must not start with this ESMS_PUSH_TOKEN (and
        ESMS_PUSH_TOKEN_PREVIOUS, if set), or ''. Never shows a token."""
        if not self.push_token:
            return "ESMS_PUSH_TOKEN is not set; the receiver needs a secret for its URL"
        problem = _token_problem("ESMS_PUSH_TOKEN", self.push_token)
        if problem or not self.push_token_previous:
            return problem
        if self.push_token_previous == self.push_token:
            return (
                "ESMS_PUSH_TOKEN_PREVIOUS is ESMS_PUSH_TOKEN: set it to the token eSMS used "
                "before, or unset it"
            )
        return _token_problem("ESMS_PUSH_TOKEN_PREVIOUS", self.push_token_previous)

    @property
    def has_credentials(self) -> bool:
        return bool(self.api_key and self.secret_key)

    @property
    def account_id(self) -> str:
        """Name the account in Redis keys and logs: ESMS_ACCOUNT, else a hash of the ApiKey.

        Without either there is no account: AccountUnknown, rather than filing RefIds under
        a name no drainer with credentials will ever read."""
        if self.account:
            return self.account
        if self.api_key:
            return hashlib.sha256(self.api_key.encode()).hexdigest()[:16]
        raise AccountUnknown(
            "no eSMS account to file RefIds under: set ESMS_API_KEY and ESMS_SECRET_KEY (and "
            "ESMS_ACCOUNT, so a new ApiKey keeps the waiting RefIds) in this process's "
            "environment"
        )

    @property
    def account_known(self) -> bool:
        return bool(self.account or self.api_key)

    @property
    def account_source(self) -> str:
        """Why the account has the name it has, for operators."""
        if self.account:
            return "ESMS_ACCOUNT"
        if self.api_key:
            return "a hash of ESMS_API_KEY (set ESMS_ACCOUNT to keep it across a key change)"
        return "none: ESMS_API_KEY and ESMS_ACCOUNT are not set"

    @property
    def lease_s(self) -> float:
        """How long a request holds its RefIds: the HTTP timeout and publishing its events
        with room to spare, short enough that RefIds of a dead worker are asked again soon."""
        return self.http_timeout_s * 2 + self.spacing_s * 2 + 5.0

    @property
    def drainer_lease_s(self) -> float:
        """How long a drainer's place lasts unless it renews it (it renews at every slot)."""
        return self.lease_s + 10.0

    @property
    def events_exchange(self) -> str:
        """The exchange events are published to: ESMS_STATUS_EXCHANGE, else named like the
        status queue (the queue bound to it by default)."""
        return self.status_exchange or self.status_queue

    @property
    def spacing_s(self) -> float:
        """Seconds the limiter keeps between two requests of the account."""
        return self.rate_interval_s + self.rate_margin_s

    def drainers_wanted(self, request_time_s: float | None) -> int:
        """Drainers to keep going: ESMS_DRAINERS, or (auto) enough that while the others'
        requests are under way one is waiting for the next slot, and one more for the
        requests that take longer than the average."""
        if self.drainers:
            return self.drainers
        took_s = ASSUMED_REQUEST_TIME_S if request_time_s is None else request_time_s
        return min(MAX_AUTO_DRAINERS, 2 + math.ceil(took_s / self.spacing_s))

    def window_capacity_refs(self, sendable_s: float) -> int:
        """RefIds that `sendable_s` seconds in which requests may go out (the window within its
        guards: engine.capacity) can carry at these limits."""
        return math.floor(max(0.0, sendable_s) / self.spacing_s) * self.max_refs_per_request

    def with_changes(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    def describe(self) -> dict[str, object]:
        """Return the settings for display: credentials and URL passwords redacted."""
        shown: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if "env" in f.metadata and f.metadata["env"].secret:  # the keys, tokens, passwords
                value = "<set>" if value else "<unset>"
            elif f.name.endswith("_url"):
                value = redact_url(value)
            if isinstance(value, Window):
                value = str(value)
            elif f.name.startswith("push_") and isinstance(value, tuple):
                value = ",".join(str(network) for network in value)
            shown[f.name] = value
        return shown

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in self.describe().items())
        return f"Settings({shown})"


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


def _drainers_problem(settings: Settings) -> str:
    # A drainer waits up to (drainers - 1) spacings for its slot before it renews its place;
    # a place that expires meanwhile lets one drainer too many in.
    if settings.drainers * settings.spacing_s < settings.drainer_lease_s:
        return ""
    return (
        f"ESMS_DRAINERS={settings.drainers}: that many drainers cannot all keep their "
        f"place ({settings.drainer_lease_s:.0f}s lease) at one request per "
        f"{settings.spacing_s:g}s; use at most "
        f"{math.ceil(settings.drainer_lease_s / settings.spacing_s) - 1}, or auto"
    )


def _plain_http_problem(settings: Settings) -> str:
    """The ApiKey and SecretKey are in every request's body: unencrypted only to this host."""
    url = settings.base_url
    if not url.startswith("http://") or settings.allow_plain_http or is_local(url):
        return ""
    https = urlunsplit(urlsplit(url)._replace(scheme="https"))
    return (
        f"ESMS_BASE_URL={redact_url(url)!r} would send the eSMS keys unencrypted: use "
        f"{redact_url(https)} (eSMS's own is {DEFAULT_BASE_URL}), or set "
        "ESMS_ALLOW_PLAIN_HTTP=1 to allow plain HTTP anyway"
    )


def _guard_problem(settings: Settings) -> str:
    """The guard is kept clear at both ends of the window: half the window or more leaves no
    moment at which a request may go."""
    window = settings.window
    if window.always:
        return ""
    length_s = window_length_s(window)
    if 2 * settings.window_guard_s < length_s:
        return ""
    return (
        f"ESMS_WINDOW_GUARD={settings.window_guard_s:g} is kept clear at both ends of the "
        f"window ESMS_WINDOW={_show_window(window)}, so no request could ever go: half of it "
        f"is {length_s / 2:g} s; use a guard under that (default 1.0) or a longer ESMS_WINDOW"
    )


def window_length_s(window: Window) -> float:
    """Seconds from the window's opening to its closing on a day without a clock change."""
    assert window.opens is not None and window.closes is not None
    opens, closes = (
        t.hour * 3600 + t.minute * 60 + t.second for t in (window.opens, window.closes)
    )
    return float((closes - opens) % 86400)


def _token_problem(name: str, token: str) -> str:
    """Why `token` cannot be the push URL's secret read from `name`, or ''."""
    if len(token) < MIN_PUSH_TOKEN_CHARS:
        return (
            f"{name} is {len(token)} characters; use at least {MIN_PUSH_TOKEN_CHARS} (e.g. "
            "python -c 'import secrets; print(secrets.token_urlsafe(24))')"
        )
    if not _TOKEN_CHARS.fullmatch(token):
        return f"{name} may hold only letters, digits, '-' and '_' (it is in a URL)"
    return ""


def redact_url(url: str) -> str:
    """Hide the password of a URL such as redis://:password@host:6379/0 (each of
    Sentinel's `;`-separated ones)."""
    if ";" in url:
        return ";".join(redact_url(part) for part in url.split(";"))
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def read_setting(name: str, env: Mapping[str, str] | None = None) -> Any:
    """One setting, read and parsed as from_env reads it, for a path too hot to read them
    all (a producer's `.delay()`); only for settings that need no other to be parsed."""
    field_ = next(f for f in fields(Settings) if f.name == name)
    return read_variable(os.environ if env is None else env, field_.metadata["env"], {})


def variables() -> list[Variable]:
    """Every declared variable, ESMS_TIMEZONE first (the window is read in its zone)."""
    return [ZONE_VARIABLE] + [f.metadata["env"] for f in fields(Settings) if "env" in f.metadata]


def reference_markdown() -> str:
    """The configuration reference (docs/configuration.md, `make docs-config`): one row per
    variable, in declaration order with ESMS_TIMEZONE beside the window it is read for."""
    declared = variables()[1:]
    at = next(i for i, v in enumerate(declared) if v.name == "ESMS_WINDOW") + 1
    declared.insert(at, ZONE_VARIABLE)
    rows = ["| variable | default | read by | meaning |", "| --- | --- | --- | --- |"]
    for variable in declared:
        default = variable.readme_default or (
            f"`{variable.default}`" if variable.default else "none"
        )
        meaning = variable.doc.replace("|", "\\|")
        rows.append(f"| `{variable.name}` | {default} | {variable.read_by} | {meaning} |")
    return "\n".join(rows) + "\n"
