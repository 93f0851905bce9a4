"""The esms-callbacks command: submit, status, tail, exit codes and messages."""

from __future__ import annotations

import itertools
import json
import re
import shlex
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection

from esms_callbacks.cli.main import build_parser, main
from esms_callbacks.esms.records import outcome_of
from esms_callbacks.events.publish import EventPublisher, build_event
from tests.helpers import account_for, drain_events, in_process_worker, runtime_of, wait_until

OA = "1090257973118325189"


def args_of(calls: list[dict[str, Any]]) -> list[list[object]]:
    return [call["args"] for call in calls]


def test_submit_reads_lines_and_chunks_them(tmp_path, redis_url, fetch_queue, capsys):
    source = tmp_path / "refs.txt"
    source.write_text("# exported from the send log\nr1\n\nr2\nr3\n")
    assert main(["submit", OA, str(source), "--chunk", "2"]) == 0
    assert args_of(fetch_queue()) == [[["r1", "r2"], OA], [["r3"], OA]]
    assert "submitted 3 RefIds" in capsys.readouterr().err


def test_submit_reads_a_csv_column(tmp_path, redis_url, fetch_queue):
    source = tmp_path / "sent.csv"
    source.write_text("phone,SMSID\n0909,a-1\n0908,a-2\n")
    assert main(["submit", OA, str(source), "--column", "SMSID"]) == 0
    assert args_of(fetch_queue()) == [[["a-1", "a-2"], OA]]


def test_submit_refuses_bad_input_before_queueing_anything(
    tmp_path, redis_url, fetch_queue, capsys
):
    source = tmp_path / "refs.txt"
    source.write_text("good-1\nbad ref with spaces\n")
    assert main(["submit", OA, str(source), "--chunk", "1"]) == 2
    assert "ref_ids[0]='bad ref with spaces' contains ' '" in capsys.readouterr().err
    assert args_of(fetch_queue()) == []
    assert main(["submit", OA, str(tmp_path / "missing.txt")]) == 1
    assert "No such file" in capsys.readouterr().err
    assert main(["submit", OA, str(source), "--column", "SMSID"]) == 2


def test_receive_refuses_to_start_without_a_push_token(cli_env, monkeypatch, capsys):
    monkeypatch.delenv("ESMS_PUSH_TOKEN", raising=False)
    assert main(["receive", "--port", "0"]) == 2
    assert "ESMS_PUSH_TOKEN is not set" in capsys.readouterr().err
    monkeypatch.setenv("ESMS_PUSH_TOKEN", "too-short")
    assert main(["receive", "--port", "0"]) == 2
    assert "at least 16" in capsys.readouterr().err


def test_status_json_shows_the_backlog(cli_env, capsys):

    runtime = runtime_of(cli_env)
    runtime.backlog.park("oa-s", ["s1", "s2"], runtime.clock.now_s())
    assert main(["status", "--json"]) == 0
    state = json.loads(capsys.readouterr().out)
    assert state["account"] == account_for(cli_env).key_id
    assert state["waiting_refs"] == 2
    assert [oa["oa_id"] for oa in state["per_oa"]] == ["oa-s"]
    assert (state["pushes"], state["push_inbox_waiting"]) == ({}, 0)
    assert account_for(cli_env).secrets.secret_key not in json.dumps(state)


