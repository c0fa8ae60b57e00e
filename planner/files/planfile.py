"""plan.json, the machine-readable plan: its format version, its JSON Schema and the one function that reads it.

Every reader of a plan directory (``vplan apply``, ``vplan hugepages``, ``vplan check --domains OUT``) goes
through ``read_plan_document``, which refuses a file of another format version with one clear message instead
of failing later on a missing key. The schema (``planner/schemas/plan.schema.json``) documents every key; the
test suite validates every plan.json vplan writes against it.

Units and names (README "Units and names"): memory in KiB with ``_kib`` in the key, page sizes as strings
(``"2M"``, ``"1G"``), durations in seconds with ``_s``, fractions 0..1 with ``_fraction``, percentages with
``_pct``; CPU sets as Linux CPU-list strings with ``_cpulist`` (``pcpus``/``vcpu_ids`` in guest cells);
counts are plain names (``vcpus``, ``dedicated_cpus``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from planner.model.errors import VplanError
from planner.model.plan import SolveStats
from planner.model.stats import (
    Failure,
    FewestMoves,
    Headroom,
    HeuristicScore,
    LowerBound,
    MigrationOrder,
    MigrationStep,
    MoveAction,
    PatternFigures,
    QuickReplan,
    ReplanSummary,
    SearchFigures,
)

FORMAT_VERSION = 2  # 1: the unversioned plan.json of vplan 0.1 (bytes, page sizes as byte keys)
SCHEMA_PATH = Path(__file__).parent.parent / "schemas" / "plan.schema.json"


class PlanFileError(VplanError, ValueError):
    """A plan directory whose plan.json is missing, unreadable or of another format; the message names the file."""


def plan_json_path(plan_dir: str | Path) -> Path:
    """The plan.json of PLAN, which may be vplan solve's output directory or the plan.json file itself."""
    path = Path(plan_dir)
    return path if path.is_file() else path / "plan.json"


def read_plan_document(plan_dir: str | Path) -> dict[str, Any]:
    """The plan.json of a ``vplan solve`` output directory, checked for its format version and main mappings."""
    path = plan_json_path(plan_dir)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlanFileError(f"{path}: not found (PLAN is the output directory of vplan solve)") from None
    except (OSError, ValueError) as exc:
        raise PlanFileError(f"{path}: cannot read ({exc})") from None
    if not isinstance(document, dict):
        raise PlanFileError(f"{path}: not a vplan plan (expected a JSON object)")
    version = document.get("format_version")
    if version != FORMAT_VERSION:
        found = "no format_version (written by vplan 0.1)" if version is None else f"format_version {version!r}"
        raise PlanFileError(f"{path}: {found}; this vplan reads format_version {FORMAT_VERSION}: run vplan solve "
                            "again to write the plan in this format")
    for key in ("guests", "hosts"):
        if not isinstance(document.get(key), dict):
            raise PlanFileError(f"{path}: no '{key}' mapping (not a vplan plan?)")
    return document


