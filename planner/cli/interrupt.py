"""Ctrl-C and SIGTERM for the ``vplan`` command.

* During a solve (:func:`run_stoppable`), the first Ctrl-C asks the search to stop (``planner.engine.clock.request_stop``):
  the solve ends with the best plan found so far, which is checked and written as usual (``plan.json`` has
  ``solver.interrupted: true``). The solve runs in a worker thread so that the main thread can take the signal at
  once (a Python signal handler only runs in the main thread, and not while it waits inside CP-SAT).
* A second Ctrl-C, a Ctrl-C outside a solve, or SIGTERM aborts: :class:`Aborted` is raised in the main thread, every
  temporary file is removed on the way out (``planner.files.atomic``), OUT stays as it was, and the command prints one
  line and exits 130 (SIGINT) or 143 (SIGTERM).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

from planner.engine.clock import CALLER_HANDLES_SIGINT, clear_stop, request_stop, stop_requested

T = TypeVar("T")


class Aborted(BaseException):
    """The command was aborted by a signal (a BaseException, like KeyboardInterrupt, so no ``except Exception``
    swallows it)."""

    def __init__(self, signum: int):
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(signal.Signals(signum).name)


_solving = threading.Event()


def _on_signal(signum, frame) -> None:
    if signum == signal.SIGINT and _solving.is_set() and not stop_requested():
        request_stop()
        print("vplan: stopping the search (Ctrl-C again aborts without writing)…", file=sys.stderr, flush=True)
        return
    request_stop()  # a solve still running in its thread ends quickly
    raise Aborted(signum)


@contextmanager
def signal_handlers() -> Iterator[None]:
    """SIGINT and SIGTERM handled as described above (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def run_stoppable(fn: Callable[[], T], announce: str | None = None, *, stop_on_ctrl_c: bool = True) -> tuple[T, bool]:
    """Run ``fn`` (a solve) in a worker thread while the main thread waits for signals; (its result, whether the
    search was stopped by Ctrl-C). ``announce`` is printed on stderr, when it is a terminal, once Ctrl-C means
    "stop the search". ``stop_on_ctrl_c=False``: the first Ctrl-C aborts (for commands that write nothing, e.g.
    compare).
    Exceptions of ``fn`` are re-raised here; :class:`Aborted` propagates."""
    clear_stop()
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # re-raised in the main thread
            box["error"] = exc

    worker = threading.Thread(target=target, name="vplan-solve", daemon=True)
    if stop_on_ctrl_c:
        _solving.set()
    CALLER_HANDLES_SIGINT.set()
    try:
        if announce and sys.stderr.isatty():  # (nothing on a pipe or file: progress is for terminals)
            print(announce, file=sys.stderr, flush=True)
        worker.start()
        while worker.is_alive():
            worker.join(0.2)
            if stop_requested():
                request_stop()  # reaches CP-SAT searches that started after the first request
    finally:
        _solving.clear()
        CALLER_HANDLES_SIGINT.clear()
    stopped = stop_requested()
    clear_stop()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"], stopped  # type: ignore[return-value]


def exit_now(code: int) -> None:
    """Leave at once, without waiting for a worker thread still inside CP-SAT (streams flushed first)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)
