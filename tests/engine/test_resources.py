"""Every declared resource and rule (``planner.engine.resources``) reaches every place derived from it.

A new resource needs a sample guest and a starved node here (``SAMPLES``, ``STARVE``), else
``test_every_resource_has_a_sample`` fails: the parametrised tests then check its cell demand, the node totals, the
CP-SAT terms, a rule reading it (listed in ``FAMILIES`` and priced by the decomposition), a shortfall on a node that
lacks it, the option capacity, the LP bound and the fleet totals."""

from __future__ import annotations

import dataclasses

import pytest
from ortools.sat.python import cp_model

from planner.engine import cpsat_model as m
from planner.engine.bounds import LP_RELAXED, lp_bound, resource_bounds
from planner.engine.decompose import PRICING_FAMILIES
from planner.engine.problem import (
    CellDemand,
    NodeTotals,
    compile_problem,
    node_shortfalls,
    option_capacity,
)
from planner.engine.resources import (
    HOST_RESOURCES,
    HOST_RULES,
    NODE_RESOURCES,
    NODE_RULES,
    PAGES_PREFIX,
    RESOURCES,
    TOTALS,
    NumberSums,
    guest_demand,
    guest_totals,
    host_limit,
    host_totals,
    node_limit,
)
from tests.builders import dedicated, host_model, scenario, shared

PAGE = 2048
SAMPLES = {  # a guest whose one cell demands the resource (on host_model(nodes=1) with 2M pages)
    "iso": dedicated("g", 2, threads="isolate"),
    "pairs": dedicated("g", 2, threads="require"),
    "singles": dedicated("g", 2),
    "shared_vcpus": shared("g", 2, load="0.25"),
    "shared_load": shared("g", 2, load="0.5"),
    "memory_4k_kib": shared("g", 1, 2),
    "memory_4k_dedicated_kib": dedicated("g", 1, 2),
    "pages": shared("g", 1, 2, hugepage_kib=PAGE),
    "needs_pool": dedicated("g", 2, emulator="shared"),
    "vcpus": shared("g", 3, load="0.1"),
}
STARVE = {  # a node that lacks the resource for the sample's cell (and only just)
    "iso": lambda n: dataclasses.replace(n, full_cores=1),
    "pairs": lambda n: dataclasses.replace(n, pair_slots=0),
    "singles": lambda n: dataclasses.replace(n, usable_cpus=1),
    "shared_vcpus": lambda n: dataclasses.replace(n, usable_cpus=1, threads_per_core=8),  # 1 vCPU slot at 8x
    "shared_load": lambda n: dataclasses.replace(n, usable_cpus=1),
    "memory_4k_kib": lambda n: dataclasses.replace(n, free_4k_kib=1024**2, memory_4k_kib=1024**2),
    "memory_4k_dedicated_kib": lambda n: dataclasses.replace(n, free_4k_kib=1024**2, memory_4k_kib=1024**2),
    "pages": lambda n: dataclasses.replace(n, pages={PAGE: 1}),
    "needs_pool": lambda n: dataclasses.replace(n, usable_cpus=2),
}


def one(guest, count: int = 1, hosts: int = 1, **policy):
    model = host_model(nodes=1, memory_gib=16, pages={PAGE: 2048})
    guests = [dataclasses.replace(guest, name=f"g{i}") for i in range(count)]
    return compile_problem(scenario([model], {f"h{i + 1}": "m" for i in range(hosts)}, guests, **policy))


def test_every_resource_has_a_sample():
    assert set(SAMPLES) == set(RESOURCES)
    assert set(STARVE) == {r.name for r in NODE_RESOURCES}


def test_resource_fields_are_the_demand_and_totals_fields():
    demand_fields = {f.name for f in dataclasses.fields(CellDemand)}
    totals_fields = {f.name for f in dataclasses.fields(NodeTotals)}
    for r in NODE_RESOURCES:
        assert r.name in demand_fields and r.name in totals_fields
        assert r.keyed_by is None or r.keyed_by in demand_fields
    # every counted field of a cell is declared (vcpus, memory_kib and the page size describe the cell)
    assert demand_fields - {r.name for r in NODE_RESOURCES} == {"vcpus", "memory_kib", "page_kib", "amounts"}
    assert totals_fields == {r.name for r in NODE_RESOURCES} | {"amounts"}


@pytest.mark.parametrize("name", [r.name for r in NODE_RESOURCES])
def test_node_resource_reaches_every_derived_place(name):
    r = RESOURCES[name]
    problem = one(SAMPLES[name])
    option = problem.classes[0].options["m"][0]
    cell = option.cells[0]
    assert r.value(cell) > 0  # cell_demands
    totals = NodeTotals()
    totals.add(cell)
    amount = getattr(totals, name)[getattr(cell, r.keyed_by)] if r.keyed_by else int(getattr(totals, name))
    assert amount == r.value(cell)  # NodeTotals.add
    build = m.build_model(problem)
    terms = build.nodes[("h1", 0)]
    assert terms.keyed[name] if r.keyed_by else terms.terms[name]  # CP-SAT terms
    rules = [rule for rule in NODE_RULES if name in rule.resources]
    assert rules  # a rule reads it ...
    for rule in rules:  # ... listed once in the model and priced by the decomposition
        family = getattr(m, rule.family)
        assert family in m.FAMILIES and family in PRICING_FAMILIES
    node = problem.cap_of("h1").node(0)
    assert node_shortfalls(node, NodeTotals(), cell, problem.policy) == []
    starved = STARVE[name](node)
    assert node_shortfalls(starved, NodeTotals(), cell, problem.policy)  # shortfalls


