"""Turns on the worker pool a deployment's accounts share (engine/turns.py, engine/waiting.py)
against real Redis, then with real `celery worker` processes: a waiting entry that this
deployment does not serve (an account removed from the file, renamed, or another deployment's
on the same Redis) neither takes the running accounts' turns nor blocks the hand-over to an
account that does wait."""

from __future__ import annotations

import contextlib
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from esms_callbacks.accounts import WORKER_SECRETS, Account, AccountBook
from esms_callbacks.cli.processes import Child, stop_all
from esms_callbacks.engine.backlog import Backlog
from esms_callbacks.engine.clock import ManualClock
from esms_callbacks.engine.dispatch import DrainerDispatch
from esms_callbacks.engine.keys import TURNS_RENEWED, AccountKeys
from esms_callbacks.engine.semaphore import LeaseSemaphore
from esms_callbacks.engine.turns import Turns
from esms_callbacks.runtime import Runtimes
from esms_callbacks.settings import Settings
from esms_callbacks.simulator.app import Simulator
from esms_callbacks.simulator.server import serve_in_thread
from esms_callbacks.tasks.context import queue_drain
from esms_callbacks.tuning import WAITING_PAGE
from tests.helpers import T0, runtime_of, wait_until
from tests.procs import settings_env, start_beat, start_worker

RATE_INTERVAL_S = 0.1
OA = "oa-turns"


def clear_turns(client: redis.Redis) -> None:
    """Forget every account waiting for a turn (the test database's deployment keys)."""
    for pattern in ("esms:drains-waiting", "esms:{:turns}:*"):
        for key in client.scan_iter(match=pattern):
            client.delete(key)


@contextlib.contextmanager
def accounts(tmp_path: Path, names: list[str]) -> Iterator[tuple[Path, dict[str, Simulator]]]:
    """An accounts file of `names`, each with a simulator of its own over real HTTP."""
    sims = {
        name: Simulator(
            api_key=f"key-{name}",
            secret_key=f"secret-{name}",
            rate_interval_s=RATE_INTERVAL_S,
            policy="sent",
        )
        for name in names
    }
    with contextlib.ExitStack() as stack:
        tables = ""
        for name, sim in sims.items():
            running = stack.enter_context(serve_in_thread(sim))
            tables += textwrap.dedent(
                f"""
                [accounts.{name}]
                api_key = "key-{name}"
                secret_key = "secret-{name}"
                base_url = "{running.base_url}"
                rest_base_url = "{running.base_url}"
                """
            )
        path = tmp_path / "accounts.toml"
        path.write_text(tables)
        yield path, sims


def another_deployments_account(make_settings: Callable[..., Settings], now_s: float) -> None:
    """An account of another deployment on the same Redis (or one since removed from this
    one's file) asks for a drain while that deployment's pool is busy: it waits for a turn
    that nobody here will serve."""
    name = f"ghost-{uuid.uuid4().hex[:6]}"
    ghost = runtime_of(
        make_settings(),
        name,
        queue_drain=lambda queued_as: None,  # that deployment's broker: not ours
        takes_turns=lambda: True,  # it has several accounts
    )
    ghost.dispatch.request(now_s, force=True)


def times_of(sim: Simulator) -> list[float]:
    return sorted(r.received_monotonic_s for r in sim.requests if r.api_key_ok)


# --- the waiting list and the turns, against real Redis, on a clock of the test's own --------

SERVED = ("a", "b", "c")


@pytest.fixture
def turns(redis_client: redis.Redis) -> Iterator[Turns]:
    clear_turns(redis_client)
    yield Turns(redis_client, served=lambda: SERVED, fair_turn_s=10.0, stale_after_s=120.0)
    clear_turns(redis_client)


@pytest.fixture
def dispatch_of(redis_client: redis.Redis) -> Iterator[Callable[[str], DrainerDispatch]]:
    """An account's DrainerDispatch (three drainers wanted, in a deployment of several)."""
    made: list[AccountKeys] = []

    def make(name: str) -> DrainerDispatch:
        keys = AccountKeys(f"test-turns-{name}-{uuid.uuid4().hex[:8]}")
        made.append(keys)
        return DrainerDispatch(
            redis_client,
            keys,
            Settings(),
            Account(name, keys.account_id),
            Backlog(redis_client, keys, done_ttl_s=3600),
            LeaseSemaphore(redis_client, keys.drainers, lease_s=30),
            wanted=lambda: 3,
            queue_drain=lambda queued_as: None,
            takes_turns=lambda: True,
        )

    yield make
    for keys in made:
        for key in redis_client.scan_iter(match=f"{keys.prefix}*"):
            redis_client.delete(key)


