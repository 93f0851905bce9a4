"""Two real `celery worker` processes asking QueryZnsStatus for one account: its own limit
holds across processes where the simulator (in a process of its own) receives the requests,
and the requests still go out close to that rate while RefIds wait."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from esms_callbacks.cli.processes import Child, stop_all
from esms_callbacks.simulator.remote import RemoteSimulator
from esms_callbacks.tasks import app, fetch_callbacks
from tests.helpers import SIM_API_KEY, SIM_SECRET_KEY, drain_events, until_terminal
from tests.procs import remote_simulator, settings_env, start_beat, start_worker

pytestmark = pytest.mark.slow
OA = "1090257973118325190"
QUERY_INTERVAL_S = 0.02
REFS = 400
# Loose on a shared 2-core machine; `make bench-freshness` measures the real figure.
LEAST_RATE_USED = 0.8


@pytest.fixture(scope="module")
def query_sim() -> Iterator[RemoteSimulator]:
    with remote_simulator(SIM_API_KEY, SIM_SECRET_KEY, rate_interval_s=0.05, policy="sent") as sim:
        yield sim


@pytest.fixture
def procs() -> Iterator[list[Child]]:
    app.control.purge()  # leftovers of other tests must not reach these workers
    started: list[Child] = []
    yield started
    stop_all(started)


def test_two_workers_keep_query_zns_status_apart_and_near_its_rate(
    make_settings, query_sim, procs, tmp_path
):
    # given 400 messages sent without a CallbackUrl, final already, and an account that asks
    # only QueryZnsStatus, eSMS allowing one request every 20 ms (no margin: on loopback only
    # the limiter keeps them apart)
    query_sim.reset()
    query_sim.configure(query_rate_interval_s=QUERY_INTERVAL_S)
    ref_ids = [f"lim-{i:04d}" for i in range(REFS)]
    query_sim.register_messages(ref_ids, OA, callback_url=False)
    settings = make_settings(
        base_url=query_sim.base_url,
        query_status="only",
        query_rate_interval_s=QUERY_INTERVAL_S,
        rate_margin_s=0.0,
        release_every_s=0.5,
    )
    env = settings_env(settings)

    # when two worker processes (2 pool processes each) and beat drain them
    procs += [start_worker(f"q{i}", env, tmp_path) for i in range(2)]
    procs.append(start_beat(env, tmp_path))
    for start in range(0, REFS, 100):
        fetch_callbacks.delay(ref_ids[start : start + 100], OA)
    events = drain_events(
        settings.broker_url,
        settings.status_queue,
        want=REFS,
        timeout_s=30,
        until=until_terminal(ref_ids),
    )

    # expect one terminal event for every RefId
    terminal = [e["ref_id"] for e in events if e["terminal"]]
    assert sorted(terminal) == ref_ids
    # and no two QueryZnsStatus requests closer than the interval where eSMS received them
    queries = sorted(
        (r for r in query_sim.requests() if r["endpoint"] == "query"),
        key=lambda r: r["received_monotonic_s"],
    )
    times = [r["received_monotonic_s"] for r in queries]
    gaps = sorted(b - a for a, b in itertools.pairwise(times))
    assert gaps[0] >= QUERY_INTERVAL_S, gaps[:5]
    assert query_sim.endpoint_stats()["default"]["query"]["code_160"] == 0
    # and, while RefIds waited (until the last one was first asked), near the rate
    assert len(queries) == REFS  # one each: final already, of the type guessed first
    rate_used = (len(times) - 1) * QUERY_INTERVAL_S / (times[-1] - times[0])
    assert rate_used >= LEAST_RATE_USED, rate_used
