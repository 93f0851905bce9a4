"""One simulator serving many eSMS accounts: each limited on its own, each named in the log."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.harness import simulator_process
from esms_callbacks.simulator import (
    GET_CALLBACK_PATH,
    RunningSimulator,
    SimAccount,
    Simulator,
    serve_in_thread,
)
from esms_callbacks.simulator.__main__ import build_simulator, parse_args
from esms_callbacks.simulator.accounts_file import accounts_toml, read_accounts_file
from esms_callbacks.simulator.remote import RemoteSimulator

REPO_ROOT = Path(__file__).resolve().parents[1]
OA_ID = "1090257973118325189"
# Slow and small, quick and large: the two kinds of terms eSMS gives.
SLOW = SimAccount("shop-slow", "KEY-slow-4c1d", "SECRET-slow-9e2a", rate_interval_s=1.0, max_refs=3)
QUICK = SimAccount(
    "shop-quick", "KEY-quick-77b0", "SECRET-quick-1f6c", rate_interval_s=0.05, max_refs=5
)
# Never go through a proxy from the environment to reach 127.0.0.1.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(url: str, body: object = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    request.add_header("Content-Type", "application/json")
    try:
        with _OPENER.open(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def body_of(account: SimAccount, ref_ids: list[str], **overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "ApiKey": account.api_key,
        "SecretKey": account.secret_key,
        "ListRefid": ref_ids,
        "OAId": OA_ID,
    }
    return {**body, **overrides}


def ask(base_url: str, account: SimAccount, ref_ids: list[str], **overrides: object) -> Any:
    status, answer = http(base_url + GET_CALLBACK_PATH, body_of(account, ref_ids, **overrides))
    assert status == 200, answer
    return answer


def code_at(sim: Simulator, account: SimAccount, received_monotonic_s: float) -> object:
    """The Code `account`'s request received then gets: the receipt time is passed in, so the
    rate clocks move without the test sleeping."""
    raw = json.dumps(body_of(account, ["r1"])).encode()
    return sim.receive(raw, time.time(), received_monotonic_s).payload["Code"]


@pytest.fixture
def running() -> Iterator[RunningSimulator]:
    with serve_in_thread(Simulator(accounts=[SLOW, QUICK], policy="sent")) as running:
        yield running


def test_each_account_is_rate_limited_by_its_own_interval(running: RunningSimulator) -> None:
    url = running.base_url

    assert ask(url, SLOW, ["r1"])["Code"] == 100
    assert ask(url, QUICK, ["r1"])["Code"] == 100  # right after SLOW's: another clock
    too_soon = ask(url, SLOW, ["r1"])
    assert (too_soon["Code"], too_soon["Message"]) == (
        160,
        "Too many requests: at most one every 1.0 s",
    )

    t = time.monotonic() + 10.0
    assert [code_at(running.sim, QUICK, t + dt) for dt in (0.0, 0.03, 0.09)] == [100, 160, 100]
    assert [code_at(running.sim, SLOW, t + dt) for dt in (0.0, 0.5, 1.6)] == [100, 160, 100]


def test_each_account_is_answered_at_most_its_own_max_refs(running: RunningSimulator) -> None:
    ref_ids = [f"r-{n}" for n in range(10)]

    slow, quick = ask(running.base_url, SLOW, ref_ids), ask(running.base_url, QUICK, ref_ids)

    assert [r["SMSID"] for r in slow["Data_callback"]] == ref_ids[:3]
    assert [r["SMSID"] for r in quick["Data_callback"]] == ref_ids[:5]
    assert [(r.account, r.ref_count_answered) for r in running.sim.requests] == [
        ("shop-slow", 3),
        ("shop-quick", 5),
    ]


@pytest.mark.parametrize(
    "keys",
    [
        {"SecretKey": QUICK.secret_key},  # SLOW's ApiKey, QUICK's SecretKey
        {"ApiKey": QUICK.api_key},
        {"ApiKey": "KEY-nobody", "SecretKey": "SECRET-nobody"},
        {"ApiKey": ["KEY-slow-4c1d"]},  # not a string: not an account's
        {"ApiKey": None},
    ],
)
def test_keys_of_no_single_account_get_101_and_move_no_clock(
    running: RunningSimulator, keys: dict[str, object]
) -> None:
    assert ask(running.base_url, SLOW, ["r1"], **keys)["Code"] == 101

    assert ask(running.base_url, SLOW, ["r1"])["Code"] == 100
    logged = running.sim.requests
    assert [(r.account, r.api_key_ok) for r in logged] == [("", False), ("shop-slow", True)]


def test_the_log_names_the_account_and_never_a_key(running: RunningSimulator) -> None:
    url, remote = running.base_url, RemoteSimulator(running.base_url)
    ask(url, SLOW, ["r1"])
    ask(url, QUICK, ["r1", "r2"])
    ask(url, QUICK, ["r1"], SecretKey="SECRET-wrong")
    running.sim.add_fault("code", code=99)
    ask(url, QUICK, ["r3"])

    assert [e["account"] for e in remote.requests()] == [
        "shop-slow",
        "shop-quick",
        "",
        "shop-quick",
    ]
    assert [e["ref_count_sent"] for e in remote.requests(account="shop-quick")] == [2, 1]
    assert [e["account"] for e in remote.requests(since=2)] == ["", "shop-quick"]
    assert remote.requests(since=1, account="shop-slow") == []
    exposed = [
        repr(running.sim.requests),
        repr(running.sim.accounts),
        repr(running.sim.account_stats()),
        json.dumps(remote.requests()),
        json.dumps(remote.account_stats()),
        json.dumps(remote.stats()),
        json.dumps(http(url + "/_sim/config")[1]),
    ]
    for text in exposed:
        assert "KEY-" not in text and "SECRET-" not in text, text


def test_account_stats_summarise_each_account(running: RunningSimulator) -> None:
    url, remote = running.base_url, RemoteSimulator(running.base_url)
    ask(url, QUICK, [f"r-{n}" for n in range(8)])
    ask(url, QUICK, ["r1"])  # too soon: 160
    time.sleep(0.06)
    ask(url, QUICK, ["r1", "r2"])

    stats = remote.account_stats()

    assert list(stats) == ["shop-slow", "shop-quick"]
    assert stats["shop-slow"] == {
        "rate_interval_s": 1.0,
        "max_refs": 3,
        "requests": 0,
        "refs_sent": 0,
        "refs_answered": 0,
        "records_returned": 0,
        "first_at_s": None,
        "last_at_s": None,
        "min_gap_s": None,
        "code_160": 0,
        "codes": {},
    }
    quick = stats["shop-quick"]
    assert (quick["requests"], quick["refs_sent"], quick["refs_answered"]) == (3, 11, 7)
    assert (quick["records_returned"], quick["code_160"]) == (7, 1)
    assert quick["codes"] == {"100": 2, "160": 1}
    assert quick["min_gap_s"] < 0.05 and quick["first_at_s"] < quick["last_at_s"]
    assert quick["last_at_s"] - quick["first_at_s"] >= 0.06
    assert stats == running.sim.account_stats()


def test_accounts_are_configured_one_by_one(running: RunningSimulator) -> None:
    remote = RemoteSimulator(running.base_url)

    remote.configure(account="shop-quick", max_refs=2, rate_interval_s=0)

    assert running.sim.account("shop-quick").max_refs == 2
    assert running.sim.account("shop-slow") == SLOW
    status, config = http(running.base_url + "/_sim/config?account=shop-quick")
    assert status == 200
    assert (config["account"], config["accounts"], config["max_refs"]) == ("shop-quick", 2, 2)
    # Without an account: the first one, the default.
    remote.configure(max_refs=7)
    assert (running.sim.max_refs, running.sim.account("shop-slow").max_refs) == (7, 7)
    assert running.sim.account("shop-quick").max_refs == 2
    with pytest.raises(ValueError, match="no account named 'shop-x'"):
        remote.configure(account="shop-x", max_refs=1)
    with pytest.raises(ValueError, match="max_refs"):
        remote.configure(account="shop-quick", max_refs=0)
    assert running.sim.account("shop-quick").max_refs == 2


def test_reset_restarts_every_account_s_clock(running: RunningSimulator) -> None:
    url = running.base_url
    ask(url, SLOW, ["r1"])
    ask(url, QUICK, ["r1"])

    running.sim.reset()

    assert [ask(url, a, ["r1"])["Code"] for a in (SLOW, QUICK)] == [100, 100]


def test_without_accounts_a_simulator_serves_one_named_default() -> None:
    sim = Simulator(api_key="k", secret_key="s", rate_interval_s=0.5, max_refs=9)

    assert sim.accounts == [SimAccount("default", "k", "s", 0.5, 9)]
    assert (sim.api_key, sim.secret_key, sim.rate_interval_s, sim.max_refs) == ("k", "s", 0.5, 9)
    raw = json.dumps({"ApiKey": "k", "SecretKey": "s", "ListRefid": ["r"], "OAId": "1"})
    sim.receive(raw.encode(), time.time(), time.monotonic())
    assert sim.requests[0].account == "default"


@pytest.mark.parametrize(
    ("accounts", "reason"),
    [
        ([], "at least one account"),
        ([SLOW, SimAccount("shop-slow", "k2", "s2")], "two accounts are named 'shop-slow'"),
        ([SLOW, SimAccount("other", SLOW.api_key, "s2")], "share an api_key"),
    ],
)
def test_a_simulator_refuses_accounts_it_could_not_tell_apart(
    accounts: list[SimAccount], reason: str
) -> None:
    with pytest.raises(ValueError, match=reason):
        Simulator(accounts=accounts)


def test_a_thousand_accounts_are_served_and_summarised() -> None:
    accounts = [SimAccount(f"shop-{n}", f"k-{n}", f"s-{n}", 1.0, 100) for n in range(1000)]
    sim = Simulator(accounts=accounts, policy="sent")
    t = time.monotonic()

    for n, account in enumerate(accounts):
        assert code_at(sim, account, t + n * 1e-4) == 100

    stats = sim.account_stats()
    assert len(stats) == 1000 and {s["requests"] for s in stats.values()} == {1}
    assert code_at(sim, accounts[500], t + 0.5) == 160


# --- the accounts file -----------------------------------------------------------------------

GOOD_FILE = """
[accounts.shop-a]
api_key_env = "SIM_TEST_SHOP_A_API_KEY"
secret_key_env = "SIM_TEST_SHOP_A_SECRET_KEY"
rate_interval = 1.0
max_refs = 100
window = "01:00-02:00"
push_token_env = "SHOP_A_PUSH_TOKEN"

