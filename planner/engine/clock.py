"""The solver's clock: wall-clock seconds by default, or deterministic work units for reproducible plans.

With ``deterministic=True`` every budget (time limit, phase shares, improvement rounds) is counted in CP-SAT's
deterministic time — the work its searches report — plus fixed charges for the Python-side steps (LP solves,
greedy pricing), and CP-SAT runs its workers interleaved (``interleave_search``), which makes its result
independent of thread timing. The same scenario and seed then give the same plan on any run of the same build,
at the price of a time limit that is only approximately seconds.

Stopping early (Ctrl-C in ``vplan solve``): :func:`request_stop` (thread-safe, from a signal handler or another
thread) makes every clock report the time as up (``now()`` is past every deadline), so each phase's existing budget
checks end it, gives searches started afterwards no time, and stops the CP-SAT searches running (``stop_search``) —
which is why every search runs through :meth:`Clock.solve`. While :data:`CALLER_HANDLES_SIGINT` is set (the
``vplan`` command), CP-SAT's own SIGINT handler is switched off (``catch_sigint_signal``), which would otherwise
take Ctrl-C and end only the search running. The solve then finishes with the best plan found so far.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class Clock:
    def __init__(self, deterministic: bool = False):
        self.deterministic = deterministic
        self.work = 0.0

    def now(self) -> float:
        if _STOP.is_set():
            return STOPPED_NOW
        return self.work if self.deterministic else time.monotonic()

    def tick(self, units: float) -> None:
        """Charge Python-side work (deterministic mode only; wall-clock mode measures it)."""
        if self.deterministic:
            self.work += units

    def limit(self, params, seconds: float, workers: int) -> None:
        """Set a CP-SAT search's budget and workers on its parameters."""
        params.num_workers = workers
        if CALLER_HANDLES_SIGINT.is_set():
            params.catch_sigint_signal = False  # Ctrl-C is the caller's (see request_stop)
        if _STOP.is_set():
            seconds = 0.0
        if self.deterministic:
            params.max_deterministic_time = max(seconds, 0.01)
            params.max_time_in_seconds = 3600.0  # a safety net only
            params.interleave_search = True
        else:
            params.max_time_in_seconds = max(seconds, 0.01)

    def solve(self, solver, model, callback=None):
        """``solver.solve(model, callback)``, stoppable by :func:`request_stop` while it runs."""
        with _LOCK:
            _ACTIVE.add(solver)
        try:
            if _STOP.is_set():
                solver.parameters.max_time_in_seconds = 0.01
            return solver.solve(model, callback)
        finally:
            with _LOCK:
                _ACTIVE.discard(solver)

    def charge(self, solver) -> None:
        """Count a finished CP-SAT search's deterministic time."""
        if self.deterministic:
            self.work += max(solver.response_proto.deterministic_time, 1e-3)


_STOP = threading.Event()
#: set while the caller (``planner.cli.interrupt``) turns Ctrl-C into request_stop: CP-SAT must not take SIGINT itself
CALLER_HANDLES_SIGINT = threading.Event()
STOPPED_NOW = 1e15  # what now() says once a stop is requested: past every deadline (finite: no inf - inf = nan)
_LOCK = threading.Lock()
_ACTIVE: set = set()  # CP-SAT solvers searching now


def request_stop() -> None:
    """End the running solve early: every budget check sees the time as up; running CP-SAT searches stop.
    Calling it again re-sends the stop to searches that started meanwhile."""
    _STOP.set()
    with _LOCK:
        active = list(_ACTIVE)
    for solver in active:
        solver.stop_search()


def stop_requested() -> bool:
    return _STOP.is_set()


def clear_stop() -> None:
    """Forget an earlier :func:`request_stop` (before the next solve)."""
    _STOP.clear()


_DEFAULT_CLOCK = Clock()  # one shared wall clock for every context that sets none (as before)
_CLOCK: contextvars.ContextVar[Clock] = contextvars.ContextVar("vplan_clock", default=_DEFAULT_CLOCK)


def clock() -> Clock:
    return _CLOCK.get()


@contextmanager
def using(c: Clock) -> Iterator[Clock]:
    token = _CLOCK.set(c)
    try:
        yield c
    finally:
        _CLOCK.reset(token)
