"""The producer of `bench.accounts_bench`: a process of its own that submits every account's
backlog with `fetch_callbacks.delay(ref_ids, oa_id, account=name)`, as a deployment's
producers do (CELERY_BROKER_URL and ESMS_ACCOUNTS_FILE come from its environment).

    python -m bench.accounts_submit PLAN.json

PLAN.json: {"tag": "...", "oa_id": "...", "group": 1000, "backlogs": {"acct-0000": 280000, ...}}.
Each account's RefIds are `TAG-NAME-NNNNNNN`; the groups are sent round-robin over the
accounts, as independent producers would. Prints one JSON line: groups, RefIds, seconds.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

Group = tuple[str, list[str]]  # (account, ref_ids)


def ref_ids(tag: str, account: str, start: int, count: int) -> list[str]:
    return [f"{tag}-{account}-{n:07d}" for n in range(start, start + count)]


def groups(tag: str, backlogs: Mapping[str, int], size: int) -> Iterator[Group]:
    """Every account's RefIds in groups of `size`, one group of each account in turn."""
    sent = dict.fromkeys(backlogs, 0)
    while sent:
        for account in list(sent):
            start = sent[account]
            count = min(size, backlogs[account] - start)
            yield account, ref_ids(tag, account, start, count)
            sent[account] = start + count
            if sent[account] >= backlogs[account]:
                del sent[account]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m bench.accounts_submit PLAN.json", file=sys.stderr)
        return 2
    plan = json.loads(Path(args[0]).read_text())
    from esms_callbacks import fetch_callbacks  # after the environment is in place

    started = time.monotonic()
    sent = refs = 0
    for account, batch in groups(plan["tag"], plan["backlogs"], int(plan["group"])):
        if batch:
            fetch_callbacks.delay(batch, plan["oa_id"], account=account)
            sent, refs = sent + 1, refs + len(batch)
    print(json.dumps({"groups": sent, "refs": refs, "took_s": time.monotonic() - started}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
