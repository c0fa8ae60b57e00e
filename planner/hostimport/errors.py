"""The import's error type and the wording helpers its messages share (names of nodes and CPUs, CLI or YAML
hints)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from planner.model.errors import VplanError
from planner.model.units import format_cpulist, format_page

#: How a hint is worded: for the command line (``--memory 0=64GiB``) or for a scenario (``memory: {0: 64GiB}``).
Style = Literal["cli", "yaml"]


class CaptureError(VplanError, ValueError):
    """A capture that cannot be imported. ``str()`` names the file and what is wrong or what to add; ``key`` names
    the override the problem is about (``memory``, ``hugepages``, ``reserved``, ``threads_per_core``, ``arch``,
    ``lscpu``) or is None for the capture itself."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


def fail(path: str, message: str, key: str | None = None) -> CaptureError:
    """The error ``PATH: message`` (returned, for the caller to raise)."""
    return CaptureError(f"{path}: {message}", key)


def hint(style: Style, cli: str, yaml: str) -> str:
    """The hint worded for ``style``."""
    return cli if style == "cli" else yaml


def ids_text(noun: str, ids: Iterable[int], verb: str = "") -> str:
    """('node', [3], 'has') → 'node 3 has'; ('node', [0, 1, 2], 'has') → 'nodes 0-2 have'."""
    values = sorted(set(ids))
    plural = {"has": "have", "is": "are", "lacks": "lack"}
    if len(values) == 1:
        return f"{noun} {values[0]}" + (f" {verb}" if verb else "")
    return f"{noun}s {format_cpulist(values)}" + (f" {plural.get(verb, verb)}" if verb else "")


def cpus_are(cpus: Iterable[int]) -> str:
    """[3] → 'CPU 3 is'; [0, 1] → 'CPUs 0-1 are'."""
    values = sorted(cpus)
    return f"CPU {values[0]} is" if len(values) == 1 else f"CPUs {format_cpulist(values)} are"


def pools_text(pools: dict[int, int]) -> str:
    """{1048576: 8, 2048: 0} → '1G x 8' (largest page first, empty pools left out; 'none' if all are)."""
    shown = [f"{format_page(s)} x {c}" for s, c in sorted(pools.items(), key=lambda kv: -kv[0]) if c]
    return ", ".join(shown) or "none"
