"""The checker's rules one by one (planner.verify.rules): each rule function on a plan that obeys it and on one
that breaks it, with the exact violations; the usage they read (planner.verify.usage); the registry; the checker
run once per solve."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import pytest

from planner.model.plan import CellPlacement, Evacuation, GuestPlacement, Plan
from planner.model.scenario import HostModel
from planner.verify import check as check_mod
from planner.verify.check import PlanCheck, check, check_evacuations, check_plan, checked, node_usage
from planner.verify.rules import (
    RULE_NAMES,
    RULES,
    Rule,
    cells,
    coverage,
    emulator,
    evacuation,
    hugepages,
    load,
    memory,
    overcommit,
    pinning,
    placement,
    smt,
    tenancy,
)
from planner.verify.usage import free_4k_kib, plan_usage
from planner.verify.violation import Violation
from tests.builders import dedicated, host_model, scenario, shared
from tests.verify.test_check import (
    EXTRA_MUTATIONS,
    G1,
    MUTATIONS,
    POOL0,
    GiB,
    _tiny_guests_plan,
    _unplace,
    example_plan,
    guide_4n,
    replace_guest,
    replace_placement,
    replace_policy,
    set_pin,
)


def V(rule: str, guest: str | None, host: str | None, node: int | None, message: str) -> Violation:
    return Violation(rule, guest, host, node, message)


def _anti_affinity_web(plan: Plan) -> Plan:
    """web01 and web02 (both on kvm1) share the tag 'web'."""
    return replace_guest(replace_guest(plan, "web01", anti_affinity=("web",)), "web02", anti_affinity=("web",))


def _db2_bigger_cell_0(plan: Plan) -> Plan:
    """db2 with 18 GiB: 12 GiB of 1G pages in cell 0 on kvm2 node 0, whose pool has 8."""
    plan = replace_guest(plan, "db2", memory_kib=18 * GiB, numa_cells=())
    return replace_placement(plan, "db2", cells=(CellPlacement(0, 0, tuple(range(12)), 12 * GiB),
                                                 CellPlacement(1, 1, tuple(range(12, 24)), 6 * GiB)))


# rule function -> (a plan that obeys it, a plan that breaks it, the exact violations of that plan)
CASES: dict[str, tuple] = {
    "coverage": (coverage.coverage, example_plan, lambda: _unplace(example_plan(), "web01", reason=None),
                 [V("coverage", "web01", None, None, "web01 is neither placed nor listed unplaced")]),
    "status": (coverage.status, lambda: _unplace(example_plan(), "web01"),
               lambda: dataclasses.replace(example_plan(), status="partial"),
               [V("status", None, None, None,
                  "plan status is 'partial' but every guest is placed: it must be 'optimal' or 'feasible'")]),
    "fixed host": (placement.fixed_host, lambda: replace_guest(example_plan(), "rt1", host="kvm1"),
                   lambda: replace_guest(example_plan(), "rt1", host="kvm2"),
                   [V("placement", "rt1", "kvm1", None, "rt1 is fixed to host kvm2 but is placed on kvm1")]),
    "anti-affinity": (placement.anti_affinity, example_plan, lambda: _anti_affinity_web(example_plan()),
                      [V("placement", "web02", "kvm1", None, "anti-affinity tag 'web': web02 is on kvm1 with web01")]),
    "tenancy": (tenancy.tenancy, lambda: replace_policy(example_plan(), tenant_isolation="host"),
                lambda: replace_guest(replace_policy(example_plan(), tenant_isolation="host"), "web01", tenant="a"),
                [V("tenancy", "web01", "kvm1", None,
                   "tenant isolation (host): kvm1 serves db1 of tenant (none) and web01 of tenant 'a'")]),
    "cells": (cells.cells, example_plan,
              lambda: replace_placement(example_plan(), "web01", cells=(CellPlacement(0, 0, (0, 1), 3 * GiB),)),
              [V("cells", "web01", "kvm1", None,
                 "web01 on kvm1: cell memory sums to 3145728 KiB (3GiB), not the guest's 4194304 KiB (4GiB)")]),
    "cpus": (pinning.cpus_rule, example_plan, lambda: set_pin(example_plan(), "db1", 0, (0,)),
             [V("cpus", "db1", "kvm1", 0, "kvm1 node 0: db1 vCPU 0 is pinned to reserved CPU 0")]),
    "threads": (smt.threads, example_plan,
                lambda: replace_placement(example_plan(), "rt1", vcpu_pins=((7,), (79,), (80,), (9,))),
                [V("threads", "rt1", "kvm1", 0, "kvm1 node 0: rt1 (threads: require) vCPUs 2 and 3 are on CPUs 80 "
                                                "and 9, not two threads of one core")]),
    "emulator": (emulator.emulator, example_plan, lambda: replace_placement(example_plan(), "web02", emulator_pins=()),
                 [V("emulator", "web02", "kvm1", None, "web02 on kvm1 has no emulator pins")]),
    "memory": (memory.memory, example_plan,
               lambda: replace_placement(example_plan(), "web04", cells=(CellPlacement(0, 0, (0, 1), 4 * GiB),),
                                         vcpu_pins=(POOL0, POOL0)),
               [V("memory", None, "kvm1", 0, "kvm1 node 0: guest cells take 25165824 KiB (24GiB) of 4K memory, "
                                             "above the free 23068672 KiB (22GiB)")]),
    "memory_target": (memory.memory_target, lambda: replace_policy(example_plan(), node_memory_target=Fraction(21, 22)),
                      lambda: replace_policy(example_plan(), node_memory_target=Fraction(9, 10)),
                      [V("memory_target", None, "kvm1", 0, "kvm1 node 0: guest cells commit 20GiB of 4K memory, above "
                                                           "the node memory target 90% of the free 22GiB (19.8GiB)")]),
    "overcommit": (overcommit.overcommit, lambda: _tiny_guests_plan(62), lambda: _tiny_guests_plan(63),
                   [V("overcommit", None, "kvm1", 0, "kvm1 node 0: shared pool 10-17,81-89 (8.5 cores) carries 69 "
                                                     "shared vCPUs, above 8 x 8.5 = 68")]),
    "load": (load.load, example_plan, lambda: replace_policy(example_plan(), cpu_load_target=Fraction(1, 10)),
             [V("load", None, "kvm1", 0, "kvm1 node 0: shared pool 10-17,81-89 (17 CPUs) carries a load of 1.8 "
                                         "(Σ vCPUs × load), above 0.1 x 17 = 1.7")]),
    "hugepages": (hugepages.hugepages, example_plan, lambda: _db2_bigger_cell_0(example_plan()),
                  [V("hugepages", None, "kvm2", 0, "kvm2 node 0: guest cells take 12 1G pages, above the node's pool "
                                                   "of 8")]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_rule_passes_a_plan_that_obeys_it_and_tells_the_breach(name):
    rule, good, bad, expected = CASES[name]
    good_plan, bad_plan = good(), bad()
    assert rule(good_plan, plan_usage(good_plan)) == []
    assert rule(bad_plan, plan_usage(bad_plan)) == expected
    assert all(v in check_plan(bad_plan) for v in expected)  # check_plan runs the rule


def test_every_rule_is_a_documented_function_in_the_registry():
    assert {case[0] for case in CASES.values()} == {r.check for r in RULES}
    for r in RULES:
        assert isinstance(r, Rule) and r.name in RULE_NAMES
        assert len(r.text) > 40, r.check.__name__  # the docstring states the rule
    assert set(RULE_NAMES) == {"coverage", "status", "placement", "tenancy", "cells", "cpus", "threads", "emulator",
                               "memory", "memory_target", "overcommit", "load", "hugepages", "evacuation"}


@pytest.mark.parametrize("name", sorted(MUTATIONS) + sorted(EXTRA_MUTATIONS))
def test_a_rule_reports_its_own_name_only(name):
    mutate, expected = MUTATIONS[name] if name in MUTATIONS else EXTRA_MUTATIONS[name]
    plan = mutate(example_plan(extra=name in EXTRA_MUTATIONS))
    usage = plan_usage(plan)
    found = []
    for r in RULES:
        got = r.check(plan, usage)
        assert {v.rule for v in got} <= {r.name}, (r.check.__name__, got)
        found += got
    assert expected in {(v.rule, v.guest, v.host, v.node) for v in found}
    assert sorted(map(repr, found)) == sorted(map(repr, check_plan(plan)))


# ----------------------------------------------------------------------------------------------- the finer cases
def test_threads_isolate_sibling_serving_a_shared_vcpu():
    plan = EXTRA_MUTATIONS["isolate sibling used by a shared vCPU"][0](example_plan(extra=True))
    assert smt.threads(plan, plan_usage(plan)) == [
        V("threads", "iso1", "kvm2", 2, "kvm2 node 2: CPU 108, the idle sibling of iso1 vCPU 0 (threads: isolate, "
                                        "on CPU 36), serves shared web07 vCPU 0")]


def test_emulator_isolate_on_another_node():
    plan = replace_placement(example_plan(), "rt1", emulator_pins=(24,))
    assert emulator.emulator(plan, plan_usage(plan)) == [
        V("emulator", "rt1", "kvm1", 1, "kvm1 node 1: CPU 24, the emulator CPU of rt1 (emulator: isolate), serves "
                                        "shared web04 vCPUs 0-1; web05 vCPUs 0-1; web06 vCPUs 0-1"),
        V("emulator", "rt1", "kvm1", 0, "kvm1 node 0: rt1 (emulator: isolate) has its emulator on CPU 24, on node 1, "
                                        "not on node 0 of its cell 0")]


def test_memory_with_overcommit_counts_dedicated_guests_one_to_one():
    plan = replace_policy(example_plan(), memory_overcommit=Fraction(3, 2))
    big = replace_placement(replace_guest(plan, "web01", memory_kib=14 * GiB), "web01",
                            cells=(CellPlacement(0, 0, (0, 1), 14 * GiB),))
    assert memory.memory(plan, plan_usage(plan)) == []
    assert memory.memory(big, plan_usage(big)) == [
        V("memory", None, "kvm1", 0, "kvm1 node 0: guest cells take 8GiB of 4K memory for dedicated guests (1:1) and "
                                     "22GiB for shared guests (÷ 1.5 = 14.67GiB), above the free 23068672 KiB (22GiB)")]


def test_a_4k_cell_above_the_free_memory_of_its_node():
    plan = replace_policy(example_plan(), memory_overcommit=Fraction(2))
    plan = replace_placement(replace_guest(plan, "web01", memory_kib=23 * GiB), "web01",
                             cells=(CellPlacement(0, 0, (0, 1), 23 * GiB),))
    assert memory.memory(plan, plan_usage(plan))[0] == V(
        "memory", "web01", "kvm1", 0, "web01 cell 0 on kvm1 node 0 has 23GiB of 4K memory, above the node's free 22GiB "
                                      "(memory_overcommit never applies inside one guest)")


def test_host_wide_overcommit():
    plan = replace_policy(example_plan(), cpu_overcommit_max=Fraction(1, 2))
    assert overcommit.overcommit(plan, plan_usage(plan))[0] == V(
        "overcommit", None, "kvm1", None, "kvm1: 40 vCPUs on 72 physical cores, above 0.5 x 72 = 36")


def test_tenancy_per_core():
    plan = replace_guest(replace_policy(example_plan(), tenant_isolation="core"), "web01", tenant="a")
    found = tenancy.tenancy(plan, plan_usage(plan))
    assert found == [V("tenancy", g, "kvm1", None, f"tenant isolation (core): core 9,81 of kvm1 serves web01 of "
                                                   f"tenant 'a' and {g} of tenant (none)") for g in ("web02", "web03")]


# ----------------------------------------------------------------------------------------------- evacuations
def _evacuation(**changes) -> Evacuation:
    plan = example_plan()
    moved = {n: dataclasses.replace(plan.placed[n], host="kvm2") for n in ("web01",)}
    e = Evacuation(kind="host", name="kvm1", failed_hosts=("kvm1",), moved=moved,
                   stranded={n: "no room" for n, p in plan.placed.items() if p.host == "kvm1" and n != "web01"})
    return dataclasses.replace(e, **changes)


def test_evacuation_bookkeeping():
    plan = example_plan()
    assert evacuation.bookkeeping(plan, _evacuation()) == []
    stranded = dict(_evacuation().stranded)
    del stranded["web02"]
    stranded["db2"] = " "
    assert evacuation.bookkeeping(plan, _evacuation(stranded=stranded)) == [
        V("evacuation", "web02", "kvm1", None, "after host kvm1 fails: web02 was on kvm1 but is neither moved nor "
                                               "stranded"),
        V("evacuation", "db2", None, None, "after host kvm1 fails: db2 is moved or stranded but was not on a failed "
                                           "host"),
        V("evacuation", "db2", None, None, "after host kvm1 fails: db2 is stranded without a reason"),
    ]


def test_check_evacuations_judges_the_evacuated_fleet_with_every_rule():
    plan = dataclasses.replace(example_plan(), evacuations=(_evacuation(),))
    assert check_evacuations(plan) == []  # web01 keeps its pins 10-17,81-89: inside kvm2 node 0's pool
    onto_db2 = dataclasses.replace(plan.placed["web01"], host="kvm2", vcpu_pins=(POOL0 + (1,),) * 2)
    found = check_evacuations(dataclasses.replace(plan, evacuations=(_evacuation(moved={"web01": onto_db2}),)))
    assert found and all(v.message.startswith("after host kvm1 fails: ") for v in found)
    assert {(v.rule, v.guest, v.host) for v in found} == {("cpus", "web01", "kvm2"), ("cpus", "db2", "kvm2")}


# ----------------------------------------------------------------------------------------------- usage
def test_free_4k_memory_is_the_checkers_own_arithmetic(monkeypatch):
    model = guide_4n()
    assert [free_4k_kib(model, n) for n in model.nodes] == [22 * GiB, 22 * GiB, 30 * GiB, 30 * GiB]
    memless = dataclasses.replace(model.nodes[2], memory_kib=0)
    assert free_4k_kib(model, memless) == 0
    two_sizes = dataclasses.replace(model.nodes[0], hugepages={G1: 2, 2048: 512})
    assert free_4k_kib(model, two_sizes) == 32 * GiB - 2 * GiB - 2 * G1 - 512 * 2048

    def broken(self, node):
        raise AssertionError("the checker reads HostModel.free_4k_kib")

    monkeypatch.setattr(HostModel, "free_4k_kib", broken)
    assert check_plan(example_plan()) == []
    assert node_usage(example_plan())["kvm1"][0].memory_4k_free_kib == 2 * GiB


def test_usage_per_host():
    usage = plan_usage(example_plan(extra=True))
    assert list(usage.hosts) == ["kvm1", "kvm2"]
    kvm1 = usage.hosts["kvm1"]
    assert kvm1.vcpus == 40 and [g.name for g in kvm1.guests] == ["db1", "rt1", "web01", "web02", "web03", "web04",
                                                                 "web05", "web06"]
    assert kvm1.cpus.emulator_isolate == {9: "rt1"} and kvm1.cpus.dedicated[7] == [("rt1", 0)]
    assert kvm1.owner_text(9) == "CPU 9 is the emulator CPU of rt1 (emulator: isolate)"
    assert kvm1.owner_text(0) == "CPU 0 is reserved" and kvm1.owner_text(500) == "CPU 500 is not a CPU of kvm1"
    kvm2 = usage.hosts["kvm2"]
    assert kvm2.cpus.idle == {108: ("iso1", 0, 36), 109: ("iso1", 1, 37)}
    assert kvm2.nodes[2].shared_load == 1 and kvm2.memory_4k_dedicated_kib[2] == 2 * GiB
    assert kvm2.nodes[0].hugepages_used == {G1: 6} and kvm2.nodes[0].hugepages_free == {G1: 2}


# ----------------------------------------------------------------------------------------------- once per solve
def test_node_usage_reuses_the_last_check_of_the_same_facts(monkeypatch):
    calls: list[Plan] = []
    real = check_mod.plan_usage

    def counting(plan):
        calls.append(plan)
        return real(plan)

    monkeypatch.setattr(check_mod, "plan_usage", counting)
    plan = example_plan()
    result = check(plan)
    assert isinstance(result, PlanCheck) and result.ok and len(calls) == 1
    copy = dataclasses.replace(plan, evacuations=(), stats=dataclasses.replace(plan.stats, solver="x"))
    assert checked(copy) is result and node_usage(copy)["kvm1"][0].pool_cores == Fraction(17, 2)
    assert len(calls) == 1
    changed = set_pin(plan, "db1", 0, (0,))  # other placements: checked anew, never the stale result
    assert not checked(changed).ok and len(calls) == 2
    assert check_plan(plan) == [] and len(calls) == 3  # check_plan always checks


def test_the_checker_runs_once_per_solve(monkeypatch, tmp_path):
    from planner.engine.solver import solve

    calls: list[Plan] = []
    real = check_mod.plan_usage

    def counting(plan):
        calls.append(plan)
        return real(plan)

    monkeypatch.setattr(check_mod, "plan_usage", counting)
    m = host_model(nodes=2, cpus_per_node=8, threads=2, memory_gib=16)
    sc = scenario([m], {"h1": "m", "h2": "m"}, [shared("web", 4, memory_gib=2, load="0.5"),
                                                 dedicated("db", 2, memory_gib=4)])
    plan = solve(sc, method="greedy", time_limit_s=5)
    plan.write(tmp_path / "out")
    plan.host_usage()
    plan.node_usage()
    assert sum(1 for p in calls if p.placed is plan.placed) == 1
    assert [p.placed["web"].host for p in calls] == [plan.placed["web"].host]
    assert isinstance(plan.placed["db"], GuestPlacement)


def test_a_remembered_check_dies_with_its_scenario():
    import gc

    plan = example_plan()
    check(plan)
    assert plan.scenario in check_mod._REMEMBERED
    before = len(check_mod._REMEMBERED)
    del plan
    gc.collect()
    assert len(check_mod._REMEMBERED) == before - 1
