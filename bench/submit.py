"""Producers: the RefIds of a scenario, cut into groups and submitted with `.delay()`."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.measure import Submission

Submit = Callable[[list[str], str], object]  # fetch_callbacks.delay(ref_ids, oa_id)
Group = tuple[str, list[str]]  # (oa_id, ref_ids)
_OA_BASE = 1090257973118300000  # OA ids look like eSMS's: long numbers


def oa_id(index: int) -> str:
    return str(_OA_BASE + index)


@dataclass(frozen=True)
class Backlog:
    """The RefIds of each OA."""

    refs: dict[str, list[str]]

    @classmethod
    def build(cls, tag: str, sizes: Sequence[int], first_oa: int = 0) -> Backlog:
        return cls(
            {
                oa_id(first_oa + i): [f"{tag}-{first_oa + i:02d}-{n:06d}" for n in range(size)]
                for i, size in enumerate(sizes)
            }
        )

    @property
    def total(self) -> int:
        return sum(len(refs) for refs in self.refs.values())

    def groups(self, sizes: tuple[int, int], rng: random.Random) -> list[Group]:
        """Cut each OA's RefIds into groups of random size; interleave the OAs at random, as
        independent producers would (each OA's own RefIds stay in order)."""
        per_oa: list[list[Group]] = []
        for oa, refs in self.refs.items():
            cut: list[Group] = []
            start = 0
            while start < len(refs):
                size = rng.randint(*sizes)
                cut.append((oa, refs[start : start + size]))
                start += size
            per_oa.append(cut)
        order = [i for i, cut in enumerate(per_oa) for _ in cut]
        rng.shuffle(order)
        positions = [0] * len(per_oa)
        groups: list[Group] = []
        for i in order:
            groups.append(per_oa[i][positions[i]])
            positions[i] += 1
        return groups


def submit_all(submit: Submit, groups: Sequence[Group]) -> list[Submission]:
    """Submit every group now; return when each went out."""
    submissions = []
    for oa, refs in groups:
        submit(refs, oa)
        submissions.append(Submission(time.time(), oa, len(refs)))
    return submissions


class Producer(threading.Thread):
    """Submits `groups` spread evenly over `duration_s`, starting at `start_at` (time.time())."""

    def __init__(
        self, submit: Submit, groups: Sequence[Group], start_at: float, duration_s: float
    ) -> None:
        super().__init__(name="bench-producer", daemon=True)
        self._submit = submit
        self._groups = list(groups)
        self._start_at = start_at
        self._duration_s = duration_s
        self._halt = threading.Event()
        self.submissions: list[Submission] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        step_s = self._duration_s / max(1, len(self._groups))
        try:
            for index, (oa, refs) in enumerate(self._groups):
                delay_s = self._start_at + index * step_s - time.time()
                if self._halt.wait(max(0.0, delay_s)):
                    return
                self._submit(refs, oa)
                self.submissions.append(Submission(time.time(), oa, len(refs)))
        except BaseException as exc:  # reported by the runner, which then stops waiting
            self.error = exc

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)