def schema() -> dict[str, Any]:
    """The JSON Schema of plan.json (draft 2020-12)."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------------------------------
# Solve statistics <-> plan.json: the one mapping (docs/api.md "plan.json solver figures")
#
#   SolveStats field      plan.json                        SolveStats field         plan.json
#   solver                solver.method                    bound (LowerBound)       solver.bound_hosts, bound_binding,
#   solver_status         solver.cpsat_status                                       bounds (by kind), bound_text
#   objective, best_bound solver.objective, best_bound     search (SearchFigures)   solver.greedy_s, first_plan_s,
#   wall_s                solver.solve_s                     greedy_hosts, candidates, heuristics(_s), direct_model,
#   greedy_placed         solver.greedy_placed               pattern_columns/_rounds/_lp/_status (PatternFigures),
#   hosts_used, gap_pct,  solver.<same name>                 patterns_s, improve_s, cpsat_s, weights
#   model_variables,                                       quick_replan             solver.kept, new, moved, replan_s
#   improve_rounds                                         fewest_moves             solver.kept, forced_moves, max_moves
#   interrupted           solver.interrupted (only True)   replan (ReplanSummary)   solver.replan
#   failures              solver.failures (only if any)    moves (MoveAction)       moves (top level)
#   headroom              solver.headroom                  migration                migration (top level)
#   error_report          never (OUT/vplan-error.txt)
#
# ``None`` (``()`` for failures, False for interrupted) leaves the key out, except the keys a solve always writes
# even when null: ``greedy_hosts`` (objective spread), ``max_moves`` (no budget), the four bound keys. The
# ``solver`` mapping lists the six fixed keys first, then the others sorted by name.

SOLVER_KEYS = {"solver": "method", "solver_status": "cpsat_status", "objective": "objective",
               "best_bound": "best_bound", "wall_s": "solve_s", "greedy_placed": "greedy_placed"}
_PLAIN_KEYS = ("hosts_used", "gap_pct", "model_variables", "improve_rounds")  # same name, left out when None


def json_value(value: Any) -> Any:
    """A figure as a JSON value: Fractions as numbers (ints when whole, else 6 decimals), tuples as lists, mapping
    keys as strings, a nested dataclass (``HeuristicScore``) as its fields by name."""
    if is_dataclass(value) and not isinstance(value, type):
        return _plain(value)
    if isinstance(value, Mapping):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, Fraction):
        return int(value) if value.denominator == 1 else round(float(value), 6)
    return value


def _tuples(value: Any) -> Any:
    """JSON lists back as tuples (nested lists too)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _plain(obj: Any, keep_none: tuple[str, ...] = ()) -> dict[str, Any]:
    """A dataclass whose plan.json keys are its field names, in field order; None left out unless in ``keep_none``."""
    return {f.name: json_value(getattr(obj, f.name)) for f in fields(obj)
            if getattr(obj, f.name) is not None or f.name in keep_none}


def _from_plain(cls: type, data: Mapping[str, Any]) -> Any:
    """The dataclass ``cls`` from its plain mapping (``_plain``): lists as tuples, missing keys at their default."""
    return cls(**{f.name: _tuples(data[f.name]) for f in fields(cls) if f.name in data})


def bound_document(bound: LowerBound) -> dict[str, Any]:
    return {"bound_hosts": bound.hosts, "bound_binding": bound.binding, "bounds": json_value(bound.by_kind),
            "bound_text": bound.text}


def bound_from_document(solver: Mapping[str, Any]) -> LowerBound | None:
    if "bound_hosts" not in solver:
        return None
    return LowerBound(solver["bound_hosts"], solver.get("bound_binding"), dict(solver.get("bounds") or {}),
                      solver.get("bound_text"))


def search_document(search: SearchFigures) -> dict[str, Any]:
    """``SearchFigures`` as solver keys: its fields by name (``greedy_hosts`` even when null), ``patterns`` as the
    four ``pattern_*`` keys, ``heuristics`` as name -> {placed, hosts}."""
    out = _plain(search, keep_none=("greedy_hosts",))
    out.pop("patterns", None)
    if search.patterns is not None:
        p = search.patterns
        out.update(pattern_columns=p.columns, pattern_rounds=p.rounds, pattern_lp=p.lp_hosts, pattern_status=p.status)
    return out


def search_from_document(solver: Mapping[str, Any]) -> SearchFigures | None:
    if "greedy_s" not in solver:
        return None
    data = {f.name: solver[f.name] for f in fields(SearchFigures) if f.name in solver}
    data["candidates"] = {name: tuple(score) for name, score in solver.get("candidates", {}).items()}
    if "heuristics" in solver:
        data["heuristics"] = {name: HeuristicScore(**h) for name, h in solver["heuristics"].items()}
    if "pattern_columns" in solver:
        data["patterns"] = PatternFigures(solver["pattern_columns"], solver["pattern_rounds"], solver["pattern_lp"],
                                          solver["pattern_status"])
    return SearchFigures(**data)


_MOVE_KEYS = ("guest", "kind", "from_host", "from_nodes", "to_host", "to_nodes", "move")
_MIGRATE_KEYS = ("guest", "from_host", "from_nodes", "to_host", "to_nodes", "kind", "move")


