"""The two 4K memory rules (spec rule 6, as changed by issue 8), in every place that counts memory:

(a) a guest cell's non-hugepage memory never exceeds its node's free 4K memory, whatever memory_overcommit says;
(b) memory_overcommit never applies to cpu: dedicated guests: per node, dedicated 4K + shared 4K ÷ overcommit ≤ free.

Each in the CP-SAT family (feasible/infeasible), the option enumeration and greedy counting, the checker, the
explanations and `vplan check` (audit)."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import pytest
from ortools.sat.python import cp_model

from planner.engine import cpsat_model as m
from planner.verify.audit import audit, read_domains
from planner.verify.check import check_plan
from planner.analysis.output import write_plan
from planner.engine.problem import CellDemand, Option, compile_problem
from planner.engine.solver import solve
from tests.builders import GIB, dedicated, host_model, scenario, shared


def one_host(guests, memory_gib=17, overcommit="2", **kw):
    model = host_model(nodes=1, memory_gib=memory_gib, reserved_gib=1, **kw)  # free 4K = memory - 1 GiB
    return scenario([model], {"h1": model.name}, guests, memory_overcommit=overcommit)


def placed_by_family(sc) -> int:
    problem = compile_problem(sc)
    build = m.build_model(problem, (m.define_assignment, m.define_node_memory))
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    assert solver.solve(build.model) == cp_model.OPTIMAL
    return sum(solver.value(v) for v in build.x.values())


# ------------------------------------------------------------------------------------------ CP-SAT family
@pytest.mark.parametrize(
    "guests, expected",
    [
        ([shared("a", 1, 12), shared("b", 1, 12)], 2),  # shared: 24 GiB on 16 GiB free at overcommit 2
        ([dedicated("a", 1, 12), dedicated("b", 1, 12)], 1),  # dedicated count 1:1: 24 > 16
        ([dedicated("a", 1, 8), shared("b", 1, 16)], 2),  # 8 + 16/2 = 16
        ([dedicated("a", 1, 8), shared("b", 1, 16), shared("c", 1, 1)], 2),  # 8 + 17/2 > 16
    ],
)
def test_family_dedicated_memory_counts_one_to_one(guests, expected):
    assert placed_by_family(one_host(guests)) == expected


def test_family_no_cell_above_free_memory():
    sc = one_host([shared("a", 1, 4)])
    problem = compile_problem(sc)
    cls = problem.classes[0]
    big = 20 * GIB  # fits 16 GiB × 2 of overcommitted memory, not the node's 16 GiB
    cell = CellDemand(vcpus=(0,), memory_kib=big, shared_vcpus=1, shared_load=1000, memory_4k_kib=big)
    small = cls.options["m"][0]
    cls = dataclasses.replace(cls, options={"m": (small, Option(nodes=(0,), cells=(cell,), distance_cost=0))})
    problem = dataclasses.replace(problem, classes=(cls,))
    build = m.build_model(problem, (m.define_assignment, m.define_node_memory))
    solver = cp_model.CpSolver()
    assert solver.solve(build.model) == cp_model.OPTIMAL  # feasible: the small option is taken
    assert solver.value(build.x[(0, "h1", 0)]) == 1 and solver.value(build.x[(0, "h1", 1)]) == 0
    build.model.add(build.x[(0, "h1", 1)] == 1)  # infeasible: the cell above free memory
    assert solver.solve(build.model) == cp_model.INFEASIBLE


# ------------------------------------------------------------------------------------------ options, greedy, explanations
def test_options_refuse_a_cell_above_free_memory_and_explain_it():
    sc = one_host([shared("big", 1, 20, numa=1)])
    assert compile_problem(sc).classes[0].options["m"] == ()
    plan = solve(sc, time_limit_s=2, method="greedy")
    reason = plan.unplaced_reasons["big"]
    assert "4K memory for one cell" in reason and "20GiB" in reason and "16GiB" in reason, reason
    assert check_plan(plan) == []


def test_nova_cases_dedicated_and_shared_2gib_on_a_1gib_node():
    """OpenStack Nova's cases: a 2 GiB guest on a node with 1 GiB free, memory_overcommit 2: never placed."""
    for guest in (dedicated("ded", 1, 2, numa=1), shared("sh", 1, 2, numa=1)):
        sc = one_host([guest], memory_gib=2)
        for method in ("greedy", "direct"):
            plan = solve(sc, time_limit_s=2, method=method)
            assert guest.name in plan.unplaced_reasons, method
            assert "4K memory for one cell" in plan.unplaced_reasons[guest.name]


@pytest.mark.parametrize("method", ["greedy", "direct"])
def test_solvers_count_dedicated_memory_one_to_one(method):
    sc = one_host([dedicated("a", 1, 12), dedicated("b", 1, 12), shared("c", 1, 12), shared("d", 1, 12)])
    plan = solve(sc, time_limit_s=2, method=method)
    assert check_plan(plan) == []
    # a dedicated 12 GiB leaves 4 GiB free = 8 GiB of overcommitted shared memory: one dedicated guest alone,
    # or both shared guests (24 GiB / 2 = 12); greedy takes the larger (dedicated) first, the model finds 2
    assert len(plan.placed) == (1 if method == "greedy" else 2)
    assert len([g for g in plan.placed if g in ("a", "b")]) == (1 if method == "greedy" else 0)
    assert "4K memory" in plan.unplaced_reasons[next(iter(plan.unplaced_reasons))]


