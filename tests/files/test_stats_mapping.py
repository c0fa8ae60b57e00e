"""Typed solve results (planner.model.stats) and their one plan.json mapping (planner.files.planfile): dataclass ->
plan.json -> dataclass gives the same figures; re-plans return new plans and leave the plan they start from alone."""

from __future__ import annotations

import dataclasses
import json

from planner.analysis.output import plan_document
from planner.engine.replan import replan, replan_fewest_moves
from planner.engine.solver import solve
from planner.files.planfile import move_document, solver_document, stats_from_document, transition_document
from planner.model.plan import SolveStats
from planner.model.stats import (Failure, FewestMoves, Headroom, HeuristicScore, LowerBound, MigrationOrder,
                                 MigrationStep, MoveAction, PatternFigures, QuickReplan, ReplanSummary, SearchFigures)
from tests.builders import dedicated, host_model, scenario, shared


def _through_json(stats: SolveStats) -> SolveStats:
    document = {"solver": solver_document(stats), **transition_document(stats)}
    return stats_from_document(json.loads(json.dumps(document)))


def _every_figure() -> SolveStats:
    """A SolveStats with every field set (values as JSON gives them back: tuples, ints, floats, str)."""
    search = SearchFigures(greedy_s=0.12, first_plan_s=0.13, greedy_hosts=7, candidates={"greedy": (31, -7, -4)},
                           heuristics={"greedy": HeuristicScore(31, 7), "best-fit": HeuristicScore(30, 6)},
                           heuristics_s=0.5, direct_model="not built: 9 variables",
                           patterns=PatternFigures(40, 3, 5.5, "OPTIMAL"), patterns_s=1.5, improve_s=2.5, cpsat_s=3.25,
                           weights={"placed": 100, "hosts": 10})
    steps = (MigrationStep(1, "a", "stop", "h1", (0,), None, ()),
             MigrationStep(2, "b", "live-migrate", "h1", (0, 1), "h2", (1,), via_spare="h3"))
    return SolveStats(
        solver="cp-sat", solver_status="OPTIMAL", objective=-1234.0, best_bound=-1200.0, wall_s=4.5, greedy_placed=31,
        bound=LowerBound(5, "memory_4k", {"cpus": 3, "memory_4k": 5, "lp_value": 4.25}, "4K memory binds: 5"),
        hosts_used=6, gap_pct=20.0, model_variables=900, improve_rounds=4, interrupted=True,
        failures=(Failure("patterns", "ValueError: boom"),), headroom=Headroom({"racks": 1}, 6, ("h7",), 7, 2, 2, 0.5,
                                                                                 0.25),
        search=search, fewest_moves=FewestMoves(kept=29, forced_moves=1, max_moves=None),
        replan=ReplanSummary(2, 1, 1, 1, 0, 1, 1, None, True, 7, 6, ("h9",), "old/plan.json", 1.5),
        moves=(MoveAction("a", "stop", "h1", (0,), None, (), False, why="changed"),
               MoveAction("b", "re-pin", "h1", (0,), "h1", (1,), True, from_cpulist="0-1", to_cpulist="8-9")),
        migration=MigrationOrder(steps, ("h3",), (("x", "y"),), ("x", "y"), 1, ("step 2: boom",), ()))


def test_every_figure_round_trips_through_plan_json():
    stats = _every_figure()
    assert _through_json(stats) == stats
    quick = dataclasses.replace(stats, search=None, fewest_moves=None, replan=None, moves=None, migration=None,
                                quick_replan=QuickReplan(kept=3, new=1, moved=2, replan_s=0.5), interrupted=False,
                                failures=(), headroom=None, bound=None)
    assert _through_json(quick) == quick


def test_the_mapping_writes_the_plan_json_keys():
    solver = solver_document(_every_figure())
    assert list(solver)[:6] == ["method", "cpsat_status", "objective", "best_bound", "solve_s", "greedy_placed"]
    rest = list(solver)[6:]
    assert rest == sorted(rest)
    assert (solver["bound_hosts"], solver["bound_binding"], solver["bounds"]["lp_value"]) == (5, "memory_4k", 4.25)
    assert (solver["pattern_columns"], solver["pattern_lp"], solver["heuristics"]["best-fit"]) == \
        (40, 5.5, {"placed": 30, "hosts": 6})
    assert solver["failures"] == [{"phase": "patterns", "error": "ValueError: boom"}] and "error_report" not in solver
    assert solver["max_moves"] is None and solver["replan"]["max_moves"] is None  # written even when null
    assert solver["headroom"]["spare_hosts"] == ["h7"] and solver["candidates"] == {"greedy": [31, -7, -4]}
    # not reported: the key is left out
    bare = solver_document(SolveStats(solver="greedy", solver_status="GREEDY"))
    assert list(bare) == ["method", "cpsat_status", "objective", "best_bound", "solve_s", "greedy_placed"]
    # moves: starts and stops name their kind second, migrations and re-pins after the nodes (as vplan wrote them)
    stop, repin = (move_document(a) for a in _every_figure().moves)
    assert list(stop) == ["guest", "kind", "from_host", "from_nodes", "to_host", "to_nodes", "move", "why"]
    assert list(repin) == ["guest", "from_host", "from_nodes", "to_host", "to_nodes", "kind", "move", "from_cpulist",
                           "to_cpulist"]


def _fleet():
    model = host_model(nodes=2, cpus_per_node=16, memory_gib=32, reserved=(0, 16), reserved_gib=1)
    guests = [shared(f"web{i:02d}", 2, 4, load="0.3") for i in range(12)]
    guests += [dedicated(f"db{i}", 4, 8) for i in range(3)]
    return scenario([model], {f"h{i}": "m" for i in range(3)}, guests, time_limit_s=5)


def test_a_solved_plan_reads_back_as_it_was_written():
    plan = solve(_fleet(), workers=1, deterministic=True, seed=1)
    document = json.loads(json.dumps(plan_document(plan)))
    stats = stats_from_document(document)
    assert stats.search is not None and stats.bound is not None and stats.hosts_used == len(plan.hosts_used)
    assert solver_document(stats) == document["solver"]
    assert stats == dataclasses.replace(plan.stats, error_report=None)


def test_replans_return_new_plans_and_leave_the_previous_one_alone():
    sc = _fleet()
    before = solve(sc, workers=1, deterministic=True, seed=1)
    stats, placed, document = before.stats, dict(before.placed), json.dumps(plan_document(before))
    guests = [g for g in sc.guests if g.name != "web03"] + [shared("api1", 2, 4, load="0.3")]
    changed = dataclasses.replace(sc, guests=tuple(guests))
    quick = replan(changed, before, workers=1)
    fewest = replan_fewest_moves(changed, before, time_limit_s=2, workers=1)
    assert before.stats is stats and before.placed == placed and json.dumps(plan_document(before)) == document
    assert quick.stats.quick_replan is not None and quick.stats.quick_replan.new == 1
    assert before.stats.quick_replan is None
    assert fewest.stats.replan is not None and fewest.stats.moves is not None and fewest.stats.migration is not None
    assert (fewest.stats.replan.starts, fewest.stats.replan.stops) == (1, 1)
    assert _through_json(fewest.stats).replan == fewest.stats.replan
