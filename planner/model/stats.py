"""What a solve or a re-plan reports besides the placements: frozen, typed figures.

``planner.model.plan.SolveStats`` holds them; ``planner.files.planfile`` maps them to plan.json and back (one
function per dataclass, the mapping documented there and in docs/api.md "plan.json solver figures"). Units are in
the names: seconds ``_s``, percentages ``_pct``; host counts are plain names (``hosts_used``).

* ``LowerBound``: the lower bound on hosts used, by kind, with the kind that binds and what binds in words.
* ``Failure``: a solve phase that failed after a complete plan existed (its traceback stays in ``error_report``).
* ``Headroom``: ``policy.survive``: what the spare hosts for the evacuations cost.
* ``SearchFigures``: the phases of ``planner.engine.solver.solve`` (times, start plans, patterns, CP-SAT).
* ``QuickReplan`` / ``FewestMoves``: how a re-plan (``planner.engine.replan``) started from the previous plan.
* ``MoveAction``, ``MigrationStep``, ``MigrationOrder``, ``ReplanSummary``: a re-plan's actions, their safe order
  (``planner.engine.migration``) and its figures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

ActionKind = Literal["live-migrate", "re-pin", "start", "stop"]


@dataclass(frozen=True)
class LowerBound:
    """Fewest hosts any plan placing every guest can use: ``hosts`` = the largest bound of ``by_kind`` (capped by
    the fleet and by every plan found), ``binding`` the kind that gives it, ``text`` what binds, in words."""

    hosts: int | None
    binding: str | None
    by_kind: Mapping[str, float | None] = field(default_factory=dict)  # kind -> hosts (``lp_value``: the LP's value)
    text: str | None = None


@dataclass(frozen=True)
class Failure:
    """A solve phase that raised after a complete plan existed: the plan found before it was kept."""

    phase: str
    error: str  # "TypeName: message"


@dataclass(frozen=True)
class Headroom:
    """``policy.survive``: hosts used + spare hosts kept empty for the evacuations = hosts with headroom;
    ``complete`` of ``failures`` evacuate every guest."""

    survive: Mapping[str, int]  # {"hosts": N} or {"racks": N}
    hosts_used: int
    spare_hosts: tuple[str, ...]
    hosts_with_headroom: int
    failures: int
    complete: int
    evacuation_s: float
    evacuation_check_s: float | None = None  # the checker's time over every evacuation (None: not checked)


@dataclass(frozen=True)
class HeuristicScore:
    """One start plan of the construction portfolio: guests placed (Σ priority) and hosts used."""

    placed: int
    hosts: int


@dataclass(frozen=True)
class PatternFigures:
    """The pattern decomposition (``planner.engine.decompose``): columns generated, rounds, the master LP's value
    in hosts and the master's status."""

    columns: int
    rounds: int
    lp_hosts: float | None
    status: str


@dataclass(frozen=True)
class SearchFigures:
    """The phases of a solve, in order; ``_s`` values are seconds since the solve began (``cpsat_s``: CP-SAT's
    own wall time). ``candidates``: each plan found -> its score (Σ priority placed, -hosts or -load ‰, -distance)."""

    greedy_s: float
    first_plan_s: float
    greedy_hosts: int | None  # None under objective spread (written as null)
    candidates: Mapping[str, tuple[int, ...]]
    heuristics: Mapping[str, HeuristicScore] | None = None
    heuristics_s: float | None = None
    direct_model: str | None = None  # why the whole-fleet model was not built (method direct, too large)
    patterns: PatternFigures | None = None
    patterns_s: float | None = None
    improve_s: float | None = None
    cpsat_s: float | None = None
    weights: Mapping[str, int] | None = None  # the CP-SAT objective's weights (placed, hosts, distance)


@dataclass(frozen=True)
class QuickReplan:
    """``planner.engine.replan.replan``: guests kept where they were, new guests, guests moved (host or nodes)."""

    kept: int
    new: int
    moved: int = 0
    replan_s: float = 0.0


@dataclass(frozen=True)
class FewestMoves:
    """``planner.engine.replan.replan_fewest_moves``: guests kept, moves forced (host gone, guest changed) and the
    budget of voluntary moves (None: no budget)."""

    kept: int
    forced_moves: int
    max_moves: int | None


@dataclass(frozen=True)
class MoveAction:
    """One guest that changes from the previous plan to the new one (plan.json ``moves``). ``move``: placed before
    and after with another host or other nodes. ``why``: for starts and stops; ``from_cpulist``/``to_cpulist``: the
    pCPUs of a re-pin before and after."""

    guest: str
    kind: ActionKind
    from_host: str | None
    from_nodes: tuple[int, ...]
    to_host: str | None
    to_nodes: tuple[int, ...]
    move: bool
    why: str | None = None
    from_cpulist: str | None = None
    to_cpulist: str | None = None


@dataclass(frozen=True)
class MigrationStep:
    """One step of the migration order (plan.json ``migration.steps``), numbered from 1; ``via_spare``: the spare
    host a guest is parked on to break a cycle."""

    step: int
    guest: str
    kind: ActionKind
    from_host: str | None
    from_nodes: tuple[int, ...]
    to_host: str | None
    to_nodes: tuple[int, ...]
    via_spare: str | None = None


@dataclass(frozen=True)
class MigrationOrder:
    """The order (``planner.engine.migration.migration_order``): ``steps``, the spare hosts used, cycles reported
    (guest names) with the moves left unordered, how many steps were pinned and checked clean by the checker, its
    findings, and its findings in the state before the moves."""

    steps: tuple[MigrationStep, ...]
    spare_hosts: tuple[str, ...] = ()
    cycles: tuple[tuple[str, ...], ...] = ()
    unordered: tuple[str, ...] = ()
    verified_steps: int = 0
    violations: tuple[str, ...] = ()
    initial_violations: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReplanSummary:
    """A re-plan with the fewest moves in figures (plan.json ``solver.replan``): moves = live migrations + moves to
    other nodes of the same host; hosts before and after; hosts freed; ``previous``: the plan it started from."""

    moves: int
    voluntary_moves: int
    forced_moves: int
    live_migrations: int
    re_pins: int
    starts: int
    stops: int
    max_moves: int | None
    max_moves_met: bool
    hosts_before: int
    hosts_after: int
    hosts_freed: tuple[str, ...]
    previous: str
    replan_s: float