@pytest.mark.parametrize("name", [r.name for r in NODE_RESOURCES if r.name not in LP_RELAXED])
def test_resource_limits_options_and_the_lp(name):
    """One more guest than one option takes on an empty host needs a second host: the LP sees it too."""
    problem = one(SAMPLES[name])
    cap = problem.cap_of("h1")
    option = problem.classes[0].options["m"][0]
    k = option_capacity(cap, option, problem.policy)
    assert 0 < k < 10**4
    alone = node_limit(cap.node(0), option.cells[0], problem.policy)
    assert alone is not None and alone >= k
    crowded = one(SAMPLES[name], k + 1, hosts=3)
    assert lp_bound(crowded) > 1 + 1e-9
    assert lp_bound(one(SAMPLES[name], k, hosts=3)) <= 1 + 1e-9


@pytest.mark.parametrize("name", [r.name for r in (*NODE_RESOURCES, *HOST_RESOURCES) if r.total])
def test_resource_counts_toward_its_fleet_total(name):
    r = RESOURCES[name]
    problem = one(SAMPLES[name])
    needs = guest_totals(problem.scenario.guests, 2).needs(problem.policy, 2, with_vcpu_cap=True)
    keys = [k for k in needs if k.startswith(PAGES_PREFIX)] if r.total == PAGES_PREFIX else [r.total]
    assert keys and all(needs[k] > 0 for k in keys)
    offered = host_totals(problem.cap_of("h1"))
    assert all(offered[k] > 0 for k in keys)
    assert all(k in resource_bounds(problem) for k in keys)


def test_totals_keys_are_the_bound_keys():
    problem = one(SAMPLES["pages"])
    assert set(resource_bounds(problem)) == {t.key for t in TOTALS} | {f"{PAGES_PREFIX}2M"}


@pytest.mark.parametrize("count, expected", [(16, 16), (17, 16)])
def test_host_rule_vcpu_cap_micro(count, expected):
    """Host rule: 8 cores × cap 2 = 16 vCPUs on one host: the model, the greedy fit and the x bound agree."""
    problem = compile_problem(scenario([host_model()], {"h1": "m"}, [shared(f"g{i}", 1, load="0.1")
                                                                     for i in range(count)], cpu_overcommit_max=2))
    build = m.build_model(problem, (m.define_assignment, m.define_host_overcommit))
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    assert solver.solve(build.model) == cp_model.OPTIMAL
    assert sum(solver.value(v) for v in build.x.values()) == expected
    cap = problem.cap_of("h1")
    assert host_limit(cap, 1, problem.policy) == 16
    assert [option_capacity(cap, o, problem.policy) for o in problem.classes[0].options["m"]] == [8, 8]  # pool cap
    assert {c.name for c in build.model.proto.constraints if c.name.startswith("overcommit[")} == {"overcommit[h1]"}


def test_host_resources_read_whole_guests():
    for r in HOST_RESOURCES:
        assert guest_demand(r, SAMPLES[r.name]) > 0
        assert any(r.name in rule.resources for rule in HOST_RULES)


@pytest.mark.parametrize("rule", NODE_RULES, ids=lambda r: r.family)
def test_rows_agree_between_numbers_and_cp_sat(rule):
    """Each node rule: CP-SAT places exactly the guests the numbers say fit (fill one node greedily by the rows)."""
    by_rule = {
        "define_smt_policies": dedicated("g", 1, threads="isolate"),
        "define_cpu_split": dedicated("g", 3),
        "define_shared_overcommit": shared("g", 3, load="0.01"),
        "define_load_target": shared("g", 2, load="0.9"),
        "define_emulator_pool": dedicated("g", 3, emulator="shared"),
        "define_node_memory": shared("g", 1, 3),
        "define_node_memory_target": shared("g", 1, 1, load="0.1"),
        "define_hugepage_pools": shared("g", 1, 3, hugepage_kib=PAGE),
    }
    policy_of = {"define_node_memory_target": {"node_memory_target": "1/2"}}  # rules that a default policy leaves out
    problem = one(by_rule[rule.family], 12, **policy_of.get(rule.family, {}))
    node = problem.cap_of("h1").node(0)
    cell = problem.classes[0].options["m"][0].cells[0]
    fit = 0
    while fit < 12 and not rule.explain(node, _times(cell, fit), cell, problem.policy, _failed(rule, node, cell,
                                                                                            fit + 1, problem)):
        fit += 1
    assert 0 < fit < 12  # the sample fills the node before 12
    families = [getattr(m, rule.family)]
    if rule.family != "define_cpu_split":
        families.insert(0, m.define_cpu_split)
    build = m.build_model(problem, (m.define_assignment, *families))
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    assert solver.solve(build.model) == cp_model.OPTIMAL
    placed = sum(solver.value(v) for v in build.x.values())
    split_only = _split_limit(node, cell, problem)
    assert placed == min(fit, split_only)


