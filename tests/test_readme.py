"""The README's event example is what the code produces for eSMS's own sample record."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

from esms_callbacks.workers.events import build_event
from esms_callbacks.workers.records import outcome_of

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_event_example_matches_the_code():
    # given the README's example event
    text = README.read_text()
    block = re.search(r"Example, from eSMS's own sample record:\n\n```json\n(.*?)```", text, re.S)
    assert block, "the README lost its event example"
    example = json.loads(block.group(1))
    # when the same record is turned into an event at the same times
    event = build_event(
        example["ref_id"],
        example["oa_id"],
        outcome_of(example["record"]),
        datetime.fromisoformat(example["observed_at"]),
        datetime.fromisoformat(example["submitted_at"]),
    )
    # expect the very same event
    assert event == example
