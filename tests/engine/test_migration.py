"""Re-plans with the fewest moves (issue 13 item 4): the moves family, keeping pins, the migration order (every
intermediate state checker-clean, cycles broken through a spare host or reported), `solve --previous` and `diff`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ortools.sat.python import cp_model

from planner.engine import cpsat_model as m
from planner.verify.check import check_plan
from planner.engine.migration import (check_state, intermediate_states, keep_pins, migration_order, previous_from_document,
                               previous_from_plan)
from planner.model.plan import Plan
from planner.engine.problem import compile_problem
from planner.engine.replan import replan_fewest_moves
from planner.engine.solver import solve
from tests.builders import dedicated, host_model, scenario, shared
from tests.conftest import vplan_process as vplan


def _solve_moves(sc, previous, max_moves):
    """(guests placed, hosts used, moves) of the whole model with the moves family."""
    problem = compile_problem(sc)
    build = m.build_model(problem, previous=previous, max_moves=max_moves)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.max_time_in_seconds = 10
    assert solver.solve(build.model) == cp_model.OPTIMAL
    placed = sum(solver.value(v) for v in build.x.values())
    return placed, sum(solver.value(v) for v in build.used.values()), solver.value(build.moves)


def _two_halves():
    # one node of 10 CPUs per host: a and b (4 dedicated vCPUs each) were on h1 and h2; c (8, and a shared CPU
    # for its emulator threads) needs a whole host
    model = host_model(nodes=1, cpus_per_node=10, memory_gib=32)
    guests = [dedicated("a", 4), dedicated("b", 4), dedicated("c", 8)]
    sc = scenario([model], {"h1": "m", "h2": "m"}, guests)
    problem = compile_problem(sc)
    ab = next(cls.index for cls in problem.classes if cls.members == ("a", "b"))  # identical: one class
    return sc, {(ab, "h1", 0): 1, (ab, "h2", 0): 1}


def test_moves_family_budget_one_lets_the_third_guest_in():
    sc, previous = _two_halves()
    assert _solve_moves(sc, previous, 1) == (3, 2, 1)


def test_moves_family_budget_zero_keeps_everyone_and_leaves_one_out():
    sc, previous = _two_halves()
    assert _solve_moves(sc, previous, 0) == (2, 2, 0)


def _spread_then_free():
    """Three hosts each running one dedicated guest (fixed there), then the same guests free to move."""
    model = host_model(nodes=2, cpus_per_node=8, memory_gib=16)
    hosts = {"h1": "m", "h2": "m", "h3": "m"}
    fixed = [dedicated(f"d{i}", 3, 4, host=f"h{i}") for i in (1, 2, 3)]
    old = solve(scenario([model], hosts, fixed, time_limit_s=5), workers=1)
    assert old.hosts_used == ["h1", "h2", "h3"]
    free = scenario([model], hosts, [dataclasses.replace(g, host=None) for g in fixed], time_limit_s=5)
    return old, free


def _assert_every_state_clean(previous, plan, order):
    problem = compile_problem(plan.scenario)
    hosts = {h.name for h in plan.scenario.hosts}
    states = list(intermediate_states(previous, plan, order))
    assert states[0][0] == 0
    for number, where in states:
        assert check_state(problem, plan.scenario, where, hosts, keep_pins(previous)) == [], number
    return states


def test_replan_frees_hosts_within_the_budget_and_orders_safely():
    old, free = _spread_then_free()
    previous = previous_from_plan(old)
    unlimited = replan_fewest_moves(free, previous, workers=1, time_limit_s=5)
    r = unlimited.stats.replan
    assert (r.moves, r.hosts_before, r.hosts_after) == (2, 3, 1)
    assert len(r.hosts_freed) == 2
    assert check_plan(unlimited) == []
    moved = [a for a in unlimited.stats.moves if a.move]
    assert [a.kind for a in moved] == ["live-migrate", "live-migrate"]
    order = migration_order(previous, unlimited)
    assert [s.kind for s in order.steps] == ["live-migrate", "live-migrate"]
    assert order.verified_steps == 2 and order.violations == () and order.cycles == ()
    _assert_every_state_clean(previous, unlimited, order)

    one = replan_fewest_moves(free, previous, max_moves=1, workers=1, time_limit_s=5)
    r1 = one.stats.replan
    assert (r1.moves, r1.hosts_after, r1.max_moves_met) == (1, 2, True)
    zero = replan_fewest_moves(free, previous, max_moves=0, workers=1, time_limit_s=5)
    assert (zero.stats.replan.moves, zero.stats.replan.hosts_after) == (0, 3)
    for name, p in zero.placed.items():  # nothing moved: same host, nodes and pCPUs
        assert (p.host, p.nodes, p.vcpu_pins) == (old.placed[name].host, old.placed[name].nodes,
                                                 old.placed[name].vcpu_pins)


def test_large_fleets_use_rounds_with_the_moves_family(monkeypatch):
    import planner.engine.replan as replan_module

    monkeypatch.setattr(replan_module, "FEWEST_MOVES_DIRECT_MAX_VARIABLES", 0)  # as on a fleet above 6,000
    old, free = _spread_then_free()
    plan = replan_fewest_moves(free, old, max_moves=1, workers=1, time_limit_s=5)
    assert plan.stats.solver == "replan-rounds" and plan.stats.improve_rounds >= 1
    r = plan.stats.replan
    assert (r.moves, r.hosts_after, r.max_moves_met) == (1, 2, True)
    assert check_plan(plan) == []


def test_a_kept_dedicated_guest_keeps_its_exact_pcpus():
    model = host_model(nodes=1, cpus_per_node=16, memory_gib=32)
    old = solve(scenario([model], {"h1": "m"}, [dedicated("m2", 4)], time_limit_s=5), workers=1)
    before = old.placed["m2"].vcpu_pins
    assert before == ((0,), (8,), (1,), (9,))  # first free threads, siblings packed
    # a new guest earlier by name would take those CPUs in the plain pinning order
    new = scenario([model], {"h1": "m"}, [dedicated("a1", 4), dedicated("m2", 4)], time_limit_s=5)
    plan = replan_fewest_moves(new, old, workers=1, time_limit_s=5)
    assert plan.placed["m2"].vcpu_pins == before
    assert {c for pins in plan.placed["a1"].vcpu_pins for c in pins}.isdisjoint({0, 1, 8, 9})
    assert check_plan(plan) == []
    start, repin = plan.stats.moves
    assert (start.kind, start.guest, repin.kind, repin.guest, repin.move) == \
        ("start", "a1", "re-pin", "m2", False)
    # only its emulator threads (on the shared pool, which a1 shrank) change: the vCPUs keep 0-1,8-9
    assert repin.from_cpulist == repin.to_cpulist == "0-1,8-9"


def _swap(with_spare: bool):
    """x fills h1, y fills h2 (6 of 8 CPUs each); the new plan swaps them: a cycle of two moves."""
    model = host_model(nodes=1, cpus_per_node=8, memory_gib=16)
    hosts = {"h1": "m", "h2": "m", **({"h3": "m"} if with_spare else {})}
    sc = scenario([model], hosts, [dedicated("x", 6), dedicated("y", 6, anti_affinity=("xy",))], time_limit_s=5)
    old = solve(dataclasses.replace(sc, guests=tuple(dataclasses.replace(g, host=h) for g, h in
                                                      zip(sc.guests, ("h1", "h2")))), workers=1)
    swapped = {"x": dataclasses.replace(old.placed["x"], host="h2"), "y": dataclasses.replace(old.placed["y"], host="h1")}
    new = Plan(scenario=sc, status="feasible", placed=swapped, unplaced_reasons={})
    assert check_plan(new) == []
    return previous_from_plan(old), new


def test_a_cycle_is_broken_through_a_named_spare_host():
    previous, new = _swap(with_spare=True)
    order = migration_order(previous, new)
    assert [(s.guest, s.from_host, s.to_host, s.via_spare) for s in order.steps] == [
        ("x", "h1", "h3", "h3"), ("y", "h2", "h1", None), ("x", "h3", "h2", None)]
    assert order.spare_hosts == ("h3",) and order.cycles == () and order.verified_steps == 3
    states = _assert_every_state_clean(previous, new, order)
    assert len(states) == 4


def test_a_cycle_without_a_spare_host_is_reported():
    previous, new = _swap(with_spare=False)
    order = migration_order(previous, new)
    assert order.steps == () and order.spare_hosts == ()
    assert sorted(order.cycles[0]) == ["x", "y"] and order.unordered == ("x", "y")


# ------------------------------------------------------------------------------------------------ CLI
MODEL = """host_models:
  m:
    nodes:
      - {id: 0, cpus: "0-3,8-11", memory: 16GiB}
      - {id: 1, cpus: "4-7,12-15", memory: 16GiB}
    distances: [[10,21],[21,10]]
    threads_per_core: 2
