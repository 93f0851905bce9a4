"""What keeps parallel test sessions apart: under pytest-xdist each worker process (gw0, gw1,
...) runs a session of its own on a Redis database of its own.

Worker gwN takes database D+N, where D is the database of ESMS_TEST_REDIS_URL: its broker
queues, Celery control messages (kombu prefixes fanout channels with the database) and the
engine's keys stay its alone, and it may flush that database at its start. Everything else a
test uses is already per process or per test: the session simulator (a port of its own),
`tmp_path`, free ports, the environment, `redis-server`s started by tests/procs.py.

What workers do share is the CPU: at most SLOW_AT_ONCE tests marked slow (worker
subprocesses, Redis topologies whose failure detection is timed) run at once across them, and
never two of one module (RabbitMQ's queues and a worker's name are the machine's, not the
database's).
"""

from __future__ import annotations

import fcntl
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

SLOW_AT_ONCE = 3  # of the run's xdist workers, how many may be inside a slow test at once


def worker_redis_url(base_url: str, worker: str | None) -> str:
    """`base_url` for a plain session; for xdist worker `gwN`, the same server's database D+N."""
    if not worker:
        return base_url
    match = re.fullmatch(r"gw(\d+)", worker)
    if match is None:
        raise ValueError(f"unexpected PYTEST_XDIST_WORKER {worker!r}: expected gw<number>")
    parts = urlsplit(base_url)
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError(f"ESMS_TEST_REDIS_URL {base_url!r}: its path must be a database number")
    database = int(path or 0) + int(match.group(1))
    return urlunsplit(parts._replace(path=f"/{database}"))


@contextmanager
def one_of(slots: int, directory: Path, poll_s: float = 0.2) -> Iterator[None]:
    """Hold one of `slots` lock files in `directory` (shared by the run's xdist workers) while
    inside: at most `slots` holders at once across processes, the others waiting their turn.
    A holder that dies lets go with its process (flock)."""
    directory.mkdir(parents=True, exist_ok=True)
    while True:
        for n in range(slots):
            handle = (directory / f"slot-{n}.lock").open("w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
                handle.close()
            return
        time.sleep(poll_s)
