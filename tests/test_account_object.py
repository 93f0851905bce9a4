"""The account as one object: each process resolves only its own secrets, an account the file
names but this host cannot read yet is waited for (never refused), and no secret of its
base URL reaches a log line."""

from __future__ import annotations

import json
import logging
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from esms_callbacks.accounts import (
    NO_SECRETS,
    RECEIVER_SECRETS,
    WORKER_SECRETS,
    Account,
    AccountBook,
)
from esms_callbacks.cli.main import main
from esms_callbacks.errors import AccountNotServed, AccountUnavailable, ConfigError
from esms_callbacks.esms.window import Window
from esms_callbacks.retry_policy import FETCH_TASK_RETRY
from esms_callbacks.runtime import Runtime
from esms_callbacks.settings import Settings
from esms_callbacks.tasks import app
from esms_callbacks.tasks.context import say_where
from tests.helpers import SIM_API_KEY, SIM_SECRET_KEY, in_process_worker, runtime_of, wait_until

TWO_ACCOUNTS = """
    [accounts.shop-a]
    api_key_env = "SHOP_A_API_KEY"
    secret_key_env = "SHOP_A_SECRET_KEY"
    push_token_env = "SHOP_A_PUSH_TOKEN"

    [accounts.shop-b]
    api_key_env = "SHOP_B_API_KEY"
    secret_key_env = "SHOP_B_SECRET_KEY"
    push_token_env = "SHOP_B_PUSH_TOKEN"
"""
WORKER_ENV = {k: "w-" + k for k in ("SHOP_A_API_KEY", "SHOP_A_SECRET_KEY", "SHOP_B_API_KEY")}
WORKER_ENV["SHOP_B_SECRET_KEY"] = "w-b-secret"
RECEIVER_ENV = {
    "SHOP_A_PUSH_TOKEN": "token-of-shop-a-0123456789",
    "SHOP_B_PUSH_TOKEN": "token-of-shop-b-0123456789",
}


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_each_process_resolves_only_the_secrets_it_uses(tmp_path):
    # given a file whose keys are set only on the workers' hosts and tokens only on the
    # receiver's (as an operator deploys it)
    settings = Settings(accounts_file=str(write(tmp_path / "accounts.toml", TWO_ACCOUNTS)))
    # expect each process to start with what it has, and to hold nothing else
    workers = AccountBook(settings, WORKER_SECRETS, WORKER_ENV).accounts()
    receiver = AccountBook(settings, RECEIVER_SECRETS, RECEIVER_ENV).accounts()
    status = AccountBook(settings, NO_SECRETS, {}).accounts()
    assert workers["shop-a"].secrets.api_key == "w-SHOP_A_API_KEY"
    assert workers["shop-a"].secrets.push_token == ""
    assert receiver["shop-b"].secrets.push_token == RECEIVER_ENV["SHOP_B_PUSH_TOKEN"]
    assert receiver["shop-b"].secrets.api_key == ""
    assert sorted(status) == ["shop-a", "shop-b"]
    assert all(not any(vars(a.secrets).values()) for a in status.values())
    # and the terms and identity are the same wherever they are read
    assert workers["shop-a"].terms == receiver["shop-a"].terms == status["shop-a"].terms
    assert workers["shop-b"].key_id == status["shop-b"].key_id == "shop-b"


def test_a_secret_form_is_still_checked_where_it_is_not_resolved(tmp_path):
    path = write(tmp_path / "accounts.toml", '[accounts.a]\napi_key_env = ""\nsecret_key = "s"')
    with pytest.raises(ConfigError, match="api_key_env must be a non-empty string"):
        AccountBook(Settings(accounts_file=str(path)), NO_SECRETS, {})


def test_an_account_added_but_unreadable_here_waits_and_is_never_refused(tmp_path):
    # given a worker serving shop-a
    path = write(tmp_path / "accounts.toml", '[accounts.a]\napi_key = "k"\nsecret_key = "s"')
    book = AccountBook(Settings(accounts_file=str(path)), WORKER_SECRETS, {}, lambda: 0.0)
    # when shop-new is added with a key whose variable this host does not have yet
    write(
        path,
        '[accounts.a]\napi_key = "k"\nsecret_key = "s"\n'
        '[accounts.new]\napi_key_env = "NEW_KEY"\nsecret_key = "s"',
    )
    # expect a submission for it to be kept for a retry, saying why, not refused as unknown
    with pytest.raises(AccountUnavailable, match="api_key_env names NEW_KEY, which is not set"):
        book.get("new")
    assert AccountUnavailable in FETCH_TASK_RETRY["autoretry_for"]
    assert book.get("a").name == "a"  # the others still served
    # and a name the file really lacks is refused, naming what it has
    with pytest.raises(AccountNotServed, match=r"it has a, new"):
        book.get("other")
    # and while the file is half-written, an unknown name waits too
    path.write_text('[accounts.a]\napi_key = "k"\nsecret_key = "s"\n[accounts.ne')
    with pytest.raises(AccountUnavailable, match="the accounts file cannot be read now"):
        book.get("newer")


