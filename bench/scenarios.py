"""The benchmark's scenarios and the targets each is read against (DESIGN.md)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType


@dataclass(frozen=True)
class Targets:
    """What a row must reach; None where the scenario sets no target."""

    rate_used: float | None = None  # at least
    refs_per_request: float | None = 0.99  # at least, of max_refs
    goodput: float | None = None  # at least
    refs_per_s: float | None = None  # at least, of max_refs / interval
    closer_than_interval: int = 0  # at most
    refused: int = 0  # at most
    lost: int = 0  # at most


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    interval_s: float
    oa_sizes: tuple[int, ...]  # RefIds of each OA submitted up front
    max_refs: int = 100
    parked: bool = True  # submitted while the window is closed; else window "always"
    group_sizes: tuple[int, int] = (1, 12)  # each .delay() carries this many RefIds (random)
    workers: int = 2
    concurrency: int = 4
    fault_rate: float = 0.0  # share of requests the simulator answers with HTTP 500
    faults_for_s: float | None = None  # faults stop this long after the first request
    goodput_over_s: float | None = None  # goodput measured over this long from the first request
    producer_refs: int = 0  # submitted by a thread, in groups of 1-12, once the window opens
    producer_s: float = 0.0  # ... spread over this long
    naive: bool = False  # also run Celery's own rate_limit (bench/naive_app.py) on these terms
    env: tuple[tuple[str, str], ...] = ()  # extra environment for this scenario's processes
    targets: Targets = Targets()

    @property
    def total_refs(self) -> int:
        return sum(self.oa_sizes) + self.producer_refs

    def scaled(self, factor: float) -> Scenario:
        """The same scenario with backlogs and timed phases multiplied by `factor`."""
        if factor == 1:
            return self

        def size(n: int) -> int:
            return max(1, math.ceil(n * factor))

        def seconds(s: float | None) -> float | None:
            return None if s is None else max(5.0, s * factor)

        return replace(
            self,
            oa_sizes=tuple(size(n) for n in self.oa_sizes),
            producer_refs=size(self.producer_refs) if self.producer_refs else 0,
            producer_s=self.producer_s * factor,
            faults_for_s=seconds(self.faults_for_s),
            goodput_over_s=seconds(self.goodput_over_s),
        )


# Uneven OAs, as a real account's brands and branches are: 15 OAs, 15,030 RefIds.
_FIFTEEN_OAS = (1050, 730, 1000, 1180, 960, 1000, 1275, 890, 1000, 1020, 640, 1000, 1315, 970, 1000)

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        key="a",
        title="seed terms: 1 s x 100, 1 OA, 6,000 parked in groups of 1-12",
        interval_s=1.0,
        oa_sizes=(6000,),
        naive=True,
        targets=Targets(rate_used=0.99),
    ),
    Scenario(
        key="b",
        title="0.2 s x 100, 1 OA, 15,000 parked",
        interval_s=0.2,
        oa_sizes=(15000,),
        group_sizes=(20, 200),
        naive=True,
        targets=Targets(rate_used=0.97),
    ),
    Scenario(
        key="c",
        title=f"0.2 s x 100, 15 OAs, {sum(_FIFTEEN_OAS):,} parked (640-1,315 per OA)",
        interval_s=0.2,
        oa_sizes=_FIFTEEN_OAS,
        group_sizes=(5, 60),
        targets=Targets(rate_used=0.97),
    ),
    Scenario(
        key="d",
        title="10% HTTP 500, 0.2 s x 100, 1 OA, 35,000 parked; goodput over 60 s",
        interval_s=0.2,
        oa_sizes=(35000,),
        group_sizes=(100, 500),
        fault_rate=0.1,
        faults_for_s=60.0,
        goodput_over_s=60.0,
        targets=Targets(goodput=0.85),
    ),
    Scenario(
        key="e",
        title="100% HTTP 500 for 90 s, then none; 0.2 s x 100, 1 OA, 2,000 RefIds",
        interval_s=0.2,
        oa_sizes=(2000,),
        parked=False,
        group_sizes=(100, 100),
        fault_rate=1.0,
        faults_for_s=90.0,
    ),
    Scenario(
        key="f",
        title="eSMS's current terms: 0.05 s x 200, no window, 1 OA, 120,000 RefIds",
        interval_s=0.05,
        max_refs=200,
        oa_sizes=(120000,),
        parked=False,
        group_sizes=(500, 1500),
        targets=Targets(refs_per_s=0.9),
    ),
    Scenario(
        key="g",
        title="producers while draining: 0.2 s x 100, 1 OA, 5,000 parked + 20,000 in 1-12s",
        interval_s=0.2,
        oa_sizes=(5000,),
        producer_refs=20000,
        producer_s=30.0,
        targets=Targets(rate_used=0.97),
    ),
)
BY_KEY: Mapping[str, Scenario] = MappingProxyType({s.key: s for s in SCENARIOS})
