"""Several eSMS accounts in one deployment (esms_callbacks/accounts.py, runtime.Runtimes): the
accounts file, reading it again, the producer's and the worker's checks, events by account,
and one account's failure stopping it alone (two simulators over real HTTP, a real worker)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import textwrap
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from esms_callbacks import fetch_callbacks
from esms_callbacks.accounts import (
    CHECK_EVERY_S,
    DEFAULT_ACCOUNT,
    RECEIVER_SECRETS,
    WORKER_SECRETS,
    AccountBook,
    check_account_name,
    read_file,
)
from esms_callbacks.errors import AccountNotServed, ConfigError, InvalidSubmission
from esms_callbacks.events.publish import event_id
from esms_callbacks.runtime import Runtime, Runtimes
from esms_callbacks.settings import Settings
from esms_callbacks.simulator.app import Simulator
from esms_callbacks.simulator.server import serve_in_thread
from esms_callbacks.tuning import RETIRED_CLOSE_AFTER_S
from tests.helpers import (
    SIM_API_KEY,
    SIM_SECRET_KEY,
    T0,
    drain_events,
    in_process_worker,
    runtime_of,
    wait_until,
)


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def two_accounts(tmp_path: Path) -> Path:
    return write(
        tmp_path / "accounts.toml",
        """
        [accounts.shop-a]
        api_key_env = "SHOP_A_API_KEY"
        secret_key_env = "SHOP_A_SECRET_KEY"
        push_token_env = "SHOP_A_PUSH_TOKEN"

        [accounts.shop-b]
        api_key = "key-b"
        secret_key = "secret-b"
        rate_interval = 0.05
        max_refs = 200
        window = "always"
        base_url = "http://127.0.0.1:9/"
        """,
    )


ENV = {
    "SHOP_A_API_KEY": "key-a",
    "SHOP_A_SECRET_KEY": "secret-a",
    "SHOP_A_PUSH_TOKEN": "token-of-shop-a-0123456789",
}


def test_each_table_is_an_account_with_its_own_terms_and_the_process_defaults(two_accounts):
    # given a process whose own terms are the 2023 ones, and its own (unused) keys
    base = Settings(accounts_file=str(two_accounts))
    env = {**ENV, "ESMS_API_KEY": "process-key", "ESMS_SECRET_KEY": "x"}
    # when the accounts are read
    accounts = read_file(base, WORKER_SECRETS, env).accounts
    a, b = accounts["shop-a"], accounts["shop-b"]
    # expect each account's keys from where its table says, never the process's
    assert (a.secrets.api_key, a.secrets.secret_key) == ("key-a", "secret-a")
    assert (b.secrets.api_key, b.secrets.secret_key) == ("key-b", "secret-b")
    # (a push token is the receiver's: a worker does not read it)
    assert a.secrets.push_token == ""
    receiving = read_file(base, RECEIVER_SECRETS, env).accounts
    assert receiving["shop-a"].secrets.push_token == ENV["SHOP_A_PUSH_TOKEN"]
    assert receiving["shop-b"].secrets.push_token == ""
    # (and the receiver reads no ApiKey)
    assert receiving["shop-a"].secrets.api_key == ""
    # its terms from its table, else the process's
    assert (a.terms.rate_interval_s, a.terms.max_refs_per_request, str(a.terms.window)) == (
        1.0,
        100,
        str(base.terms.window),
    )
    terms_b = b.terms
    assert (terms_b.rate_interval_s, terms_b.max_refs_per_request, terms_b.window.always) == (
        0.05,
        200,
        True,
    )
    assert terms_b.base_url == "http://127.0.0.1:9"
    # and its Redis keys and public name from its table's name (a new ApiKey keeps them)
    assert (a.key_id, a.name) == ("shop-a", "shop-a")
    assert b.key_id == "shop-b"


def test_without_a_file_there_is_one_account_default_as_before():
    base = Settings()
    accounts = AccountBook(base, WORKER_SECRETS, {"ESMS_API_KEY": "k", "ESMS_SECRET_KEY": "s"})
    assert list(accounts.accounts()) == [DEFAULT_ACCOUNT]
    # the environment's terms, and the same keys as before accounts existed
    default = accounts.get(DEFAULT_ACCOUNT)
    assert default.terms is base.terms
    assert default.key_id == hashlib.sha256(b"k").hexdigest()[:16]


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        (
            '[accounts.a]\napi_key = "k"\nsecret_key = "s"\nrate_limit = 1',
            "unknown key 'rate_limit'",
        ),
        ('[accounts."a b"]\napi_key = "k"\nsecret_key = "s"', "an account's name is"),
        (
            '[accounts.a]\napi_key_env = "NOT_SET_ANYWHERE"\nsecret_key = "s"',
            "api_key_env names NOT_SET_ANYWHERE, which is not set",
        ),
        (
            '[accounts.a]\napi_key = "k"\nsecret_key = "s"\nmax_refs = 500',
            r"max_refs \(ESMS_MAX_REFS\)",
        ),
        (
            '[accounts.a]\napi_key = "k"\nsecret_key = "s"\nwindow = "late"',
            r"window \(ESMS_WINDOW\)",
        ),
        ('[accounts.a]\nsecret_key = "s"', "no api_key and secret_key"),
        (
            '[accounts.a]\napi_key = "k"\napi_key_env = "K"\nsecret_key = "s"',
            "give api_key one way",
        ),
        (
            '[accounts.a]\napi_key = "k"\nsecret_key = "s"\n'
            '[accounts.b]\napi_key = "k"\nsecret_key = "t"',
            "accounts a and b have the same ApiKey",
        ),
        ("[accounts]", "no \\[accounts.NAME\\] table"),
        ("[accounts.a", "not TOML"),
    ],
)
def test_a_bad_file_is_refused_naming_the_account_and_the_problem(tmp_path, table, problem):
    path = write(tmp_path / "accounts.toml", table)
    with pytest.raises(ConfigError, match=problem):
        AccountBook(Settings(accounts_file=str(path)), WORKER_SECRETS, {})


def test_a_missing_file_is_refused_naming_it(tmp_path):
    with pytest.raises(ConfigError, match=r"ESMS_ACCOUNTS_FILE=.*cannot read it"):
        AccountBook(Settings(accounts_file=str(tmp_path / "none.toml")), WORKER_SECRETS, {})


def test_no_secret_is_shown_in_a_refusal(tmp_path):
    path = write(
        tmp_path / "accounts.toml",
        '[accounts.a]\napi_key = "very-secret-key"\nsecret_key = "s"\nmax_refs = 0',
    )
    with pytest.raises(ConfigError) as refused:
        AccountBook(Settings(accounts_file=str(path)), WORKER_SECRETS, {})
    assert "very-secret-key" not in str(refused.value)


def test_the_book_takes_a_changed_file_at_its_next_look_and_keeps_the_old_on_a_bad_one(tmp_path):
    # given a book on a file of one account, and a clock of our own
    path = write(tmp_path / "accounts.toml", '[accounts.a]\napi_key = "k1"\nsecret_key = "s"')
    now_s = [0.0]
    book = AccountBook(Settings(accounts_file=str(path)), WORKER_SECRETS, {}, lambda: now_s[0])
    assert list(book.accounts()) == ["a"]
    # when a second account is added and the key of the first rotated
    write(
        path,
        '[accounts.a]\napi_key = "k2"\nsecret_key = "s"\n'
        '[accounts.b]\napi_key = "kb"\nsecret_key = "s"',
    )
    os.utime(path, ns=(1, 1))  # a stamp of its own, whatever the file system's resolution
    # expect it taken at the next look, not before
    assert list(book.accounts()) == ["a"]
    now_s[0] += CHECK_EVERY_S
    assert sorted(book.accounts()) == ["a", "b"]
    assert book.accounts()["a"].secrets.api_key == "k2"
    assert book.generation == 1
    # and a file that no longer reads changes nothing
    write(path, "[accounts.a")
    os.utime(path, ns=(2, 2))
    now_s[0] += CHECK_EVERY_S
    assert sorted(book.accounts()) == ["a", "b"]
    assert book.generation == 1


def test_an_unknown_account_makes_the_book_look_at_once(tmp_path):
    path = write(tmp_path / "accounts.toml", '[accounts.a]\napi_key = "k1"\nsecret_key = "s"')
    book = AccountBook(Settings(accounts_file=str(path)), WORKER_SECRETS, {}, lambda: 0.0)
    write(
        path,
        '[accounts.a]\napi_key = "k1"\nsecret_key = "s"\n'
        '[accounts.new]\napi_key = "kn"\nsecret_key = "s"',
    )
    os.utime(path, ns=(3, 3))
    # no time passed: a submission for the account just added still finds it
    assert book.get("new").name == "new"


def test_a_rotated_secret_file_is_taken_and_sighup_forces_a_look(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("old\n")
    path = write(
        tmp_path / "accounts.toml", f'[accounts.a]\napi_key = "k"\nsecret_key_file = "{secret}"'
    )
    now_s = [0.0]
    book = AccountBook(Settings(accounts_file=str(path)), WORKER_SECRETS, {}, lambda: now_s[0])
    assert book.accounts()["a"].secrets.secret_key == "old"
    secret.write_text("new\n")
    os.utime(secret, ns=(5, 5))
    book.reload_soon()  # what the SIGHUP handler calls: no need to wait for the next look
    assert book.accounts()["a"].secrets.secret_key == "new"


def test_runtimes_are_built_again_when_an_account_changes_and_share_one_redis(tmp_path, redis_url):
    path = write(
        tmp_path / "accounts.toml",
        '[accounts.a]\napi_key = "k1"\nsecret_key = "s"\n'
        '[accounts.b]\napi_key = "kb"\nsecret_key = "s"',
    )
    now_s = [0.0]
    base = Settings(accounts_file=str(path), redis_url=redis_url)
    runtimes = Runtimes(AccountBook(base, WORKER_SECRETS, {}, lambda: now_s[0]))
    a, b = runtimes.get("a"), runtimes.get("b")
    assert a.redis is b.redis
    assert runtimes.get("a") is a
    write(path, '[accounts.a]\napi_key = "k2"\nsecret_key = "s"')
    os.utime(path, ns=(7, 7))
    now_s[0] += CHECK_EVERY_S
    assert [r.name for r in runtimes.all()] == ["a"]
    assert runtimes.get("a") is not a and runtimes.get("a").account.secrets.api_key == "k2"
    with pytest.raises(AccountNotServed, match="no eSMS account 'b' in ESMS_ACCOUNTS_FILE"):
        runtimes.get("b")


def test_event_ids_of_the_default_account_are_those_of_before():
    # the formula events had before accounts existed
    before = hashlib.sha256(b"oa\x1fref\x1fsent:5").hexdigest()[:32]
    assert event_id("ref", "oa", "sent:5") == before
    assert event_id("ref", "oa", "sent:5", DEFAULT_ACCOUNT) == before
    # another account's RefId of the same name is another message
    assert event_id("ref", "oa", "sent:5", "shop-a") != before


@pytest.mark.parametrize("bad", ["", "a b", "{x}", "x" * 65, 7, None])
def test_an_account_that_is_not_a_name_is_refused(bad):
    with pytest.raises(InvalidSubmission, match="account"):
        check_account_name(bad)


def test_the_producer_refuses_an_account_its_file_lacks(two_accounts, monkeypatch, fetch_queue):
    monkeypatch.setenv("ESMS_ACCOUNTS_FILE", str(two_accounts))
    with pytest.raises(AccountNotServed, match=r"no eSMS account 'shop-c'.*shop-a, shop-b"):
        fetch_callbacks.delay(["r1"], "oa-1", account="shop-c")
    with pytest.raises(InvalidSubmission, match="not an account name"):
        fetch_callbacks.delay(["r1"], "oa-1", account="shop c")
    fetch_callbacks.delay(["r1"], "oa-1", account="shop-b")
    # nothing of the refused ones was queued; the account travels by name, never a key
    queued = fetch_queue()
    assert [call["kwargs"].get("account") for call in queued] == ["shop-b"]
    assert "key-b" not in repr(queued)


# --- two accounts through one real worker, each on its own simulator -------------------------


@pytest.fixture
def two_sims():
    sims = [
        Simulator(api_key="key-a", secret_key="secret-a", rate_interval_s=0.05, policy="sent"),
        Simulator(api_key="key-b", secret_key="secret-b", rate_interval_s=0.05, policy="sent"),
    ]
    with serve_in_thread(sims[0]) as a, serve_in_thread(sims[1]) as b:
        yield a, b


@pytest.mark.serial  # at most one request past the pause: under parallel load a third came
def test_one_accounts_wrong_secret_stops_it_alone(tmp_path, make_settings, two_sims):
    # given shop-a with a wrong SecretKey and shop-b with its right one, one worker for both
    a, b = two_sims
    path = write(
        tmp_path / "accounts.toml",
        f"""
        [accounts.shop-a]
        api_key = "key-a"
        secret_key = "wrong"
        base_url = "{a.base_url}"
        rest_base_url = "{a.base_url}"

        [accounts.shop-b]
        api_key = "key-b"
        secret_key = "secret-b"
        base_url = "{b.base_url}"
        rest_base_url = "{b.base_url}"
        """,
    )
    settings = make_settings(accounts_file=str(path), rate_interval_s=0.05)
    with in_process_worker(settings):
        # when each account gets RefIds of the same names, and one the worker does not serve
        fetch_callbacks.delay([f"r-{i}" for i in range(300)], "oa-1", account="shop-a")
        fetch_callbacks.delay([f"r-{i}" for i in range(300)], "oa-1", account="shop-b")
        events = drain_events(
            settings.broker_url,
            settings.status_queue,
            want=0,
            timeout_s=60,
            until=lambda got: len({e["ref_id"] for e in got if e["terminal"]}) >= 300,
        )
        wait_until(lambda: len(a.sim.requests) >= 1, 10, "shop-a never asked")
    # expect shop-b's RefIds all terminal, each event naming shop-b, from full requests
    assert {e["account"] for e in events} == {"shop-b"}
    assert {e["ref_id"] for e in events if e["terminal"]} == {f"r-{i}" for i in range(300)}
    assert all(
        e["event_id"] == event_id(e["ref_id"], "oa-1", "sent:5", "shop-b")
        for e in events
        if e["terminal"]
    )
    assert [r.ref_count_sent for r in b.sim.requests][:3] == [100, 100, 100]
    # and shop-a, refused (101), stopped after its first request: it is paused, not retried
    assert all(not r.api_key_ok for r in a.sim.requests)
    assert len(a.sim.requests) <= 2


# --- turns: the worker pool shared fairly ----------------------------------------------------


def test_accounts_wait_for_turns_in_order_and_queued_drains_do_not_pile_up(
    make_settings, redis_client
):
    from esms_callbacks.engine.keys import TURNS_RENEWED, TURNS_WAITING
    from esms_callbacks.engine.turns import Turns

    redis_client.delete(TURNS_WAITING, TURNS_RENEWED)
    queued: dict[str, list[str]] = {"a": [], "b": []}
    a, b = (
        runtime_of(
            make_settings(drainers=3),
            f"turn-{n}",
            queue_drain=queued[n].append,
            takes_turns=lambda: True,  # accounts of one file
        )
        for n in ("a", "b")
    )
    turns = Turns(redis_client, served=lambda: ["turn-a", "turn-b"])
    # given a's drains asked for (three wanted), then b's, none running: each waits for a
    # turn with one task queued (the turns hand it a drain; the task, should the pool free up)
    assert a.dispatch.request(T0 + 100.0) == 1
    assert b.dispatch.request(T0 + 100.5) == 1
    # expect each to see the other waiting, not itself alone
    assert turns.others_waiting("turn-a", T0 + 101) and turns.others_waiting("turn-b", T0 + 101)
    # and beat's next pulses to queue nothing more while that one is queued, and once it
    # expired unrun, one more
    assert a.dispatch.request(T0 + 102.0, force=True) == 0
    assert a.dispatch.request(T0 + 100.0 + 61, force=True) == 1
    assert len(queued["a"]) == 2
    # when a's drain starts (its task), a no longer waits; b has waited longest
    a.dispatch.dequeue(queued["a"][1])
    a.dispatch.drain_started()
    a.drainer_slots.acquire(T0 + 162.0, 3)
    assert not turns.others_waiting("turn-b", T0 + 162)
    # and once it runs, its other drainers are asked for
    assert a.dispatch.request(T0 + 163.0, force=True) == 2
    assert turns.next_waiting(T0 + 164) == "turn-b"
    # and a that gives its turn up with work left waits again, at the back
    for token in redis_client.zrange(a.keys.drainers, 0, -1):
        a.drainer_slots.release(token.decode())
    a.dispatch.wait_for_turn(T0 + 170.0)
    b.dispatch.wait_for_turn(T0 + 171.0)
    assert turns.next_waiting(T0 + 172) == "turn-a"
    # while one of an account's drainers runs, it is served: it does not wait
    a.drainer_slots.acquire(T0 + 180.0, 3)
    a.dispatch.wait_for_turn(T0 + 180.0)
    a.dispatch.request(T0 + 181.0, force=True)
    assert turns.next_waiting(T0 + 182) == "turn-b"
    assert turns.next_waiting(T0 + 182) is None
    # and a single account (no file) never waits nor yields
    alone = runtime_of(make_settings(), "turn-alone", queue_drain=queued["a"].append)
    alone.dispatch.request(T0 + 200.0)
    assert turns.next_waiting(T0 + 201) is None
    assert not Turns(redis_client, served=lambda: ["default"]).others_waiting("default", T0)


@pytest.mark.slow  # 9,000 RefIds through an in-process worker: tens of seconds of CPU
@pytest.mark.parametrize("drainers", [1, 0], ids=["one drainer each", "drainers auto"])
def test_with_fewer_pool_slots_than_accounts_every_account_gets_its_turn(
    tmp_path, make_settings, monkeypatch, drainers
):
    # given six accounts, each with a backlog of 15 full requests, on a pool of four threads:
    # two must wait for a place (with drainers auto, each account wants three)
    import esms_callbacks.tasks  # noqa: F401  (the module, not the task of the same name)
    from esms_callbacks.tasks.context import worker_context

    monkeypatch.setattr(worker_context, "fair_turn_s", 0.3)
    sims = [
        Simulator(api_key=f"key-{i}", secret_key=f"secret-{i}", rate_interval_s=0.05, policy="sent")
        for i in range(6)
    ]
    with contextlib.ExitStack() as stack:
        running = [stack.enter_context(serve_in_thread(sim)) for sim in sims]
        run = uuid.uuid4().hex[:8]  # keys of this run's own: done RefIds are remembered
        tables = "".join(
            f'[accounts.t{i}-{run}]\napi_key = "key-{i}"\nsecret_key = "secret-{i}"\n'
            f'base_url = "{r.base_url}"\n'
            f'rest_base_url = "{r.base_url}"\n'
            for i, r in enumerate(running)
        )
        path = write(tmp_path / "accounts.toml", tables)
        settings = make_settings(accounts_file=str(path), drainers=drainers, rate_interval_s=0.05)
        # (parked before the worker starts: the turns are measured, not the submissions,
        # which wait for a pool slot like any task)
        parking = Runtimes(AccountBook(settings, WORKER_SECRETS))
        for runtime in parking.all():
            runtime.backlog.park("oa-1", [f"r-{n}" for n in range(1500)], runtime.clock.now_s())
        with in_process_worker(settings):  # beat's stand-in starts the drains
            events = drain_events(  # policy "sent": one terminal event per RefId
                settings.broker_url, settings.status_queue, want=6 * 1500, timeout_s=120
            )
    assert len(events) == 6 * 1500 and all(e["terminal"] for e in events)
    # expect every account to have started before any finished its backlog: none waited
    # behind another's
    first = [min(r.received_monotonic_s for r in sim.requests) for sim in sims]
    last = [max(r.received_monotonic_s for r in sim.requests) for sim in sims]
    assert max(first) < min(last)
    # and each account kept its own rate while it had its turn
    for sim in sims:
        assert all(r.api_key_ok and r.code == 100 for r in sim.requests)


# --- pushes: the token tells whose ------------------------------------------------------------


def test_the_receiver_tells_accounts_apart_by_their_tokens(tmp_path, push_settings, monkeypatch):
    from esms_callbacks.cli.receive import build_app
    from tests.receiving import get, push_params, serve_app

    # given two accounts, each with a push token of its own, and the same RefId parked in each
    monkeypatch.setenv("PUSH_A", "token-of-account-a-000000")
    monkeypatch.setenv("PUSH_B", "token-of-account-b-000000")
    path = write(
        tmp_path / "accounts.toml",
        """
        [accounts.push-a]
        api_key = "ka"
        secret_key = "sa"
        push_token_env = "PUSH_A"

        [accounts.push-b]
        api_key = "kb"
        secret_key = "sb"
        push_token_env = "PUSH_B"
        """,
    )
    settings = push_settings(accounts_file=str(path), push_token="")
    book = AccountBook(settings, RECEIVER_SECRETS)
    runtimes = {name: Runtime(settings, account) for name, account in book.accounts().items()}
    for runtime in runtimes.values():
        runtime.backlog.park("oa-1", ["r1"], runtime.clock.now_s())
    with serve_app(lambda: build_app(settings)) as served:
        # when eSMS pushes r1 as sent on a's URL and as failed on b's, and once with no token
        url = served.base_url + "/esms/push/"
        assert get(url + "token-of-account-a-000000", push_params("r1", "oa-1")).status == 200
        answer = get(url + "token-of-account-b-000000", push_params("r1", "oa-1", failed=1))
        assert answer.status == 200
        assert get(url + "token-of-nobody-0000000000", push_params("r1", "oa-1")).status == 404
        events = drain_events(settings.broker_url, settings.status_queue, 2, timeout_s=20)
    # expect each account's RefId settled by its own push, its event naming it
    by_account = {e["account"]: e for e in events}
    assert (by_account["push-a"]["status"], by_account["push-b"]["status"]) == ("sent", "failed")
    assert by_account["push-a"]["event_id"] != by_account["push-b"]["event_id"]
    for name, runtime in runtimes.items():
        assert whereabouts_of(runtime, "r1") == "done", name


def whereabouts_of(runtime: Any, ref_id: str) -> object:
    from esms_callbacks.engine.backlog import DONE

    found = runtime.backlog.where("oa-1", ref_id)
    return "done" if found is not None and found.where == DONE else found


def test_a_receiver_with_no_account_holding_a_token_does_not_start(tmp_path, push_settings):
    from esms_callbacks.cli.receive import build_app

    path = write(tmp_path / "accounts.toml", '[accounts.a]\napi_key = "k"\nsecret_key = "s"')
    with pytest.raises(ConfigError, match=r"no account of ESMS_ACCOUNTS_FILE.*push token"):
        build_app(push_settings(accounts_file=str(path)))


# --- status and metrics, per account ----------------------------------------------------------


def test_status_and_metrics_are_per_account(tmp_path, make_settings):
    from prometheus_client import generate_latest

    from esms_callbacks.cli.metrics_server import registry
    from esms_callbacks.ops.status import accounts_state

    path = write(
        tmp_path / "accounts.toml",
        '[accounts.m-a]\napi_key = "ka"\nsecret_key = "s"\nwindow = "01:00-02:00"\n'
        '[accounts.m-b]\napi_key = "kb"\nsecret_key = "s"\n',
    )
    runtimes = Runtimes(AccountBook(make_settings(accounts_file=str(path))))
    runtimes.get("m-a").backlog.park("oa-1", ["r1", "r2"], runtimes.get("m-a").clock.now_s())
    runtimes.get("m-b").backlog.park("oa-9", ["r1"], runtimes.get("m-b").clock.now_s())
    # each account's own backlog and terms, the deployment's status queue shown once
    a, b = accounts_state(runtimes)
    assert (a["account_name"], a["waiting_refs"], b["account_name"], b["waiting_refs"]) == (
        "m-a",
        2,
        "m-b",
        1,
    )
    assert b["window"] == "always" and a["window"] != "always"
    assert a["status_queue"] is not None and b["status_queue"] is None
    [only_b] = accounts_state(runtimes, "m-b")
    assert only_b["account_name"] == "m-b"
    # and one scrape with a series per account
    text = generate_latest(registry(runtimes)).decode()
    assert 'esms_waiting_refs{account="m-a"} 2.0' in text
    assert 'esms_waiting_refs{account="m-b"} 1.0' in text
    assert 'esms_oa_waiting_refs{account="m-b",oa_id="oa-9"} 1.0' in text
    assert "ka" not in text.replace("kafka", "")


# Serial: under the parallel pass its receiver's cleanup twice took over 20 s (a slow stop of
# the app under load, not what this test proves: test_receiver_accounts times a real stop).
@pytest.mark.serial
def test_the_receiver_takes_an_account_added_to_the_file_without_a_restart(
    tmp_path, push_settings, monkeypatch
):
    from esms_callbacks.cli.receive import build_app
    from tests.receiving import get, push_params, serve_app

    monkeypatch.setenv("PUSH_A", "token-of-account-a-111111")
    monkeypatch.setenv("PUSH_C", "token-of-account-c-111111")
    table_a = '[accounts.hot-a]\napi_key = "ka"\nsecret_key = "sa"\npush_token_env = "PUSH_A"\n'
    path = write(tmp_path / "accounts.toml", table_a)
    settings = push_settings(accounts_file=str(path), push_token="")
    with serve_app(lambda: build_app(settings)) as served:
        url = served.base_url + "/esms/push/"
        assert get(url + "token-of-account-c-111111", push_params("r1", "oa-1")).status == 404
        # when an account is added to the file, and the first one removed
        write(
            path, '[accounts.hot-c]\napi_key = "kc"\nsecret_key = "sc"\npush_token_env = "PUSH_C"\n'
        )
        # expect its token answered within the receiver's next look, and the other's not
        wait_until(
            lambda: get(url + "token-of-account-c-111111", push_params("r1", "oa-1")).status == 200,
            10,
            "the added account's pushes were never taken",
        )
        assert get(url + "token-of-account-a-111111", push_params("r1", "oa-1")).status == 404


def test_the_projects_log_lines_name_the_account_they_are_about(caplog):
    import logging

    from esms_callbacks.ops.log_context import for_account

    caplog.set_level(logging.INFO)
    with for_account("shop-a"):
        logging.getLogger("esms_callbacks.engine.drainer").info("skipped %d", 1)
        logging.getLogger("celery.worker").info("not ours")
    with for_account(DEFAULT_ACCOUNT):
        logging.getLogger("esms").info("as before")
    logging.getLogger("esms").info("outside")
    assert caplog.messages == ["account shop-a: skipped 1", "not ours", "as before", "outside"]


def test_beats_housekeeping_is_spread_over_pulses_past_a_few_accounts():
    from esms_callbacks.tasks.drain import housekeeping_turn
    from esms_callbacks.tuning import HOUSEKEEPING_EVERY_PULSE_UP_TO, HOUSEKEEPING_EVERY_PULSES

    # a few accounts: every pulse, as with one
    assert all(housekeeping_turn("a", HOUSEKEEPING_EVERY_PULSE_UP_TO, p) for p in range(10))
    # many: each account once in every HOUSEKEEPING_EVERY_PULSES pulses, about as many a pulse
    names = [f"acct-{i}" for i in range(1000)]
    pulses = range(HOUSEKEEPING_EVERY_PULSES)
    turns = {n: [p for p in pulses if housekeeping_turn(n, len(names), p)] for n in names}
    assert all(len(t) == 1 for t in turns.values())
    per_pulse = [sum(p in t for t in turns.values()) for p in pulses]
    assert min(per_pulse) > 0.7 * len(names) / HOUSEKEEPING_EVERY_PULSES


def test_one_accounts_previous_token_may_not_be_anothers(tmp_path):
    path = write(
        tmp_path / "accounts.toml",
        '[accounts.a]\napi_key = "ka"\nsecret_key = "s"\npush_token = "token-aaaaaaaaaaaaaaaa"\n'
        'push_token_previous = "token-bbbbbbbbbbbbbbbb"\n'
        '[accounts.b]\napi_key = "kb"\nsecret_key = "s"\npush_token = "token-bbbbbbbbbbbbbbbb"\n',
    )
    with pytest.raises(ConfigError, match="accounts a and b have the same push token"):
        AccountBook(Settings(accounts_file=str(path)), RECEIVER_SECRETS, {})


def test_new_keys_lift_the_pause_the_old_ones_earned(tmp_path, redis_url):
    path = write(tmp_path / "accounts.toml", '[accounts.rot]\napi_key = "k1"\nsecret_key = "old"')
    now_s = [0.0]
    book = AccountBook(
        Settings(accounts_file=str(path), redis_url=redis_url), WORKER_SECRETS, {}, lambda: now_s[0]
    )
    runtimes = Runtimes(book)
    old = runtimes.get("rot")
    old.pause.pause("eSMS refused the account (Code 101)", 300)
    # the same keys: the pause stands whatever else changes
    write(path, '[accounts.rot]\napi_key = "k1"\nsecret_key = "old"\nmax_refs = 50')
    os.utime(path, ns=(11, 11))
    now_s[0] += CHECK_EVERY_S
    assert runtimes.get("rot") is not old and runtimes.get("rot").pause.reason()
    # a rotated secret: the new keys get a try at once
    write(path, '[accounts.rot]\napi_key = "k1"\nsecret_key = "new"\nmax_refs = 50')
    os.utime(path, ns=(12, 12))
    now_s[0] += CHECK_EVERY_S
    assert runtimes.get("rot").account.secrets.secret_key == "new"
    assert runtimes.get("rot").pause.reason() is None


def test_a_request_in_flight_outlives_its_account_being_built_again(
    tmp_path, make_settings, sim, redis_url
):
    # given an account whose request eSMS is slow to answer, in one thread of a threads pool
    def accounts(max_refs: int) -> str:
        return (
            f'[accounts.a]\napi_key = "{SIM_API_KEY}"\nsecret_key = "{SIM_SECRET_KEY}"\n'
            f"max_refs = {max_refs}\n"
        )

    path = write(tmp_path / "accounts.toml", accounts(100))
    now_s = [0.0]
    clock = lambda: now_s[0]  # noqa: E731
    book = AccountBook(make_settings(accounts_file=str(path)), WORKER_SECRETS, {}, clock)
    runtimes = Runtimes(book, monotonic_s=clock)
    old = runtimes.get("a")
    sim.add_fault("slow", delay_s=0.5)
    sending = threading.Event()

    def gate() -> bool:
        sending.set()
        return True

    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(old.ask, ["in-flight-1"], "oa-1", gate)
        assert sending.wait(10), "the request never reached its gate"
        # when another task of the pool meets the account changed and builds it again
        write(path, accounts(50))
        os.utime(path, ns=(21, 21))
        now_s[0] += CHECK_EVERY_S
        assert runtimes.get("a") is not old
        # expect the request on the old Runtime to finish with eSMS's answer
        assert list(answer.result(timeout=10).records) == ["in-flight-1"]
    # and the old Runtime closed once nobody can still be using it, at the next look
    assert old.client._session is not None
    now_s[0] += RETIRED_CLOSE_AFTER_S
    runtimes.get("a")
    assert old.client._session is None
    runtimes.close()
