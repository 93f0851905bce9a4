"""The eSMS accounts a deployment serves, each one `Account`: its name, what names its Redis
keys, its terms, and only the secrets this process asked for.

Without ESMS_ACCOUNTS_FILE there is one account, `default`: the ESMS_* terms, the keys
ESMS_API_KEY and ESMS_SECRET_KEY, the push tokens ESMS_PUSH_TOKEN(_PREVIOUS), its Redis keys
named by ESMS_ACCOUNT or else a hash of the ApiKey. With the file, one account per table:

    [accounts.shop-a]
    api_key_env = "SHOP_A_API_KEY"        # or api_key = "...", or api_key_file = "/run/..."
    secret_key_env = "SHOP_A_SECRET_KEY"
    push_token_env = "SHOP_A_PUSH_TOKEN"  # optional: the receiver tells accounts by token
    rate_interval = 1.0                   # optional, each: the process's ESMS_* otherwise
    max_refs = 100
    window = "01:00-02:00"
    timezone = "Asia/Ho_Chi_Minh"
    base_url = "https://status-sms.esms.vn"

A table's terms are the environment's with the table's own in their place (terms.py declares
both names of each). Its Redis keys are named by the table's name, so rotating its keys keeps
its waiting RefIds. Each process resolves only the secrets it uses (WORKER_SECRETS,
RECEIVER_SECRETS; status and metrics none): a `*_env` variable another process needs may be
unset here. An AccountBook reads the file again when it (or a secret file it names) changes,
at most every CHECK_EVERY_S, or when asked (SIGHUP). A table that cannot be read (a secret's
variable not set on this host yet) leaves that account unavailable, not unknown: its
submissions wait and are retried (AccountUnavailable), the other accounts are served.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
import tomllib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

from esms_callbacks.errors import (
    AccountNotServed,
    AccountUnavailable,
    ConfigError,
    InvalidSubmission,
    NoAccountNamed,
    printable,
)
from esms_callbacks.settings import Settings
from esms_callbacks.terms import Label, Terms, by_file_key, by_variable, term_variables
from esms_callbacks.variables import (
    RECEIVER,
    WORKERS_ONLY,
    Variable,
    declared,
    env,
    read_variable,
    text,
)

log = logging.getLogger("esms.accounts")

DEFAULT_ACCOUNT = "default"  # the one account of a deployment without ESMS_ACCOUNTS_FILE
CHECK_EVERY_S = 1.0  # how often a process looks whether the accounts file changed
# In Redis keys (inside a Cluster hash tag), metric labels and log lines: no braces, no spaces.
ACCOUNT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
SECRET_FORMS = ("", "_env", "_file")  # inline, a variable's name, a file's path
MIN_PUSH_TOKEN_CHARS = 16
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Secrets:
    """An account's secrets, each resolved only where a process asked for it ('' else)."""

    api_key: str = env(
        "ESMS_API_KEY",
        "",
        text,
        "the eSMS account's ApiKey (with `ESMS_SECRET_KEY`); only workers keep it (other processes "
        "hash it to name the account's Redis keys when `ESMS_ACCOUNT` is unset: set "
        "`ESMS_ACCOUNT` where hosts hold different secrets). Unset: `make run` uses the "
        "simulator, a worker sends nothing and says so",
        secret=True,
        read_by=WORKERS_ONLY,
        file_key="api_key",
    )
    secret_key: str = env(
        "ESMS_SECRET_KEY",
        "",
        text,
        "the eSMS account's SecretKey (with `ESMS_API_KEY`); read by workers only",
        secret=True,
        read_by=WORKERS_ONLY,
        file_key="secret_key",
    )
    push_token: str = env(
        "ESMS_PUSH_TOKEN",
        "",
        text,
        "the secret in the push URL `/esms/push/<token>`: at least 16 of `A-Z a-z 0-9 - _`. Read "
        "by the receiver only; never logged or shown",
        secret=True,
        readme_default="none (required by the receiver)",
        read_by=RECEIVER,
        file_key="push_token",
    )
    # Taken beside push_token while eSMS's CallbackUrl changes (docs/pushes.md).
    push_token_previous: str = env(
        "ESMS_PUSH_TOKEN_PREVIOUS",
        "",
        text,
        "a second token taken beside `ESMS_PUSH_TOKEN` while eSMS's CallbackUrl changes (same "
        "rules, must differ from it; its pushes are counted as `pushes:previous_token`). Never "
        "logged or shown. See [rotating the token](pushes.md#rotating-the-token)",
        secret=True,
        read_by=RECEIVER,
        file_key="push_token_previous",
    )

    @property
    def has_credentials(self) -> bool:
        return bool(self.api_key and self.secret_key)

    @property
    def push_tokens(self) -> tuple[str, ...]:
        """The tokens a push may carry, current first."""
        return tuple(t for t in (self.push_token, self.push_token_previous) if t)

    def push_token_problem(self, label: Label = by_variable) -> str:
        """Why the receiver must not take pushes with these tokens, or ''. Never shows one."""
        current, previous = _secret_variable("push_token"), _secret_variable("push_token_previous")
        if not self.push_token:
            return f"{label(current)} is not set; the receiver needs a secret for its URL"
        problem = _token_problem(label(current), self.push_token)
        if problem or not self.push_token_previous:
            return problem
        if self.push_token_previous == self.push_token:
            return (
                f"{label(previous)} is {label(current)}: set it to the token eSMS used before, "
                "or unset it"
            )
        return _token_problem(label(previous), self.push_token_previous)

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={'<set>' if getattr(self, f.name) else '<unset>'}" for f in fields(self)
        )
        return f"Secrets({shown})"


