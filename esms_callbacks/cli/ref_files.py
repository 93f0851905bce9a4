"""RefIds from what people actually have: a list, or a CSV or Excel export, from a file or stdin.

A plain list has one RefId per line (`#` starts a comment). A table (a first line holding `,`,
`;` or a tab: RefIds never do) needs `--column`: its header row is never taken for a RefId.
Excel's UTF-8 byte order mark and `;`-separated exports are read as they are.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import IO

from esms_callbacks.errors import InvalidSubmission, printable

DELIMITERS = ",;\t"


def read_ref_ids(raw: IO[bytes], column: str | None, name: str) -> Iterator[str]:
    """RefIds of `raw` (named `name` in messages); InvalidSubmission names what is wrong."""
    try:
        text = raw.read().decode("utf-8-sig")  # drops Excel's byte order mark
    except UnicodeDecodeError as exc:
        raise InvalidSubmission(
            f"{name} is not UTF-8 text (byte {exc.start}); save it as 'CSV UTF-8' or plain text"
        ) from None
    first = next((line for line in text.splitlines() if line.strip()), "")
    table = any(d in first for d in DELIMITERS)
    if column is None:
        if table:
            raise InvalidSubmission(
                f"{name} looks like a table (columns {_columns(first)}); name the one holding "
                "the RefIds with --column"
            )
        yield from _lines(text)
        return
    reader = csv.DictReader(io.StringIO(text), dialect=_dialect(first))
    fields = [f.strip() for f in reader.fieldnames or []]
    if column not in fields:
        raise InvalidSubmission(
            f"{name} has no column {column!r}; its columns are {_columns(first)}"
        )
    reader.fieldnames = fields
    for row in reader:
        value = (row.get(column) or "").strip()
        if value:
            yield value


def _lines(text: str) -> Iterator[str]:
    for line in text.splitlines():
        value = line.strip()
        if value and not value.startswith("#"):
            yield value


def _dialect(first_line: str) -> type[csv.Dialect]:
    try:
        return csv.Sniffer().sniff(first_line, delimiters=DELIMITERS)
    except csv.Error:
        return csv.excel


def _columns(first_line: str) -> str:
    row = next(csv.reader([first_line], dialect=_dialect(first_line)), [])
    return ", ".join(printable(cell.strip(), 40) for cell in row[:20]) or "none"
