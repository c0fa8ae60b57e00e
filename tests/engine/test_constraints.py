"""One feasible and one infeasible micro-model per constraint family.

Each case solves the CP-SAT model with only ``define_assignment`` and the family under test (plus the CPU split
where the family reads the shared pool), and asserts the exact number of guests placed: the family must admit the
feasible case whole and cut the infeasible one by exactly the guest that does not fit."""

from __future__ import annotations

import pytest
from ortools.sat.python import cp_model

from planner.engine import cpsat_model as m
from planner.engine.problem import compile_problem
from tests.builders import dedicated, host_model, scenario, shared


def placed(sc, *families) -> int:
    problem = compile_problem(sc)
    build = m.build_model(problem, (m.define_assignment, *families))
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.max_time_in_seconds = 10
    status = solver.solve(build.model)
    assert status == cp_model.OPTIMAL
    return sum(solver.value(v) for v in build.x.values())


def one_host(model, guests, **policy):
    return scenario([model], {"h1": model.name}, guests, **policy)


def test_assignment_places_each_guest_once_and_fixed_guests_only_on_their_host():
    model = host_model()
    sc = scenario([model], {"h1": "m", "h2": "m"}, [shared("a", 1), shared("b", 1, host="h2")])
    problem = compile_problem(sc)
    build = m.build_model(problem, (m.define_assignment,))
    hosts_of_b = {h for (c, h, _o) in build.x if problem.classes[c].members == ("b",)}
    assert hosts_of_b == {"h2"}
    assert placed(sc) == 2


@pytest.mark.parametrize("count, expected", [(2, 2), (3, 2)])
def test_host_overcommit(count, expected):
    # 2 nodes x 8 CPUs, T=2 -> 8 cores; cap 2 -> 16 vCPUs host-wide
    model = host_model()
    guests = [shared(f"g{i}", 8, load="0.1") for i in range(count)]
    assert placed(one_host(model, guests, cpu_overcommit_max=2), m.define_host_overcommit) == expected


@pytest.mark.parametrize("count, expected", [(4, 4), (5, 4)])
def test_smt_isolate_takes_whole_cores(count, expected):
    # one node of 8 CPUs with T=2: 4 full cores -> 4 isolate vCPUs at most
    model = host_model(nodes=1)
    guests = [dedicated(f"g{i}", 1, threads="isolate") for i in range(count)]
    assert placed(one_host(model, guests), m.define_smt_policies) == expected


def test_smt_require_pairs_share_slots_with_isolate():
    model = host_model(nodes=1)  # 4 cores, 4 pair slots
    guests = [dedicated("iso", 3, threads="isolate"), dedicated("r1", 2, threads="require"), dedicated("r2", 2, threads="require")]
    assert placed(one_host(model, guests), m.define_smt_policies) == 2  # isolate takes 3 cores, one pair left


@pytest.mark.parametrize("count, expected", [(8, 8), (9, 8)])
def test_cpu_split_dedicated_fill_the_node(count, expected):
    model = host_model(nodes=1, reserved=())
    guests = [dedicated(f"g{i}", 1) for i in range(count)]
    assert placed(one_host(model, guests), m.define_cpu_split) == expected


def test_cpu_split_counts_reserved_cpus_out():
    model = host_model(nodes=1, reserved=(0, 4))  # 6 usable
    guests = [dedicated(f"g{i}", 1) for i in range(7)]
    assert placed(one_host(model, guests), m.define_cpu_split) == 6


@pytest.mark.parametrize("big, expected", [(12, 3), (13, 2)])
def test_shared_overcommit_per_pool(big, expected):
    # node of 8 CPUs, T=2; one dedicated vCPU leaves a pool of 7 CPUs = 3.5 cores; cap 4 -> 14 shared vCPUs
    model = host_model(nodes=1)
    guests = [dedicated("d", 1), shared("s", big, load="0.01"), shared("t", 2, load="0.01")]
    got = placed(one_host(model, guests, cpu_overcommit_max=4), m.define_cpu_split, m.define_shared_overcommit)
    assert got == expected


@pytest.mark.parametrize("load, expected", [("0.7", 2), ("0.71", 1)])
def test_load_target(load, expected):
    # pool of 8 CPUs, target 0.7 -> 5.6 CPUs of load; two guests of 4 vCPUs at `load`
    model = host_model(nodes=1)
    guests = [shared("a", 4, load=load), shared("b", 4, load=load)]
    assert placed(one_host(model, guests), m.define_cpu_split, m.define_load_target) == expected


def test_emulator_pool_needs_a_shared_cpu():
    model = host_model(nodes=1)  # 8 CPUs, no reserved: emulator 'host' floats on the pool
    guests = [dedicated("a", 4), dedicated("b", 4)]
    assert placed(one_host(model, guests), m.define_cpu_split, m.define_emulator_pool) == 1
    guests = [dedicated("a", 4), dedicated("b", 3)]
    assert placed(one_host(model, guests), m.define_cpu_split, m.define_emulator_pool) == 2


