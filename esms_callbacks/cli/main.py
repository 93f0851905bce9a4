"""esms-callbacks: run the stack, submit RefIds, show the state, tail status events."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from kombu import Queue
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from esms_callbacks.accounts import DEFAULT_ACCOUNT, AccountBook
from esms_callbacks.cli.progress import bar, line
from esms_callbacks.cli.ref_files import read_ref_ids
from esms_callbacks.cli.status_text import process_state, render, shown
from esms_callbacks.errors import ConfigError, InvalidSubmission, MissingExtra
from esms_callbacks.esms.validation import validate_submission
from esms_callbacks.events.consumer import read_events
from esms_callbacks.events.publish import status_exchange, status_queue
from esms_callbacks.ops.lookup import find_ref
from esms_callbacks.ops.status import accounts_state
from esms_callbacks.runtime import Runtimes
from esms_callbacks.settings import DEFAULT_BROKER_URL, Settings
from esms_callbacks.tasks import app, fetch_callbacks
from esms_callbacks.terms import redact_url

EXIT_OK, EXIT_USAGE, EXIT_FAILED = 0, 2, 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C
TAIL_QUEUE_EXPIRES_S = 60  # a killed tail's own queue goes this long after its last read
LOG_FORMAT = "[%(asctime)s: %(levelname)s/%(name)s] %(message)s"
# The `worker` extra (pyproject.toml): a producer-only install (a web app's) has none of them.
WORKER_EXTRA = frozenset({"aiohttp", "flower", "hiredis", "honcho", "prometheus_client"})
INSTALL_WORKER_EXTRA = "pip install 'esms-zns-callbacks[worker]'"


@contextmanager
def worker_extra(command: str, *modules: str) -> Iterator[None]:
    """Import `modules` (and run the block's imports) as `command` needs them; a package of the
    worker extra missing is one line saying what to install, before anything has started."""
    try:
        for module in modules:
            importlib.import_module(module)
        yield
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if missing not in WORKER_EXTRA:
            raise
        raise MissingExtra(
            f"`esms-callbacks {command}` needs the worker extra ({missing} is not installed): "
            f"{INSTALL_WORKER_EXTRA}"
        ) from None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["simulate"]:  # every option is the simulator's own
            with worker_extra("simulate"):
                from esms_callbacks.simulator.__main__ import main as simulator_main

            return simulator_main(argv[1:], prog="esms-callbacks simulate")
        args = build_parser().parse_args(argv)
        result: int = args.handler(args)
        return result
    except (ConfigError, InvalidSubmission) as exc:
        print(f"esms-callbacks: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except MissingExtra as exc:
        print(f"esms-callbacks: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except RedisError as exc:
        print(f"esms-callbacks: {unreachable('ESMS_REDIS_URL', exc)}", file=sys.stderr)
        return EXIT_FAILED
    except OperationalError as exc:
        print(f"esms-callbacks: {unreachable('CELERY_BROKER_URL', exc)}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:  # no such file, no permission
        print(f"esms-callbacks: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def unreachable(setting: str, exc: Exception) -> str:
    """Say which setting points at the server that did not answer (password hidden)."""

    broker = os.environ.get("CELERY_BROKER_URL", DEFAULT_BROKER_URL)
    url = broker if setting == "CELERY_BROKER_URL" else os.environ.get(setting, broker)
    return f"cannot reach {redact_url(url)} ({setting}): {exc}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="esms-callbacks",
        description="Fetch Zalo ZNS delivery statuses from eSMS under its limits and publish "
        "them as status events. Settings come from the environment (see README).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run worker, beat and flower (and the simulator when no "
        "eSMS credentials are set, with a demo submission)",
    )
    run.add_argument(
        "--demo-refs",
        type=int,
        default=300,
        help="RefIds the simulated demo submits (0: none); default 300",
    )
    run.add_argument("--no-flower", action="store_true", help="leave Flower out")
    run.set_defaults(handler=cmd_run)

    demo = sub.add_parser(
        "demo",
        help="the whole stack against the simulator: a window opening a few seconds after "
        "start, thousands of RefIds in small groups, live progress and a summary",
    )
    demo.add_argument("--refs", type=int, default=3000, help="RefIds to submit (default 3000)")
    demo.add_argument(
        "--opens-in", type=float, default=10.0, help="seconds until the window opens (default 10)"
    )
    demo.add_argument(
        "--interval", type=float, default=1.0, help="seconds between requests (default 1.0, eSMS's)"
    )
    demo.add_argument("--timeout", type=float, default=600.0, help="give up after (s)")
    demo.set_defaults(handler=cmd_demo)

    submit = sub.add_parser("submit", help="submit RefIds from a file or stdin")
    submit.add_argument("oa_id", help="the OA id the messages were sent from")
    submit.add_argument(
        "file",
        nargs="?",
        default="-",
        help="one RefId per line, or a CSV file (see --column); '-' for stdin",
    )
    submit.add_argument("--column", help="CSV column holding the RefIds (header name)")
    submit.add_argument("--chunk", type=int, default=1000, help="RefIds per task (default 1000)")
    submit.add_argument("--account", default=DEFAULT_ACCOUNT, help=ACCOUNT_HELP)
    submit.set_defaults(handler=cmd_submit)

    status = sub.add_parser("status", help="waiting RefIds per OA, next window, capacity, counters")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.add_argument(
        "--no-processes",
        action="store_true",
        help="leave out what the broker knows (queued submissions, workers): faster",
    )
    status.add_argument("--account", default="", help="one account only (default: every one)")
    status.set_defaults(handler=cmd_status)

    show = sub.add_parser(
        "show",
        help="where a RefId is now (waiting, in a request, finished), its asks, next ask and "
        "last event",
    )
    show.add_argument("ref_id", help="the RefId (SMSID)")
    show.add_argument("--oa", help="the OA it was submitted under (default: look in every OA)")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.add_argument("--account", default="", help="the account (default: look in every one)")
    show.set_defaults(handler=cmd_show)

    reconcile = sub.add_parser(
        "reconcile",
        help="what the sweep of eSMS's ledger found: RefIds sent but never submitted, and "
        "submitted ones eSMS has no data for (ESMS_RECONCILE)",
    )
    reconcile.add_argument("--account", default="", help="one account only (default: every one)")
    reconcile.add_argument(
        "--since",
        default="",
        help="from this moment (ISO 8601, e.g. 2026-12-07T01:00+07:00) or this many hours ago "
        "(e.g. 6h); default: ESMS_RECONCILE_LOOKBACK",
    )
    reconcile.add_argument("--json", action="store_true", help="print JSON")
    reconcile.set_defaults(handler=cmd_reconcile)

    tail = sub.add_parser(
        "tail",
        help="print status events as they are published, from a queue of its own (no "
        "consumer misses any)",
    )
    tail.add_argument("--json", action="store_true", help="one JSON event per line")
    tail.add_argument(
        "--take",
        action="store_true",
        help="take the events off ESMS_STATUS_QUEUE instead (queued ones too; other consumers "
        "of that queue then miss them)",
    )
    tail.add_argument("--count", type=int, default=0, help="stop after this many (0: never)")
    tail.set_defaults(handler=cmd_tail)

    metrics = sub.add_parser("metrics", help="serve Prometheus metrics on /metrics")
    metrics.add_argument("--host", default="127.0.0.1", help="address to listen on")
    metrics.add_argument("--port", type=int, default=9808, help="port (default 9808)")
    metrics.set_defaults(handler=cmd_metrics)

    receive = sub.add_parser(
        "receive",
        help="receive eSMS's CallbackUrl pushes on /esms/push/<ESMS_PUSH_TOKEN> and publish "
        "them as status events",
    )
    receive.add_argument("--host", help="address to listen on (default ESMS_RECEIVER_HOST)")
    receive.add_argument("--port", type=int, help="port (default ESMS_RECEIVER_PORT)")
    receive.set_defaults(handler=cmd_receive)

    # Listed for --help; main() hands `simulate ...` to the simulator's own parser.
    sub.add_parser("simulate", help="run the eSMS simulator alone (see simulate --help)")
    for command in sub.choices.values():  # each command's --help starts with what it does
        command.description = command.description or _help_of(sub, command.prog)
    return parser


def _help_of(sub: Any, prog: str) -> str | None:
    name = prog.rsplit(" ", 1)[-1]
    return next((a.help for a in sub._choices_actions if a.dest == name), None)


def _version() -> str:

    try:
        return version("esms-zns-callbacks")
    except PackageNotFoundError:
        return "unknown (not installed)"


def cmd_run(args: argparse.Namespace) -> int:
    # The Procfile runs on honcho; the worker, the receiver and the simulator need aiohttp.
    with worker_extra("run", "honcho", "aiohttp", *([] if args.no_flower else ["flower"])):
        from esms_callbacks.cli.stack import processes, stack_commands, stack_environment

    settings = Settings.from_env()
    settings.require_redis_url()  # the stack's own state; a worker would stop on it later
    generated_password = not os.environ.get("FLOWER_BASIC_AUTH")
    env, simulated = stack_environment(settings, dict(os.environ))
    if simulated:
        print(
            f"No eSMS credentials (ESMS_API_KEY, ESMS_SECRET_KEY): running against the bundled "
            f"eSMS simulator at {env['ESMS_BASE_URL']}. Nothing reaches eSMS.",
            flush=True,
        )
    else:
        terms = settings.terms
        print(
            f"Running against eSMS at {redact_url(terms.base_url)}, window {terms.window}.",
            flush=True,
        )
    if not args.no_flower:
        # A password the user chose is never printed; one made for this run must be.
        login = (
            f"user:password {env['FLOWER_BASIC_AUTH']}, made for this run"
            if generated_password
            else "user:password from FLOWER_BASIC_AUTH"
        )
        print(f"Flower: http://127.0.0.1:{env.get('FLOWER_PORT', '5555')} ({login})", flush=True)
    os.environ.update(env)
    with processes(stack_commands(simulated, env, not args.no_flower), env) as procs:
        if simulated and args.demo_refs > 0:
            show_demo(args.demo_refs)
        print("Stack running; Ctrl-C stops it.", flush=True)
        while all(p.poll() is None for p in procs.values()):
            time.sleep(0.5)
        failed = [name for name, p in procs.items() if p.poll() not in (None, 0)]
        print(f"esms-callbacks: process(es) exited: {', '.join(failed) or 'all'}", file=sys.stderr)
        return EXIT_FAILED if failed else EXIT_OK


def show_demo(count: int) -> None:
    """Submit `count` demo RefIds in small groups and print their events until all are terminal."""
    from esms_callbacks.cli.demo import OA_ID, simulator_pushes, submit_in_groups
    from esms_callbacks.cli.stack import wait_for_worker

    settings = Settings.from_env()
    wait_for_worker(app)
    ref_ids = [f"demo-{int(time.time())}-{i:05d}" for i in range(count)]
    submit_in_groups(ref_ids, OA_ID)
    # Every other message was "sent with a CallbackUrl": eSMS pushes its status too, and the
    # receiver and the poll settle each RefId once, whichever hears first (see `source`).
    simulator_pushes(ref_ids[::2], OA_ID)
    print(f"watching {settings.status_queue} (* marks a terminal event):", flush=True)
    terminal: Counter[str] = Counter()
    for event in consume(settings, stop=lambda: sum(terminal.values()) >= count):
        print(format_event(event), flush=True)
        if event["terminal"]:
            terminal[event["status"]] += 1
    print(f"All {count} RefIds terminal: {dict(terminal)}", flush=True)


ACCOUNT_HELP = "the eSMS account (a table of ESMS_ACCOUNTS_FILE; default: default)"


def cmd_submit(args: argparse.Namespace) -> int:

    if args.chunk < 1:
        raise InvalidSubmission("--chunk must be at least 1")
    if args.file == "-":
        if sys.stdin.isatty():
            print("reading RefIds from stdin, one per line; Ctrl-D ends", file=sys.stderr)
        ref_ids = list(read_ref_ids(sys.stdin.buffer, args.column, "stdin"))
    else:
        with open(args.file, "rb") as source:
            ref_ids = list(read_ref_ids(source, args.column, args.file))
    if not ref_ids:
        raise InvalidSubmission("no RefIds found in the input")
    chunks = [ref_ids[i : i + args.chunk] for i in range(0, len(ref_ids), args.chunk)]
    for chunk in chunks:  # validate everything before queueing anything
        validate_submission(chunk, args.oa_id)
    sent = 0
    for chunk in chunks:
        fetch_callbacks.delay(chunk, args.oa_id, account=args.account)
        sent += len(chunk)
        line(
            f"submitting {bar(sent, len(ref_ids))} {sent}/{len(ref_ids)} RefIds", stream=sys.stderr
        )
    line(
        f"submitted {plural(sent, 'RefId')} for OA {args.oa_id} in {plural(len(chunks), 'task')}",
        end="\n",
        stream=sys.stderr,
    )
    return EXIT_OK


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def operator_runtimes() -> Runtimes:
    return Runtimes(AccountBook(Settings.from_env()))  # no secret: it sends nothing


def cmd_status(args: argparse.Namespace) -> int:
    runtimes = operator_runtimes()
    states = accounts_state(runtimes, args.account)
    many = runtimes.book.from_file or bool(args.account)
    # One account, as before accounts: its snapshot; several: each one's, by name.
    shown_state: dict[str, Any] = {"accounts": states} if many else states[0]
    if not args.no_processes:
        shown_state["processes"] = process_state(runtimes.book.settings, app)
    if args.json:
        print(json.dumps(shown_state, indent=2))
        return EXIT_OK
    if "processes" in shown_state:  # the deployment's: shown with the first account
        states[0] = {**states[0], "processes": shown_state["processes"]}
    print("\n\n".join(render(state) for state in states))
    return EXIT_OK


def cmd_reconcile(args: argparse.Namespace) -> int:
    from esms_callbacks.ops.reconcile_report import reconcile_report

    runtimes = operator_runtimes()
    chosen = [runtimes.get(args.account)] if args.account else runtimes.all()
    now_s = time.time()
    try:
        since_s = since_moment(args.since, now_s, runtimes.book.settings.reconcile_lookback_s)
    except ValueError as exc:
        print(f"esms-callbacks: {exc}", file=sys.stderr)
        return EXIT_USAGE
    reports = [reconcile_report(rt, since_s, now_s) for rt in chosen]
    if args.json:
        print(json.dumps([asdict(report) for report in reports], indent=2))
        return EXIT_OK
    for rt, report in zip(chosen, reports, strict=True):
        off = " (ESMS_RECONCILE is off: nothing is swept)" if rt.terms.reconcile == "off" else ""
        print(f"account {shown(report.account)}{off}")
        print(f"  sent by eSMS, never submitted: {len(report.never_submitted)}")
        for gap in report.never_submitted:
            print(f"    {shown(gap.ref_id)}  sent {gap.at}")
        print(f"  submitted, eSMS has no data for them: {len(report.no_data_at_esms)}")
        for gap in report.no_data_at_esms:
            print(f"    {shown(gap.ref_id)}  OA {shown(gap.oa_id)}  submitted {gap.at}")
    return EXIT_OK


def since_moment(text: str, now_s: float, default_back_s: float) -> float:
    """`--since`: an ISO 8601 moment (with its offset) or `Nh` hours ago; ValueError naming
    the problem."""
    text = text.strip()
    if not text:
        return now_s - default_back_s
    if text.endswith("h") and text[:-1].replace(".", "", 1).isdigit():
        return now_s - float(text[:-1]) * 3600
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"--since {text!r}: give an ISO 8601 moment with its offset "
            "(2026-12-07T01:00+07:00) or hours ago (6h)"
        ) from None
    if moment.tzinfo is None:
        raise ValueError(f"--since {text!r} has no offset: add one (+07:00 for Vietnam time)")
    return moment.timestamp()


def cmd_show(args: argparse.Namespace) -> int:
    runtimes = operator_runtimes()
    chosen = [runtimes.get(args.account)] if args.account else runtimes.all()
    found = [(rt, state) for rt in chosen for state in find_ref(rt, args.ref_id, args.oa)]
    if args.json:
        print(
            json.dumps([{"account": rt.name, **state.as_dict()} for rt, state in found], indent=2)
        )
    elif not found:
        days = runtimes.book.settings.done_ttl_s / 86400
        print(
            f"{shown(args.ref_id)}: not known here: never submitted"
            f"{' under OA ' + shown(args.oa) if args.oa else ''}, or finished more than "
            f"{days:g} days ago (ESMS_DONE_TTL)",
            file=sys.stderr,
        )
    for rt, state in [] if args.json else found:
        account = f"account {shown(rt.name)}, " if runtimes.book.from_file else ""
        print(f"{shown(state.ref_id)} ({account}OA {shown(state.oa_id)}): {state.where}")
        for label, value in [
            ("submitted at", state.submitted_at),
            ("next ask at", state.next_ask_at),
            ("held by a request until", state.lease_until),
            ("finished at", state.finished_at),
            ("last state", state.last_state),
            ("asked eSMS", plural(state.asks, "time")),
        ]:
            if value:
                print(f"  {label:24} {shown(value)}")
        if state.last_event:
            print(f"  {'last event':24} {last_event_text(state.last_event)}")
        if state.learnt:
            print(f"  {'learnt':24} {learnt_text(state.learnt)}")
    return EXIT_OK if found else EXIT_FAILED


def learnt_text(learnt: dict[str, Any]) -> str:
    """What the sources learnt of a waiting RefId, as `show` prints it."""
    parts = []
    if learnt.get("sms_type"):
        parts.append(f"SmsType {learnt['sms_type']}")
    if learnt.get("asked_with_query_zns_status"):
        parts.append("GetCallback does not know it: asked with QueryZnsStatus")
    if learnt.get("zalo_message_id_known"):
        parts.append("Zalo's message id known")
    for source, said in (learnt.get("heard") or {}).items():
        parts.append(f"{source} said {said['state']} at {said['at']}")
    return shown(", ".join(parts) or "nothing yet")


def last_event_text(event: dict[str, Any]) -> str:
    """A RefId's last event as `show` prints it (from Redis, so escaped)."""
    error = event.get("error") or {}
    detail = f", error {error_text(error)}" if error else ""
    return shown(
        f"{event.get('status')} (send_status {event.get('send_status')}, "
        f"{event.get('source')}, {event.get('observed_at')}{detail}) id {event.get('event_id')}"
    )


def error_text(error: dict[str, Any]) -> str:
    message = error.get("message")  # a RefId's memory keeps the code only
    return f"{error.get('code')}: {message}" if message else f"{error.get('code')}"


def cmd_tail(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    events = consume(settings, stop=lambda: False, take=args.take)
    for seen, event in enumerate(events, start=1):
        # JSON with ensure_ascii escapes every control and non-ASCII character: one line each.
        text = json.dumps(event, ensure_ascii=True) if args.json else format_event(event)
        print(text, flush=True)
        if args.count and seen >= args.count:
            break
    return EXIT_OK


def consume(settings: Settings, stop: Any, take: bool = True) -> Iterable[dict[str, Any]]:
    """Events as they come: taken off ESMS_STATUS_QUEUE (`take`), or copies from a queue of
    this process's own, bound to the events exchange and deleted when it is done (a killed
    process leaves one that expires: see README)."""
    import socket
    import uuid

    exchange = settings.events_exchange
    if take:
        queue = status_queue(settings.status_queue, exchange)
    else:
        name = f"esms.tail.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:6]}"
        queue = Queue(
            name,
            status_exchange(exchange),
            routing_key=exchange,
            durable=False,
            auto_delete=True,
            expires=TAIL_QUEUE_EXPIRES_S,
        )
    yield from read_events(
        settings.broker_url,
        queue,
        stop=stop,
        delete_after=not take,
        transport_options=settings.broker_transport_options,
    )


def format_event(event: dict[str, Any]) -> str:
    """One line per event; every field came over the broker, so each is escaped."""
    error = event.get("error") or {}
    detail = f"  error {shown(error_text(error))}" if error else ""
    mark = "*" if event.get("terminal") else " "
    return (
        f"{shown(event.get('observed_at', ''))[:19]} {mark} {shown(event.get('status', '?')):9} "
        f"{shown(event.get('ref_id'))} (OA {shown(event.get('oa_id'))}, "
        f"{shown(event.get('source', 'poll'))}){detail}"
    )


def cmd_demo(args: argparse.Namespace) -> int:

    if args.refs < 1 or args.opens_in < 0 or args.interval <= 0:
        raise InvalidSubmission("--refs must be >= 1, --opens-in >= 0 and --interval > 0")
    with worker_extra("demo", "honcho", "aiohttp"):  # the stack, as for `run`, without Flower
        from esms_callbacks.cli.demo import run_demo
    return run_demo(args.refs, args.opens_in, args.interval, args.timeout)


def cmd_metrics(args: argparse.Namespace) -> int:
    with worker_extra("metrics"):
        from esms_callbacks.cli.metrics_server import serve

    Settings.from_env().require_redis_url()  # every scrape reads Redis: say so before serving
    serve(args.host, args.port)
    return EXIT_OK


def cmd_receive(args: argparse.Namespace) -> int:
    import logging

    with worker_extra("receive"):
        from esms_callbacks.cli.receive import serve

    settings = Settings.from_env(process="receiver")
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO").upper(), format=LOG_FORMAT)
    serve(
        settings,
        args.host or settings.receiver_host,
        settings.receiver_port if args.port is None else args.port,
    )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
