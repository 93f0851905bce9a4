"""`esms-callbacks run`: the Procfile's processes, and the simulator when no credentials are set."""

from __future__ import annotations

import os
import secrets
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from esms_callbacks.accounts import RECEIVER_SECRETS, WORKER_SECRETS, default_account
from esms_callbacks.cli.processes import (
    ROOT,
    Child,
    Children,
    Command,
    simulator_command,
    simulator_options,
)
from esms_callbacks.settings import Settings
from esms_callbacks.terms import show_window

STOP_GRACE_S = 15.0
SIM_PORT = 8077
SIM_API_KEY = "sim-api-key"
SIM_SECRET_KEY = "sim-secret-key"


def stack_environment(settings: Settings, env: dict[str, str]) -> tuple[dict[str, str], bool]:
    """Return the environment for the stack, and whether it runs against the simulator."""
    env = dict(env)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("FLOWER_BASIC_AUTH", f"admin:{secrets.token_urlsafe(12)}")
    if default_account(settings, WORKER_SECRETS, env).secrets.has_credentials:
        return env, False
    env.update(
        {
            "ESMS_API_KEY": SIM_API_KEY,
            "ESMS_SECRET_KEY": SIM_SECRET_KEY,
            "ESMS_BASE_URL": f"http://127.0.0.1:{env.get('ESMS_SIM_PORT', SIM_PORT)}",
            "ESMS_REST_BASE_URL": f"http://127.0.0.1:{env.get('ESMS_SIM_PORT', SIM_PORT)}",
            "ESMS_SIMULATED": "1",
        }
    )
    # With the simulator the user should see events at once, not at 01:00 Vietnam time.
    env.setdefault("ESMS_WINDOW", "always")
    env.setdefault("ESMS_REPOLL_AFTER", "10")
    env.setdefault("LOG_LEVEL", "WARNING")  # let the demo's event lines stand out
    # The simulator pushes statuses to the receiver as eSMS does: the demo shows both paths.
    env.setdefault("ESMS_PUSH_TOKEN", secrets.token_urlsafe(24))
    return env, True


@contextmanager
def processes(
    commands: dict[str, Command], env: dict[str, str], log: IO[bytes] | None = None
) -> Iterator[dict[str, Child]]:
    """Start named processes in the repository root (output to `log`, else the terminal);
    stop them all on exit. They stay in the caller's process group: a closed terminal stops
    them with it."""
    with Children(output=log, stop_grace_s=STOP_GRACE_S, own_groups=False) as children:
        yield {name: children.start(name, command, env) for name, command in commands.items()}


def stack_commands(simulated: bool, env: dict[str, str], with_flower: bool) -> dict[str, Command]:
    (ROOT / ".run").mkdir(exist_ok=True)
    names = ["worker", "beat"] + (["flower"] if with_flower else [])
    if env.get("ESMS_PUSH_TOKEN"):  # the receiver refuses to start without one
        names.append("receiver")
    procfile = [sys.executable, "-m", "honcho", "-f", str(ROOT / "Procfile"), "start", *names]
    commands = {"procfile": Command(procfile)}
    if simulated:
        # The simulator enforces the limits the stack was given, read as the stack reads them.
        settings = Settings.from_env(env)
        options = simulator_options(
            SIM_API_KEY,
            SIM_SECRET_KEY,
            rate_interval_s=settings.terms.rate_interval_s,
            max_refs=settings.terms.max_refs_per_request,
            policy="mixed",
            window=show_window(settings.terms.window),
            timezone=str(settings.terms.window.zone),
        )
        if env.get("ESMS_SIM_CLOCK_OFFSET"):  # the demo: messages sent a while ago
            options = [*options, "--clock-offset", env["ESMS_SIM_CLOCK_OFFSET"]]
        commands["simulator"] = simulator_command(options, env.get("ESMS_SIM_PORT", SIM_PORT))
    return commands


def wait_for_worker(app: Any, timeout_s: float = 60.0) -> None:
    """Return once a worker answers a ping; exit with a message after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if app.control.ping(timeout=1.0):
            return
    raise SystemExit("esms-callbacks: no worker answered within 60 s; see the worker's log above")


def push_url(env: dict[str, str]) -> str:
    """The CallbackUrl the stack's receiver answers on (the simulator pushes there)."""
    settings = Settings.from_env(env)
    host, port = settings.receiver_host, settings.receiver_port
    token = default_account(settings, RECEIVER_SECRETS, env).secrets.push_token
    return f"http://{host}:{port}/esms/push/{token}"
