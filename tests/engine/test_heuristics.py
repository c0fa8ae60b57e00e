"""The portfolio heuristics, the Lagrangian/Farley bound, the stall stop and the generator's fleet shapes."""

from __future__ import annotations

import importlib
import random
import time
from collections import Counter

import pytest
import yaml

from planner.verify.check import check_plan
from planner.engine.decompose import PRICING_FAMILIES, _Pricer, decompose, lagrangian_bound
from planner.analysis.generate import generate_fleet
from planner.engine.heuristics import best_fit, dot_product, portfolio
from planner.engine.improve import improve
from planner.io.loader import ScenarioError, load_scenario_text
from planner.engine.pinning import pin_assignment
from planner.model.plan import Plan, SolveStats
from planner.engine.problem import compile_problem, score
from tests.builders import dedicated, host_model, scenario, shared


def _checked(problem, assignment):
    placements = pin_assignment(problem, assignment)
    sc = problem.scenario
    unplaced = {g.name: "not placed" for g in sc.guests if g.name not in placements}
    plan = Plan(sc, "partial" if unplaced else "feasible", placements, unplaced, SolveStats(solver="test"))
    assert check_plan(plan) == []
    return plan


def mixed_fleet(fixed: bool = False):
    # 2 nodes x 16 GiB (1 reserved): 7 GiB and 8 GiB guests pair up on a node; a few dedicated and 1-cell guests
    small = host_model("small", nodes=2, cpus_per_node=16, memory_gib=16, reserved_gib=1)
    big = host_model("big", nodes=4, cpus_per_node=16, memory_gib=16, reserved_gib=1)
    guests = []
    for i in range(12):
        guests.append(shared(f"a{i:02d}", 1, 8, load="0.1"))
        guests.append(shared(f"b{i:02d}", 1, 7, load="0.1"))
    guests += [dedicated(f"d{i}", 4, 2) for i in range(4)]
    if fixed:
        guests += [shared("run1", 2, 4, load="0.2", host="s3"), shared("run2", 2, 4, load="0.2", host="s3")]
    hosts = {f"s{i}": "small" for i in range(6)} | {f"b{i}": "big" for i in range(4)}
    return scenario([small, big], hosts, guests)


@pytest.mark.parametrize("fixed", [False, True])
def test_every_heuristic_gives_a_checked_plan_placing_everyone(fixed):
    problem = compile_problem(mixed_fleet(fixed))
    plans = portfolio(problem, mix={"small": 1.0, "big": 3.0})
    assert [p.name for p in plans] == ["first-fit-decreasing", "best-fit", "dot-product", "first-fit",
                                       "dot-product-lp"]
    for p in plans:
        per_class = Counter()
        for (c, _h, _o), n in p.assignment.items():
            per_class[c] += n
        assert all(n <= problem.classes[c].size for c, n in per_class.items()), p.name
        if p.name == "first-fit":
            continue  # arrival order (a baseline) may take the room a fixed guest needed
        plan = _checked(problem, p.assignment)
        assert len(plan.placed) == len(problem.scenario.guests), p.name
        if fixed:
            assert plan.placed["run1"].host == plan.placed["run2"].host == "s3"


def test_dot_product_opens_the_fixed_host_first_and_fills_it():
    problem = compile_problem(mixed_fleet(fixed=True))
    for assignment in (dot_product(problem), best_fit(problem)):
        on_s3 = sum(n for (c, h, _o), n in assignment.items() if h == "s3")
        assert on_s3 > 2  # the running guests' host takes other guests too (it counts as used anyway)


def test_dot_product_packs_pairs_that_first_fit_splits():
    # one 8 GiB and one 7 GiB guest per 15 GiB node: 24 guests fill the 12 nodes of 3 big hosts exactly; the
    # 4 dedicated guests (2 GiB each) need a 4th host: 4 is optimal, the first-fit orders use 7
    problem = compile_problem(mixed_fleet())
    hosts = {p.name: -score(problem, p.assignment)[1] for p in portfolio(problem)}
    assert hosts == {"first-fit-decreasing": 7, "dot-product": 4, "best-fit": 4, "first-fit": 7}


