"""Flower as the Procfile runs it: password from the environment only, loopback by default."""

from __future__ import annotations

import os
import subprocess
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path

import pytest

from esms_callbacks.cli.processes import free_port
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "flower-test-pw-8c1d"


def procfile_line(name: str) -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {name} line in the Procfile")


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp writes them) listening on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def test_flower_refuses_to_start_without_a_password():
    env = {k: v for k, v in os.environ.items() if k != "FLOWER_BASIC_AUTH"}
    done = subprocess.run(
        ["sh", "-c", procfile_line("flower")], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode != 0
    assert "set FLOWER_BASIC_AUTH=user:password" in done.stderr


@pytest.mark.slow
def test_flower_listens_on_loopback_and_keeps_its_password_off_the_command_line(redis_url):
    port = free_port()
    env = {
        **os.environ,
        "FLOWER_BASIC_AUTH": f"admin:{PASSWORD}",
        "FLOWER_PORT": str(port),
        "CELERY_BROKER_URL": redis_url,
        "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    flower = subprocess.Popen(
        ["sh", "-c", procfile_line("flower")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/"

    def answers() -> bool:
        try:
            urllib.request.urlopen(url, timeout=2)
        except urllib.error.HTTPError as exc:
            assert exc.code == 401  # it answers, and not without the password
            return True
        except OSError:
            assert flower.poll() is None, "flower exited"
            return False
        raise AssertionError("flower answered without the password")

    try:
        wait_until(answers, 60, "flower did not start")
        login = b64encode(f"admin:{PASSWORD}".encode()).decode()
        request = urllib.request.Request(url, headers={"Authorization": f"Basic {login}"})
        assert urllib.request.urlopen(request, timeout=5).status == 200
        # only on loopback (127.0.0.1 is 0100007F in /proc/net/tcp)
        assert listening_addresses(port) == {"0100007F"}
        # and the password is nowhere in its command line (what `ps` shows every user)
        cmdline = Path(f"/proc/{flower.pid}/cmdline").read_bytes().decode(errors="replace")
        assert "flower" in cmdline and PASSWORD not in cmdline
    finally:
        os.killpg(flower.pid, 15)
        flower.wait(timeout=15)
