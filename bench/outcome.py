"""What one run (one row of the table) measured."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.measure import LogFigures
from bench.scenarios import Scenario


@dataclass
class Outcome:
    scenario: Scenario
    label: str
    comparison: bool = False  # Celery's rate_limit: shown for reference, no targets
    figures: LogFigures | None = None
    goodput: float | None = None
    cpu_s: float | None = None  # CPU seconds of the worker process groups during the run
    submitted: int = 0
    finished: int = 0  # RefIds with a terminal event (ours) or answered with Code 100 (Celery's)
    deadline_hit: bool = False
    wall_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def lost(self) -> int:
        return self.submitted - self.finished

    @property
    def cpu_s_per_1000_refs(self) -> float | None:
        if self.cpu_s is None or not self.finished:
            return None
        return self.cpu_s / (self.finished / 1000)

    @property
    def refs_per_s_ratio(self) -> float | None:
        figures = self.figures
        if figures is None or figures.refs_per_s is None:
            return None
        allowed = self.scenario.max_refs / self.scenario.interval_s
        return figures.refs_per_s / allowed