def _pair_fleet(n: int):
    model = host_model(nodes=2, cpus_per_node=16, memory_gib=16, reserved_gib=1)
    guests = [shared(f"a{i:02d}", 1, 8, load="0.1") for i in range(n)]
    guests += [shared(f"b{i:02d}", 1, 7, load="0.1") for i in range(n)]
    guests += [shared(f"c{i:02d}", 1, 3, load="0.1") for i in range(n // 2)]
    return scenario([model], {f"h{i:02d}": "m" for i in range(2 * n)}, guests)


@pytest.mark.parametrize("n", [6, 10])
def test_lagrangian_bound_never_exceeds_the_optimum(n):
    from planner.engine.solver import solve

    sc = _pair_fleet(n)
    problem = compile_problem(sc)
    optimum = solve(sc, time_limit_s=20, workers=2, method="direct")
    assert optimum.status == "optimal"
    best = len(optimum.hosts_used)
    shapes = [c for c in problem.classes]
    sizes = [c.size for c in shapes]
    pricers = {"m": _Pricer(problem, shapes, "m", seed=0, workers=1)}
    hosts_of = Counter({"m": len(sc.hosts)})
    rng = random.Random(n)
    seen = []
    for _ in range(6):  # any dual prices π ≥ 0 give a valid bound
        duals = {s: rng.random() * 0.6 for s in range(len(shapes))}
        value, kind = lagrangian_bound(duals, sizes, hosts_of, pricers, 2.0)
        assert value <= best + 1e-9 and kind in ("lagrangian", "farley")
        seen.append(value)
    # the prices of a converged master give (about) the pattern LP: a real bound, not a trivial one
    result = decompose(problem, {}, time.monotonic() + 10, workers=1)
    assert result.status == "converged" and result.lp_bound <= best
    assert result.lp_bound >= best - 1


def test_improve_stops_on_stall():
    model = host_model(nodes=2, cpus_per_node=16, memory_gib=16, reserved_gib=1)
    sc = scenario([model], {f"h{i:02d}": "m" for i in range(20)}, [shared(f"g{i}", 1, 6, load="0.1") for i in range(20)])
    problem = compile_problem(sc)
    spread = {(0, h, 0): 1 for h in problem.classes[0].allowed_hosts}
    _, rounds = improve(problem, spread, time.monotonic() + 10, workers=1, stall_s=0.0)
    assert rounds == 0
    better, rounds = improve(problem, spread, time.monotonic() + 10, workers=1, stall_s=5.0)
    assert rounds >= 1 and -score(problem, better)[1] < 20


STALL_SCENARIO = """
version: 1
name: stall
policy: {stall: %s}
host_models:
  m: {nodes: [{id: 0, cpus: "0-3", memory: 8GiB}]}
hosts: [{name: h, model: m}]
guests: [{name: g, vcpus: 1, memory: 1GiB}]
"""


def test_policy_stall_is_a_duration():
    assert load_scenario_text(STALL_SCENARIO % "5s", "s.yaml").policy.stall_s == 5.0
    assert load_scenario_text(STALL_SCENARIO.replace("policy: {stall: %s}\n", ""), "s.yaml").policy.stall_s == 10.0
    with pytest.raises(ScenarioError) as err:
        load_scenario_text(STALL_SCENARIO % "-1", "s.yaml")
    assert err.value.problems[0].startswith("s.yaml: policy.stall: ")


def test_generator_running_guests_fit_and_hosts_listed_smallest_first():
    text = generate_fleet(12, 300, seed=2, order="smallest", existing=0.05)
    data = yaml.safe_load(text)
    assert [h["model"] for h in data["hosts"]] == ["suse-guide-4n", "intel-xeon-e7-4870-8s", "amd-nps4"]
    sc = load_scenario_text(text, "<gen>", base_dir=str(importlib.import_module("planner.analysis.generate").DEFAULT_OUT_DIR))
    running = [g for g in sc.guests if g.host]
    assert len(sc.guests) == 300 and 10 <= len(running) <= 15
    problem = compile_problem(sc)
    plan = _checked(problem, dot_product(problem))
    assert all(plan.placed[g.name].host == g.host for g in running)
    # the default output does not change with the new options left at their defaults
    assert generate_fleet(12, 300, seed=2) == generate_fleet(12, 300, seed=2, order="given", existing=0.0)
    assert "host:" not in generate_fleet(12, 300, seed=2)


def test_solve_is_never_worse_than_any_heuristic_with_running_guests():
    from planner.engine.solver import solve

    sc = mixed_fleet(fixed=True)
    problem = compile_problem(sc)
    best = max(score(problem, p.assignment) for p in portfolio(problem))
    plan = solve(sc, time_limit_s=5, workers=1, method="patterns")
    assert check_plan(plan) == [] and len(plan.placed) == len(sc.guests)
    assert len(plan.hosts_used) <= -best[1] == 4
    assert plan.placed["run1"].host == "s3"
    assert set(plan.stats.search.heuristics) >= {"greedy", "best-fit", "dot-product", "first-fit"}
