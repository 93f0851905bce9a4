"""One progress line: redrawn in place on a terminal, printed every two seconds elsewhere."""

from __future__ import annotations

import sys
import time
from typing import TextIO

_last_line_at = 0.0


def bar(done: int, total: int, width: int = 20) -> str:
    filled = width * min(done, total) // max(1, total)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def line(text: str, end: str = "", stream: TextIO | None = None) -> None:
    """Show `text` as the progress line; `end="\n"` finishes it."""
    global _last_line_at
    out = stream or sys.stdout
    if out.isatty():
        print("\r" + text.ljust(110)[:160], end=end, file=out, flush=True)
    elif end or time.monotonic() - _last_line_at > 2.0:
        print(text, file=out, flush=True)
        _last_line_at = time.monotonic()