# What each kind of process resolves; a `*_env` variable of another kind's may be unset.
WORKER_SECRETS = frozenset({"api_key", "secret_key"})
RECEIVER_SECRETS = frozenset({"push_token", "push_token_previous"})
NO_SECRETS: frozenset[str] = frozenset()
SECRET_NAMES = tuple(name for name, _ in declared(Secrets))  # declared order: stable messages

ACCOUNT_VARIABLE = Variable(
    "ESMS_ACCOUNT",
    "",
    text,
    doc="name of the account `default` in Redis keys; set it to keep the waiting RefIds when you "
    "rotate the ApiKey. With neither it nor `ESMS_API_KEY` there is no account: a worker keeps "
    "submissions in the broker (retrying) instead of filing them where no drainer looks, and "
    "`status`/`metrics` refuse to show an account that does not exist. Every worker's first "
    "log line, and `status`, say which account and what named it",
    readme_default="hash of the ApiKey",
)


@dataclass(frozen=True)
class Account:
    """One eSMS account as this process serves it."""

    name: str  # producers' `account=`, events, logs, metrics, the turns on the worker pool
    # Names its Redis keys: the table's name; for `default`, ESMS_ACCOUNT or a hash of the
    # ApiKey (today's keys stay readable across an upgrade); '' when nothing names them.
    key_id: str
    terms: Terms = field(default_factory=Terms)
    secrets: Secrets = field(default_factory=Secrets)
    named_by: str = ""  # what named the keys, for operators

    @property
    def known(self) -> bool:
        """Whether RefIds can be filed under it (something names its keys)."""
        return bool(self.key_id)

    def require_key_id(self) -> str:
        """The name of its Redis keys; NoAccountNamed (retried) when nothing names them,
        rather than filing RefIds under a name no drainer with credentials will ever read."""
        if self.key_id:
            return self.key_id
        raise NoAccountNamed(
            "no eSMS account to file RefIds under: set ESMS_API_KEY and ESMS_SECRET_KEY (and "
            "ESMS_ACCOUNT, so a new ApiKey keeps the waiting RefIds) in this process's "
            "environment"
        )


