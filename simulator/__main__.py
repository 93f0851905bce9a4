"""Run the eSMS GetCallback simulator in the foreground.

    python -m simulator --host 127.0.0.1 --port 8077 --api-key KEY --secret-key SECRET \
        --rate-interval 1.0 --max-refs 100 --policy mixed --window always \
        --timezone Asia/Ho_Chi_Minh

Prints one line saying where it listens, then serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from aiohttp import web

from simulator.app import GET_CALLBACK_PATH, make_app
from simulator.outcomes import POLICIES
from simulator.state import Simulator
from simulator.window_check import window_check


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m simulator", description="Run the eSMS GetCallback simulator."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8077, help="0 picks a free port")
    parser.add_argument("--api-key", default="sim-api-key")
    parser.add_argument("--secret-key", default="sim-secret-key")
    parser.add_argument(
        "--rate-interval", type=float, default=1.0, help="seconds between requests; 0 disables"
    )
    parser.add_argument("--max-refs", type=int, default=100, help="RefIds answered per request")
    parser.add_argument("--policy", default="mixed", choices=sorted(POLICIES))
    parser.add_argument("--window", default="always", help="'always' or HH:MM[:SS]-HH:MM[:SS]")
    parser.add_argument("--timezone", default="Asia/Ho_Chi_Minh", help="zone of --window")
    return parser.parse_args(argv)


def build_simulator(args: argparse.Namespace) -> Simulator:
    """Build the simulator the arguments describe; raise ValueError on a bad value."""
    return Simulator(
        api_key=args.api_key,
        secret_key=args.secret_key,
        max_refs=args.max_refs,
        rate_interval_s=args.rate_interval,
        is_open=window_check(args.window, args.timezone),
        policy=args.policy,
    )


async def serve(sim: Simulator, host: str, port: int, window: str) -> None:
    runner = web.AppRunner(make_app(sim), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        bound = next((a for a in runner.addresses if isinstance(a, tuple)), (host, port))
        # One line, flushed, so a parent process (honcho, a test) can wait for it.
        print(
            f"eSMS simulator listening on http://{bound[0]}:{bound[1]}{GET_CALLBACK_PATH} "
            f"(policy={sim.policy}, rate_interval_s={sim.rate_interval_s}, "
            f"max_refs={sim.max_refs}, window={window})",
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        sim = build_simulator(args)
    except ValueError as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 2
    asyncio.run(serve(sim, args.host, args.port, args.window))
    return 0


if __name__ == "__main__":
    sys.exit(main())
