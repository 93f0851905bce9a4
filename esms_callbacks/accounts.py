"""The eSMS accounts a deployment serves: the tables of ESMS_ACCOUNTS_FILE, or without it the
one account `default` of the environment (ESMS_API_KEY, ESMS_SECRET_KEY and the ESMS_* terms).

    [accounts.shop-a]
    api_key_env = "SHOP_A_API_KEY"        # or api_key = "...", or api_key_file = "/run/..."
    secret_key_env = "SHOP_A_SECRET_KEY"
    push_token_env = "SHOP_A_PUSH_TOKEN"  # optional: the receiver tells accounts by token
    rate_interval = 1.0                   # optional, each: the process's ESMS_* otherwise
    max_refs = 100
    window = "01:00-02:00"
    timezone = "Asia/Ho_Chi_Minh"
    base_url = "https://status-sms.esms.vn"

Each account's settings are the process's, with the table's terms and secrets in place of the
ESMS_* ones, read and checked by Settings.from_env itself: an account is refused for exactly
the reasons a deployment would be. Its Redis keys are named by the table's name, so rotating
its keys keeps its waiting RefIds. An AccountBook reads the file again when it (or a secret
file it names) changes, at most every CHECK_EVERY_S, or when asked (SIGHUP).
"""

from __future__ import annotations

import logging
import os
import re
import time
import tomllib
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from esms_callbacks.errors import ConfigError, InvalidSubmission, printable
from esms_callbacks.settings import DEFAULT_ACCOUNT, Settings

log = logging.getLogger("esms.accounts")

CHECK_EVERY_S = 1.0  # how often a process looks whether the accounts file changed
# In Redis keys (inside a Cluster hash tag), metric labels and log lines: no braces, no spaces.
ACCOUNT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# The file's terms, and the variable each stands in for.
TERMS = {
    "rate_interval": "ESMS_RATE_INTERVAL",
    "max_refs": "ESMS_MAX_REFS",
    "window": "ESMS_WINDOW",
    "timezone": "ESMS_TIMEZONE",
    "base_url": "ESMS_BASE_URL",
}
# The secrets: each given inline (`api_key`), by a variable's name (`api_key_env`) or by a
# file's path (`api_key_file`, read again when the file changes). Never the process's own.
SECRETS = {
    "api_key": "ESMS_API_KEY",
    "secret_key": "ESMS_SECRET_KEY",
    "push_token": "ESMS_PUSH_TOKEN",
    "push_token_previous": "ESMS_PUSH_TOKEN_PREVIOUS",
}
SECRET_FORMS = ("", "_env", "_file")
KNOWN_KEYS = frozenset(TERMS) | {f"{s}{form}" for s in SECRETS for form in SECRET_FORMS}


class UnknownAccount(InvalidSubmission):
    """A submission for an account this deployment does not serve."""


def check_account_name(value: object) -> str:
    """The account a submission names, or InvalidSubmission saying what is wrong with it."""
    if not isinstance(value, str):
        raise InvalidSubmission(f"account must be a string, not {type(value).__name__}")
    if not ACCOUNT_NAME.fullmatch(value):
        raise InvalidSubmission(
            f"account {printable(value, 70)} is not an account name (1-64 of A-Z a-z 0-9 _ . -, "
            "starting with a letter or digit)"
        )
    return value


def read_accounts(
    base: Settings, process: str, env: Mapping[str, str] | None = None
) -> dict[str, Settings]:
    """Every account's settings by name; ConfigError naming the file, the account and the
    problem."""
    if not base.accounts_file:
        return {DEFAULT_ACCOUNT: base}
    env = os.environ if env is None else env
    path = Path(base.accounts_file)
    defaults = base.to_env()  # the process's own settings, in the form from_env reads
    accounts = {
        name: _account(name, table, process, defaults, env, f"{path} [accounts.{name}]")
        for name, table in _tables(path).items()
    }
    _check_distinct(accounts, path)
    return accounts


def account_names(path: str) -> frozenset[str]:
    """The names in an accounts file, for a producer to check `account=` against (it needs
    no secret, so it reads none); read again only when the file changed."""
    return _names_in(path, _stamp([path]))


@lru_cache(maxsize=4)
def _names_in(path: str, _stamp: tuple[object, ...]) -> frozenset[str]:
    return frozenset(_tables(Path(path)))


def _tables(path: Path) -> dict[str, dict[str, Any]]:
    try:
        document = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"ESMS_ACCOUNTS_FILE={path}: cannot read it ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"ESMS_ACCOUNTS_FILE={path}: not TOML ({exc})") from None
    tables = document.get("accounts")
    if not isinstance(tables, dict) or not tables:
        raise ConfigError(f"ESMS_ACCOUNTS_FILE={path}: no [accounts.NAME] table")
    others = sorted(set(document) - {"accounts"})
    if others:
        raise ConfigError(f"ESMS_ACCOUNTS_FILE={path}: unknown table {others[0]!r}")
    for name, table in tables.items():
        if not ACCOUNT_NAME.fullmatch(name):
            raise ConfigError(
                f"{path}: [accounts.{printable(name, 70)}]: an account's name is 1-64 of "
                "A-Z a-z 0-9 _ . - (it names Redis keys, metric labels and log lines)"
            )
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: accounts.{name} must be a table")
        unknown = sorted(set(table) - KNOWN_KEYS)
        if unknown:
            raise ConfigError(
                f"{path} [accounts.{name}]: unknown key {unknown[0]!r} (known: "
                f"{', '.join(sorted(KNOWN_KEYS))})"
            )
    return tables