def account_variables() -> list[Variable]:
    """The variables of the account `default` (docs/configuration.md)."""
    return [ACCOUNT_VARIABLE, *(variable for _, variable in declared(Secrets))]


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


def default_account(
    settings: Settings, secrets: frozenset[str], env: Mapping[str, str] | None = None
) -> Account:
    """The one account of a deployment without a file: the environment's."""
    env = os.environ if env is None else env
    resolved = {
        name: read_variable(env, variable, {})
        for name, variable in declared(Secrets)
        if name in secrets
    }
    named = read_variable(env, ACCOUNT_VARIABLE, {})
    if named:
        key_id, named_by = named, "ESMS_ACCOUNT"
    elif api_key := read_variable(env, _secret_variable("api_key"), {}):
        key_id = hashlib.sha256(api_key.encode()).hexdigest()[:16]
        named_by = "a hash of ESMS_API_KEY (set ESMS_ACCOUNT to keep it across a key change)"
    else:
        key_id, named_by = "", "none: ESMS_API_KEY and ESMS_ACCOUNT are not set"
    account = Account(DEFAULT_ACCOUNT, key_id, settings.terms, Secrets(**resolved), named_by)
    _check_secrets(account, secrets, by_variable, "")
    return account


@dataclass
class FileRead:
    """What one reading of the accounts file gave."""

    accounts: dict[str, Account]
    unavailable: dict[str, str]  # named by the file, its table not readable here: why


def read_file(
    settings: Settings, secrets: frozenset[str], env: Mapping[str, str] | None = None
) -> FileRead:
    """Every table's account; ConfigError when the file itself cannot be used."""
    env = os.environ if env is None else env
    path = Path(settings.accounts_file)
    read = FileRead({}, {})
    for name, table in _tables(path).items():
        where = f"{path} [accounts.{name}]"
        try:
            read.accounts[name] = _table_account(name, table, settings, secrets, env, where)
        except AccountUnavailable as exc:  # a secret not on this host (yet); other errors:
            read.unavailable[name] = str(exc)  # the file is wrong, as a whole
    _check_distinct(read.accounts, path)
    return read


def account_names(path: str) -> frozenset[str]:
    """The names in an accounts file, for a producer to check `account=` against (it needs
    no secret, so it reads none); read again only when the file changed."""
    return _names_in(path, _stamp([path]))


@lru_cache(maxsize=4)
def _names_in(path: str, _stamp: tuple[object, ...]) -> frozenset[str]:
    return frozenset(_tables(Path(path)))


def _file_keys() -> frozenset[str]:
    secrets = {f"{name}{form}" for name in SECRET_NAMES for form in SECRET_FORMS}
    return frozenset({v.file_key for v in term_variables()} | secrets)


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
    known = _file_keys()
    for name, table in tables.items():
        if not ACCOUNT_NAME.fullmatch(name):
            raise ConfigError(
                f"{path}: [accounts.{printable(name, 70)}]: an account's name is 1-64 of "
                "A-Z a-z 0-9 _ . - (it names Redis keys, metric labels and log lines)"
            )
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: accounts.{name} must be a table")
        unknown = sorted(set(table) - known)
        if unknown:
            raise ConfigError(
                f"{path} [accounts.{name}]: unknown key {unknown[0]!r} (known: "
                f"{', '.join(sorted(known))})"
            )
    return tables


def _table_account(
    name: str,
    table: Mapping[str, Any],
    settings: Settings,
    secrets: frozenset[str],
    env: Mapping[str, str],
    where: str,
) -> Account:
    """One table's account: the environment's terms with the table's in their place, and
    the secrets asked for (never the process's own ESMS_* keys)."""
    terms = settings.terms.with_table(table, where)
    problem = settings.terms_problem(terms, by_file_key)
    if problem:
        raise ConfigError(f"{where}: {problem}")
    resolved = {}
    for secret in SECRET_NAMES:
        value = _secret(table, secret, env, where, resolve=secret in secrets)
        if value:
            resolved[secret] = value
    account = Account(name, name, terms, Secrets(**resolved), "its table's name")
    _check_secrets(account, secrets, by_file_key, f"{where}: ")
    if "api_key" in secrets and not account.secrets.has_credentials:  # a table must have them
        raise ConfigError(f"{where}: no api_key and secret_key (or api_key_env, api_key_file)")
    return account