def test_only_accounts_served_here_count_as_waiting_and_are_handed_turns(turns):
    # given another deployment's account waiting longest, then b and c of this one
    turns.waiting.join("elsewhere", T0)
    turns.waiting.join("b", T0 + 1)
    turns.waiting.join("c", T0 + 2)
    # expect a to see others waiting, and b to see c (not itself)
    assert turns.others_waiting("a", T0 + 3)
    assert turns.others_waiting("b", T0 + 3)
    # when turns are handed over: b then c, in the order they began waiting, past the entry
    # nobody here serves, which keeps its place (its own deployment may serve it)
    assert turns.next_waiting(T0 + 3) == "b"
    assert turns.next_waiting(T0 + 3) == "c"
    assert turns.next_waiting(T0 + 3) is None
    assert list(turns.waiting.in_order(T0 + 3)) == ["elsewhere"]
    # expect the entry left to take no turn from anybody here
    assert not turns.others_waiting("a", T0 + 3)


def test_an_account_served_here_is_found_behind_a_page_of_others(turns):
    for n in range(WAITING_PAGE + 8):
        turns.waiting.join(f"elsewhere-{n:02d}", T0 + n)
    turns.waiting.join("b", T0 + 100)
    assert turns.others_waiting("a", T0 + 101)
    assert turns.next_waiting(T0 + 101) == "b"


def test_a_wait_its_deployments_pulses_stop_renewing_is_dropped(turns, redis_client):
    # given two accounts waiting since T0, one of them since removed from the file
    turns.waiting.join("a", T0)
    turns.waiting.join("removed", T0)
    # when this deployment's pulse renews the waits of the accounts it serves
    turns.renew(T0 + 100)
    # expect the wait nobody renewed to count until it is stale, then to be dropped; a's
    # kept, in its place
    assert list(turns.waiting.in_order(T0 + 119)) == ["a", "removed"]
    assert list(turns.waiting.in_order(T0 + 121)) == ["a"]
    # and a renewal to make no account wait (b and c were not waiting)
    assert redis_client.zrange(TURNS_RENEWED, 0, -1) == [b"a"]


def test_a_drain_task_serves_the_account_waiting_longest(turns, dispatch_of):
    # given b waiting, then a (whose drain task is the one that starts)
    b, a = dispatch_of("b"), dispatch_of("a")
    b.request(T0, force=True)
    a.request(T0 + 1, force=True)
    # expect the task to serve b first (the broker's order is not the turns'), a to keep
    # its place, and a task of an account with nobody waiting before it to serve it
    assert turns.next_waiting(T0 + 2) == "b"
    assert list(turns.waiting.in_order(T0 + 2)) == ["a"]
    assert turns.next_waiting(T0 + 2) == "a"


def test_a_turn_lasts_until_another_account_waits_and_fair_turn_s_passed(turns, dispatch_of):
    a = dispatch_of("a")
    clock = ManualClock(T0)
    with turns.acquire(a, clock, "w1@host") as turn:
        assert turn is not None
        # alone, the turn goes on past fair_turn_s
        clock.advance(11.0)
        assert turn.keep_going()
        # with b waiting, it is over at the next step
        turns.waiting.join("b", clock.now_s())
        assert not turn.keep_going() and turn.over
        clock.advance(0.1)
    # expect the place given back and a waiting again, behind b
    assert a.slots.holders(clock.now_s()) == 0
    assert list(turns.waiting.in_order(clock.now_s())) == ["b", "a"]


def test_a_drainer_beside_others_of_its_account_yields_at_once(turns, dispatch_of):
    a = dispatch_of("a")
    clock = ManualClock(T0)
    turns.waiting.join("b", T0)
    with turns.acquire(a, clock, "w1@host") as first:
        assert first is not None and first.keep_going()  # its only drainer keeps its turn
        with turns.acquire(a, clock, "w2@host") as second:
            assert second is not None
            assert not second.keep_going() and second.over
        # a still has a drainer running: it is served, it does not wait
        assert list(turns.waiting.in_order(T0)) == ["b"]


def test_a_turn_stops_when_its_worker_stops_or_its_settings_change(turns, dispatch_of):
    a = dispatch_of("a")
    clock = ManualClock(T0)
    current = [True]
    with turns.acquire(a, clock, "w1@host", still_current=lambda: current[0]) as turn:
        assert turn is not None and turn.keep_going()
        current[0] = False  # a rotated key: the next drain uses the new one
        assert not turn.keep_going() and not turn.over and not turn.lost
        a.worker_stopping("w1@host")  # a warm shutdown: the task must end
        assert not turn.keep_going() and turn.lost
    with turns.acquire(a, clock, "w1@host") as turn:
        assert turn is None  # a stopping worker takes no place


def test_a_turn_ended_by_an_error_gives_its_place_back_without_waiting_again(turns, dispatch_of):
    a = dispatch_of("a")
    clock = ManualClock(T0)
    turns.waiting.join("b", T0)
    with pytest.raises(RuntimeError), turns.acquire(a, clock, "w1@host") as turn:
        assert turn is not None
        clock.advance(11.0)
        assert not turn.keep_going()
        raise RuntimeError("a retry")
    assert a.slots.holders(clock.now_s()) == 0
    assert list(turns.waiting.in_order(clock.now_s())) == ["b"]