hosts:
  - {name: "h[1-3]", model: m}
"""


def _yaml(path: Path, name: str, fixed: bool) -> Path:
    guests = "".join(f"  - {{name: d{i}, vcpus: 3, memory: 4GiB, cpu: dedicated{f', host: h{i}' if fixed else ''}}}\n"
                     for i in (1, 2, 3))
    path.write_text(f"version: 1\nname: {name}\npolicy: {{time_limit: 5s}}\n{MODEL}guests:\n{guests}")
    return path


def test_solve_previous_max_moves_and_diff(tmp_path):
    old_out, new_out = tmp_path / "old", tmp_path / "new"
    assert vplan("solve", str(_yaml(tmp_path / "old.yaml", "old", True)), "-o", str(old_out), "-q").returncode == 0
    new_yaml = _yaml(tmp_path / "new.yaml", "new", False)
    result = vplan("solve", str(new_yaml), "--previous", str(old_out), "--max-moves", "1", "-o", str(new_out),
                   "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert "moves   1 (budget 1): 1 live migrations, 0 to other nodes of the same host, 0 forced" in result.stdout
    assert "hosts   3 -> 2 used, freed: h" in result.stdout
    assert "order   1 steps (plan.json migration.steps), 1 states checked clean" in result.stdout
    doc = json.loads((new_out / "plan.json").read_text())
    moves = [a for a in doc["moves"] if a["move"]]
    assert len(moves) == 1 and moves[0]["kind"] == "live-migrate"
    assert doc["migration"]["steps"][0]["guest"] == moves[0]["guest"]
    assert doc["migration"]["verified_steps"] == 1 and doc["solver"]["replan"]["hosts_after"] == 2
    assert previous_from_document(new_out).guests[moves[0]["guest"]].host == moves[0]["to_host"]

    text = vplan("diff", str(old_out), str(new_out))
    assert text.returncode == 0, text.stderr
    assert "1 moves (1 live migrations, 0 to other nodes of the same host), 0 re-pins" in text.stdout
    assert "hosts used 3 -> 2; freed: " in text.stdout and "migration order (1 steps" in text.stdout
    as_json = json.loads(vplan("diff", str(old_out), str(new_out), "--json").stdout)
    assert [m["guest"] for m in as_json["moves"]] == [moves[0]["guest"]]
    assert len(as_json["hosts_freed"]) == 1 and as_json["hosts_used_new"] == 2


def test_bad_previous_and_budget_are_exit_2_without_traceback(tmp_path):
    new_yaml = _yaml(tmp_path / "new.yaml", "new", False)
    missing = vplan("solve", str(new_yaml), "--previous", str(tmp_path / "nope"), "-o", str(tmp_path / "o"))
    assert missing.returncode == 2 and "nope/plan.json: not found" in missing.stderr
    assert "Traceback" not in missing.stderr and not (tmp_path / "o").exists()
    alone = vplan("solve", str(new_yaml), "--max-moves", "3", "-o", str(tmp_path / "o"))
    assert alone.returncode == 2 and "--max-moves needs --previous" in alone.stderr
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "plan.json").write_text(json.dumps({"format_version": 2, "hosts": {}, "guests": {
        "d1": {"host": "h1", "cells": [{"node": "x", "pcpus": "0"}], "vcpus": 3, "memory_kib": 1, "cpu": "shared"}}}))
    bad = vplan("diff", str(tmp_path / "bad"), str(tmp_path / "bad"))
    assert bad.returncode == 2 and "plan.json: guests.d1:" in bad.stderr and "Traceback" not in bad.stderr


def test_generated_fleet_replan_every_state_checker_clean(tmp_path):
    """A seeded mixed fleet placed first-fit, 5 % of its guests changed: within the budget, every intermediate state
    of the order (all hosts, pinned) passes the checker."""
    from planner.analysis.generate import generate_fleet
    from planner.io.loader import load_scenario

    path = tmp_path / "fleet.yaml"
    path.write_text(generate_fleet(8, 120, seed=3, out_path=str(path)))
    sc = load_scenario(path)
    old = solve(sc, method="greedy")
    guests = list(sc.guests)
    removed = {g.name for g in guests[::20]}
    added = [dataclasses.replace(g, name=f"{g.name}-new", anti_affinity=()) for g in guests[10::20]]
    changed = dataclasses.replace(sc, guests=tuple([g for g in guests if g.name not in removed] + added))
    plan = replan_fewest_moves(changed, old, max_moves=6, workers=1, time_limit_s=6)
    r = plan.stats.replan
    assert check_plan(plan) == [] and r.max_moves_met and r.voluntary_moves <= 6
    assert (r.stops, r.starts) == (len(removed), len(added))
    assert r.hosts_after <= r.hosts_before
    order = migration_order(previous_from_plan(old), plan)
    assert order.violations == () and order.cycles == () and order.verified_steps == len(order.steps)
    assert sum(s.kind in ("live-migrate", "re-pin") and s.from_nodes != s.to_nodes or
               s.kind == "live-migrate" for s in order.steps) >= r.moves
    states = _assert_every_state_clean(previous_from_plan(old), plan, order)
    assert len(states) == 1 + sum(s.kind != "stop" for s in order.steps)