def _check_secrets(account: Account, secrets: frozenset[str], label: Label, where: str) -> None:
    """The receiver's tokens must be usable (a worker without keys sends nothing, says so)."""
    s = account.secrets
    if "push_token" in secrets and s.push_tokens:
        problem = s.push_token_problem(label)
        if problem:
            raise ConfigError(f"{where}{problem}")


def _secret(
    table: Mapping[str, Any], secret: str, env: Mapping[str, str], where: str, resolve: bool
) -> str:
    """The secret a table gives, read only when `resolve`d (its form is always checked)."""
    given = [form for form in SECRET_FORMS if f"{secret}{form}" in table]
    if not given:
        return ""
    if len(given) > 1:
        raise ConfigError(
            f"{where}: give {secret} one way, not {' and '.join(secret + g for g in given)}"
        )
    form = given[0]
    value = table[f"{secret}{form}"]
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: {secret}{form} must be a non-empty string")
    if not resolve:
        return ""
    # Not on this host (yet): the account waits (AccountUnavailable), the others are served.
    if form == "_env":
        if not env.get(value):
            raise AccountUnavailable(f"{where}: {secret}_env names {value}, which is not set")
        return env[value]
    if form == "_file":
        try:
            content = Path(value).read_text().strip()
        except OSError as exc:
            raise AccountUnavailable(f"{where}: {secret}_file {value}: {exc.strerror}") from None
        if not content:
            raise AccountUnavailable(f"{where}: {secret}_file {value} is empty")
        return content
    return str(value)


def _secret_variable(name: str) -> Variable:
    return next(variable for field_name, variable in declared(Secrets) if field_name == name)


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


def _check_distinct(accounts: Mapping[str, Account], path: Path) -> None:
    """Two tables with one ApiKey would each keep eSMS's limit, together twice it; two with
    one push token could not be told apart by the receiver (checked where resolved)."""
    for what, attributes in (
        ("ApiKey", ("api_key",)),
        ("push token", ("push_token", "push_token_previous")),  # current and previous alike
    ):
        seen: dict[str, str] = {}
        for name, account in accounts.items():
            for value in {getattr(account.secrets, attribute) for attribute in attributes} - {""}:
                if value in seen and seen[value] != name:
                    raise ConfigError(
                        f"{path}: accounts {seen[value]} and {name} have the same {what}"
                    )
                seen[value] = name


