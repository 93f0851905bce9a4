"""The simulator's accounts from the TOML file a deployment names in ESMS_ACCOUNTS_FILE.

    [accounts.shop-a]
    api_key_env = "SHOP_A_API_KEY"        # or api_key = "...", or api_key_file = "/run/..."
    secret_key_env = "SHOP_A_SECRET_KEY"  # likewise
    rate_interval = 1.0                   # optional: the simulator's --rate-interval otherwise
    max_refs = 100                        # optional: its --max-refs otherwise

The simulator reads only these keys; the others a deployment's file holds (window, timezone,
base_url, push_token_env...) are not its business and are ignored, so one file serves both.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from esms_callbacks.simulator.accounts import AccountTable, SimAccount

_FORMS = ("", "_env", "_file")


def read_accounts_file(
    path: str | Path,
    *,
    rate_interval_s: float = 1.0,
    max_refs: int = 100,
    env: Mapping[str, str] | None = None,
) -> list[SimAccount]:
    """The accounts of the file at `path`, in its order, with these limits where a table
    names none; raise ValueError naming the file, the account and the key at fault."""
    env = os.environ if env is None else env
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"accounts file {path}: cannot read it ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"accounts file {path}: not TOML ({exc})") from None
    tables = document.get("accounts")
    if not isinstance(tables, dict) or not tables:
        raise ValueError(f"accounts file {path}: no [accounts.NAME] table")
    accounts = []
    for name, table in tables.items():
        where = f"accounts file {path} [accounts.{name}]"
        if not isinstance(table, dict):
            raise ValueError(f"{where}: must be a table")
        try:
            accounts.append(
                SimAccount(
                    name,
                    _secret(table, "api_key", env, where),
                    _secret(table, "secret_key", env, where),
                    rate_interval_s=_term(table, "rate_interval", rate_interval_s),
                    max_refs=_term(table, "max_refs", max_refs),
                )
            )
        except ValueError as exc:
            if str(exc).startswith(where):
                raise
            raise ValueError(f"{where}: {_in_file_terms(str(exc))}") from None
    try:
        AccountTable(accounts)  # names and ApiKeys distinct
    except ValueError as exc:
        raise ValueError(f"accounts file {path}: {exc}") from None
    return accounts


def accounts_toml(accounts: Sequence[SimAccount]) -> str:
    """An accounts file holding `accounts` with their keys inline, as a benchmark writes one
    for the simulator and the workers alike."""
    lines = []
    for account in accounts:
        lines += [
            f"[accounts.{json.dumps(account.name)}]",
            f"api_key = {json.dumps(account.api_key)}",
            f"secret_key = {json.dumps(account.secret_key)}",
            f"rate_interval = {account.rate_interval_s!r}",
            f"max_refs = {account.max_refs}",
            "",
        ]
    return "\n".join(lines)


def _secret(table: Mapping[str, Any], secret: str, env: Mapping[str, str], where: str) -> str:
    given = [form for form in _FORMS if f"{secret}{form}" in table]
    if not given:
        raise ValueError(f"{where}: no {secret} (give {secret}, {secret}_env or {secret}_file)")
    if len(given) > 1:
        raise ValueError(
            f"{where}: give {secret} one way, not {' and '.join(secret + g for g in given)}"
        )
    key = f"{secret}{given[0]}"
    value = table[key]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: {key} must be a non-empty string")
    if given[0] == "_env":
        if not env.get(value):
            raise ValueError(f"{where}: {key} names {value}, which is not set")
        return env[value]
    if given[0] == "_file":
        try:
            text = Path(value).read_text().strip()
        except OSError as exc:
            raise ValueError(f"{where}: {key} {value}: cannot read it ({exc.strerror})") from None
        if not text:
            raise ValueError(f"{where}: {key} {value} is empty")
        return text
    return value


def _term(table: Mapping[str, Any], key: str, default: Any) -> Any:
    value = table.get(key, default)
    if isinstance(value, str):  # the deployment reads its terms as text too: "1.0" is fine
        try:
            return int(value) if key == "max_refs" else float(value)
        except ValueError:
            return value  # refused by SimAccount, naming the key
    return value


def _in_file_terms(message: str) -> str:
    """SimAccount's message in the file's names (rate_interval, not rate_interval_s)."""
    return message.replace("rate_interval_s", "rate_interval")
