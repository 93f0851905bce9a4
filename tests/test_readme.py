"""The docs' event example (docs/events.md) is what the code produces for eSMS's own sample
record."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

from esms_callbacks.esms.records import outcome_of
from esms_callbacks.events.publish import build_event

EVENTS_PAGE = Path(__file__).resolve().parent.parent / "docs" / "events.md"


def test_the_docs_event_example_matches_the_code():
    # given the example event of the events page
    text = EVENTS_PAGE.read_text()
    block = re.search(r"Example, from eSMS's own sample record:\n\n```json\n(.*?)```", text, re.S)
    assert block, "docs/events.md lost its event example"
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


ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_stays_short_and_its_links_resolve():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200, "the README is the short version: move details to docs/"
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    assert "docs/configuration.md" in targets
    for target in targets:
        if "://" in target:
            continue
        path = target.split("#", 1)[0]
        assert (ROOT / path).exists(), target


def test_no_machine_paths_in_the_readme_and_the_docs():
    pages = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("**/*.md"))]
    for page in pages:
        found = re.findall(r"(?<![\w.])/(?:work|tmp|home|root|Users)/\S*", page.read_text())
        assert not found, (page.name, found)
