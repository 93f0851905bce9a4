"""Task arguments: every wrong shape refused with a message naming it; RefIds de-duplicated."""

from __future__ import annotations

import time

import pytest

from esms_callbacks.errors import InvalidSubmission
from esms_callbacks.esms.validation import (
    MAX_OA_ID_CHARS,
    MAX_REF_ID_CHARS,
    MAX_REFS_PER_CALL,
    Submission,
    validate_submission,
)

OA_ID = "1090257973118325189"
REF = "41a35814-81d7-4ad1-9cce-1ac7fddd5f34196"


# --- accepted --------------------------------------------------------------------------------


@pytest.mark.parametrize("ref_ids", [[REF, "r2"], (REF, "r2")])
def test_a_list_or_tuple_of_refids_is_accepted(ref_ids):
    assert validate_submission(ref_ids, OA_ID) == Submission([REF, "r2"], OA_ID, 0)


def test_duplicates_are_dropped_keeping_first_occurrence_order_and_counted():
    # given RefIds repeated out of order
    ref_ids = ["b", "a", "b", "c", "a", "b"]
    # when validated
    submission = validate_submission(ref_ids, OA_ID)
    # expect each once, in order of first appearance, and the number dropped
    assert submission.ref_ids == ["b", "a", "c"]
    assert submission.duplicates == 3


def test_one_hundred_thousand_refids_are_accepted_quickly():
    # given 100,000 distinct RefIds of a realistic length, plus 10 repeats
    ref_ids = [f"{REF[:-6]}{i:06d}" for i in range(100_000)]
    # when validated
    started = time.perf_counter()
    submission = validate_submission([*ref_ids, *ref_ids[:10]], OA_ID)
    elapsed_s = time.perf_counter() - started
    # expect all of them, in order, and no noticeable wait at the producer
    assert submission.ref_ids == ref_ids
    assert submission.duplicates == 10
    assert elapsed_s < 5.0  # loose: catches a quadratic check, not a slow machine


@pytest.mark.parametrize(
    "ref_id",
    ["a" * MAX_REF_ID_CHARS, "r", "!~{}[]()<>@#$%^&*_+=|\\/?,.;:'\"`", REF],
)
def test_printable_ascii_ids_up_to_the_limit_are_accepted(ref_id):
    assert validate_submission([ref_id], "o" * MAX_OA_ID_CHARS).ref_ids == [ref_id]


# --- refused ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref_ids", "oa_id", "message"),
    [
        # ref_ids of the wrong shape
        ("r1", OA_ID, "ref_ids must be a list of RefId strings, not str"),
        (b"r1", OA_ID, "ref_ids must be a list of RefId strings, not bytes"),
        (None, OA_ID, "ref_ids must be a list of RefId strings, not NoneType"),
        ({"r1"}, OA_ID, "ref_ids must be a list of RefId strings, not set"),
        ({"r1": 1}, OA_ID, "ref_ids must be a list of RefId strings, not dict"),
        (5, OA_ID, "ref_ids must be a list of RefId strings, not int"),
        ((r for r in ["r1"]), OA_ID, "ref_ids must be a list of RefId strings, not generator"),
        ([], OA_ID, "ref_ids is empty; pass at least one RefId"),
        ((), OA_ID, "ref_ids is empty; pass at least one RefId"),
        # one bad RefId, named by its index
        ([None], OA_ID, "ref_ids[0] is missing"),
        (["r1", 5], OA_ID, "ref_ids[1] must be a string, not int"),
        (["r1", b"r2"], OA_ID, "ref_ids[1] must be a string, not bytes"),
        ([["r1"]], OA_ID, "ref_ids[0] must be a string, not list"),
        (["r1", ""], OA_ID, "ref_ids[1] is blank"),
        (["   "], OA_ID, "ref_ids[0] is blank"),
        (["a" * 129], OA_ID, "ref_ids[0] is 129 characters long; at most 128"),
        (["r 1"], OA_ID, "ref_ids[0]='r 1' contains ' '"),
        (["r1\t"], OA_ID, "contains '\\t'"),
        (["r1\n"], OA_ID, "contains '\\n'"),
        (["r\x001"], OA_ID, "contains '\\x00'"),
        (["ré"], OA_ID, "ref_ids[0]='ré' contains 'é'"),
        # oa_id
        (["r1"], None, "oa_id is missing"),
        (["r1"], 1090257973118325189, "oa_id must be a string, not int"),
        (["r1"], "", "oa_id is blank"),
        (["r1"], " ", "oa_id is blank"),
        (["r1"], "o" * 65, "oa_id is 65 characters long; at most 64"),
        (["r1"], "oa id", "oa_id='oa id' contains ' '"),
    ],
)
def test_a_wrong_shape_is_refused_naming_the_problem(ref_ids, oa_id, message):
    with pytest.raises(InvalidSubmission) as caught:
        validate_submission(ref_ids, oa_id)
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_a_bad_refid_deep_in_a_long_list_is_named_by_its_index():
    ref_ids = [f"r{i}" for i in range(10_000)]
    ref_ids[9_999] = "r 9999"
    with pytest.raises(InvalidSubmission, match=r"^ref_ids\[9999\]='r 9999' contains ' '"):
        validate_submission(ref_ids, OA_ID)


def test_a_long_bad_value_is_quoted_short():
    with pytest.raises(InvalidSubmission) as caught:
        validate_submission(["x" * 100 + " "], OA_ID)
    assert f"'{'x' * 40}'" in str(caught.value)
    assert "x" * 41 not in str(caught.value)


def test_too_many_refids_in_one_call_are_refused_with_what_to_do():
    with pytest.raises(InvalidSubmission) as caught:
        validate_submission(["r1"] * (MAX_REFS_PER_CALL + 1), OA_ID)
    assert str(caught.value) == (
        f"ref_ids has {MAX_REFS_PER_CALL + 1} RefIds; pass at most "
        f"{MAX_REFS_PER_CALL} per call (split the list)"
    )


def test_an_unexpected_argument_name_cannot_forge_a_log_line():
    with pytest.raises(InvalidSubmission) as caught:
        validate_submission(["r1"], OA_ID, {"x\n[ERROR] forged \x1b[2J": 1})
    assert str(caught.value).isprintable()
    assert "'x\\n[ERROR] forged \\x1b[2J'" in str(caught.value)


@pytest.mark.parametrize(
    ("unknown", "names"),
    [({"refids": ["r1"]}, "'refids'"), ({"oa": "x", "api_key": "k"}, "'api_key', 'oa'")],
)
def test_unexpected_arguments_are_refused_naming_them(unknown, names):
    with pytest.raises(InvalidSubmission) as caught:
        validate_submission(["r1"], OA_ID, unknown)
    assert str(caught.value) == (
        f"unexpected argument(s) {names}; fetch_callbacks takes "
        "ref_ids (a list of RefId strings), oa_id (a string), account and sms_type"
    )


def test_no_unknown_arguments_is_fine():
    assert validate_submission(["r1"], OA_ID, {}).ref_ids == ["r1"]
    assert validate_submission(["r1"], OA_ID, None).ref_ids == ["r1"]
