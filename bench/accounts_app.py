"""The project's worker app with turns of the benchmark's length: `bench.accounts_bench` runs
`celery -A bench.accounts_app worker` so that a round of turns over 1,000 accounts fits in
minutes (BENCH_FAIR_TURN_S seconds a turn, instead of FAIR_TURN_S). Everything else is the
production app, esms_callbacks.tasks. Not installed."""

from __future__ import annotations

import os

from esms_callbacks.tasks import app, worker_context

worker_context.fair_turn_s = float(os.environ["BENCH_FAIR_TURN_S"])

__all__ = ["app"]
