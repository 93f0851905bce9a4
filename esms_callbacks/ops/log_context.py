"""Log lines say which account they are about: a task names the account it works for
(`for_account`), and every line the project logs meanwhile, from any module, starts with
`account NAME: `. The `default` account's lines stay as they were before accounts."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from esms_callbacks.accounts import DEFAULT_ACCOUNT

_ACCOUNT: ContextVar[str] = ContextVar("esms_account", default="")
_OURS = ("esms", "esms_callbacks")  # the loggers whose lines get the account


@contextmanager
def for_account(name: str) -> Iterator[None]:
    """Lines logged in this block (this thread or task) name the account `name`."""
    token = _ACCOUNT.set("" if name == DEFAULT_ACCOUNT else name)
    try:
        yield
    finally:
        _ACCOUNT.reset(token)


def _install() -> None:
    previous = logging.getLogRecordFactory()
    if getattr(previous, "names_the_account", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        account = _ACCOUNT.get()
        if account and record.name.split(".", 1)[0] in _OURS and isinstance(record.msg, str):
            record.msg = f"account {account}: {record.msg}"  # names hold no `%`
        return record

    factory.names_the_account = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


_install()
