"""What a producer's .delay() puts on the broker: bounded messages, whatever the size."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from esms_callbacks.errors import InvalidSubmission
from esms_callbacks.tasks import fetch_callbacks
from esms_callbacks.tasks.fetch import MAX_MESSAGE_REFID_BYTES, split_by_size

OA = "1090257973118325189"


def test_a_huge_submission_leaves_in_messages_of_a_bounded_size(fetch_queue):
    # given 300,000 RefIds of eSMS's usual 39 characters (about 13 MB in one message)
    ref_ids = [f"{i:08d}-81d7-4ad1-9cce-1ac7fddd5f34196" for i in range(300_000)]

    # when submitted in one call
    fetch_callbacks.delay(ref_ids, OA)

    # expect several messages, each under the bound, carrying all of them once, in order
    calls = fetch_queue()
    assert len(calls) > 10
    for call in calls:
        assert len(json.dumps(call["kwargs"]["ref_ids"])) <= MAX_MESSAGE_REFID_BYTES
        assert call["kwargs"]["oa_id"] == OA
    assert [ref for call in calls for ref in call["kwargs"]["ref_ids"]] == ref_ids


def test_a_small_submission_stays_one_message(fetch_queue):
    fetch_callbacks.delay(["r1", "r2"], OA)
    (call,) = fetch_queue()
    assert call["args"] == [["r1", "r2"], OA]


def test_split_keeps_order_and_never_makes_an_empty_part():
    assert split_by_size(["aa", "bb", "cc"], 12) == [["aa", "bb"], ["cc"]]
    assert split_by_size(["x" * 50], 10) == [["x" * 50]]


def test_a_worker_without_an_account_keeps_the_submission_for_later(make_settings, redis_client):
    from esms_callbacks.errors import NoAccountNamed
    from esms_callbacks.tasks.context import worker_context

    # given a worker started without credentials or ESMS_ACCOUNT
    worker_context.use_settings(make_settings(api_key="", secret_key="", account=""))
    try:
        # when a submission reaches it
        with pytest.raises(NoAccountNamed, match="stays queued and is retried"):
            fetch_callbacks.run(["r1"], OA)
    finally:
        worker_context.use_settings(None)
    # expect nothing filed anywhere (no account named by a hash of an empty key), and the
    # error one Celery retries with backoff, the message staying in the broker meanwhile
    assert redis_client.keys("esms:{e3b0c44298fc1c14}*") == []
    assert NoAccountNamed in fetch_callbacks.autoretry_for


def test_producers_import_the_task_without_the_worker_s_dependencies():
    # A producer-only install has no aiohttp, Flower, honcho or prometheus_client (the
    # `worker` extra), and its command line (submit, status, show, tail) works without them.
    code = (
        "import sys; from esms_callbacks.tasks import fetch_callbacks; "
        "import esms_callbacks.cli.main; "
        "print(sorted(m for m in ('aiohttp', 'flower', 'honcho', 'tornado', 'prometheus_client')"
        " if m in sys.modules))"
    )
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"


def test_sms_type_is_checked_at_the_producer_and_travels_by_name(fetch_queue):
    # a bad SmsType is refused before anything is queued, naming the argument
    with pytest.raises(InvalidSubmission, match=r"sms_type must be 24 .* or 25 .*, not '23'"):
        fetch_callbacks.delay(["r1"], OA, sms_type=23)
    assert fetch_queue() == []
    # a good one (number or text) travels with the submission
    fetch_callbacks.delay(["r1"], OA, sms_type="24")
    (call,) = fetch_queue()
    assert call["kwargs"]["sms_type"] == "24"


def test_a_worker_notes_the_sms_type_of_what_it_parks(make_settings):
    from esms_callbacks.tasks.context import worker_context

    settings = make_settings(query_status="only")
    worker_context.use_settings(settings)
    try:
        fetch_callbacks.run(["typed-1", "typed-2"], OA, sms_type=24)
        runtime = worker_context.runtimes.default()
        notes = runtime.notes.read(OA, ["typed-1", "typed-2"])
    finally:
        worker_context.use_settings(None)
    assert {ref: note.sms_type for ref, note in notes.items()} == {"typed-1": 24, "typed-2": 24}