def test_a_single_account_never_yields(redis_client, dispatch_of):
    clear_turns(redis_client)
    alone = Turns(redis_client, served=lambda: ["a"], fair_turn_s=10.0)
    alone.waiting.join("elsewhere", T0)
    clock = ManualClock(T0)
    with alone.acquire(dispatch_of("a"), clock, "w1@host") as turn:
        clock.advance(60.0)
        assert turn is not None and turn.keep_going()
    clear_turns(redis_client)


# --- real workers ------------------------------------------------------------------------------


@pytest.fixture
def workers() -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    stop_all(started)


@pytest.mark.slow
def test_an_entry_nobody_here_serves_takes_no_turn_from_the_account_left(
    tmp_path, make_settings, redis_client, workers
):
    # given a deployment of two accounts, one busy with requests that take 0.3 s at one
    # request per 0.1 s (it needs several drainers to keep its rate), one idle
    run = uuid.uuid4().hex[:6]
    busy, idle = f"busy-{run}", f"idle-{run}"
    clear_turns(redis_client)
    with accounts(tmp_path, [busy, idle]) as (path, sims):
        sims[busy].set_fault_rate("slow", 1.0, delay_s=0.3)
        settings = make_settings(
            accounts_file=str(path),
            rate_interval_s=RATE_INTERVAL_S,
            drainers=5,
            release_every_s=0.5,
        )
        # and another deployment's account waiting for a turn on the same Redis
        here = Runtimes(AccountBook(settings, WORKER_SECRETS), queue_drain=queue_drain)
        another_deployments_account(make_settings, here.get(busy).clock.now_s())
        env = settings_env(settings)
        workers.append(start_worker("turns-rate", env, tmp_path, concurrency=6))
        workers.append(start_beat(env, tmp_path))  # its pulses ask for the drainers wanted
        # when the busy account gets 16 s of work
        runtime = here.get(busy)
        runtime.backlog.park(OA, [f"r-{n}" for n in range(16_000)], runtime.clock.now_s())
        runtime.dispatch.request(runtime.clock.now_s(), force=True)
        wait_until(lambda: len(times_of(sims[busy])) > 0, 30, "no request")
        first_s = times_of(sims[busy])[0]
        time.sleep(max(0.0, first_s + 11.0 - time.monotonic()))
    # expect it to keep its rate from its first seconds on (its drainers do not yield their
    # places to an account nobody here serves)
    sent = [t for t in times_of(sims[busy]) if first_s + 2.0 <= t < first_s + 10.0]
    spacing_s = RATE_INTERVAL_S + settings.terms.rate_margin_s
    assert len(sent) >= 0.7 * 8.0 / spacing_s, f"{len(sent)} requests in 8 s"


@pytest.mark.slow
def test_the_hand_over_skips_an_entry_nobody_here_serves(
    tmp_path, make_settings, redis_client, workers
):
    # given a deployment of two accounts on a pool of one slot, one drainer each
    run = uuid.uuid4().hex[:6]
    first, second = f"first-{run}", f"second-{run}"
    clear_turns(redis_client)
    with accounts(tmp_path, [first, second]) as (path, sims):
        settings = make_settings(
            accounts_file=str(path), rate_interval_s=RATE_INTERVAL_S, drainers=1
        )
        workers.append(start_worker("turns-hand", settings_env(settings), tmp_path, concurrency=1))
        here = Runtimes(AccountBook(settings, WORKER_SECRETS), queue_drain=queue_drain)
        now_s = here.get(first).clock.now_s()
        # and, waiting longest, another deployment's account (or one since removed)
        another_deployments_account(make_settings, now_s - 2.0)
        # then the second account, whose drain task is lost (only a hand-over starts it)
        lost: Runtimes = Runtimes(
            AccountBook(settings, WORKER_SECRETS), queue_drain=lambda *_: None
        )
        waiting = lost.get(second)
        waiting.backlog.park(OA, [f"s-{n}" for n in range(1000)], now_s)
        waiting.dispatch.request(now_s - 1.0, force=True)
        # when the first account drains (more than a turn of work)
        runtime = here.get(first)
        runtime.backlog.park(OA, [f"f-{n}" for n in range(20_000)], now_s)
        runtime.dispatch.request(now_s, force=True)
        wait_until(lambda: len(times_of(sims[first])) > 0, 30, "no request")
        first_s = times_of(sims[first])[0]
        # expect its turn (FAIR_TURN_S, 10 s) to pass to the second account, not to stop
        # at the entry nobody here serves
        wait_until(
            lambda: len(times_of(sims[second])) > 0,
            30,
            "the second account was never handed a turn",
        )
    assert times_of(sims[second])[0] - first_s < 10.0 + 5.0