def _account(
    name: str,
    table: Mapping[str, Any],
    process: str,
    defaults: Mapping[str, str],
    env: Mapping[str, str],
    where: str,
) -> Settings:
    """One table's settings: the process's, with the table's terms and secrets (`*_env`
    names a variable of `env`)."""
    overlay = dict(defaults)
    overlay["ESMS_ACCOUNT"] = name  # its keys are named by its name: a new ApiKey keeps them
    for secret, variable in SECRETS.items():
        value = _secret(table, secret, env, where)
        if value is None:
            overlay.pop(variable, None)  # never the process's own keys
        else:
            overlay[variable] = value
    for term, variable in TERMS.items():
        if term in table:
            overlay[variable] = str(table[term])
    try:
        settings = Settings.from_env(overlay, process=process)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {_in_file_terms(str(exc))}") from None
    if process == "worker" and not settings.has_credentials:
        raise ConfigError(f"{where}: no api_key and secret_key (or api_key_env, api_key_file)")
    return settings.with_changes(account_name=name)


def _secret(
    table: Mapping[str, Any], secret: str, env: Mapping[str, str], where: str
) -> str | None:
    given = [form for form in SECRET_FORMS if f"{secret}{form}" in table]
    if not given:
        return None
    if len(given) > 1:
        raise ConfigError(
            f"{where}: give {secret} one way, not {' and '.join(secret + g for g in given)}"
        )
    form = given[0]
    value = table[f"{secret}{form}"]
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: {secret}{form} must be a non-empty string")
    if form == "_env":
        if not env.get(value):
            raise ConfigError(f"{where}: {secret}_env names {value}, which is not set")
        return env[value]
    if form == "_file":
        try:
            return Path(value).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{where}: {secret}_file {value}: {exc.strerror}") from None
    return value


def _in_file_terms(problem: str) -> str:
    """A problem Settings found, told with the file's names beside the variables'."""
    for term, variable in {**TERMS, **SECRETS}.items():
        problem = problem.replace(variable, f"{term} ({variable})")
    return problem


def _check_distinct(accounts: Mapping[str, Settings], path: Path) -> None:
    """Two tables with one ApiKey would each keep eSMS's limit, together twice it; two with
    one push token could not be told apart by the receiver."""
    for what, attributes in (
        ("ApiKey", ("api_key",)),
        ("push token", ("push_token", "push_token_previous")),  # current and previous alike
    ):
        seen: dict[str, str] = {}
        for name, settings in accounts.items():
            for value in {getattr(settings, attribute) for attribute in attributes} - {""}:
                if value in seen and seen[value] != name:
                    raise ConfigError(
                        f"{path}: accounts {seen[value]} and {name} have the same {what}"
                    )
                seen[value] = name


def _watched(base: Settings) -> list[str]:
    """The files whose change means the accounts may have: the file, and the secret files
    its tables name."""
    paths = [base.accounts_file]
    try:
        tables = _tables(Path(base.accounts_file))
    except ConfigError:
        return paths
    for table in tables.values():
        paths += [table[f"{s}_file"] for s in SECRETS if isinstance(table.get(f"{s}_file"), str)]
    return paths


def _stamp(paths: list[str]) -> tuple[object, ...]:
    stamps: list[object] = []
    for path in paths:
        try:
            st = os.stat(path)
            stamps.append((path, st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            stamps.append((path, None))
    return tuple(stamps)


class AccountBook:
    """This process's accounts, read again when the file changes (or `reload_soon()`, on
    SIGHUP). A file that no longer reads keeps the accounts read before, and says why."""

    def __init__(
        self,
        base: Settings,
        process: str,
        env: Mapping[str, str] | None = None,
        monotonic_s: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base = base
        self._process, self._env, self._monotonic_s = process, env, monotonic_s
        self._accounts = read_accounts(base, process, env)  # ConfigError: do not start
        self._watched = _watched(base) if base.accounts_file else []
        self._stamp = _stamp(self._watched)
        self._checked_s = monotonic_s()
        self._reload_asked = False
        self.generation = 0  # counts the changes taken

    @property
    def from_file(self) -> bool:
        return bool(self.base.accounts_file)

    def reload_soon(self) -> None:
        """Read the file again at the next look (a signal handler may call it)."""
        self._reload_asked = True

    def accounts(self) -> Mapping[str, Settings]:
        self.refresh()
        return self._accounts

    def get(self, name: str) -> Settings | None:
        """The account's settings; an unknown name makes the book look at the file first,
        whatever the time since the last look (it may have just been added)."""
        self.refresh(force=name not in self._accounts)
        return self._accounts.get(name)

    def refresh(self, force: bool = False) -> bool:
        """Take the file's changes; whether any were taken."""
        if not self.from_file:
            return False
        now_s = self._monotonic_s()
        if not (force or self._reload_asked) and now_s - self._checked_s < CHECK_EVERY_S:
            return False
        self._checked_s = now_s
        stamp = _stamp(self._watched)
        if stamp == self._stamp and not self._reload_asked:
            return False
        self._reload_asked = False
        self._watched = _watched(self.base)
        self._stamp = _stamp(self._watched)
        try:
            accounts = read_accounts(self.base, self._process, self._env)
        except ConfigError as exc:
            log.error("accounts file not taken, the accounts read before still serve: %s", exc)
            return False
        if accounts == self._accounts:
            return False
        added = sorted(set(accounts) - set(self._accounts))
        removed = sorted(set(self._accounts) - set(accounts))
        changed = sorted(
            n for n in set(accounts) & set(self._accounts) if accounts[n] != self._accounts[n]
        )
        log.warning(
            "accounts file read again: %d accounts; added %s, removed %s, changed %s",
            len(accounts),
            ", ".join(added) or "none",
            ", ".join(removed) or "none",
            ", ".join(changed) or "none",
        )
        self._accounts = accounts
        self.generation += 1
        return True