# ------------------------------------------------------------------------------------------ checker and audit
def _plan_on_smaller_node(guests, tmp_path=None):
    """A plan made on a 33 GiB node (no overcommit), then judged against a 17 GiB node at overcommit 2."""
    roomy = one_host(guests, memory_gib=33, overcommit="1")
    plan = solve(roomy, time_limit_s=2, method="greedy")
    assert len(plan.placed) == len(guests)
    tight = one_host(guests, memory_gib=17, overcommit="2")
    return dataclasses.replace(plan, scenario=tight)


def test_checker_dedicated_memory_one_to_one():
    ok = _plan_on_smaller_node([dedicated("a", 1, 8), shared("b", 1, 16)])
    assert check_plan(ok) == []
    bad = _plan_on_smaller_node([dedicated("a", 1, 12), dedicated("b", 1, 12)])
    found = [(v.rule, v.host, v.node) for v in check_plan(bad)]
    assert found == [("memory", "h1", 0)]
    assert "dedicated guests (1:1)" in check_plan(bad)[0].message


def test_checker_cell_above_free_memory():
    bad = _plan_on_smaller_node([shared("a", 1, 20, numa=1)])
    violations = check_plan(bad)
    assert [(v.rule, v.guest, v.node) for v in violations] == [("memory", "a", 0)]
    assert "never applies inside one guest" in violations[0].message


def test_audit_reports_both_rules(tmp_path):
    guests = [dedicated("a", 1, 12), dedicated("b", 1, 12), shared("c", 1, 20, numa=1)]
    roomy = one_host(guests, memory_gib=60, overcommit="1")
    plan = solve(roomy, time_limit_s=2, method="greedy")
    assert len(plan.placed) == 3
    write_plan(plan, tmp_path / "out")
    tight = one_host(guests, memory_gib=17, overcommit="2")
    result = audit(tight, read_domains([str(tmp_path / "out")]))
    memory = [f for f in result.findings if f.rule == "memory"]
    assert {f.guest for f in memory} == {None, "c"}, memory


# ------------------------------------------------------------------------------------------ reasons never empty
def test_multi_cell_guest_reason_names_best_nodes_and_each_cells_shortfall():
    """The issue's example: 2 cells, node 1 has 2 GiB; the reason names nodes 0, 1 and cell 1's shortfall."""
    from planner.model.scenario import Node

    model = host_model(nodes=2, cpus_per_node=4, threads=1)
    model = dataclasses.replace(model, nodes=(dataclasses.replace(model.nodes[0], memory_kib=16 * GIB),
                                              dataclasses.replace(model.nodes[1], memory_kib=2 * GIB)))
    assert isinstance(model.nodes[0], Node)
    sc = scenario([model], {"h": "m"}, [shared("g", 2, 8, load="0.1", numa=2), shared("f", 2, 20, host="h")])
    for method in ("greedy", "direct"):
        plan = solve(sc, time_limit_s=2, method=method)
        reason = plan.unplaced_reasons["g"]
        assert "best nodes of m: 0, 1" in reason, reason
        assert "cell 1 (1 vCPUs, 4GiB) on node 1" in reason and "needs 4GiB" in reason and "short by 2GiB" in reason
        fixed = plan.unplaced_reasons["f"]
        assert fixed.startswith("fixed to host h (model m), which it does not fit even when empty")
        assert "short by" in fixed
        assert check_plan(plan) == []


# ----------------------------------------------------------------------------------------------- node memory target
def test_node_memory_target_end_to_end_every_method_keeps_headroom():
    """Two hosts of two 16 GiB-free nodes, six 6 GiB guests. Without a target two guests share a node (12 GiB):
    all six fit. With policy.node_memory_target 1/2 a node commits at most 8 GiB, so one guest per node: four are
    placed, two refused with the target named; every method's plan is checker-clean and keeps the headroom."""
    model = host_model(nodes=2, memory_gib=17, reserved_gib=1)  # 16 GiB free per node
    guests = [shared(f"g{i}", 1, 6, load="0.1") for i in range(6)]
    loose = scenario([model], {"h1": "m", "h2": "m"}, guests, time_limit_s=5)
    tight = dataclasses.replace(loose, policy=dataclasses.replace(loose.policy, node_memory_target=Fraction(1, 2)))
    free_run = solve(loose, method="greedy")
    assert len(free_run.placed) == 6 and len(free_run.hosts_used) == 2
    for method in ("greedy", "patterns", "direct", "auto"):
        plan = solve(tight, method=method, time_limit_s=5)
        assert check_plan(plan) == [], method
        per_node: dict[tuple[str, int], int] = {}
        for p in plan.placed.values():
            for c in p.cells:
                per_node[(p.host, c.node_id)] = per_node.get((p.host, c.node_id), 0) + c.memory_kib
        assert max(per_node.values()) <= 8 * GIB, (method, per_node)  # 1/2 × 16 GiB: one 6 GiB guest per node
        assert len(plan.placed) == 4 and len(plan.unplaced_reasons) == 2, method  # 4 nodes in all
        reason = next(iter(plan.unplaced_reasons.values()))
        assert "node memory target (50% of the free 4K memory)" in reason, reason


def test_node_memory_target_checker_refuses_what_the_target_forbids():
    model = host_model(nodes=1, memory_gib=17, reserved_gib=1)
    sc = scenario([model], {"h1": "m"}, [shared("a", 1, 6, load="0.1"), shared("b", 1, 6, load="0.1")])
    plan = solve(sc, method="greedy")
    assert len(plan.placed) == 2 and check_plan(plan) == []
    stricter = dataclasses.replace(plan, scenario=dataclasses.replace(
        sc, policy=dataclasses.replace(sc.policy, node_memory_target=Fraction(1, 2))))
    assert [(v.rule, v.host, v.node) for v in check_plan(stricter)] == [("memory_target", "h1", 0)]
