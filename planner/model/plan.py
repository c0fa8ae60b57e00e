"""The plan: a new, frozen object made by a solver from a scenario (which it never mutates).

A placement is concrete: guest NUMA cells with their host node and vCPU ids, one pin set per vCPU, emulator pins,
memory per cell. ``planner.verify.check`` verifies a plan against the scenario's hard rules from these facts alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Literal

from planner.model.scenario import Scenario
from planner.model.stats import (
    Failure,
    FewestMoves,
    Headroom,
    LowerBound,
    MigrationOrder,
    MoveAction,
    QuickReplan,
    ReplanSummary,
    SearchFigures,
)

if TYPE_CHECKING:  # for annotations only: the model imports neither pandas nor any other layer
    import pathlib

    import pandas

PlanStatus = Literal["optimal", "feasible", "partial"]

#: Returns the module that builds a plan's DataFrames and writes it (``planner.analysis.frames``). Set once by the
#: ``planner`` package, the composition root (its ``__init__`` runs before any ``planner.model`` module): the model
#: layer names no other layer.
PLAN_VIEWS: list[Callable[[], ModuleType]] = []


def _views() -> ModuleType:
    if not PLAN_VIEWS:
        raise RuntimeError("no plan views registered: import planner (the package) to use Plan's DataFrames")
    return PLAN_VIEWS[0]()


@dataclass(frozen=True)
class CellPlacement:
    cell_id: int
    node_id: int  # host NUMA node the cell's vCPUs and memory are bound to
    vcpus: tuple[int, ...]  # guest vCPU ids, contiguous
    memory_kib: int
    hugepage_kib: int = -1  # -1: the guest's page size; 0: ordinary pages; else this cell's page size (audits)


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
    """How a plan was found, every figure typed (``planner.model.stats``); ``planner.files.planfile`` maps it to
    plan.json ``solver`` (and the top-level ``moves`` and ``migration`` of a re-plan) and back. ``None`` (or
    ``()``, ``False``) means "not reported": the key is absent from plan.json."""

    solver: str = "cp-sat"  # whose plan it is: greedy, a heuristic's name, patterns, improve, cp-sat, replan...
    solver_status: str = "UNKNOWN"  # CP-SAT's status name, or 'GREEDY'
    objective: float | None = None
    best_bound: float | None = None
    wall_s: float = 0.0
    greedy_placed: int = 0
    bound: LowerBound | None = None
    hosts_used: int | None = None
    gap_pct: float | None = None  # 100 × (hosts used − bound) / bound, when every guest is placed
    model_variables: int | None = None  # the whole-fleet model's size
    improve_rounds: int | None = None
    interrupted: bool = False  # Ctrl-C stopped the search (planner.engine.clock.request_stop)
    failures: tuple[Failure, ...] = ()
    error_report: str | None = None  # the failures' tracebacks: OUT/vplan-error.txt, never in plan.json
    headroom: Headroom | None = None
    search: SearchFigures | None = None  # planner.engine.solver.solve
    quick_replan: QuickReplan | None = None  # planner.engine.replan.replan
    fewest_moves: FewestMoves | None = None  # planner.engine.replan.replan_fewest_moves, and the four below
    replan: ReplanSummary | None = None
    moves: tuple[MoveAction, ...] | None = None
    migration: MigrationOrder | None = None


@dataclass(frozen=True)
class Evacuation:
    """Where the guests of a failed host (``kind`` host) or rack (``kind`` rack) go: ``policy.survive``.

    ``moved``: the failed hosts' guests on surviving hosts (with pins); ``repinned``: surviving guests whose pins
    change on a receiving host (shared pools shrink, dedicated CPUs are re-dealt); ``stranded``: guests that fit no
    surviving host (guest -> reason); ``spare_hosts``: hosts empty in the plan that the evacuation fills."""

    kind: str
    name: str
    failed_hosts: tuple[str, ...]
    moved: Mapping[str, GuestPlacement]
    repinned: Mapping[str, GuestPlacement] = field(default_factory=dict)
    stranded: Mapping[str, str] = field(default_factory=dict)
    spare_hosts: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return not self.stranded


@dataclass(frozen=True, eq=False)
class Plan:
    scenario: Scenario
    status: PlanStatus
    placed: Mapping[str, GuestPlacement]  # guest name -> placement, placed guests only
    unplaced_reasons: Mapping[str, str]  # guest name -> reason why it is not placed
    stats: SolveStats = SolveStats()
    evacuations: tuple[Evacuation, ...] = ()  # one per failure of policy.survive (planner.engine.evacuate)

    def evacuated(self, evacuation: Evacuation) -> Plan:
        """The fleet after the failure, as a plan: the failed hosts' guests moved (or unplaced if stranded),
        the receiving hosts' guests re-pinned. ``planner.verify.check.check_plan`` judges it like any plan."""
        failed = set(evacuation.failed_hosts)
        placed = {n: p for n, p in self.placed.items() if p.host not in failed}
        placed.update(evacuation.repinned)
        placed.update(evacuation.moved)
        unplaced = dict(self.unplaced_reasons)
        unplaced.update(evacuation.stranded)
        status: PlanStatus = "partial" if unplaced else "feasible"
        scenario = self.scenario
        if any(g.host in failed for g in scenario.guests):  # a guest fixed on a failed host may go anywhere
            import dataclasses

            guests = tuple(dataclasses.replace(g, host=None) if g.host in failed else g for g in scenario.guests)
            scenario = dataclasses.replace(scenario, guests=guests)
        return Plan(scenario=scenario, status=status, placed=dict(sorted(placed.items())),
                    unplaced_reasons=unplaced, stats=self.stats)

    @property
    def hosts_used(self) -> list[str]:
        used = {p.host for p in self.placed.values()}
        return [h.name for h in self.scenario.hosts if h.name in used]

    def guests_on(self, host: str) -> list[GuestPlacement]:
        return [p for p in self.placed.values() if p.host == host]

    def notes(self) -> dict[str, str]:
        """Guest -> what a fallback did for it (plan.json ``guests.NAME.note``): ``emulator: host`` on a host that
        reserves no CPUs runs the emulator threads on the shared pools of the guest's nodes instead."""
        out: dict[str, str] = {}
        for name, p in self.placed.items():
            guest = self.scenario.guest_by_name.get(name)
            if guest is not None and guest.emulator == "host" and not self.scenario.model_of(p.host).reserved_cpus:
                from planner.model.units import format_cpulist

                out[name] = (
                    f"emulator: host, but {p.host} (model {self.scenario.host_by_name[p.host].model}) reserves no "
                    "CPUs: "
                    f"the emulator threads run on the shared pool{'s' if len(p.nodes) > 1 else ''} of node"
                    f"{'s' if len(p.nodes) > 1 else ''} {', '.join(str(n) for n in p.nodes)} "
                    f"(CPUs {format_cpulist(p.emulator_pins)}); reserve CPUs in the host model or set emulator: "
                    "shared or isolate"
                )
        return out

    # ------------------------------------------------------------------------------------------ tables
    # pandas DataFrames built by ``planner.analysis.frames``. The model imports nothing else of vplan: the ``planner``
    # package registers the frames module as the plan's views (``PLAN_VIEWS``), loaded on first use, so the solver
    # does not need pandas. Every column is documented in ``planner.analysis.frames.COLUMNS``, in the docstrings of
    # the ``planner.analysis.frames`` functions and in docs/api.md; units are in the column names.

    def placements(self) -> pandas.DataFrame:
        """One row per placed guest NUMA cell: guest, host, model, cell, cells, node, cpu, threads, vcpus,
        vcpu_ids, pcpus (CPU list string), emulator_pcpus, memory_kib, page_size, load, expected_load_cpus,
        distance, priority. See ``planner.analysis.frames.placements``."""
        return _views().placements(self)

    def node_usage(self) -> pandas.DataFrame:
        """One row per host and NUMA node: capacity, used and free per resource (CPUs, shared pool, vCPU:core
        ratio, expected load against the target, 4K memory, hugepages per size). See
        ``planner.analysis.frames.node_usage``."""
        return _views().node_usage(self)

    def host_usage(self) -> pandas.DataFrame:
        """One row per host: the node figures summed per host, plus the host-wide vCPU cap and vCPU:core ratio.
        See ``planner.analysis.frames.host_usage``."""
        return _views().host_usage(self)

    def unplaced(self) -> pandas.DataFrame:
        """One row per unplaced guest with its size and the reason. See ``planner.analysis.frames.unplaced``."""
        return _views().unplaced(self)

    def summary(self) -> pandas.DataFrame:
        """One row for the plan: status, guests placed, hosts used, utilisation over the hosts used, NUMA
        distance cost, solve time. See ``planner.analysis.frames.summary``."""
        return _views().summary(self)

    def write(self, out_dir) -> pathlib.Path:
        """Write ``out_dir/plan.json`` and one libvirt domain XML per placed guest, atomically
        (``planner.analysis.output.write_plan``). Returns the output directory."""
        return _views().write(self, out_dir)
