"""Lower bounds, the pattern decomposition and the improvement rounds, each on cases with known answers."""

from __future__ import annotations

import time

from planner.engine.bounds import lower_bounds, resource_bounds
from planner.verify.check import check_plan
from planner.engine.decompose import decompose
from planner.engine.greedy import greedy
from planner.engine.improve import improve
from planner.engine.problem import compile_problem, score
from planner.engine.solver import solve
from planner.files.planfile import solver_document
from tests.builders import dedicated, host_model, scenario, shared


def memory_fleet(guests: int, hosts: int):
    # each host: 2 nodes x 16 GiB, 1 GiB reserved per node -> 30 GiB of 4K memory; guests of 6 GiB, 1 vCPU
    model = host_model(nodes=2, cpus_per_node=16, memory_gib=16, reserved_gib=1)
    return scenario([model], {f"h{i:02d}": "m" for i in range(hosts)},
                    [shared(f"g{i:03d}", 1, 6, load="0.1") for i in range(guests)], time_limit_s=20)


def test_resource_bounds_count_memory_exactly():
    # 50 guests x 6 GiB = 300 GiB over 30 GiB hosts -> 10 hosts by the sum; per node only 2 guests fit (15 GiB)
    problem = compile_problem(memory_fleet(50, 40))
    assert resource_bounds(problem)["memory_4k"] == 10
    b = lower_bounds(problem)
    # the node-shaped LP sees that a node holds 2.5 guests' memory as a fraction: 50 / 5 = 10 hosts
    assert b.hosts == 10 and b.all_bounds["lp"] == 10


def test_big_cells_bound_sees_node_shapes_the_sums_miss():
    # guests of 10 GiB: by the host sum 3 fit a 30 GiB host, but a 15 GiB node holds only one -> 2 per host
    sc = scenario([host_model(nodes=2, cpus_per_node=16, memory_gib=16, reserved_gib=1)],
                  {f"h{i}": "m" for i in range(20)}, [shared(f"g{i}", 1, 10, load="0.1", numa=1) for i in range(12)])
    problem = compile_problem(sc)
    assert resource_bounds(problem)["memory_4k"] == 4
    b = lower_bounds(problem)
    assert b.all_bounds["lp"] == 4  # the LP allows 1.5 guests per node
    assert (b.hosts, b.binding) == (6, "big_cells")  # more than half a node each: 12 nodes, 2 per host
    plan = solve(sc, time_limit_s=10, workers=1)
    assert len(plan.hosts_used) == 6
    assert plan.stats.gap_pct == 0.0


def test_decomposition_reaches_the_bound_and_beats_first_fit():
    # mixed sizes that first-fit in arrival order fragments: 7 GiB and 8 GiB guests on 15 GiB nodes
    model = host_model(nodes=2, cpus_per_node=16, memory_gib=16, reserved_gib=1)
    guests = []
    for i in range(60):
        guests.append(shared(f"a{i:02d}", 1, 8, load="0.1"))
        guests.append(shared(f"b{i:02d}", 1, 7, load="0.1"))
    sc = scenario([model], {f"h{i:02d}": "m" for i in range(80)}, guests, time_limit_s=20)
    problem = compile_problem(sc)
    ff = greedy(problem, order="arrival")
    result = decompose(problem, dict(ff.assignment), time.monotonic() + 10, workers=1)
    hosts = -score(problem, result.assignment)[1]
    assert score(problem, result.assignment)[0] == 120  # everyone placed
    assert hosts == 30  # one 8 GiB + one 7 GiB per node: 60 nodes
    assert result.lp_bound == 30 and result.status == "converged"


def test_improvement_rounds_never_worsen_and_empty_hosts():
    sc = memory_fleet(40, 40)
    problem = compile_problem(sc)
    # a deliberately bad plan: one guest per host on 40 hosts (spread by hand)
    bad = {}
    cls = problem.classes[0]
    for i, h in enumerate(cls.allowed_hosts[:40]):
        bad[(0, h, 0)] = 1
    improved, rounds = improve(problem, bad, time.monotonic() + 15, workers=1)
    assert rounds >= 1
    assert score(problem, improved) > score(problem, bad)
    assert -score(problem, improved)[1] < 40
    assert sum(improved.values()) == 40


def test_solve_reports_bound_and_gap_in_stats():
    # 6 GiB guests on 15 GiB nodes: 2 per node, 4 per host -> 13 hosts for 50; the sums say 10, the pattern LP 12.5
    plan = solve(memory_fleet(50, 40), time_limit_s=20, workers=2)
    extra = solver_document(plan.stats)  # the figures as plan.json has them
    assert (extra["bound_hosts"], extra["bound_binding"]) == (13, "pattern_lp")
    assert extra["bounds"]["memory_4k"] == 10
    assert len(plan.hosts_used) == extra["hosts_used"] == 13
    assert extra["gap_pct"] == 0.0
    assert check_plan(plan) == []


def test_same_seed_same_plan_even_when_the_time_limit_binds():
    # the generated 1,500-guest fleet is not solved to optimality in 4 units: the limit binds, and the
    # deterministic budgets still give the same plan twice
    from pathlib import Path

    from planner.io.loader import load_scenario

    sc = load_scenario(Path(__file__).resolve().parents[2] / "scenarios" / "fleet-50x1500.yaml")
    a = solve(sc, time_limit_s=4, seed=3, deterministic=True)
    b = solve(sc, time_limit_s=4, seed=3, deterministic=True)
    assert a.stats.search.candidates == b.stats.search.candidates
    assert {k: (v.host, v.cells, v.vcpu_pins) for k, v in a.placed.items()} == {
        k: (v.host, v.cells, v.vcpu_pins) for k, v in b.placed.items()
    }