def test_tail_prints_events_as_json(cli_env, capsys):
    now = datetime.now(UTC)
    events = [
        build_event(f"t{i}", OA, outcome_of({"SMSID": f"t{i}", "SendStatus": 5}), now)
        for i in range(2)
    ]
    EventPublisher(Connection(cli_env.broker_url), cli_env.status_queue).publish(events)
    assert main(["tail", "--take", "--json", "--count", "2"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert printed == events


def test_help_explains_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("run", "demo", "submit", "status", "tail", "metrics", "receive", "simulate"):
        assert f"    {command}" in out


def readme_command_lines() -> list[list[str]]:
    """Every `esms-callbacks ...` command line the docs show in a code span, as written
    (a synopsis with [optional] parts stands for its shortest form)."""
    root = Path(__file__).resolve().parent.parent
    pages = [root / "README.md", *sorted((root / "docs").glob("**/*.md"))]
    text = "".join(page.read_text() for page in pages)
    lines = []
    for span in re.findall(r"`(esms-callbacks[^`]*)`", text):
        words = shlex.split(re.sub(r"\[[^\]]*\]", "", span))[1:]
        if words and words[0] != "COMMAND":
            lines.append(words)
    return lines


def test_every_command_line_in_the_readme_is_understood_as_written():
    from esms_callbacks.simulator.__main__ import parse_args as simulator_args

    lines = readme_command_lines()
    assert ["simulate", "--port", "8077", "--policy", "mixed"] in lines
    for words in lines:
        try:  # anything it does not know is SystemExit(2); --version and --help exit 0
            if words[0] == "simulate":
                simulator_args(words[1:])
            else:
                build_parser().parse_args(words)
        except SystemExit as exc:
            assert exc.code == 0, words


def test_simulate_takes_the_simulator_s_own_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: esms-callbacks simulate") and "--policy" in out


def test_version_and_each_command_s_help_says_what_it_does(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert re.fullmatch(r"esms-callbacks \S+\n", capsys.readouterr().out)
    for command in ("run", "demo", "submit", "status", "tail", "metrics", "receive"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        usage, description = capsys.readouterr().out.split("\n\n")[:2]
        assert usage.startswith(f"usage: esms-callbacks {command}")
        assert description and not description.startswith(("positional", "options"))


@pytest.mark.parametrize(
    ("content", "column", "expected"),
    [
        (b"\xef\xbb\xbfsms_id,phone\nr1,0901\nr2,0902\n", "sms_id", ["r1", "r2"]),  # Excel BOM
        (b"sms_id;phone\nr1;0901\n", "sms_id", ["r1"]),  # ;-separated
        (b"phone\tsms_id\n0901\tr1\n", "sms_id", ["r1"]),
        (b"# exported today\nr1\n\nr2\n", None, ["r1", "r2"]),
    ],
)
def test_submit_reads_lists_and_excel_exports(
    tmp_path, redis_url, fetch_queue, content, column, expected
):
    source = tmp_path / "refs.csv"
    source.write_bytes(content)
    assert main(["submit", OA, str(source), *(["--column", column] if column else [])]) == 0
    assert args_of(fetch_queue()) == [[expected, OA]]


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (b"sms_id,phone\nr1,0901\n", [], "looks like a table (columns 'sms_id', 'phone')"),
        (b"sms_id;phone\nr1;0901\n", ["--column", "SMSID"], "its columns are 'sms_id', 'phone'"),
        (b"r\xe9f1\n", [], "is not UTF-8 text"),
    ],
)
def test_submit_says_what_is_wrong_with_a_file_and_queues_nothing(
    tmp_path, redis_url, fetch_queue, capsys, content, args, message
):
    source = tmp_path / "refs.csv"
    source.write_bytes(content)
    assert main(["submit", OA, str(source), *args]) == 2
    assert message in capsys.readouterr().err
    assert fetch_queue() == []


def test_an_unreachable_redis_is_named_by_its_setting_and_ctrl_c_exits_130(
    cli_env, monkeypatch, capsys
):
    monkeypatch.setenv("ESMS_REDIS_URL", "redis://:hunter2@127.0.0.1:1/0")
    assert main(["status"]) == 1
    err = capsys.readouterr().err
    assert "cannot reach redis://:***@127.0.0.1:1/0 (ESMS_REDIS_URL)" in err
    assert "hunter2" not in err

    def interrupted(_: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr("esms_callbacks.cli.main.cmd_status", interrupted)
    assert main(["status"]) == 130


def test_tail_reads_copies_and_leaves_the_queue_to_its_consumers(cli_env, redis_client):
    # given a tail reading copies (the default) while events are published
    from esms_callbacks.cli.main import consume

    got: list[dict[str, Any]] = []
    tail = threading.Thread(
        target=lambda: got.extend(itertools.islice(consume(cli_env, lambda: False, False), 2))
    )
    tail.start()
    binding = f"_kombu.binding.{cli_env.status_queue}"
    wait_until(
        lambda: any(b"esms.tail." in m for m in redis_client.smembers(binding)), 10, "tail bound"
    )
    now = datetime.now(UTC)
    events = [
        build_event(f"c{i}", OA, outcome_of({"SMSID": f"c{i}", "SendStatus": 5}), now)
        for i in range(2)
    ]
    EventPublisher(Connection(cli_env.broker_url), cli_env.status_queue).publish(events)
    tail.join(10)
    # expect the tail saw them, the shared queue still holds them, and the tail's queue is gone
    assert got == events
    assert drain_events(cli_env.broker_url, cli_env.status_queue, 2, timeout_s=5) == events
    assert not any(b"esms.tail." in m for m in redis_client.smembers(binding))


def test_status_speaks_plainly_and_names_the_processes_behind_it(cli_env, capsys):
    # given a worker running and beat's pulse reaching it
    settings = cli_env.with_changes(release_every_s=0.2)
    with in_process_worker(settings):
        runtime = runtime_of(settings)
        wait_until(
            lambda: runtime.redis.hexists(runtime.keys.stats, "beat_release_at_s"), 10, "pulse"
        )
        assert main(["status"]) == 0
    out = capsys.readouterr().out
    # expect words, not Python reprs, and the worker and beat named
    assert "None" not in out and "{}" not in out
    assert "eSMS         not paused; healthy" in out
    assert re.search(r"^workers      \S+@\S+ up since \d{4}-", out, re.M)
    assert re.search(r"^beat         last pulse reached a worker [\d.]+s ago", out, re.M)
    assert re.search(r"^broker       queued: esms.fetch \d+, esms.drain \d+", out, re.M)


# --- text from outside is printed escaped ----------------------------------------------------

FORGING = "\x1b[2Jfake line\nINFO forged"  # clears the screen, then starts a line of its own


def forging_event(ref_id: str, oa_id: str = OA) -> dict[str, Any]:
    """A failed event whose Zalo error message carries a terminal escape and a line break."""
    record = {
        "SMSID": ref_id,
        "SendStatus": 4,
        "ErrorInfo": json.dumps({"error": -124, "message": FORGING}),
    }
    return build_event(ref_id, oa_id, outcome_of(record), datetime.now(UTC))


def assert_not_forged(out: str, lines: int) -> None:
    assert "\x1b" not in out
    assert len(out.splitlines()) == lines
    assert not any(line.startswith(("INFO", "fake")) for line in out.splitlines())


def test_tail_prints_an_error_message_with_escapes_on_one_line(cli_env, capsys):
    # given an event whose error message (and OA id) would forge lines on a terminal
    event = forging_event("e1", oa_id="oa\x1b[31m\r")
    EventPublisher(Connection(cli_env.broker_url), cli_env.status_queue).publish([event])
    # when tailed in words
    assert main(["tail", "--take", "--count", "1"]) == 0
    out = capsys.readouterr().out
    # expect one line, the escapes shown as text
    assert_not_forged(out, lines=1)
    assert "error -124: \\x1b[2Jfake line\\nINFO forged" in out
    assert "(OA oa\\x1b[31m\\r, poll)" in out


def test_tail_json_escapes_control_characters(cli_env, capsys):
    # given the same event
    event = forging_event("e2")
    EventPublisher(Connection(cli_env.broker_url), cli_env.status_queue).publish([event])
    # when tailed as JSON
    assert main(["tail", "--take", "--json", "--count", "1"]) == 0
    out = capsys.readouterr().out
    # expect one line of JSON, no raw control character, the same event read back
    assert_not_forged(out, lines=1)
    assert not any(ord(c) < 0x20 for c in out.rstrip("\n"))
    assert json.loads(out) == event


def test_show_prints_the_last_event_without_its_message(cli_env, capsys):
    from esms_callbacks.engine.backlog import Requeue
    from esms_callbacks.events.publish import event_summary

    # given a waiting RefId whose last event carried the forging message
    runtime = runtime_of(cli_env)
    now_s = runtime.clock.now_s()
    runtime.backlog.park(OA, ["s1"], now_s)
    runtime.backlog.lease_next(now_s, 10, 60, "tok")
    summary = event_summary(forging_event("s1"))
    runtime.backlog.settle(OA, "tok", now_s, [], [Requeue("s1", now_s, "pending:7", summary)])
    # when shown
    assert main(["show", "s1"]) == 0
    out = capsys.readouterr().out
    # expect the usual lines, none forged: where, submitted, next ask, asks, last state, last
    # event; the memory keeps the error's code, not eSMS's text
    assert_not_forged(out, lines=6)
    assert "error -124)" in out and "fake line" not in out


def test_status_prints_esms_s_pause_reason_and_oa_ids_escaped(cli_env, capsys):

    # given a pause whose reason is eSMS's text, and an OA id with a line break
    runtime = runtime_of(cli_env)
    runtime.pause.pause(f"Code 101: {FORGING}", 60)
    runtime.backlog.park("oa\nINFO forged", ["p1"], runtime.clock.now_s())
    # when the status is printed
    assert main(["status", "--no-processes"]) == 0
    out = capsys.readouterr().out
    # expect each on its own line, the escapes shown as text
    assert "\x1b" not in out
    assert not any(line.startswith(("INFO", "fake")) for line in out.splitlines())
    assert "PAUSED: Code 101: \\x1b[2Jfake line\\nINFO forged; " in out
    assert "  OA oa\\nINFO forged: 1 waiting" in out


def test_status_names_esms_redis_url_when_the_broker_is_not_redis(cli_env):
    import os
    import subprocess
    import sys

    # given a RabbitMQ broker and no ESMS_REDIS_URL, as a web app's environment may be
    env = {k: v for k, v in os.environ.items() if k != "ESMS_REDIS_URL"}
    env["CELERY_BROKER_URL"] = "amqp://guest:guest@127.0.0.1:5672//"
    command = Path(sys.executable).parent / "esms-callbacks"
    # when `status` runs
    done = subprocess.run(
        [str(command), "status"], env=env, capture_output=True, text=True, timeout=60
    )
    # expect one line saying what to set, the broker's password hidden, no traceback
    assert done.returncode != 0
    assert done.stderr.splitlines() == [
        "esms-callbacks: ESMS_REDIS_URL is not set and CELERY_BROKER_URL "
        "(amqp://guest:***@127.0.0.1:5672//) is not a Redis URL: set ESMS_REDIS_URL=redis://..."
    ]
    assert done.stdout == ""
