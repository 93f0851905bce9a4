"""Faults the simulator can inject: into its next requests, one request each, in order
(`Simulator.add_fault`), or into a random share of its requests (`RandomFaults`).

http500   HTTP 500 with a plain-text body
slow      wait `delay_s` seconds, then answer normally (the answer is decided on receipt)
badjson   HTTP 200, JSON content type, body cut off mid-object
html      HTTP 200 with an HTML error page (text/html), as a proxy or IIS would send
code      HTTP 200 with {"Code": code, "Message": message}, e.g. 160, 105, 101, 103
reset     no answer at all: the connection is aborted
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal, TypeGuard, get_args

FaultKind = Literal["http500", "slow", "badjson", "html", "code", "reset"]
FAULT_KINDS: frozenset[str] = frozenset(get_args(FaultKind))

# Messages for the codes esms_callbacks/errors.py knows (eSMS's public docs); other codes get a
# neutral text rather than a guess.
CODE_MESSAGES: dict[int, str] = {
    99: "Invalid request",
    101: "Authorize Failed: wrong ApiKey or SecretKey",
    103: "Balance not enough",
    105: "SMSID not found",
    140: "IP is not in the whitelist",
    143: "Account is locked",
    160: "Request rate exceeded, please try again later",
}
_ALLOWED_PARAMS: dict[str, frozenset[str]] = {
    "http500": frozenset(),
    "slow": frozenset({"delay_s"}),
    "badjson": frozenset(),
    "html": frozenset(),
    "code": frozenset({"code", "message"}),
    "reset": frozenset(),
}


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    delay_s: float = 0.0
    code: int = 0
    message: str = ""


def is_fault_kind(value: object) -> TypeGuard[FaultKind]:
    return isinstance(value, str) and value in FAULT_KINDS


def make_fault(kind: object, **params: object) -> Fault:
    """Build a fault from a kind and its parameters; raise ValueError naming the problem."""
    if not is_fault_kind(kind):
        raise ValueError(f"unknown fault kind {kind!r}; use one of {sorted(FAULT_KINDS)}")
    unknown = set(params) - _ALLOWED_PARAMS[kind]
    if unknown:
        raise ValueError(f"fault {kind!r} takes no parameter(s) {sorted(unknown)}")
    if kind == "slow":
        delay_s = params.get("delay_s", 1.0)
        if isinstance(delay_s, bool) or not isinstance(delay_s, int | float) or delay_s < 0:
            raise ValueError("fault 'slow' needs delay_s, a number of seconds >= 0")
        return Fault(kind, delay_s=float(delay_s))
    if kind == "code":
        code = params.get("code")
        if isinstance(code, bool) or not isinstance(code, int):
            raise ValueError("fault 'code' needs code, an integer such as 160 or 105")
        message = params.get("message", CODE_MESSAGES.get(code, "Simulated error"))
        if not isinstance(message, str):
            raise ValueError("fault 'code' takes message as a string")
        return Fault(kind, code=code, message=message)
    return Fault(kind)


# Rates are added up; a little slack so that e.g. 0.1 + 0.2 + 0.7 is not refused as > 1.
_RATE_SUM_SLACK = 1e-9


class RandomFaults:
    """Per fault kind, the share of requests it hits at random; one draw per request.

    The kinds' shares do not overlap: with http500 at 0.1 and reset at 0.2, 30% of requests
    fail. A seed makes the sequence of hits reproducible. Not thread-safe: the caller locks.
    """

    def __init__(self) -> None:
        self._rates: dict[FaultKind, tuple[Fault, float]] = {}
        self._rng = random.Random()

    def set_rate(self, kind: object, rate: object, seed: object = None, **params: object) -> None:
        """Make `rate` (0 to 1) of requests fail as `kind`; 0 turns the kind off.

        `seed` (an integer) restarts the random sequence. Raise ValueError, changing nothing,
        on a bad kind, parameter, rate or seed, or when the kinds' rates would add up past 1.
        """
        fault = make_fault(kind, **params)
        share = _rate(rate)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an integer, not {seed!r}")
        others = sum(r for k, (_, r) in self._rates.items() if k != fault.kind)
        if others + share > 1 + _RATE_SUM_SLACK:
            raise ValueError(
                f"fault rates would add up to {others + share:g}: at most 1 "
                f"(other kinds already take {others:g})"
            )
        if seed is not None:
            self._rng.seed(seed)
        if share == 0:
            self._rates.pop(fault.kind, None)
        else:
            self._rates[fault.kind] = (fault, share)

    def draw(self) -> Fault | None:
        """Return the fault that hits the current request, or None."""
        if not self._rates:
            return None
        point = self._rng.random()
        for fault, share in self._rates.values():
            if point < share:
                return fault
            point -= share
        return None

    def rates(self) -> dict[str, float]:
        return {kind: share for kind, (_, share) in self._rates.items()}

    def clear(self) -> None:
        self._rates.clear()


def _rate(value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 <= value <= 1
    ):
        raise ValueError(f"rate must be a number from 0 to 1 (0 turns it off), not {value!r}")
    return float(value)
