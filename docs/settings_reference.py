"""Rewrite the settings table of docs/configuration.md from the declarations in
esms_callbacks/settings.py (`make docs-config`); tests/test_settings.py checks they agree."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from esms_callbacks.settings import reference_markdown

BLOCK = re.compile(r"(<!-- settings:begin -->\n\n).*?(\n<!-- settings:end -->)", re.S)


def main(path: str) -> int:
    page = Path(path)
    text = page.read_text()
    if not BLOCK.search(text):
        print(
            f"{path}: no <!-- settings:begin --> ... <!-- settings:end --> block", file=sys.stderr
        )
        return 1
    new = BLOCK.sub(lambda m: m.group(1) + reference_markdown() + m.group(2), text, count=1)
    if new != text:
        page.write_text(new)
    print(f"{path}: settings table {'rewritten' if new != text else 'up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "docs/configuration.md"))
