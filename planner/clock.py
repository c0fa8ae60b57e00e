"""The solver's clock: wall-clock seconds by default, or deterministic work units for reproducible plans.

With ``deterministic=True`` every budget (time limit, phase shares, improvement rounds) is counted in CP-SAT's
deterministic time — the work its searches report — plus fixed charges for the Python-side steps (LP solves,
greedy pricing), and CP-SAT runs its workers interleaved (``interleave_search``), which makes its result
independent of thread timing. The same scenario and seed then give the same plan on any run of the same build,
at the price of a time limit that is only approximately seconds.
"""

from __future__ import annotations

import contextvars
import time
from contextlib import contextmanager
from typing import Iterator


class Clock:
    def __init__(self, deterministic: bool = False):
        self.deterministic = deterministic
        self.work = 0.0

    def now(self) -> float:
        return self.work if self.deterministic else time.monotonic()

    def tick(self, units: float) -> None:
        """Charge Python-side work (deterministic mode only; wall-clock mode measures it)."""
        if self.deterministic:
            self.work += units

    def limit(self, params, seconds: float, workers: int) -> None:
        """Set a CP-SAT search's budget and workers on its parameters."""
        params.num_workers = workers
        if self.deterministic:
            params.max_deterministic_time = max(seconds, 0.01)
            params.max_time_in_seconds = 3600.0  # a safety net only
            params.interleave_search = True
        else:
            params.max_time_in_seconds = max(seconds, 0.01)

    def charge(self, solver) -> None:
        """Count a finished CP-SAT search's deterministic time."""
        if self.deterministic:
            self.work += max(solver.response_proto.deterministic_time, 1e-3)


_CLOCK: contextvars.ContextVar[Clock] = contextvars.ContextVar("vplan_clock", default=Clock())


def clock() -> Clock:
    return _CLOCK.get()


@contextmanager
def using(c: Clock) -> Iterator[Clock]:
    token = _CLOCK.set(c)
    try:
        yield c
    finally:
        _CLOCK.reset(token)
