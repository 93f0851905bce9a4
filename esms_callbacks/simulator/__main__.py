"""Run the eSMS simulator (GetCallback, QueryZnsStatus, GetZaloMessageStatus) in the foreground.

    python -m esms_callbacks.simulator --host 127.0.0.1 --port 8077 --api-key KEY \
        --secret-key SECRET --rate-interval 1.0 --max-refs 100 --policy mixed --window always \
        --timezone Asia/Ho_Chi_Minh [--fault-rate http500:0.1 ...] [--fault-seed 7] \
        [--push-timeout 5 --push-retries 5 --push-retry-delay 2] [--accounts-file PATH] \
        [--clock-offset -120]

`--fault-rate KIND:RATE[:NAME=VALUE,...]` makes a random share of requests fail as KIND (see
simulator.faults; e.g. `code:0.05:code=160`, `slow:0.2:delay_s=3`); repeat it for several
kinds. The --push-* options set how pushes queued by POST /_sim/push are delivered (see
simulator.pusher). `--accounts-file` serves the accounts of a deployment's ESMS_ACCOUNTS_FILE
(simulator.accounts_file) instead of the one of --api-key and --secret-key, with --rate-interval
and --max-refs for those whose table names none. `--clock-offset S` runs the clock registered
messages move by S seconds from the wall clock: -120 registers them as sent two minutes ago,
already in the past a sweep of the ledger reads (it leaves the last minute for later); rate
clocks and the request log keep the wall clock. Prints one line saying where it listens, then
serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from esms_callbacks.simulator.accounts_file import read_accounts_file
from esms_callbacks.simulator.app import GET_CALLBACK_PATH, make_app
from esms_callbacks.simulator.arrival import new_event_loop
from esms_callbacks.simulator.outcomes import POLICIES
from esms_callbacks.simulator.pusher import PushSettings
from esms_callbacks.simulator.state import Simulator
from esms_callbacks.simulator.window_check import window_check


@dataclass(frozen=True)
class FaultRate:
    """One `--fault-rate KIND:RATE[:NAME=VALUE,...]` option."""

    kind: str
    rate: float
    params: dict[str, object] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> FaultRate:
        kind, _, rest = text.partition(":")
        rate_text, _, params_text = rest.partition(":")
        try:
            rate = float(rate_text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r}: give KIND:RATE[:NAME=VALUE,...], e.g. http500:0.1 or code:0.05:code=160"
            ) from None
        params: dict[str, object] = {}
        for item in filter(None, params_text.split(",")):
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise argparse.ArgumentTypeError(f"{text!r}: parameter {item!r} is not NAME=VALUE")
            params[name] = _number_or_text(value)
        return cls(kind, rate, params)


def _number_or_text(value: str) -> object:
    for convert in (int, float):
        try:
            return convert(value)
        except ValueError:
            continue
    return value


def parse_args(
    argv: list[str] | None = None, prog: str = "python -m esms_callbacks.simulator"
) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog, description="Run the eSMS simulator (every status source, and pushes)."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8077, help="0 picks a free port")
    parser.add_argument("--api-key", default="sim-api-key")
    parser.add_argument("--secret-key", default="sim-secret-key")
    parser.add_argument(
        "--rate-interval", type=float, default=1.0, help="seconds between requests; 0 disables"
    )
    parser.add_argument("--max-refs", type=int, default=100, help="RefIds answered per request")
    parser.add_argument(
        "--accounts-file",
        metavar="PATH",
        help="serve the accounts of this TOML file (ESMS_ACCOUNTS_FILE's format) instead of "
        "--api-key/--secret-key's; --rate-interval and --max-refs are their defaults",
    )
    parser.add_argument("--policy", default="mixed", choices=sorted(POLICIES))
    parser.add_argument("--window", default="always", help="'always' or HH:MM[:SS]-HH:MM[:SS]")
    parser.add_argument("--timezone", default="Asia/Ho_Chi_Minh", help="zone of --window")
    parser.add_argument(
        "--fault-rate",
        type=FaultRate.parse,
        action="append",
        default=[],
        metavar="KIND:RATE[:NAME=VALUE,...]",
        help="fail a random share of requests as KIND (repeatable), e.g. http500:0.1",
    )
    parser.add_argument("--fault-seed", type=int, help="seed of the random faults")
    parser.add_argument(
        "--clock-offset",
        type=float,
        default=0.0,
        metavar="S",
        help="seconds added to the wall clock for registered messages (their sending, their "
        "statuses, the ledger's creation times); -120: sent two minutes ago",
    )
    defaults = PushSettings()
    parser.add_argument(
        "--push-timeout",
        type=float,
        default=defaults.timeout_s,
        help="seconds one push attempt may take",
    )
    parser.add_argument(
        "--push-retries",
        type=int,
        default=defaults.retries,
        help="attempts after a failed push before it is dropped",
    )
    parser.add_argument(
        "--push-retry-delay",
        type=float,
        default=defaults.retry_delay_s,
        help="seconds between a failed push attempt and the next",
    )
    return parser.parse_args(argv)


def _offset_clock(offset_s: float) -> Callable[[], float]:
    def now_s() -> float:
        return time.time() + offset_s

    return now_s


def build_push_settings(args: argparse.Namespace) -> PushSettings:
    """Return the push settings the arguments describe; raise ValueError on a bad value."""
    return PushSettings(
        timeout_s=args.push_timeout, retries=args.push_retries, retry_delay_s=args.push_retry_delay
    )


def build_simulator(args: argparse.Namespace) -> Simulator:
    """Build the simulator the arguments describe; raise ValueError on a bad value."""
    accounts = None
    if args.accounts_file:
        accounts = read_accounts_file(
            args.accounts_file, rate_interval_s=args.rate_interval, max_refs=args.max_refs
        )
    sim = Simulator(
        api_key=args.api_key,
        secret_key=args.secret_key,
        max_refs=args.max_refs,
        rate_interval_s=args.rate_interval,
        is_open=window_check(args.window, args.timezone),
        policy=args.policy,
        accounts=accounts,
        clock=_offset_clock(args.clock_offset) if args.clock_offset else time.time,
    )
    seed = args.fault_seed
    for fault_rate in args.fault_rate:
        sim.set_fault_rate(fault_rate.kind, fault_rate.rate, seed, **fault_rate.params)
        seed = None  # seeded once, before the first draw
    return sim


async def serve(
    sim: Simulator, host: str, port: int, window: str, push_settings: PushSettings | None = None
) -> None:
    runner = web.AppRunner(make_app(sim, push_settings), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        bound = next((a for a in runner.addresses if isinstance(a, tuple)), (host, port))
        # One line, flushed, so a parent process (honcho, a test) can wait for it.
        print(
            f"eSMS simulator listening on http://{bound[0]}:{bound[1]}{GET_CALLBACK_PATH} "
            f"(policy={sim.policy}, rate_interval_s={sim.rate_interval_s}, "
            f"max_refs={sim.max_refs}, accounts={len(sim.accounts)}, window={window}, "
            f"fault_rates={sim.fault_rates()})",
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None, prog: str = "python -m esms_callbacks.simulator") -> int:
    args = parse_args(argv, prog)
    try:
        sim = build_simulator(args)
        push_settings = build_push_settings(args)
    except ValueError as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 2
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(serve(sim, args.host, args.port, args.window, push_settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
