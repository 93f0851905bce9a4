"""Settings: one typed object read from the environment at start-up.

Every variable is documented in the README's configuration table. Malformed values raise
ConfigError naming the variable; credentials never appear in repr().
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from esms_callbacks.workers.errors import AccountUnknown, ConfigError
from esms_callbacks.workers.window import Window

DEFAULT_BROKER_URL = "redis://localhost:6379/0"
DEFAULT_BASE_URL = "http://status-sms.esms.vn"
ESMS_MAX_REFS_CEILING = 200  # eSMS's own table; past it RefIds are silently dropped
# Jitter between our commit (right before the request is written) and the simulator's
# receipt, measured by `make bench` on a loaded 2-core machine, stayed under this; real
# networks that jitter more get a wider margin from eSMS's own 160s (workers.limiter).
DEFAULT_RATE_MARGIN_S = 0.002
MAX_AUTO_DRAINERS = 6  # each drainer holds a worker pool slot while it drains
ASSUMED_REQUEST_TIME_S = 0.25  # until the first requests have been timed

MIN_PUSH_TOKEN_CHARS = 16
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_-]+")

T = TypeVar("T")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, repr=False)
class Settings:
    broker_url: str = DEFAULT_BROKER_URL
    redis_url: str = DEFAULT_BROKER_URL
    api_key: str = field(default="", repr=False)
    secret_key: str = field(default="", repr=False)
    base_url: str = DEFAULT_BASE_URL
    rate_interval_s: float = 1.0
    # Extra spacing on top of rate_interval_s so that jitter between our commit and eSMS's
    # receipt cannot bring two requests closer than rate_interval_s where eSMS sees them; each
    # Code 160 widens it further for a while (workers.limiter).
    rate_margin_s: float = DEFAULT_RATE_MARGIN_S
    max_refs_per_request: int = 100
    window: Window = field(default_factory=lambda: Window.parse("01:00-02:00"))
    status_queue: str = "esms.status"
    status_exchange: str = ""  # empty: named like status_queue (see events.status_queue)
    phone_numbers: str = "keep"  # in events' records: keep, mask or drop
    http_timeout_s: float = 30.0
    repoll_after_s: float = 900.0
    max_age_s: float = 604800.0
    done_ttl_s: float = 172800.0
    drainers: int = 0  # 0: auto, from the interval and the measured request time
    release_every_s: float = 2.0
    max_retries: int = 5
    retry_base_s: float = 2.0
    breaker_after: int = 5
    window_guard_s: float = 1.0
    backoff_max_s: float = 60.0
    account_pause_s: float = 300.0
    account: str = ""
    simulated: bool = False
    # The push receiver (receiver/): eSMS's CallbackUrl is .../esms/push/<push_token>.
    push_token: str = field(default="", repr=False)
    receiver_host: str = "127.0.0.1"
    receiver_port: int = 8078
    push_allow_from: tuple[Network, ...] = ()  # empty: any source
    push_trusted_proxies: tuple[Network, ...] = ()  # whose X-Forwarded-For is believed
    push_rate_per_source: float = 500.0  # pushes a second from one address; 0: no limit
    push_rate_wait_s: float = 5.0  # how long a push over its source's rate waits for its turn
    push_inbox_max: int = 1_000_000  # pushes recorded and not yet applied, at most
    push_unsubmitted: str = "publish"  # a push for a RefId never submitted: publish | ignore
    push_reclaim_after_s: float = 30.0  # a push pending this long is taken over by a receiver

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every ESMS_* variable (and CELERY_BROKER_URL)."""
        env = os.environ if env is None else env
        read = _Reader(env)
        broker_url = read.text("CELERY_BROKER_URL", DEFAULT_BROKER_URL)
        zone = read.parse("ESMS_TIMEZONE", "Asia/Ho_Chi_Minh", _zone)
        settings = cls(
            broker_url=broker_url,
            redis_url=read.text("ESMS_REDIS_URL", broker_url),
            api_key=read.text("ESMS_API_KEY", "", secret=True),
            secret_key=read.text("ESMS_SECRET_KEY", "", secret=True),
            base_url=read.parse("ESMS_BASE_URL", DEFAULT_BASE_URL, _http_url),
            rate_interval_s=read.number("ESMS_RATE_INTERVAL", 1.0, minimum=0.001),
            rate_margin_s=read.number("ESMS_RATE_MARGIN", DEFAULT_RATE_MARGIN_S, minimum=0.0),
            max_refs_per_request=read.integer("ESMS_MAX_REFS", 100, 1, ESMS_MAX_REFS_CEILING),
            window=read.parse("ESMS_WINDOW", "01:00-02:00", lambda s: Window.parse(s, zone)),
            status_queue=read.text("ESMS_STATUS_QUEUE", "esms.status"),
            status_exchange=read.text("ESMS_STATUS_EXCHANGE", ""),
            phone_numbers=read.parse("ESMS_PHONE_NUMBERS", "keep", _phone_numbers),
            http_timeout_s=read.number("ESMS_HTTP_TIMEOUT", 30.0, minimum=0.1),
            repoll_after_s=read.number("ESMS_REPOLL_AFTER", 900.0, minimum=0.0),
            max_age_s=read.number("ESMS_MAX_AGE", 604800.0, minimum=0.0),
            done_ttl_s=read.number("ESMS_DONE_TTL", 172800.0, minimum=0.0),
            drainers=read.parse("ESMS_DRAINERS", "auto", _drainers),
            release_every_s=read.number("ESMS_RELEASE_EVERY", 2.0, minimum=0.1),
            max_retries=read.integer("ESMS_MAX_RETRIES", 5, 0, 100),
            retry_base_s=read.number("ESMS_RETRY_BASE", 2.0, minimum=0.0),
            breaker_after=read.integer("ESMS_BREAKER_AFTER", 5, 1, 100),
            window_guard_s=read.number("ESMS_WINDOW_GUARD", 1.0, minimum=0.0),
            backoff_max_s=read.number("ESMS_BACKOFF_MAX", 60.0, minimum=1.0),
            account_pause_s=read.number("ESMS_ACCOUNT_PAUSE", 300.0, minimum=1.0),
            account=read.text("ESMS_ACCOUNT", ""),
            simulated=read.text("ESMS_SIMULATED", "") == "1",
            push_token=read.text("ESMS_PUSH_TOKEN", "", secret=True),
            receiver_host=read.text("ESMS_RECEIVER_HOST", "127.0.0.1"),
            receiver_port=read.integer("ESMS_RECEIVER_PORT", 8078, 0, 65535),
            push_allow_from=read.parse("ESMS_PUSH_ALLOW_FROM", "", _networks),
            push_trusted_proxies=read.parse("ESMS_PUSH_TRUSTED_PROXIES", "", _proxies),
            push_rate_per_source=read.number("ESMS_PUSH_RATE", 500.0, minimum=0.0),
            push_rate_wait_s=read.number("ESMS_PUSH_RATE_WAIT", 5.0, minimum=0.0),
            push_inbox_max=read.integer("ESMS_PUSH_INBOX_MAX", 1_000_000, 1, 100_000_000),
            push_unsubmitted=read.parse("ESMS_PUSH_UNSUBMITTED", "publish", _unsubmitted),
            push_reclaim_after_s=read.number("ESMS_PUSH_RECLAIM_AFTER", 30.0, minimum=0.1),
        )
        if settings.drainers * settings.spacing_s >= settings.drainer_lease_s:
            # A drainer waits up to (drainers - 1) spacings for its slot before it renews its
            # place; a place that expires meanwhile lets one drainer too many in.
            raise ConfigError(
                f"ESMS_DRAINERS={settings.drainers}: that many drainers cannot all keep their "
                f"place ({settings.drainer_lease_s:.0f}s lease) at one request per "
                f"{settings.spacing_s:g}s; use at most "
                f"{math.ceil(settings.drainer_lease_s / settings.spacing_s) - 1}, or auto"
            )
        return settings

    def push_token_problem(self) -> str:
        """Why the receiver must not start with this ESMS_PUSH_TOKEN, or ''."""
        token = self.push_token
        if not token:
            return "ESMS_PUSH_TOKEN is not set; the receiver needs a secret for its URL"
        if len(token) < MIN_PUSH_TOKEN_CHARS:
            return (
                f"ESMS_PUSH_TOKEN is {len(token)} characters; use at least "
                f"{MIN_PUSH_TOKEN_CHARS} (e.g. python -c 'import secrets; "
                "print(secrets.token_urlsafe(24))')"
            )
        if not _TOKEN_CHARS.fullmatch(token):
            return "ESMS_PUSH_TOKEN may hold only letters, digits, '-' and '_' (it is in a URL)"
        return ""

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

    def window_capacity_refs(self, open_s: float) -> int:
        """RefIds that `open_s` seconds of open window can carry at these limits."""
        return math.floor(open_s / self.spacing_s) * self.max_refs_per_request

    def with_changes(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    def describe(self) -> dict[str, object]:
        """Return the settings for display: credentials and URL passwords redacted."""
        shown: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("api_key", "secret_key", "push_token"):
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


def redact_url(url: str) -> str:
    """Hide the password of a URL such as redis://:password@host:6379/0."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def text(self, name: str, default: str, *, secret: bool = False) -> str:
        value = self.env.get(name, default).strip()
        if not value and default:  # set but empty: a mistake, not a wish for the default
            raise ConfigError(
                f"{name} is set but empty; unset it to use the default ({default!r}) or give "
                "a value"
            )
        if any(c in value for c in "\r\n\0"):
            shown = "it" if secret else repr(value)
            raise ConfigError(f"{name}: {shown} contains a line break or NUL character")
        return value

    def parse(self, name: str, default: str, parse: Callable[[str], T]) -> T:
        raw = self.text(name, default)
        try:
            return parse(raw)
        except (ValueError, KeyError, ZoneInfoNotFoundError) as exc:
            raise ConfigError(f"{name}={raw!r}: {exc}") from None

    def number(self, name: str, default: float, *, minimum: float) -> float:
        value = self.parse(name, str(default), float)
        if not math.isfinite(value) or value < minimum:
            raise ConfigError(f"{name}={value!r}: must be a number >= {minimum}")
        return value

    def integer(self, name: str, default: int, minimum: int, maximum: int) -> int:
        value = self.parse(name, str(default), int)
        if not minimum <= value <= maximum:
            raise ConfigError(f"{name}={value}: must be between {minimum} and {maximum}")
        return value


def _drainers(text: str) -> int:
    if text == "auto":
        return 0
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 100:
        raise ValueError("must be 'auto' or a whole number between 1 and 100")
    return int(text)


def _networks(text: str) -> tuple[Network, ...]:
    """'203.0.113.7, 198.51.100.0/24' -> networks; empty -> ()."""
    networks = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(
                f"{item!r} is not an IP address or network (e.g. 203.0.113.0/24)"
            ) from None
    return tuple(networks)


def _proxies(text: str) -> tuple[Network, ...]:
    networks = _networks(text)
    for network in networks:
        if network.prefixlen == 0:
            raise ValueError(
                f"{network} trusts every address, so anyone could name any source in "
                "X-Forwarded-For; list your proxies' own addresses"
            )
    return networks


def _phone_numbers(text: str) -> str:
    if text not in ("keep", "mask", "drop"):
        raise ValueError("must be 'keep', 'mask' or 'drop'")
    return text


def _unsubmitted(text: str) -> str:
    if text not in ("publish", "ignore"):
        raise ValueError("must be 'publish' or 'ignore'")
    return text


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (use an IANA name)") from None


def _http_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return url.rstrip("/")