def test_a_submission_for_a_new_account_is_parked_once_its_table_reads(
    tmp_path, make_settings, sim, caplog
):
    # given a worker on a file whose new account's secret file is not in place yet, its
    # window closed (the RefIds stay parked where we can count them)
    secret = tmp_path / "late-secret"
    tables = (
        f'[accounts.early]\napi_key = "{SIM_API_KEY}"\nsecret_key = "{SIM_SECRET_KEY}"\n'
        f'[accounts.late]\napi_key = "{SIM_API_KEY}-late"\nsecret_key_file = "{secret}"\n'
    )
    path = write(tmp_path / "accounts.toml", tables)
    later = (datetime.now(UTC) + timedelta(hours=12)).strftime("%H:00")
    settings = make_settings(
        accounts_file=str(path), window=Window.parse(f"{later}-{later[:3]}30", "UTC")
    )
    late = AccountBook(settings, NO_SECRETS).get("late")  # no secret needed to count
    runtime = Runtime(settings, late)
    with caplog.at_level(logging.ERROR), in_process_worker(settings):
        # when a submission for it arrives
        app.send_task(
            "esms.fetch_callbacks",
            kwargs={"ref_ids": ["r1", "r2"], "oa_id": "oa", "account": "late"},
        )
        # expect it kept for a retry, saying why, and not failed for good
        wait_until(lambda: "submission kept for a retry" in caplog.text, 20, "a retry")
        assert "secret_key_file" in caplog.text and "rejected" not in caplog.text
        assert runtime.backlog.waiting_total() == 0
        # and parked once the secret is in place
        secret.write_text(SIM_SECRET_KEY)
        wait_until(lambda: runtime.backlog.waiting_total() == 2, 30, "the RefIds parked")


def test_the_first_log_line_hides_a_password_in_the_base_url(make_settings, caplog):
    settings = make_settings(base_url="https://user:hunter2-secret@esms.example")
    with caplog.at_level(logging.INFO, logger="esms"):
        say_where(runtime_of(settings))
    line = caplog.records[-1].getMessage()
    assert "esms.example" in line and "hunter2-secret" not in line


def test_status_runs_on_a_host_that_has_none_of_the_accounts_secrets(
    tmp_path, cli_env, monkeypatch, capsys
):
    # given an accounts file whose keys and tokens are set on other hosts only
    path = write(tmp_path / "accounts.toml", TWO_ACCOUNTS)
    monkeypatch.setenv("ESMS_ACCOUNTS_FILE", str(path))
    for name in [*WORKER_ENV, *RECEIVER_ENV]:
        monkeypatch.delenv(name, raising=False)
    # when the operator asks for the status
    assert main(["status", "--json"]) == 0
    # expect both accounts shown
    shown = json.loads(capsys.readouterr().out)
    assert [a["account_name"] for a in shown["accounts"]] == ["shop-a", "shop-b"]


def test_a_table_s_terms_are_checked_as_the_environment_s(tmp_path):
    # given drainers that cannot keep their place at one table's slow rate
    path = write(
        tmp_path / "accounts.toml",
        '[accounts.a]\napi_key = "k"\nsecret_key = "s"\n'
        '[accounts.slow]\napi_key = "k2"\nsecret_key = "s"\nrate_interval = 10\n',
    )
    settings = Settings(accounts_file=str(path), drainers=50)
    # expect the file refused, naming the table, as the variables would be
    with pytest.raises(ConfigError, match=r"\[accounts.slow\]: ESMS_DRAINERS=50"):
        AccountBook(settings, WORKER_SECRETS, {})


def test_a_malformed_table_fails_the_file_not_only_its_account(tmp_path):
    # a mistake in the file (unlike a secret not on this host yet) is refused at start
    path = write(
        tmp_path / "accounts.toml",
        '[accounts.a]\napi_key = "k"\nsecret_key = "s"\n'
        '[accounts.b]\napi_key = "k2"\nsecret_key = "s"\nwindow = "late"\n',
    )
    with pytest.raises(ConfigError, match=r"\[accounts.b\]: window \(ESMS_WINDOW\)"):
        AccountBook(Settings(accounts_file=str(path)), WORKER_SECRETS, {})


def test_a_secret_mid_rotation_keeps_the_one_read_before(tmp_path):
    # given an account whose SecretKey is in a file
    secret = tmp_path / "secret"
    secret.write_text("s1")
    path = write(
        tmp_path / "accounts.toml", f'[accounts.a]\napi_key = "k"\nsecret_key_file = "{secret}"'
    )
    now_s = [0.0]
    book = AccountBook(Settings(accounts_file=str(path)), WORKER_SECRETS, {}, lambda: now_s[0])
    # when the file is removed on its way to being replaced
    secret.unlink()
    now_s[0] += 1.0
    # expect the account still served, on the secret read before
    assert book.get("a").secrets.secret_key == "s1"
    assert book.unavailable() == {}
    # and the new one taken once it is there
    secret.write_text("s2")
    now_s[0] += 1.0
    assert book.get("a").secrets.secret_key == "s2"


def test_terms_never_show_a_password_of_the_base_url():
    terms = Settings().with_terms(base_url="https://user:hunter2-pw@esms.example").terms
    account = Account("a", "a", terms)
    for text in (repr(terms), repr(account), repr(Settings().with_terms(base_url=terms.base_url))):
        assert "hunter2-pw" not in text and "esms.example" in text


def test_the_terms_have_one_zone_and_survive_the_environment_s_round_trip():
    # given settings whose window is in another zone than the default one
    settings = Settings().with_terms(window=Window.parse("03:00-04:00", "Europe/Berlin"))
    # expect the terms' zone to be the window's, and to come back from the variables
    assert str(settings.terms.timezone) == "Europe/Berlin"
    again = Settings.from_env(settings.to_env())
    assert again.terms == settings.terms
    assert str(again.terms.window) == "03:00:00-04:00:00 Europe/Berlin"