@pytest.mark.parametrize("memory_gib, expected", [(8, 2), (8.5, 1)])
def test_node_memory(memory_gib, expected):
    model = host_model(nodes=1, memory_gib=17, reserved_gib=1)  # 16 GiB free
    guests = [shared("a", 1, memory_gib), shared("b", 1, memory_gib)]
    assert placed(one_host(model, guests), m.define_node_memory) == expected


@pytest.mark.parametrize("target, expected", [
    ("3/4", 2),  # 6 + 6 = 12 GiB committed ≤ 3/4 × 16 GiB free
    ("1/2", 1),  # 12 GiB > 8 GiB: one guest stays out
    ("1", 2),  # target 1: no headroom rule at all (the node memory rule alone)
])
def test_node_memory_target(target, expected):
    model = host_model(nodes=1, memory_gib=17, reserved_gib=1)  # 16 GiB free
    guests = [shared("a", 1, 6), shared("b", 1, 6)]
    problem = one_host(model, guests, node_memory_target=target)
    assert placed(problem, m.define_node_memory_target) == expected


def test_node_memory_target_divides_shared_memory_by_the_overcommit():
    # memory_overcommit 2: two shared 8 GiB guests commit 8 GiB of physical memory ≤ 1/2 × 16 GiB; a dedicated one
    # counts 1:1 (8 + 4 = 12 > 8)
    model = host_model(nodes=1, memory_gib=17, reserved_gib=1)
    shared_pair = [shared("a", 1, 8), shared("b", 1, 8)]
    assert placed(one_host(model, shared_pair, node_memory_target="1/2", memory_overcommit=2),
                  m.define_node_memory_target) == 2
    mixed = [dedicated("a", 1, 8), shared("b", 1, 8)]
    assert placed(one_host(model, mixed, node_memory_target="1/2", memory_overcommit=2),
                  m.define_node_memory_target) == 1


@pytest.mark.parametrize("pages, expected", [(8, 2), (7, 1)])
def test_hugepage_pools(pages, expected):
    model = host_model(nodes=1, pages={1048576: pages})
    guests = [shared("a", 1, 4, hugepage_kib=1048576), shared("b", 1, 4, hugepage_kib=1048576)]
    assert placed(one_host(model, guests), m.define_hugepage_pools) == expected


@pytest.mark.parametrize("hosts, expected", [(2, 2), (1, 1)])
def test_anti_affinity(hosts, expected):
    model = host_model()
    sc = scenario([model], {f"h{i}": "m" for i in range(hosts)}, [shared("a", 1, anti_affinity=("db",)), shared("b", 1, anti_affinity=("db",))])
    assert placed(sc, m.define_anti_affinity) == expected


def test_host_usage_objective_packs_onto_fewest_hosts():
    model = host_model()
    sc = scenario([model], {"h1": "m", "h2": "m", "h3": "m"}, [shared(f"g{i}", 2, load="0.2") for i in range(4)])
    build = m.build_model(compile_problem(sc))
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    assert solver.solve(build.model) == cp_model.OPTIMAL
    assert sum(solver.value(v) for v in build.used.values()) == 1
    assert solver.value(build.used["h1"]) == 1  # symmetry breaking: the first identical host


def test_spread_objective_balances_hosts():
    model = host_model()
    sc = scenario([model], {"h1": "m", "h2": "m"}, [shared(f"g{i}", 4, load="0.5") for i in range(4)], objective="spread")
    build = m.build_model(compile_problem(sc))
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    assert solver.solve(build.model) == cp_model.OPTIMAL
    per_host = {h: 0 for h in ("h1", "h2")}
    for (c, h, _o), var in build.x.items():
        per_host[h] += solver.value(var)
    assert per_host == {"h1": 2, "h2": 2}
    assert solver.value(build.max_load) == 250  # 2 guests x 4 vCPUs x 0.5 = 4 of 16 CPUs


def test_distance_cost_prefers_close_nodes():
    # 3 nodes: 0-1 at distance 12, 0-2 and 1-2 at 32; a guest needing two cells goes to nodes 0 and 1
    model = host_model(nodes=3, cpus_per_node=4)
    d = ((10, 12, 32), (12, 10, 32), (32, 32, 10))
    model = type(model)(model.name, model.nodes, d, model.cores)
    sc = one_host(model, [dedicated("a", 6, numa=2)])
    problem = compile_problem(sc)
    build = m.build_model(problem)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    assert solver.solve(build.model) == cp_model.OPTIMAL
    chosen = [problem.classes[c].options["m"][o].nodes for (c, _h, o), v in build.x.items() if solver.value(v)]
    assert chosen == [(0, 1)]


def test_objective_levels_are_strict():
    terms = [m.Term("placed", 0, 10, 1), m.Term("hosts", 0, 5, -1), m.Term("distance", 0, 100, -1)]
    w = m.objective_weights(terms)
    assert w["distance"] == 1
    assert w["hosts"] > 100  # one host more than any distance swing
    assert w["placed"] > w["hosts"] * 5 + 100