def move_document(action: MoveAction) -> dict[str, Any]:
    """One plan.json ``moves`` entry; the key order vplan has always written (starts and stops: kind second)."""
    keys = _MOVE_KEYS if action.kind in ("start", "stop") else _MIGRATE_KEYS
    out = {key: json_value(getattr(action, key)) for key in keys}
    out.update({k: getattr(action, k) for k in ("why", "from_cpulist", "to_cpulist") if getattr(action, k) is not None})
    return out


def migration_document(order: MigrationOrder) -> dict[str, Any]:
    """plan.json ``migration``: every field by name, each step with every key (``via_spare`` null when none)."""
    out = _plain(order)
    out["steps"] = [_plain(s, keep_none=("from_host", "to_host", "via_spare")) for s in order.steps]
    return out


def migration_from_document(data: Mapping[str, Any]) -> MigrationOrder:
    steps = tuple(_from_plain(MigrationStep, s) for s in data.get("steps", ()))
    return _from_plain(MigrationOrder, {**data, "steps": steps})


def headroom_document(headroom: Headroom) -> dict[str, Any]:
    """plan.json ``solver.headroom`` (also in ``vplan solve --json``): every field by name."""
    return _plain(headroom)


def replan_document(summary: ReplanSummary) -> dict[str, Any]:
    """plan.json ``solver.replan`` (also in ``vplan solve --previous --json``): every field by name."""
    return _plain(summary, keep_none=("max_moves",))


def solver_document(stats: SolveStats) -> dict[str, Any]:
    """plan.json ``solver``: the six fixed keys, then every reported figure sorted by key (the table above)."""
    rest: dict[str, Any] = {k: getattr(stats, k) for k in _PLAIN_KEYS if getattr(stats, k) is not None}
    if stats.bound is not None:
        rest.update(bound_document(stats.bound))
    if stats.interrupted:
        rest["interrupted"] = True
    if stats.failures:
        rest["failures"] = [_plain(f) for f in stats.failures]
    if stats.headroom is not None:
        rest["headroom"] = headroom_document(stats.headroom)
    if stats.search is not None:
        rest.update(search_document(stats.search))
    if stats.quick_replan is not None:
        rest.update(_plain(stats.quick_replan))
    if stats.fewest_moves is not None:
        rest.update(_plain(stats.fewest_moves, keep_none=("max_moves",)))
    if stats.replan is not None:
        rest["replan"] = replan_document(stats.replan)
    fixed = {key: getattr(stats, name) for name, key in SOLVER_KEYS.items()}
    return json_value({**fixed, **{k: rest[k] for k in sorted(rest)}})


def transition_document(stats: SolveStats) -> dict[str, Any]:
    """A re-plan's top-level plan.json keys: ``moves`` (actions) and ``migration`` (their order); {} otherwise."""
    out: dict[str, Any] = {}
    if stats.moves is not None:
        out["moves"] = [move_document(a) for a in stats.moves]
    if stats.migration is not None:
        out["migration"] = migration_document(stats.migration)
    return out


def stats_from_document(document: Mapping[str, Any]) -> SolveStats:
    """The ``SolveStats`` of a plan.json document (``read_plan_document``): the inverse of ``solver_document`` and
    ``transition_document`` (``error_report`` is not in plan.json: None)."""
    solver = document.get("solver") or {}
    base = {name: solver[key] for name, key in SOLVER_KEYS.items() if key in solver}
    plain = {k: solver[k] for k in _PLAIN_KEYS if k in solver}
    quick = _from_plain(QuickReplan, solver) if "new" in solver and "kept" in solver else None
    fewest = _from_plain(FewestMoves, solver) if "forced_moves" in solver and quick is None else None
    moves = tuple(_from_plain(MoveAction, a) for a in document["moves"]) if "moves" in document else None
    return SolveStats(
        **base, **plain,
        bound=bound_from_document(solver),
        interrupted=bool(solver.get("interrupted", False)),
        failures=tuple(Failure(f["phase"], f["error"]) for f in solver.get("failures", ())),
        headroom=_from_plain(Headroom, solver["headroom"]) if "headroom" in solver else None,
        search=search_from_document(solver),
        quick_replan=quick, fewest_moves=fewest,
        replan=_from_plain(ReplanSummary, solver["replan"]) if solver.get("replan") else None,
        moves=moves,
        migration=migration_from_document(document["migration"]) if "migration" in document else None,
    )
