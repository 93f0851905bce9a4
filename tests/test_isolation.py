"""The test harness itself: parallel sessions stay apart (each pytest-xdist worker on a Redis
database of its own, few slow tests at once), and drain_events's `until` helper."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.isolation import one_of, worker_redis_url


def test_a_plain_session_uses_the_url_as_given() -> None:
    assert worker_redis_url("redis://127.0.0.1:6379/12", None) == "redis://127.0.0.1:6379/12"
    assert worker_redis_url("redis://127.0.0.1:6379/12", "") == "redis://127.0.0.1:6379/12"


def test_each_xdist_worker_takes_the_next_database_on_the_same_server() -> None:
    urls = [worker_redis_url("redis://:pw@127.0.0.1:6390/3", f"gw{n}") for n in range(4)]
    assert urls == [f"redis://:pw@127.0.0.1:6390/{db}" for db in (3, 4, 5, 6)]
    # a URL without a database is database 0
    assert worker_redis_url("redis://127.0.0.1:6379", "gw2") == "redis://127.0.0.1:6379/2"


@pytest.mark.parametrize(
    ("url", "worker", "problem"),
    [
        ("redis://127.0.0.1:6379/12", "worker-1", "expected gw<number>"),
        ("redis://127.0.0.1:6379/cache", "gw1", "must be a database number"),
    ],
)
def test_what_cannot_be_split_is_refused_naming_it(url: str, worker: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        worker_redis_url(url, worker)


def test_no_more_than_the_slots_are_held_at_once_and_every_holder_gets_its_turn(
    tmp_path: Path,
) -> None:
    # given two places and five holders (flock: separate opens exclude each other, as the
    # run's worker processes do), each staying inside until told to leave
    inside: list[int] = []
    most_inside = 0
    done: list[int] = []
    lock = threading.Lock()
    leave = threading.Event()

    def hold(n: int) -> None:
        nonlocal most_inside
        with one_of(2, tmp_path / "slots", poll_s=0.01):
            with lock:
                inside.append(n)
                most_inside = max(most_inside, len(inside))
            leave.wait(5)
            with lock:
                inside.remove(n)
        done.append(n)

    threads = [threading.Thread(target=hold, args=(n,)) for n in range(5)]
    for thread in threads:
        thread.start()
    # when two are inside, the other three wait
    deadline = threading.Event()
    while len(inside) < 2 and not deadline.wait(0.01):
        pass
    deadline.wait(0.2)
    assert sorted(done) == [] and len(inside) == 2
    # and once told to leave, all five have been inside, never more than two at a time
    leave.set()
    for thread in threads:
        thread.join(10)
    assert sorted(done) == [0, 1, 2, 3, 4]
    assert most_inside == 2


def test_until_terminal_counts_each_refid_once_however_the_events_come() -> None:
    from tests.helpers import until_terminal

    def event(ref_id: str, terminal: bool) -> dict[str, object]:
        return {"ref_id": ref_id, "terminal": terminal}

    got: list[dict[str, object]] = []
    every, two = until_terminal(["a", "b"]), until_terminal(at_least=2)
    for new, expected in [
        (event("a", False), False),  # not terminal yet
        (event("a", True), False),
        (event("a", True), False),  # a repeat is still one RefId
        (event("b", True), True),
    ]:
        got.append(new)
        assert (every(got), two(got)) == (expected, expected)