[accounts.shop-b]
api_key = "KEY-b-inline"
secret_key_file = "{secret_file}"
rate_interval = 0.05
max_refs = 200
timezone = "Asia/Ho_Chi_Minh"
base_url = "https://status-sms.esms.vn"

[accounts."shop-c"]
api_key = "KEY-c"
secret_key = "SECRET-c"
"""
ENV = {"SIM_TEST_SHOP_A_API_KEY": "KEY-a-env", "SIM_TEST_SHOP_A_SECRET_KEY": "SECRET-a-env"}


def good_file(tmp_path: Path) -> Path:
    secret_file = tmp_path / "shop-b.secret"
    secret_file.write_text("SECRET-b-file\n")
    path = tmp_path / "accounts.toml"
    path.write_text(GOOD_FILE.replace("{secret_file}", str(secret_file)))
    return path


def test_accounts_file_is_read_with_defaults_for_missing_terms(tmp_path: Path) -> None:
    accounts = read_accounts_file(good_file(tmp_path), rate_interval_s=2.0, max_refs=50, env=ENV)

    assert accounts == [
        SimAccount("shop-a", "KEY-a-env", "SECRET-a-env", 1.0, 100),
        SimAccount("shop-b", "KEY-b-inline", "SECRET-b-file", 0.05, 200),
        SimAccount("shop-c", "KEY-c", "SECRET-c", 2.0, 50),
    ]


def test_accounts_toml_writes_a_file_read_back_alike(tmp_path: Path) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text(accounts_toml([SLOW, QUICK, SimAccount('o"dd', 'k"1\\', "s\n2", 0, 1)]))

    assert read_accounts_file(path, env={}) == [
        SLOW,
        QUICK,
        SimAccount('o"dd', 'k"1\\', "s\n2", 0, 1),
    ]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[accounts.a]\nsecret_key = 's'\n", "[accounts.a]: no api_key"),
        ("[accounts.a]\napi_key = 'k'\n", "[accounts.a]: no secret_key"),
        (
            "[accounts.a]\napi_key_env = 'SIM_TEST_UNSET_VARIABLE'\nsecret_key = 's'\n",
            "[accounts.a]: api_key_env names SIM_TEST_UNSET_VARIABLE, which is not set",
        ),
        (
            "[accounts.a]\napi_key = 'k'\napi_key_env = 'X'\nsecret_key = 's'\n",
            "[accounts.a]: give api_key one way",
        ),
        ("[accounts.a]\napi_key = ''\nsecret_key = 's'\n", "api_key must be a non-empty string"),
        (
            "[accounts.a]\napi_key = 'k'\nsecret_key = 's'\nrate_interval = -1\n",
            "[accounts.a]: rate_interval must be a number",
        ),
        (
            "[accounts.a]\napi_key = 'k'\nsecret_key = 's'\nmax_refs = 'many'\n",
            "[accounts.a]: max_refs must be an integer",
        ),
        (
            "[accounts.a]\napi_key = 'k'\nsecret_key = 's'\n"
            "[accounts.b]\napi_key = 'k'\nsecret_key = 's2'\n",
            "accounts 'a' and 'b' share an api_key",
        ),
        ("[accounts]\n", "no [accounts.NAME] table"),
        ("[accounts.a\n", "not TOML"),
        ("accounts = 3\n", "no [accounts.NAME] table"),
        ("[accounts]\na = 1\n", "[accounts.a]: must be a table"),
    ],
)
def test_a_bad_accounts_file_is_refused_naming_account_and_key(
    tmp_path: Path, text: str, reason: str
) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text(text)

    with pytest.raises(ValueError) as refused:
        build_simulator(parse_args(["--accounts-file", str(path)]))

    assert reason in str(refused.value) and str(path) in str(refused.value)


def test_a_missing_accounts_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read it"):
        read_accounts_file(tmp_path / "none.toml")


def test_command_line_accounts_file_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    path = good_file(tmp_path)

    sim = build_simulator(parse_args(["--accounts-file", str(path), "--rate-interval", "3"]))

    assert [a.terms() for a in sim.accounts] == [
        {"name": "shop-a", "rate_interval_s": 1.0, "max_refs": 100},
        {"name": "shop-b", "rate_interval_s": 0.05, "max_refs": 200},
        {"name": "shop-c", "rate_interval_s": 3.0, "max_refs": 100},
    ]


def test_a_simulator_process_serves_the_accounts_file(tmp_path: Path) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text(accounts_toml([SLOW, QUICK]))

    with simulator_process("--policy", "sent", accounts_file=path) as remote:
        codes = [ask(remote.base_url, a, ["r1"])["Code"] for a in (SLOW, QUICK, SLOW)]
        bad = ask(remote.base_url, SLOW, ["r1"], SecretKey=QUICK.secret_key)["Code"]
        stats = remote.account_stats()

    assert (codes, bad) == ([100, 100, 160], 101)
    assert {name: s["requests"] for name, s in stats.items()} == {"shop-slow": 2, "shop-quick": 1}


def test_command_line_refuses_a_bad_accounts_file(tmp_path: Path) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text("[accounts.shop-a]\napi_key_env = 'SIM_TEST_UNSET_VARIABLE'\n")

    command = [sys.executable, "-m", "esms_callbacks.simulator", "--accounts-file", str(path)]
    result = subprocess.run(
        [*command, "--port", "0"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 2, result.stderr
    assert "[accounts.shop-a]: api_key_env names SIM_TEST_UNSET_VARIABLE" in result.stderr
