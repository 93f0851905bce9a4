"""How a setting is declared: its environment variable, how its text is parsed and shown,
who reads it, and the parsers the declarations share (settings.py, terms.py and accounts.py
declare them)."""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from esms_callbacks.errors import ConfigError
from esms_callbacks.esms.window import Window

# Who reads a variable. Each process reads only its own (Settings.from_env's `process`), so a
# web app that queues RefIds is never stopped by a setting meant for the workers.
APP = "every process"  # the Celery app's own config: producers, workers, beat, Flower
WORKERS = "workers, receiver"  # what requests, events and the waiting RefIds need
RECEIVER = "receiver"  # eSMS's pushes
WORKERS_ONLY = "workers"  # an account's ApiKey and SecretKey (accounts.py: secrets)
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def drainers_count(text: str) -> int:
    if text == "auto":
        return 0
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 100:
        raise ValueError("must be 'auto' or a whole number between 1 and 100")
    return int(text)


def networks(text: str) -> tuple[Network, ...]:
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


def proxies(text: str) -> tuple[Network, ...]:
    found = networks(text)
    for network in found:
        if network.prefixlen == 0:
            raise ValueError(
                f"{network} trusts every address, so anyone could name any source in "
                "X-Forwarded-For; list your proxies' own addresses"
            )
    return found


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (use an IANA name)") from None


def http_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return url.rstrip("/")


def flag(value: str) -> bool:
    if value not in ("", "0", "1"):
        raise ValueError("must be 1 (yes) or 0 (no)")
    return value == "1"


def is_local(url: str) -> bool:
    """Whether `url` names this machine (localhost, 127.0.0.0/8, ::1): plain HTTP there never
    crosses a network."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Variable:
    """One environment variable: its name, its default as the reference shows it, how its text
    becomes the setting (`parse`, given the other values read so far) and back (`show`)."""

    name: str
    default: str  # the text read when the variable is unset
    parse: Callable[[str, Mapping[str, Any]], Any]
    show: Callable[[Any], str] = str
    doc: str = ""
    secret: bool = False
    readme_default: str = ""  # how docs/configuration.md shows the default, if not `default`
    read_by: str = WORKERS
    file_key: str = ""  # an account's term: its key in an ESMS_ACCOUNTS_FILE table


def env(
    name: str,
    default: str,
    parse: Callable[[str, Mapping[str, Any]], Any],
    doc: str,
    *,
    show: Callable[[Any], str] = str,
    secret: bool = False,
    readme_default: str = "",
    read_by: str = WORKERS,
    file_key: str = "",
) -> Any:
    """Declare a setting read from `name` by the processes `read_by` names (an account's term
    also from its accounts-file table's `file_key`): its Python default is `parse(default)`."""
    variable = Variable(name, default, parse, show, doc, secret, readme_default, read_by, file_key)
    value = parse(default, {})
    metadata = {"env": variable}
    if isinstance(value, Window):
        return field(default_factory=lambda: parse(default, {}), metadata=metadata)
    return field(default=value, metadata=metadata, repr=not secret)


def text(value: str, _: Mapping[str, Any]) -> str:
    return value


def seconds(minimum_s: float, why: str, default: str) -> Callable[[str, Mapping[str, Any]], float]:
    """Seconds of at least `minimum_s`; the error says `why` and the default."""

    def parse(value: str, _: Mapping[str, Any]) -> float:
        number = float(value)
        if not math.isfinite(number) or number < minimum_s:
            raise ValueError(
                f"must be at least {minimum_s:g} seconds: {why}; the default is {default}"
            )
        return number

    return parse


def number(minimum: float, maximum: float = math.inf) -> Callable[[str, Mapping[str, Any]], float]:
    def parse(value: str, _: Mapping[str, Any]) -> float:
        number = float(value)
        if not math.isfinite(number) or number < minimum:
            raise ValueError(f"must be a number >= {minimum}")
        if number > maximum:
            raise ValueError(f"must be a number <= {maximum}")
        return number

    return parse


def integer(minimum: int, maximum: int) -> Callable[[str, Mapping[str, Any]], int]:
    def parse(value: str, _: Mapping[str, Any]) -> int:
        whole = int(value)
        if not minimum <= whole <= maximum:
            raise ValueError(f"must be between {minimum} and {maximum}")
        return whole

    return parse


def choice(*options: str) -> Callable[[str, Mapping[str, Any]], str]:
    def parse(value: str, _: Mapping[str, Any]) -> str:
        if value not in options:
            raise ValueError("must be " + " or ".join(repr(option) for option in options))
        return value

    return parse


def declared(cls: type) -> list[tuple[str, Variable]]:
    """A settings dataclass's fields that `env()` declared, with their variables, in order."""
    return [(f.name, f.metadata["env"]) for f in fields(cls) if "env" in f.metadata]


def read_variable(env: Mapping[str, str], variable: Variable, read: Mapping[str, Any]) -> Any:
    """The setting `variable` gives in `env`; ConfigError naming it when it is malformed."""
    raw = env.get(variable.name)
    if raw is None:
        return variable.parse(variable.default, read)
    return parse_given(variable, raw, read, variable.name)


def parse_given(variable: Variable, raw: str, read: Mapping[str, Any], name: str) -> Any:
    """`raw`, given for `variable` (by the environment, or an accounts file's key: `name` says
    which in an error), parsed; ConfigError saying what is wrong, never showing a secret."""
    value = raw.strip()
    shown = "it" if variable.secret else repr(value)
    if not value and variable.default:  # set but empty: a mistake, not a wish for the default
        raise ConfigError(
            f"{name} is set but empty; unset it to use the default ({variable.default!r}) or "
            "give a value"
        )
    if any(c in value for c in "\r\n\0"):
        raise ConfigError(f"{name}: {shown} contains a line break or NUL character")
    try:
        return variable.parse(value, read)
    except (ValueError, KeyError, ZoneInfoNotFoundError) as exc:
        detail = f"{name}: {exc}" if variable.secret else f"{name}={value!r}: {exc}"
        raise ConfigError(detail) from None
