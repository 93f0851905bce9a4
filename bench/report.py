"""The markdown table of a benchmark run: measured figures, each row against its targets."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bench.outcome import Outcome

Cell = Callable[[Outcome], str]

LEGEND = """\
How to read it (bench/measure.py has the exact definitions):
- rate used: requests (failed and refused ones included) per allowed interval, from the first
  request to the last one sent while some OA still had a full request of RefIds that no
  earlier request had answered; trailing partial requests are left out.
- RefIds/request: mean RefIds sent per request over ESMS_MAX_REFS, each OA's last request
  left out. min gap / interval: smallest gap between two receipts at the simulator
  (monotonic clock); gaps < interval counts them. Code 160: requests the simulator refused.
- goodput: Code 100 requests per second over the allowed rate, in the first measured seconds.
- RefIds/s: RefIds answered per second over the same span as the rate used, and its share of
  ESMS_MAX_REFS / ESMS_RATE_INTERVAL.
- worker CPU: user + system seconds of every process of the worker process groups (main and
  pool children, from /proc), from the moment they were ready to just before they were
  stopped, per 1,000 RefIds finished.
- lost: submitted RefIds without a terminal event on the status queue at the end (for
  Celery's rate_limit, RefIds never answered with Code 100: its tasks do not retry).
- targets (DESIGN.md) apply to this project's rows; Celery's rate_limit rows are for reference.
"""


def render(outcomes: Sequence[Outcome]) -> str:
    """The table, then one line of notes per row that has any, then the legend."""
    columns: list[tuple[str, Cell]] = [
        ("scenario", lambda o: o.label),
        ("rate used", _rate_used),
        ("RefIds/request (>= 0.99)", lambda o: _fig(o, "refs_per_request")),
        ("min gap / interval", lambda o: _fig(o, "min_gap_ratio")),
        ("gaps < interval (0)", lambda o: _fig(o, "closer_than_interval")),
        ("Code 160 (0)", lambda o: _fig(o, "refused")),
        ("goodput", _goodput),
        ("RefIds/s (share of allowed)", _refs_per_s),
        ("worker CPU s / 1k RefIds", lambda o: _number(o.cpu_s_per_1000_refs, 2)),
        ("lost (0)", _lost),
        ("wall s", lambda o: f"{o.wall_s:.0f}"),
        ("meets target", _verdict),
    ]
    rows = [[cell(o) for _, cell in columns] for o in outcomes]
    lines = [
        "| " + " | ".join(name for name, _ in columns) + " |",
        "|" + "|".join(" --- " for _ in columns) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]
    notes = [
        f"- {o.label.split('.')[0]}{' (Celery)' if o.comparison else ''}: "
        + "; ".join(o.notes + ([f"error: {o.error}"] if o.error else []))
        for o in outcomes
        if o.notes or o.error
    ]
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines) + "\n\n" + LEGEND


def misses(outcome: Outcome) -> list[str]:
    """The targets this row misses (none for the reference rows)."""
    if outcome.comparison:
        return []
    figures = outcome.figures
    if outcome.error or figures is None:
        return ["did not run to the end"]
    targets = outcome.scenario.targets
    missed = []
    for name, value, least in (
        ("rate used", figures.rate_used, targets.rate_used),
        ("RefIds/request", figures.refs_per_request, targets.refs_per_request),
        ("goodput", outcome.goodput, targets.goodput),
        ("RefIds/s", outcome.refs_per_s_ratio, targets.refs_per_s),
    ):
        if least is not None and (value is None or value < least):
            missed.append(name)
    for name, count, most in (
        ("gaps < interval", figures.closer_than_interval, targets.closer_than_interval),
        ("Code 160", figures.refused, targets.refused),
        ("lost", outcome.lost, targets.lost),
    ):
        if count > most:
            missed.append(name)
    return missed


def _verdict(outcome: Outcome) -> str:
    if outcome.comparison:
        return "reference"
    missed = misses(outcome)
    return "yes" if not missed else "**no**: " + ", ".join(missed)


def _number(value: float | int | None, places: int = 3) -> str:
    if value is None:
        return ""
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{places}f}"


def _fig(outcome: Outcome, name: str) -> str:
    if outcome.figures is None:
        return ""
    value: float | int | None = getattr(outcome.figures, name)
    return _number(value)


def _with_target(value: str, least: float | None, comparison: bool) -> str:
    if least is None or comparison or not value:
        return value
    return f"{value} (>= {least:g})"


def _rate_used(outcome: Outcome) -> str:
    least = outcome.scenario.targets.rate_used
    return _with_target(_fig(outcome, "rate_used"), least, outcome.comparison)


def _goodput(outcome: Outcome) -> str:
    least = outcome.scenario.targets.goodput
    return _with_target(_number(outcome.goodput), least, outcome.comparison)


def _refs_per_s(outcome: Outcome) -> str:
    ratio = outcome.refs_per_s_ratio
    if outcome.figures is None or outcome.figures.refs_per_s is None or ratio is None:
        return ""
    text = f"{outcome.figures.refs_per_s:,.0f} ({ratio:.3f})"
    return _with_target(text, outcome.scenario.targets.refs_per_s, outcome.comparison)


def _lost(outcome: Outcome) -> str:
    if outcome.figures is None and outcome.error:
        return ""
    text = f"{outcome.lost:,}"
    return f"{text} (unfinished at deadline)" if outcome.deadline_hit and outcome.lost else text
