"""The live progress line of ``vplan solve`` on stderr: a clock against the time limit, the phase, the best plan
so far against the lower bound, and the writing step with a count.

``LiveStatus`` is a rich renderable: ``rich.live.Live`` redraws it several times a second, and every redraw reads
the clock, so the time moves even while a phase reports nothing. The solver's ``progress`` callback feeds it
through ``update``; the writer through ``writing``.
"""

from __future__ import annotations

import time

from rich.text import Text

PHASES = {
    "greedy": "first-fit decreasing",
    "bounds": "lower bounds",
    "patterns": "pattern decomposition",
    "improve": "improvement rounds",
    "cp-sat": "whole-fleet CP-SAT model",
    "finish": "pinning CPUs and checking the plan",
}
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


class LiveStatus:
    def __init__(self, start: float, limit_s: float, guests: int, objective: str = "pack") -> None:
        self.start, self.limit_s, self.guests, self.objective = start, limit_s, guests, objective
        self.phase = "compiling the scenario"
        self.placed: int | None = None  # Σ priority placed of the best plan so far
        self.best: int | None = None  # hosts (pack) or max load ‰ (spread) of the best plan so far
        self.bound: int | None = None
        self.done: int | None = None
        self.total: int | None = None

    def update(self, p) -> None:
        """A ``planner.engine.solver.Progress``: the phase, and the best so far when it says."""
        self.phase = PHASES.get(p.phase, p.phase)
        if getattr(p, "bound", None):
            self.bound = p.bound
        if p.hosts is not None and p.placed is not None:
            better = (self.placed is None or p.placed > self.placed
                      or (p.placed == self.placed and (self.best is None or p.hosts < self.best)))
            if better:
                self.placed, self.best = p.placed, p.hosts

    def writing(self, what: str, done: int, total: int) -> None:
        self.phase, self.done, self.total = what, done, total

    def text(self, now: float | None = None) -> str:
        elapsed = (time.monotonic() if now is None else now) - self.start
        spin = SPINNER[int(elapsed * 8) % len(SPINNER)]
        if self.total is not None:
            count = f" {self.done:,} of {self.total:,} files" if self.total else ""
            return f"{spin} {elapsed:.1f} s · {self.phase}{count}"
        parts = [f"{spin} {elapsed:.1f} s of {self.limit_s:g} s", self.phase]
        if self.best is not None:
            if self.objective == "pack":
                best = f"best so far {self.best:,} host{'s' if self.best != 1 else ''}"
                if self.bound:
                    best += f" (lower bound {self.bound:,})"
            else:
                best = f"best so far max host load {self.best / 10:.1f} %"
            parts.append(best)
        elif self.bound:
            parts.append(f"lower bound {self.bound:,} hosts")
        return " · ".join(parts)

    def __rich__(self) -> Text:
        return Text(self.text())
