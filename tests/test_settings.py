"""Settings from the environment: defaults, validation that names the variable, hidden keys."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from esms_callbacks.accounts import WORKER_SECRETS, Account, default_account
from esms_callbacks.errors import ConfigError
from esms_callbacks.settings import Settings, reference_markdown, variables
from esms_callbacks.terms import Terms, redact_url
from tests.helpers import runtime_of

# Distinctive fake credentials: if either shows up anywhere, something printed a secret.
FAKE_API_KEY = "FAKE-ApiKey-7f3c9e1d-NEVER-PRINT"
FAKE_SECRET_KEY = "FAKE-Secret-b2a84c55-NEVER-PRINT"
KEYS = {"ESMS_API_KEY": FAKE_API_KEY, "ESMS_SECRET_KEY": FAKE_SECRET_KEY}


def account_of(env: dict[str, str]) -> Account:
    """The account `default` a worker reads from `env`."""
    return default_account(Settings.from_env(env), WORKER_SECRETS, env)


def assert_no_credentials(text: str) -> None:
    assert FAKE_API_KEY not in text
    assert FAKE_SECRET_KEY not in text
    assert "7f3c9e1d" not in text and "b2a84c55" not in text  # not even a fragment


# --- defaults and values ---------------------------------------------------------------------


def test_defaults_follow_the_esms_page():
    # given an empty environment; when settings are read
    settings = Settings.from_env({})
    # expect the documented defaults
    assert settings.broker_url == "redis://localhost:6379/0"
    assert settings.redis_url == settings.broker_url
    assert settings.terms.base_url == "https://status-sms.esms.vn"
    assert settings.terms.rate_interval_s == 1.0
    assert settings.terms.max_refs_per_request == 100
    assert str(settings.terms.window) == "01:00:00-02:00:00 Asia/Ho_Chi_Minh"
    assert settings.status_queue == "esms.status"
    assert settings.http_timeout_s == 30.0
    assert settings.repoll_after_s == 5.0  # a floor between asks, not a wait (was 900)
    assert settings.max_age_s == 604800.0
    secrets = account_of({}).secrets
    assert (secrets.api_key, secrets.secret_key, secrets.has_credentials) == ("", "", False)
    assert settings.simulated is False


def test_redis_url_defaults_to_the_broker_url():
    settings = Settings.from_env({"CELERY_BROKER_URL": "redis://broker.test:6380/2"})
    assert settings.redis_url == "redis://broker.test:6380/2"
    other = Settings.from_env(
        {"CELERY_BROKER_URL": "redis://broker.test/2", "ESMS_REDIS_URL": "redis://state.test/5"}
    )
    assert (other.broker_url, other.redis_url) == ("redis://broker.test/2", "redis://state.test/5")


def test_every_variable_is_read_and_trimmed():
    # given the newer eSMS terms and a zone with daylight saving, with stray whitespace
    env = {
        **KEYS,
        "ESMS_BASE_URL": " https://status-sms.esms.vn/ ",
        "ESMS_RATE_INTERVAL": "0.05",
        "ESMS_RATE_MARGIN": "0",
        "ESMS_MAX_REFS": " 200 ",
        "ESMS_WINDOW": "always",
        "ESMS_TIMEZONE": "Europe/Berlin",
        "ESMS_STATUS_QUEUE": "zns.events",
        "ESMS_HTTP_TIMEOUT": "12.5",
        "ESMS_REPOLL_AFTER": "60",
        "ESMS_MAX_AGE": "86400",
        "ESMS_DRAINERS": "7",
        "ESMS_MAX_RETRIES": "0",
        "ESMS_BREAKER_AFTER": "5",
        "ESMS_BACKOFF_MAX": "120",
        "ESMS_ACCOUNT": "shop-a",
        "ESMS_SIMULATED": "1",
    }
    # when read
    settings = Settings.from_env(env)
    # expect each value, typed
    assert settings.terms.base_url == "https://status-sms.esms.vn"  # trailing slash dropped
    assert settings.terms.rate_interval_s == 0.05
    assert settings.terms.spacing_s == 0.05
    assert settings.terms.max_refs_per_request == 200
    assert settings.terms.window.always
    assert settings.status_queue == "zns.events"
    assert settings.http_timeout_s == 12.5
    assert (settings.repoll_after_s, settings.max_age_s) == (60.0, 86400.0)
    assert (settings.drainers, settings.max_retries) == (7, 0)
    assert (settings.breaker_after, settings.backoff_max_s) == (5, 120.0)
    assert settings.simulated is True
    account = account_of(env)
    assert account.key_id == "shop-a"
    assert account.secrets.has_credentials
    assert (account.secrets.api_key, account.secrets.secret_key) == (FAKE_API_KEY, FAKE_SECRET_KEY)


def test_window_is_read_in_the_configured_zone():
    settings = Settings.from_env(
        {"ESMS_WINDOW": "23:30-00:30:15", "ESMS_TIMEZONE": "Europe/Berlin"}
    )
    assert str(settings.terms.window) == "23:30:00-00:30:15 Europe/Berlin"


@pytest.mark.parametrize("value", ["1", "100", "200"])
def test_max_refs_accepts_one_to_200(value):
    assert Settings.from_env({"ESMS_MAX_REFS": value}).terms.max_refs_per_request == int(value)


def test_from_env_without_a_mapping_reads_the_process_environment(monkeypatch):
    monkeypatch.setenv("ESMS_MAX_REFS", "42")
    assert Settings.from_env().terms.max_refs_per_request == 42


# --- malformed values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("ESMS_MAX_REFS", "201", "between 1 and 200"),
        ("ESMS_MAX_REFS", "0", "between 1 and 200"),
        ("ESMS_MAX_REFS", "abc", "invalid literal"),
        ("ESMS_MAX_REFS", "1.5", "invalid literal"),
        ("ESMS_RATE_INTERVAL", "0", ">= 0.001"),
        ("ESMS_RATE_INTERVAL", "-1", ">= 0.001"),
        ("ESMS_RATE_INTERVAL", "nan", ">= 0.001"),
        ("ESMS_RATE_INTERVAL", "inf", ">= 0.001"),
        ("ESMS_RATE_INTERVAL", "fast", "could not convert"),
        ("ESMS_RATE_INTERVAL", "", "set but empty"),
        ("ESMS_HTTP_TIMEOUT", "0", ">= 0.1"),
        ("ESMS_REPOLL_AFTER", "-5", ">= 0.0"),
        ("ESMS_MAX_AGE", "forever", "could not convert"),
        ("ESMS_DRAINERS", "0", "between 1 and 100"),
        ("ESMS_MAX_RETRIES", "-1", "between 0 and 100"),
        ("ESMS_WINDOW", "1am-2am", "is not HH:MM[:SS]-HH:MM[:SS]"),
        ("ESMS_WINDOW", "01:00-01:00", "use 'always'"),
        ("ESMS_WINDOW", "25:00-01:00", "out of range"),
        ("ESMS_TIMEZONE", "Mars/Olympus_Mons", "unknown time zone"),
        ("ESMS_TIMEZONE", "../../etc/passwd", "unknown time zone"),
        ("ESMS_BASE_URL", "status-sms.esms.vn", "http:// or https://"),
        ("ESMS_BASE_URL", "ftp://status-sms.esms.vn", "http:// or https://"),
        ("ESMS_STATUS_QUEUE", "esms\nstatus", "line break or NUL"),
    ],
)
def test_a_malformed_value_raises_config_error_naming_the_variable(name, value, problem):
    # given one malformed variable; when settings are read
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({name: value})
    # expect an error that starts with the variable's name and says what is wrong
    assert isinstance(caught.value, ValueError)
    assert str(caught.value).startswith(name)
    assert problem in str(caught.value)


# --- credentials -----------------------------------------------------------------------------


def test_repr_str_and_describe_never_show_the_keys():
    # given an account with both keys, and the settings read beside them
    settings, account = Settings.from_env(KEYS), account_of(KEYS)
    # when shown in every way a log or CLI might show them
    shown = settings.describe()
    # expect neither key, and the account saying only whether each is set
    for text in (repr(settings), str(settings), repr(shown), str(shown), repr(account)):
        assert_no_credentials(text)
    assert "api_key=<set>, secret_key=<set>" in repr(account)
    assert "api_key=<unset>" in repr(account_of({}))


def test_changed_settings_still_hide_the_keys():
    account = account_of(KEYS)
    changed = replace(account, terms=replace(account.terms, max_refs_per_request=50))
    assert changed.secrets.api_key == FAKE_API_KEY
    assert_no_credentials(repr(changed))


def test_account_id_is_a_short_hash_of_the_api_key_never_the_key():
    # given keys and no ESMS_ACCOUNT; when the account is named
    account_id = account_of(KEYS).key_id
    # expect 16 hex digits of the key's SHA-256, stable, and different for another key
    assert re.fullmatch(r"[0-9a-f]{16}", account_id)
    assert account_id == hashlib.sha256(FAKE_API_KEY.encode()).hexdigest()[:16]
    assert_no_credentials(account_id)
    assert account_of(KEYS).key_id == account_id
    other = account_of({**KEYS, "ESMS_API_KEY": FAKE_API_KEY + "2"})
    assert other.key_id != account_id


def test_esms_account_names_the_account_instead_of_the_hash():
    assert account_of({**KEYS, "ESMS_ACCOUNT": "shop-a"}).key_id == "shop-a"


@pytest.mark.parametrize(
    ("api_key", "secret_key", "has_credentials"),
    [
        (FAKE_API_KEY, FAKE_SECRET_KEY, True),
        (FAKE_API_KEY, "", False),
        ("", FAKE_SECRET_KEY, False),
    ],
)
def test_has_credentials_needs_both_keys(api_key, secret_key, has_credentials):
    env = {"ESMS_API_KEY": api_key, "ESMS_SECRET_KEY": secret_key}
    assert account_of(env).secrets.has_credentials is has_credentials


@pytest.mark.parametrize("name", ["ESMS_API_KEY", "ESMS_SECRET_KEY"])
@pytest.mark.parametrize("bad", ["\n", "\r", "\0"])
def test_a_malformed_key_is_rejected_without_printing_it(name, bad):
    # given a key with a line break or NUL in the middle
    env = {**KEYS, name: KEYS[name][:20] + bad + KEYS[name][20:]}
    # when read
    with pytest.raises(ConfigError) as caught:
        account_of(env)
    # expect the variable named, the value not
    assert str(caught.value).startswith(name)
    assert_no_credentials(str(caught.value))
    assert_no_credentials(repr(caught.value))
    assert KEYS[name][:20] not in str(caught.value)


def test_errors_about_other_variables_never_show_the_keys():
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**KEYS, "ESMS_MAX_REFS": "1000"})
    assert_no_credentials(str(caught.value))
    assert_no_credentials(repr(caught.value))


@pytest.mark.parametrize("value", ["0", "101", "-1", "three", "2.5", ""])
def test_drainers_must_be_auto_or_a_small_whole_number(value):
    with pytest.raises(ConfigError, match="ESMS_DRAINERS"):
        Settings.from_env({"ESMS_DRAINERS": value})


@pytest.mark.parametrize(
    ("interval_s", "request_time_s", "wanted"),
    [
        (1.0, None, 3),  # nothing measured yet: a quarter second assumed
        (1.0, 0.3, 3),  # one sends, one waits for the next slot, one for a slow request
        (0.2, 0.3, 4),
        (0.05, 0.06, 4),  # eSMS's current terms, a fast local eSMS
        (0.05, 0.3, 6),  # ...a slow one: as many as the cap allows
    ],
)
def test_auto_drainers_cover_the_request_time_at_the_interval(interval_s, request_time_s, wanted):
    settings, terms = Settings(), Terms(rate_interval_s=interval_s, rate_margin_s=0.0)
    assert settings.drainers == 0  # auto is the default
    assert settings.drainers_wanted(terms, request_time_s) == wanted
    assert settings.with_changes(drainers=4).drainers_wanted(terms, request_time_s) == 4


@pytest.mark.parametrize(
    "name",
    [
        "CELERY_BROKER_URL",
        "ESMS_STATUS_QUEUE",
        "ESMS_WINDOW",
        "ESMS_RATE_INTERVAL",
        "ESMS_DRAINERS",
    ],
)
def test_a_variable_set_but_empty_is_refused_by_name(name):
    with pytest.raises(ConfigError, match=f"{name} is set but empty"):
        Settings.from_env({name: " "})


def test_empty_credentials_and_account_mean_unset():
    account = account_of({"ESMS_API_KEY": "", "ESMS_SECRET_KEY": "", "ESMS_ACCOUNT": ""})
    assert not account.secrets.has_credentials and not account.known


def test_more_drainers_than_can_keep_their_place_are_refused():
    # at 1 s a request and a 77 s place, 77 drainers would wait longer than their place lasts
    env = {"ESMS_RATE_INTERVAL": "1", "ESMS_RATE_MARGIN": "0", "ESMS_HTTP_TIMEOUT": "30"}
    assert Settings.from_env({**env, "ESMS_DRAINERS": "76"}).drainers == 76
    with pytest.raises(ConfigError, match=r"ESMS_DRAINERS=77.*at most 76"):
        Settings.from_env({**env, "ESMS_DRAINERS": "77"})


ROOT = Path(__file__).resolve().parent.parent
CONFIGURATION_PAGE = ROOT / "docs" / "configuration.md"


def table_rows(table: str) -> dict[str, list[str]]:
    """Variable -> its cells (default, [read by,] meaning) in a markdown table of one variable
    a row."""
    rows = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        name = re.fullmatch(r"`([A-Z][A-Z0-9_]+)`", cells[0])
        if name and len(cells) in (3, 4):
            rows[name.group(1)] = cells[1:]
    return rows


def test_the_configuration_page_shows_the_declarations():
    # given the settings table of docs/configuration.md, between its markers
    page = CONFIGURATION_PAGE.read_text()
    block = re.search(r"<!-- settings:begin -->\n\n(.*?)\n<!-- settings:end -->", page, re.S)
    assert block, "docs/configuration.md lost its <!-- settings:begin/end --> markers"
    # expect exactly what the declarations in esms_callbacks/settings.py render
    assert block.group(1) == reference_markdown(), (
        "docs/configuration.md's settings table differs from the declarations in "
        "esms_callbacks/settings.py: run `make docs-config`"
    )


def test_the_reference_has_every_variable_once_with_its_default_and_meaning():
    reference = reference_markdown()
    rows = table_rows(reference)
    declared = {variable.name: variable for variable in variables()}
    assert set(rows) == set(declared)
    assert len(reference.splitlines()) == 2 + len(declared)  # header, rule, a row each
    for name, variable in declared.items():
        expected = variable.readme_default or (
            f"`{variable.default}`" if variable.default else "none"
        )
        default, read_by, meaning = rows[name]
        assert default == expected, name
        assert read_by == variable.read_by, name
        assert meaning, name


def test_the_procfile_s_own_variables_are_documented_beside_the_settings():
    # given the variables the Procfile reads that are not settings of the project
    procfile = (ROOT / "Procfile").read_text()
    knobs = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*):[-?]", procfile))
    knobs -= {variable.name for variable in variables()}
    assert "FLOWER_BASIC_AUTH" in knobs and "METRICS_PORT" in knobs
    # expect each in the configuration page's table after the generated one
    page = CONFIGURATION_PAGE.read_text()
    after = page.split("<!-- settings:end -->", 1)[1]
    assert knobs <= set(table_rows(after)), knobs - set(table_rows(after))


def test_settings_go_to_the_environment_and_back_unchanged():
    settings = Settings.from_env(
        {
            "CELERY_BROKER_URL": "redis://broker:6379/2",
            "ESMS_API_KEY": "key",
            "ESMS_SECRET_KEY": "secret",
            "ESMS_TIMEZONE": "UTC",
            "ESMS_WINDOW": "23:30-00:30",
            "ESMS_DRAINERS": "3",
            "ESMS_PUSH_ALLOW_FROM": "203.0.113.0/24,2001:db8::/32",
            "ESMS_PHONE_NUMBERS": "mask",
            "ESMS_SIMULATED": "1",
        }
    )
    again = Settings.from_env(settings.to_env())
    assert again == settings
    assert again.redis_url == "redis://broker:6379/2"  # its default follows the broker's
    assert Settings.from_env({}) == Settings()  # the declared defaults are the Python ones


# --- settings that could not work ------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["http://status-sms.esms.vn", "http://10.0.0.7:8077", "http://localhost.example.com"]
)
def test_plain_http_to_another_host_is_refused_by_name(url):
    # given credentials that would cross the network unencrypted
    # when settings are read
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**KEYS, "ESMS_BASE_URL": url})
    # expect the variable named, the https fix and the setting that allows it anyway
    message = str(caught.value)
    assert message.startswith("ESMS_BASE_URL")
    assert "https://" in message and "ESMS_ALLOW_PLAIN_HTTP=1" in message
    assert_no_credentials(message)


def test_plain_http_elsewhere_is_accepted_when_allowed():
    # given plain http to eSMS, allowed on purpose
    env = {"ESMS_BASE_URL": "http://status-sms.esms.vn", "ESMS_ALLOW_PLAIN_HTTP": "1"}
    # when read; expect it kept, and passed on to subprocesses
    settings = Settings.from_env(env)
    assert settings.terms.base_url == "http://status-sms.esms.vn"
    assert Settings.from_env(settings.to_env()) == settings


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8077", "http://127.1.2.3:9", "http://localhost:8077", "http://[::1]:8077"],
)
def test_plain_http_to_this_host_is_accepted(url):
    # given the bundled simulator's kind of address; when read; expect it taken as it is
    assert Settings.from_env({"ESMS_BASE_URL": url}).terms.base_url == url


def test_allow_plain_http_takes_only_one_or_zero():
    with pytest.raises(ConfigError, match="ESMS_ALLOW_PLAIN_HTTP='yes'"):
        Settings.from_env({"ESMS_ALLOW_PLAIN_HTTP": "yes"})
    env = {"ESMS_BASE_URL": "http://status-sms.esms.vn", "ESMS_ALLOW_PLAIN_HTTP": "0"}
    with pytest.raises(ConfigError, match="ESMS_BASE_URL"):
        Settings.from_env(env)


AMQP_BROKER = "amqp://guest:guest@127.0.0.1:5672//"


def test_a_producer_on_another_broker_needs_no_redis_url():
    # given a web app's environment: a RabbitMQ broker and no ESMS_REDIS_URL
    # when its settings are read (celeryconfig does, for `fetch_callbacks.delay`)
    settings = Settings.from_env({"CELERY_BROKER_URL": AMQP_BROKER})
    # expect them read, and read again the same in a subprocess
    assert settings.broker_url == AMQP_BROKER
    assert Settings.from_env(settings.to_env()) == settings


@pytest.mark.parametrize("broker", [AMQP_BROKER, "amqp://guest:guest@127.0.0.1:5672/vhost"])
def test_redis_is_asked_for_by_name_when_the_broker_is_not_redis(broker):
    # given a broker that is not Redis and no ESMS_REDIS_URL
    settings = Settings.from_env({"CELERY_BROKER_URL": broker})
    # when the Redis URL is needed
    with pytest.raises(ConfigError) as caught:
        settings.require_redis_url()
    # expect the variable to set named, the broker's password hidden
    message = str(caught.value)
    assert message.startswith("ESMS_REDIS_URL is not set and CELERY_BROKER_URL (")
    assert message.endswith("is not a Redis URL: set ESMS_REDIS_URL=redis://...")
    assert ":***@127.0.0.1" in message and ":guest@" not in message


def test_an_explicit_redis_url_that_is_not_redis_is_named():
    settings = Settings.from_env({"ESMS_REDIS_URL": "amqp://u:hunter2@state/"})
    with pytest.raises(ConfigError, match=r"^ESMS_REDIS_URL \(amqp://u:\*\*\*@state/\)") as caught:
        settings.require_redis_url()
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("env", "url"),
    [
        ({}, "redis://localhost:6379/0"),
        ({"CELERY_BROKER_URL": "rediss://b:6380/1"}, "rediss://b:6380/1"),
        ({"CELERY_BROKER_URL": AMQP_BROKER, "ESMS_REDIS_URL": "redis://s/2"}, "redis://s/2"),
        ({"ESMS_REDIS_URL": "unix:///run/redis.sock?db=3"}, "unix:///run/redis.sock?db=3"),
    ],
)
def test_the_redis_url_in_use(env, url):
    assert Settings.from_env(env).require_redis_url() == url


def test_the_runtime_s_redis_client_says_which_variable_to_set():

    # given a worker's settings on a RabbitMQ broker without ESMS_REDIS_URL
    runtime = runtime_of(Settings.from_env({"CELERY_BROKER_URL": AMQP_BROKER}))
    # when its Redis client is made; expect our error, not redis-py's ValueError
    with pytest.raises(ConfigError, match="set ESMS_REDIS_URL=redis://"):
        runtime.redis  # noqa: B018 (the property builds the client)


@pytest.mark.parametrize(
    ("window", "guard", "problem"),
    [
        ("01:00-02:00", "1800", "half of it is 1800 s"),
        ("01:00-02:00", "3600", "half of it is 1800 s"),
        ("23:59-00:01", "60", "half of it is 60 s"),
    ],
)
def test_a_guard_that_leaves_no_window_is_refused(window, guard, problem):
    # given a guard at both ends that covers the whole window; when read
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"ESMS_WINDOW": window, "ESMS_WINDOW_GUARD": guard})
    # expect the guard named, and what would work
    message = str(caught.value)
    assert message.startswith(f"ESMS_WINDOW_GUARD={guard}")
    assert problem in message and "ESMS_WINDOW" in message


def test_a_guard_that_leaves_some_window_is_accepted():
    assert Settings.from_env({"ESMS_WINDOW_GUARD": "1799"}).window_guard_s == 1799
    always = {"ESMS_WINDOW": "always", "ESMS_WINDOW_GUARD": "86400"}
    assert Settings.from_env(always).window_guard_s == 86400  # no ends to keep clear


@pytest.mark.parametrize(
    ("name", "value", "minimum"),
    [
        ("ESMS_DONE_TTL", "0", "900"),
        ("ESMS_DONE_TTL", "899", "900"),
        ("ESMS_MAX_AGE", "0", "60"),
        ("ESMS_MAX_AGE", "-1", "60"),
    ],
)
def test_memory_and_age_too_short_to_work_are_refused(name, value, minimum):
    # given a value under the documented minimum; when read
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({name: value})
    # expect the variable named with its minimum and the default
    message = str(caught.value)
    assert message.startswith(f"{name}={value!r}: must be at least {minimum} seconds")
    assert "the default is" in message


def test_the_shortest_memory_and_age_are_accepted():
    settings = Settings.from_env({"ESMS_DONE_TTL": "900", "ESMS_MAX_AGE": "60"})
    assert (settings.done_ttl_s, settings.max_age_s) == (900.0, 60.0)


def test_capacity_counts_only_the_guarded_window():
    from esms_callbacks.engine.capacity import coming_window

    # given the default one-hour window with a 5-minute guard at each end, before it opens
    settings = Settings.from_env({"ESMS_WINDOW_GUARD": "300", "ESMS_RATE_MARGIN": "0"})
    before = datetime(2026, 11, 28, 0, 0, tzinfo=ZoneInfo("Asia/Ho_Chi_Minh")).timestamp()
    # when the coming window's capacity is counted
    capacity = coming_window(settings, settings.terms, before)
    # expect only the 50 minutes requests may go out in: 3000 requests of 100
    assert capacity.refs == 3000 * 100
    # and, half an hour in, what is left up to the closing guard: 1500 requests
    assert coming_window(settings, settings.terms, before + 5400).refs == 1500 * 100


WORKER_ONLY_BAD = {"ESMS_DRAINERS": "lots", "ESMS_WINDOW": "soon", "ESMS_MAX_REFS": "0"}
RECEIVER_ONLY_BAD = {"ESMS_PUSH_TOKEN": "short", "ESMS_RECEIVER_PORT": "port"}


def test_the_celery_app_reads_only_its_own_settings():
    # given a host where the workers' and the receiver's settings are wrong for a web app
    env = {
        "CELERY_BROKER_URL": "redis://broker.example:6379/3",
        "ESMS_RELEASE_EVERY": "5",
        **WORKER_ONLY_BAD,
        **RECEIVER_ONLY_BAD,
    }
    # expect the Celery app's own settings read, the others left alone
    settings = Settings.from_env(env, process="app")
    assert settings.broker_url == "redis://broker.example:6379/3"
    assert settings.release_every_s == 5.0
    assert settings.terms.max_refs_per_request == Settings().terms.max_refs_per_request
    # and a malformed setting of its own still named
    with pytest.raises(ConfigError, match="ESMS_RELEASE_EVERY"):
        Settings.from_env({"ESMS_RELEASE_EVERY": "often"}, process="app")


def test_a_worker_reads_its_settings_and_not_the_receiver_s():
    settings = Settings.from_env({"ESMS_MAX_REFS": "50", **RECEIVER_ONLY_BAD}, process="worker")
    assert settings.terms.max_refs_per_request == 50
    assert settings.receiver_port == Settings().receiver_port
    for name, value in WORKER_ONLY_BAD.items():
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({name: value}, process="worker")


@pytest.mark.parametrize("process", ["receiver", "operator"])
def test_the_receiver_and_the_operator_s_commands_read_every_setting(process):
    for name, value in {**WORKER_ONLY_BAD, "ESMS_RECEIVER_PORT": "port"}.items():
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({name: value}, process=process)


def test_a_web_app_imports_the_task_with_the_workers_settings_wrong(tmp_path):
    env = {**os.environ, **WORKER_ONLY_BAD, **RECEIVER_ONLY_BAD}
    check = "from esms_callbacks import fetch_callbacks; print(fetch_callbacks.app.conf.timezone)"
    done = subprocess.run(
        [sys.executable, "-c", check], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Asia/Ho_Chi_Minh"


SENTINELS = "sentinel://:masterpw@10.0.0.1:26379/2;sentinel://:masterpw@10.0.0.2:26380/2"


@pytest.mark.parametrize("variable", ["CELERY_BROKER_URL", "ESMS_REDIS_URL"])
def test_a_sentinel_url_without_the_master_s_name_is_refused_by_name(variable):
    with pytest.raises(
        ConfigError, match=f"{variable} is a Sentinel URL: set ESMS_SENTINEL_MASTER"
    ):
        Settings.from_env({"ESMS_REDIS_URL": "redis://x:6379/0", variable: SENTINELS})


def test_a_sentinel_broker_gives_celery_and_the_project_the_master_and_hides_passwords():
    env = {
        "CELERY_BROKER_URL": SENTINELS,
        "ESMS_SENTINEL_MASTER": "esms",
        "ESMS_SENTINEL_PASSWORD": "sentinelpw",
    }
    settings = Settings.from_env(env)
    # the project's Redis defaults to the broker's, Sentinel and all
    assert settings.redis_target().url == SENTINELS and settings.redis_target().is_sentinel
    options = settings.broker_transport_options
    assert options["master_name"] == "esms"
    assert options["sentinel_kwargs"]["password"] == "sentinelpw"  # type: ignore[index]
    assert "masterpw" not in redact_url(SENTINELS) and redact_url(SENTINELS).count(":***@") == 2
    assert "sentinelpw" not in repr(settings) and "sentinelpw" not in repr(settings.redis_target())
    assert "masterpw" not in repr(settings.redis_target())


def test_sentinel_urls_are_read_as_kombu_reads_them():
    from esms_callbacks.engine.redis_connect import _sentinel_parts

    sentinels, username, password, db = _sentinel_parts(SENTINELS)
    assert sentinels == [("10.0.0.1", 26379), ("10.0.0.2", 26380)]
    assert (username, password, db) == (None, "masterpw", 2)
    # an ACL user, as kombu takes it
    assert _sentinel_parts("sentinel://app:pw%40x@h:26379/0")[1:] == ("app", "pw@x", 0)


def test_a_plain_redis_is_not_taken_for_a_cluster(redis_url):
    from esms_callbacks.engine.redis_connect import is_cluster
    from esms_callbacks.settings import RedisTarget

    assert is_cluster(RedisTarget(redis_url, cluster="auto")) is False
    assert is_cluster(RedisTarget(redis_url, cluster="on")) is True


def test_tls_to_a_sentinel_master_comes_from_the_first_url_s_query_as_kombu_reads_it():
    from esms_callbacks.engine.redis_connect import _sentinel_parts, sentinel_master_tls

    url = "sentinel://h1:26379/0?ssl_cert_reqs=required&ssl_ca_certs=/ca.pem;sentinel://h2:26379/0"
    assert sentinel_master_tls(url) == {
        "ssl": True,
        "ssl_cert_reqs": "required",
        "ssl_ca_certs": "/ca.pem",
    }
    assert sentinel_master_tls(SENTINELS) == {}
    assert _sentinel_parts(url)[0] == [("h1", 26379), ("h2", 26379)]