def _watched(settings: Settings) -> list[str]:
    """The files whose change means the accounts may have: the file, and the secret files
    its tables name."""
    paths = [settings.accounts_file]
    try:
        tables = _tables(Path(settings.accounts_file))
    except ConfigError:
        return paths
    for table in tables.values():
        paths += [
            table[f"{s}_file"] for s in SECRET_NAMES if isinstance(table.get(f"{s}_file"), str)
        ]
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
    """This process's accounts, resolved with the secrets it asked for, read again when the
    file changes (or `reload_soon()`, on SIGHUP). A file that no longer reads keeps the
    accounts read before, and says why."""

    def __init__(
        self,
        settings: Settings,
        secrets: frozenset[str] = NO_SECRETS,
        env: Mapping[str, str] | None = None,
        monotonic_s: Callable[[], float] = time.monotonic,
        only: Account | None = None,
    ) -> None:
        """`only`: a book of that one account, read from nowhere (a Runtime built alone)."""
        self.settings = settings
        self._secrets, self._env, self._monotonic_s = secrets, env, monotonic_s
        self._only = only
        self._unavailable: dict[str, str] = {}
        self._file_problem = ""  # why the file's last reading was not taken
        self._accounts: dict[str, Account] = {}
        self._accounts = self._read(at_start=True)  # ConfigError: do not start
        self._watched = _watched(settings) if self.from_file else []
        self._stamp = _stamp(self._watched)
        self._checked_s = monotonic_s()
        self._reload_asked = False
        self.generation = 0  # counts the changes taken

    @property
    def from_file(self) -> bool:
        return bool(self.settings.accounts_file) and self._only is None

    def reload_soon(self) -> None:
        """Read the file again at the next look (a signal handler may call it)."""
        self._reload_asked = True

    def accounts(self) -> Mapping[str, Account]:
        self.refresh()
        return self._accounts

    def get(self, name: str) -> Account:
        """The account named `name`. An unknown name makes the book look at the file first,
        whatever the time since the last look (it may have just been added). AccountNotServed
        when the file has no such table; AccountUnavailable when it has one this process
        cannot read now (its submissions wait)."""
        self.refresh(force=name not in self._accounts)
        account = self._accounts.get(name)
        if account is not None:
            return account
        if name in self._unavailable:  # (not served before either)
            raise AccountUnavailable(
                f"account {name!r} cannot be served here yet ({self._unavailable[name]}); its "
                "RefIds wait and are retried"
            )
        if self._file_problem:
            raise AccountUnavailable(
                f"no account {name!r} among those read before, and the accounts file cannot be "
                f"read now ({self._file_problem}); its RefIds wait and are retried"
            )
        raise AccountNotServed(self._not_served(name))

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
        self._watched = _watched(self.settings)
        self._stamp = _stamp(self._watched)
        try:
            accounts = self._read(at_start=False)
        except ConfigError as exc:
            self._file_problem = str(exc)
            log.error("accounts file not taken, the accounts read before still serve: %s", exc)
            return False
        self._file_problem = ""
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

    def _read(self, at_start: bool) -> dict[str, Account]:
        if self._only is not None:
            return {self._only.name: self._only}
        if not self.from_file:
            account = default_account(self.settings, self._secrets, self._env)
            return {account.name: account}
        read = read_file(self.settings, self._secrets, self._env)
        if at_start and not read.accounts:
            first = next(iter(read.unavailable.values()))
            raise ConfigError(f"no account of ESMS_ACCOUNTS_FILE can be served here: {first}")
        for name, why in sorted(read.unavailable.items()):
            if self._unavailable.get(name) == why:
                continue
            if name in self._accounts:  # a secret mid-rotation: the one read before serves
                log.error("account %s keeps the secrets read before: %s", name, why)
            else:
                log.error("account %s not served here until its table reads: %s", name, why)
        self._unavailable = read.unavailable
        kept = {n: self._accounts[n] for n in read.unavailable if n in self._accounts}
        return {**read.accounts, **kept}

    def unavailable(self) -> dict[str, str]:
        """Accounts the file names that this process cannot serve now, and why."""
        self.refresh()
        return {n: why for n, why in self._unavailable.items() if n not in self._accounts}

    def _not_served(self, name: str) -> str:
        if not self.from_file:
            return (
                f"no eSMS account {name!r}: without ESMS_ACCOUNTS_FILE this deployment serves "
                f"one account, {DEFAULT_ACCOUNT!r} (leave account= out)"
            )
        return not_in_file(name, self.settings.accounts_file, {*self._accounts, *self._unavailable})


def not_in_file(name: str, path: str, names: Collection[str]) -> str:
    """Why `name` is refused: the file `path` has only `names` (the first ten shown)."""
    served = sorted(names)
    shown = ", ".join(served[:10]) + (f" and {len(served) - 10} more" if len(served) > 10 else "")
    return f"no eSMS account {name!r} in ESMS_ACCOUNTS_FILE={path} (it has {shown})"
