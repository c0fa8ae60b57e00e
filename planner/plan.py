"""The plan: a new, frozen object made by a solver from a scenario (which it never mutates).

A placement is concrete: guest NUMA cells with their host node and vCPU ids, one pin set per vCPU, emulator pins,
memory per cell. ``planner.check`` verifies a plan against the scenario's hard rules from these facts alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Mapping

from planner.scenario import Scenario

PlanStatus = Literal["optimal", "feasible", "partial"]


@dataclass(frozen=True)
class CellPlacement:
    cell_id: int
    node_id: int  # host NUMA node the cell's vCPUs and memory are bound to
    vcpus: tuple[int, ...]  # guest vCPU ids, contiguous
    memory_kib: int


@dataclass(frozen=True)
class GuestPlacement:
    guest: str
    host: str
    cells: tuple[CellPlacement, ...]
    vcpu_pins: tuple[tuple[int, ...], ...]  # vcpu_pins[v] = host CPUs vCPU v may run on
    emulator_pins: tuple[int, ...]

    @property
    def nodes(self) -> tuple[int, ...]:
        return tuple(cell.node_id for cell in self.cells)


@dataclass(frozen=True)
class SolveStats:
    solver: str = "cp-sat"
    solver_status: str = "UNKNOWN"  # CP-SAT's status name, or 'GREEDY'
    objective: float | None = None
    best_bound: float | None = None
    wall_s: float = 0.0
    greedy_placed: int = 0
    extra: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Plan:
    scenario: Scenario
    status: PlanStatus
    placed: Mapping[str, GuestPlacement]  # guest name -> placement, placed guests only
    unplaced_reasons: Mapping[str, str]  # guest name -> reason why it is not placed
    stats: SolveStats = SolveStats()

    @property
    def hosts_used(self) -> list[str]:
        used = {p.host for p in self.placed.values()}
        return [h.name for h in self.scenario.hosts if h.name in used]

    def guests_on(self, host: str) -> list[GuestPlacement]:
        return [p for p in self.placed.values() if p.host == host]