def _times(cell, k: int) -> NodeTotals:
    totals = NodeTotals()
    for _ in range(k):
        totals.add(cell)
    return totals


def _failed(rule, node, cell, k: int, problem) -> frozenset[str]:
    rows = rule.rows(node, NumberSums.of(None, cell, k), problem.policy, 1)
    return frozenset(r.key for r in rows if r.lhs > r.rhs)


def _split_limit(node, cell, problem) -> int:
    split = next(r for r in NODE_RULES if r.family == "define_cpu_split")
    k = 0
    while k < 12 and not _failed(split, node, cell, k + 1, problem):
        k += 1
    return k


def test_host_rule_explains_in_words():
    from planner.engine.problem import FleetState

    guests = [shared("a", 10, load="0.1"), shared("b", 7, load="0.1")]
    problem = compile_problem(scenario([host_model()], {"h1": "m"}, guests, cpu_overcommit_max=2))
    state = FleetState(problem)
    assert state.host_blocker(problem.classes[1], "h1") is None
    state.place(problem.classes[0], "h1", 0)
    assert state.host_blocker(problem.classes[1], "h1") == "h1 has room for 6 more vCPUs under the 2x cap (8 cores), needs 7"


def test_fit_test_agrees_with_the_shortfalls_and_the_totals_with_their_fields():
    """node_fits (compiled rows) is exactly ``not node_shortfalls`` (the rules' words) and exactly the rules' own rows
    evaluated on the totals (``rule.rows`` over numbers: what CP-SAT and the LP are built from), on random nodes and
    totals, also over-full ones; NodeTotals.amounts follows its fields through adds and removals."""
    import random

    from planner.engine.problem import node_fits
    from planner.engine.resources import NODE_RULES, cell_violations

    def rows_allow(node, totals, cell, policy) -> bool:  # the declaration itself, not its compiled form
        if cell_violations(node, cell):
            return False
        sums = NumberSums.of(totals, cell)
        return not any(row.lhs > row.rhs and (not row.cell_needs or any(
            getattr(cell, need) for need in row.cell_needs if isinstance(need, str)) or any(
            getattr(cell, "page_kib") == need[1] for need in row.cell_needs if not isinstance(need, str)))
            for rule in NODE_RULES for row in rule.rows(node, sums, policy, 1))

    rng = random.Random(7)
    guests = [*SAMPLES.values(), shared("h", 4, 6, load="0.9"), dedicated("e", 3, emulator="isolate"),
              dedicated("p", 4, 3, threads="require", hugepage_kib=PAGE)]
    problem = compile_problem(scenario([host_model(nodes=2, memory_gib=8, pages={PAGE: 1500})], {"h1": "m"},
                                       [dataclasses.replace(g, name=f"g{i}") for i, g in enumerate(guests)],
                                       memory_overcommit="1.5", cpu_overcommit_max=3))
    cells = [c for cls in problem.classes for o in cls.options["m"] for c in o.cells]
    node = problem.cap_of("h1").node(0)
    fits = 0
    for _ in range(400):
        totals = NodeTotals()
        chosen = rng.sample(cells, rng.randint(0, 8))
        for c in chosen:
            totals.add(c)
        if chosen and rng.random() < 0.3:
            totals.add(chosen[0], -1)
        cell = rng.choice(cells)
        fit = node_fits(node, totals, cell, problem.policy)
        assert fit == (not node_shortfalls(node, totals, cell, problem.policy))
        assert fit == rows_allow(node, totals, cell, problem.policy)
        fits += fit
        fields = {name: value for name, value in NumberSums.of(totals, cell, 0).values.items() if value}
        assert {v: n for v, n in totals.amounts.items() if isinstance(v, str)} == fields
    assert 40 < fits < 360  # both outcomes seen


def test_an_isolated_core_cannot_take_the_pairs_require_guests_hold():
    """Found in review: the fit test skipped the require_pairs row for an isolate cell, so greedy placed it where
    CP-SAT would not and pinning failed ("no sibling pair left"). 8 CPUs, T=2, CPUs 0 and 1 reserved: 2 whole cores,
    2 pair slots; two require guests hold both, so the isolate guest is refused by every method, with the reason."""
    from planner.engine.solver import solve
    from planner.verify.check import check_plan

    model = host_model(nodes=1, reserved=(0, 1))
    sc = scenario([model], {"h1": "m"}, [dedicated("r1", 2, threads="require"), dedicated("r2", 2, threads="require"),
                                      dedicated("i1", 1, threads="isolate")])
    for method in ("greedy", "direct"):
        plan = solve(sc, method=method, time_limit_s=5)
        assert sorted(plan.placed) == ["r1", "r2"] and check_plan(plan) == [], method
        assert "whole cores not split by threads=require pairs" in plan.unplaced_reasons["i1"]
