"""The independent checker: the spec's example plan passes, and each broken rule is caught with the right names.

Plans are built by hand (dataclasses, no YAML) after the spec's example (tests/fixtures/spec/example, a copy of
shared/spec/example): scenario.yaml and out/.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import time
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.model.plan import CellPlacement, GuestPlacement, Plan
from planner.model.scenario import Guest, Host, HostModel, Node, Policy, Scenario
from planner.model.units import format_cpulist, parse_cpulist
from planner.verify.check import NodeUsage, Violation, analyse, check_plan, node_usage

MiB = 1024
GiB = 1024**2
G1 = GiB  # a 1G page, in KiB


# ----------------------------------------------------------------------------------------------- the example
def guide_4n(pages_1g: int = 8) -> HostModel:
    """The guide's numactl host: 4 nodes x 36 CPUs, SMT siblings c and c+72, CPUs 0 and 72 reserved."""
    node_cpus = ["0-17,72-89", "18-35,90-107", "36-53,108-125", "54-71,126-143"]
    pages = [{G1: pages_1g}, {G1: pages_1g}, {}, {}]
    nodes = tuple(Node(i, parse_cpulist(c), 32 * GiB, pages[i]) for i, c in enumerate(node_cpus))
    distances = tuple(tuple(10 if i == j else 21 for j in range(4)) for i in range(4))
    return HostModel(
        name="guide-4n",
        nodes=nodes,
        distances=distances,
        cores=tuple((c, c + 72) for c in range(72)),
        reserved_cpus=frozenset({0, 72}),
        reserved_memory_kib=2 * GiB,
    )


def example_guests(extra: bool = False) -> list[Guest]:
    guests = [Guest(f"web0{i}", 2, 4 * GiB, load=Fraction(3, 10)) for i in range(1, 7)]
    guests += [
        Guest(f"db{i}", 24, 12 * GiB, cpu="dedicated", threads="prefer", hugepage_kib=G1, anti_affinity=("db",))
        for i in (1, 2)
    ]
    guests.append(Guest("rt1", 4, 8 * GiB, cpu="dedicated", threads="require", emulator="isolate"))
    if extra:
        # on kvm2 node 2: a whole-core guest with its emulator on the pools, and a shared guest beside it
        guests.append(Guest("iso1", 2, 2 * GiB, cpu="dedicated", threads="isolate", emulator="shared"))
        guests.append(Guest("web07", 2, 2 * GiB, load=Fraction(1, 2)))
    return guests


def scenario_of(guests: list[Guest], policy: Policy | None = None, model: HostModel | None = None) -> Scenario:
    model = model or guide_4n()
    return Scenario(
        name="example",
        policy=policy or Policy(),
        host_models={model.name: model},
        hosts=(Host("kvm1", model.name), Host("kvm2", model.name)),
        guests=tuple(guests),
    )


POOL0 = parse_cpulist("10-17,81-89")  # kvm1 node 0, from plan.json
POOL1 = parse_cpulist("24-35,96-107")  # kvm1 node 1
POOL2_KVM2 = parse_cpulist("38-53,110-125")  # kvm2 node 2 with iso1 on cores 36 and 37
RESERVED = (0, 72)


def db_placement(name: str, host: str) -> GuestPlacement:
    """As db1.xml: vCPU 2i on a core's first thread, 2i+1 on its sibling; cores 1-6 (node 0) and 18-23 (node 1)."""
    pins = []
    for core in list(range(1, 7)) + list(range(18, 24)):
        pins += [(core,), (core + 72,)]
    cells = (
        CellPlacement(0, 0, tuple(range(12)), 6 * GiB),
        CellPlacement(1, 1, tuple(range(12, 24)), 6 * GiB),
    )
    return GuestPlacement(name, host, cells, tuple(pins), RESERVED)


def web_placement(name: str, host: str, node: int, pool: tuple[int, ...], memory: int = 4 * GiB) -> GuestPlacement:
    return GuestPlacement(name, host, (CellPlacement(0, node, (0, 1), memory),), (pool, pool), RESERVED)


def example_placements(extra: bool = False) -> dict[str, GuestPlacement]:
    placements = {
        "db1": db_placement("db1", "kvm1"),
        "db2": db_placement("db2", "kvm2"),
        # as rt1.xml: sibling pairs (7,79) and (8,80), emulator on CPU 9
        "rt1": GuestPlacement(
            "rt1", "kvm1", (CellPlacement(0, 0, (0, 1, 2, 3), 8 * GiB),), ((7,), (79,), (8,), (80,)), (9,)
        ),
    }
    for i in (1, 2, 3):
        placements[f"web0{i}"] = web_placement(f"web0{i}", "kvm1", 0, POOL0)
    for i in (4, 5, 6):
        placements[f"web0{i}"] = web_placement(f"web0{i}", "kvm1", 1, POOL1)
    if extra:
        placements["iso1"] = GuestPlacement(
            "iso1", "kvm2", (CellPlacement(0, 2, (0, 1), 2 * GiB),), ((36,), (37,)), POOL2_KVM2
        )
        placements["web07"] = web_placement("web07", "kvm2", 2, POOL2_KVM2, memory=2 * GiB)
    return dict(sorted(placements.items()))


def example_plan(extra: bool = False, **scenario_kwargs) -> Plan:
    scenario = scenario_of(example_guests(extra), **scenario_kwargs)
    return Plan(scenario=scenario, status="feasible", placed=example_placements(extra), unplaced_reasons={})


# ----------------------------------------------------------------------------------------------- mutation helpers
def replace_placement(plan: Plan, guest: str, **changes) -> Plan:
    placements = dict(plan.placed)
    placements[guest] = dataclasses.replace(placements[guest], **changes)
    return dataclasses.replace(plan, placed=placements)


def set_pin(plan: Plan, guest: str, vcpu: int, pins: tuple[int, ...]) -> Plan:
    vcpu_pins = list(plan.placed[guest].vcpu_pins)
    vcpu_pins[vcpu] = pins
    return replace_placement(plan, guest, vcpu_pins=tuple(vcpu_pins))


def replace_guest(plan: Plan, guest: str, **changes) -> Plan:
    guests = [dataclasses.replace(g, **changes) if g.name == guest else g for g in plan.scenario.guests]
    scenario = scenario_of(guests, policy=plan.scenario.policy, model=next(iter(plan.scenario.host_models.values())))
    return dataclasses.replace(plan, scenario=scenario)


def replace_policy(plan: Plan, **changes) -> Plan:
    scenario = scenario_of(list(plan.scenario.guests), policy=dataclasses.replace(plan.scenario.policy, **changes))
    return dataclasses.replace(plan, scenario=scenario)


def keys(violations: list[Violation]) -> set[tuple[str, str | None, str | None, int | None]]:
    return {(v.rule, v.guest, v.host, v.node) for v in violations}


# ----------------------------------------------------------------------------------------------- the good plans
def test_example_plan_passes():
    assert check_plan(example_plan()) == []


def test_example_plan_with_isolate_and_shared_emulator_passes():
    assert check_plan(example_plan(extra=True)) == []


# hosts.*.nodes of the spec's out/plan.json (tests/fixtures/spec/example/out/plan.json, bytes as written there)
_N2 = {"hugepages_used": {}, "memory_4k_free": 32212254720, "memory_4k_used": 0, "pool_cores": 18.0,
       "pool_cpus": "36-53,108-125", "shared_load": 0.0, "shared_vcpus": 0}
_N3 = {**_N2, "pool_cpus": "54-71,126-143"}
EXAMPLE_PLAN_JSON_HOSTS = {
    "kvm1": {"nodes": {
        "0": {"hugepages_used": {"1073741824": 6}, "memory_4k_free": 2147483648, "memory_4k_used": 21474836480,
              "pool_cores": 8.5, "pool_cpus": "10-17,81-89", "shared_load": 1.8, "shared_vcpus": 6},
        "1": {"hugepages_used": {"1073741824": 6}, "memory_4k_free": 10737418240, "memory_4k_used": 12884901888,
              "pool_cores": 12.0, "pool_cpus": "24-35,96-107", "shared_load": 1.8, "shared_vcpus": 6},
        "2": _N2, "3": _N3}, "vcpus": 40},
    "kvm2": {"nodes": {
        "0": {"hugepages_used": {"1073741824": 6}, "memory_4k_free": 23622320128, "memory_4k_used": 0,
              "pool_cores": 11.0, "pool_cpus": "7-17,79-89", "shared_load": 0.0, "shared_vcpus": 0},
        "1": {"hugepages_used": {"1073741824": 6}, "memory_4k_free": 23622320128, "memory_4k_used": 0,
              "pool_cores": 12.0, "pool_cpus": "24-35,96-107", "shared_load": 0.0, "shared_vcpus": 0},
        "2": _N2, "3": _N3}, "vcpus": 24},
}


def _usage_from_plan_json(node: dict) -> dict:
    return {
        "pool_cpus": tuple(parse_cpulist(node["pool_cpus"])),
        "pool_cores": Fraction(str(node["pool_cores"])),
        "shared_load": Fraction(str(node["shared_load"])),
        "shared_vcpus": node["shared_vcpus"],
        "memory_4k_used_kib": node["memory_4k_used"] // 1024,
        "memory_4k_free_kib": node["memory_4k_free"] // 1024,
        "hugepages_used": {int(size) // 1024: n for size, n in node["hugepages_used"].items()},
    }


def test_embedded_numbers_are_the_spec_example():
    plan_json = Path(__file__).parents[1] / "fixtures" / "spec" / "example" / "out" / "plan.json"
    hosts = json.loads(plan_json.read_text())["hosts"]
    for host, data in EXAMPLE_PLAN_JSON_HOSTS.items():
        assert hosts[host]["nodes"] == data["nodes"] and hosts[host]["vcpus"] == data["vcpus"]


def test_node_usage_matches_the_example_plan_json():
    plan = example_plan()
    usage = node_usage(plan)
    assert set(usage) == {"kvm1", "kvm2"}
    for host, data in EXAMPLE_PLAN_JSON_HOSTS.items():
        assert set(usage[host]) == {int(n) for n in data["nodes"]}
        for node_id, node in data["nodes"].items():
            got = usage[host][int(node_id)]
            for key, value in _usage_from_plan_json(node).items():
                assert getattr(got, key) == value, (host, node_id, key)
        assert sum(plan.scenario.guest_by_name[p.guest].vcpus for p in plan.guests_on(host)) == data["vcpus"]


def test_node_usage_details():
    usage = node_usage(example_plan())
    n0 = usage["kvm1"][0]
    assert isinstance(n0, NodeUsage)
    assert format_cpulist(n0.pool_cpus) == "10-17,81-89"
    assert n0.pool_cores == Fraction(17, 2)
    assert n0.shared_load == Fraction(9, 5) and isinstance(n0.shared_load, Fraction)
    assert n0.dedicated_cpus == (1, 2, 3, 4, 5, 6, 7, 8, 73, 74, 75, 76, 77, 78, 79, 80)
    assert n0.emulator_cpus == (9,)
    assert n0.idle_cpus == ()
    assert n0.dedicated_vcpus == 12 + 4
    assert n0.hugepages_used == {G1: 6} and n0.hugepages_free == {G1: 2}
    assert n0.memory_4k_used_kib == 20 * GiB and n0.memory_4k_free_kib == 2 * GiB
    assert usage["kvm1"][2].hugepages_used == {} and usage["kvm1"][2].pool_cores == 18
    violations, usage_extra = analyse(example_plan(extra=True))
    assert violations == []
    extra = usage_extra["kvm2"][2]
    assert extra.idle_cpus == (108, 109)
    assert extra.dedicated_cpus == (36, 37)
    assert extra.pool_cpus == POOL2_KVM2 and extra.pool_cores == 16
    assert extra.shared_load == 1


# ----------------------------------------------------------------------------------------------- one broken rule each
def _unplace(plan: Plan, guest: str, reason: str | None = "no room", status: str = "partial") -> Plan:
    placements = {k: v for k, v in plan.placed.items() if k != guest}
    unplaced = dict(plan.unplaced_reasons)
    if reason is not None:
        unplaced[guest] = reason
    return dataclasses.replace(plan, placed=placements, unplaced_reasons=unplaced, status=status)


def _tiny_guests_plan(count: int) -> Plan:
    """The example plus ``count`` 1-vCPU shared guests of load 0.01 on kvm1 node 0."""
    guests = example_guests() + [Guest(f"tiny{i:02d}", 1, 16 * MiB, load=Fraction(1, 100)) for i in range(count)]
    placements = example_placements()
    for i in range(count):
        placements[f"tiny{i:02d}"] = GuestPlacement(
            f"tiny{i:02d}", "kvm1", (CellPlacement(0, 0, (0,), 16 * MiB),), (POOL0,), RESERVED
        )
    return Plan(scenario_of(guests), "feasible", placements, {})


MUTATIONS = {
    # cpus
    "dedicated on a reserved CPU": (lambda p: set_pin(p, "db1", 0, (0,)), ("cpus", "db1", "kvm1", 0)),
    "two guests on one pCPU (db1 side)": (lambda p: set_pin(p, "db1", 0, (7,)), ("cpus", "db1", "kvm1", 0)),
    "two guests on one pCPU (rt1 side)": (lambda p: set_pin(p, "db1", 0, (7,)), ("cpus", "rt1", "kvm1", 0)),
    "two vCPUs of one guest on one pCPU": (lambda p: set_pin(p, "db1", 2, (1,)), ("cpus", "db1", "kvm1", 0)),
    "dedicated vCPU on two CPUs": (lambda p: set_pin(p, "db2", 5, (75, 16)), ("cpus", "db2", "kvm2", 0)),
    "dedicated vCPU on another node": (lambda p: set_pin(p, "db1", 23, (40,)), ("cpus", "db1", "kvm1", 1)),
    "shared vCPU on a dedicated CPU": (lambda p: set_pin(p, "web01", 1, POOL0 + (1,)), ("cpus", "web01", "kvm1", 0)),
    "dedicated CPU also in a shared pin set": (lambda p: set_pin(p, "web01", 1, POOL0 + (1,)), ("cpus", "db1", "kvm1", 0)),
    "shared vCPU on a reserved CPU": (lambda p: set_pin(p, "web02", 0, (0,) + POOL0), ("cpus", "web02", "kvm1", 0)),
    "shared vCPU on the rt1 emulator CPU": (lambda p: set_pin(p, "web03", 0, (9,)), ("cpus", "web03", "kvm1", 0)),
    "shared vCPU on another node's pool": (lambda p: replace_placement(p, "web04", vcpu_pins=(POOL0, POOL0)), ("cpus", "web04", "kvm1", 1)),
    "shared vCPU pinned to nothing": (lambda p: set_pin(p, "web05", 1, ()), ("cpus", "web05", "kvm1", 1)),
    # threads
    "require pair across cores": (
        lambda p: replace_placement(p, "rt1", vcpu_pins=((7,), (8,), (79,), (80,))),
        ("threads", "rt1", "kvm1", 0),
    ),
    "require pair on one thread": (
        lambda p: replace_placement(p, "rt1", vcpu_pins=((7,), (7,), (8,), (80,))),
        ("threads", "rt1", "kvm1", 0),
    ),
    # emulator
    "emulator isolate on the node of cell 1": (lambda p: replace_placement(p, "rt1", emulator_pins=(24,)), ("emulator", "rt1", "kvm1", 0)),
    "emulator isolate on a shared pool CPU": (lambda p: replace_placement(p, "rt1", emulator_pins=(10,)), ("emulator", "rt1", "kvm1", 0)),
    "emulator isolate on a dedicated CPU": (lambda p: replace_placement(p, "rt1", emulator_pins=(1,)), ("emulator", "rt1", "kvm1", 0)),
    "emulator isolate on two CPUs": (lambda p: replace_placement(p, "rt1", emulator_pins=(9, 81)), ("emulator", "rt1", "kvm1", 0)),
    "emulator isolate on a reserved CPU": (lambda p: replace_placement(p, "rt1", emulator_pins=(0,)), ("emulator", "rt1", "kvm1", 0)),
    "emulator isolate shared with another emulator": (
        lambda p: replace_placement(p, "web01", emulator_pins=(0, 72, 9)),
        ("emulator", "rt1", "kvm1", 0),
    ),
    "emulator host not on the reserved CPUs": (lambda p: replace_placement(p, "web01", emulator_pins=(10, 11)), ("emulator", "web01", "kvm1", None)),
    "emulator pins empty": (lambda p: replace_placement(p, "web02", emulator_pins=()), ("emulator", "web02", "kvm1", None)),
    # overcommit, load
    "overcommit per node by many tiny shared guests": (lambda p: _tiny_guests_plan(63), ("overcommit", None, "kvm1", 0)),
    "overcommit host-wide": (lambda p: replace_policy(p, cpu_overcommit_max=Fraction(1, 2)), ("overcommit", None, "kvm1", None)),
    "load above target": (lambda p: replace_policy(p, cpu_load_target=Fraction(1, 10)), ("load", None, "kvm1", 0)),
    # memory, hugepages
    "memory over node": (
        lambda p: replace_placement(p, "web04", cells=(CellPlacement(0, 0, (0, 1), 4 * GiB),), vcpu_pins=(POOL0, POOL0)),
        ("memory", None, "kvm1", 0),
    ),
    "memory over node with overcommit below 1": (lambda p: replace_policy(p, memory_overcommit=Fraction(8, 10)), ("memory", None, "kvm1", 0)),
    "hugepages over pool": (
        lambda p: dataclasses.replace(p, scenario=scenario_of(list(p.scenario.guests), model=guide_4n(pages_1g=5))),
        ("hugepages", None, "kvm2", 1),
    ),
    "hugepages of a size the node lacks": (
        lambda p: replace_placement(
            p, "db1",
            cells=(CellPlacement(0, 2, tuple(range(12)), 6 * GiB), CellPlacement(1, 1, tuple(range(12, 24)), 6 * GiB)),
            vcpu_pins=tuple((36 + i // 2 + 72 * (i % 2),) for i in range(12)) + p.placed["db1"].vcpu_pins[12:],
        ),
        ("hugepages", None, "kvm1", 2),
    ),
    # cells
    "cells not contiguous": (
        lambda p: replace_placement(
            p, "db1",
            cells=(
                CellPlacement(0, 0, tuple(range(11)) + (12,), 6 * GiB),
                CellPlacement(1, 1, (11,) + tuple(range(13, 24)), 6 * GiB),
            ),
        ),
        ("cells", "db1", "kvm1", 0),
    ),
    "cells uneven by 2": (
        lambda p: replace_placement(
            p, "db1",
            cells=(CellPlacement(0, 0, tuple(range(13)), 6 * GiB), CellPlacement(1, 1, tuple(range(13, 24)), 6 * GiB)),
        ),
        ("cells", "db1", "kvm1", None),
    ),
    "cell memory split uneven": (
        lambda p: replace_placement(
            p, "db1",
            cells=(CellPlacement(0, 0, tuple(range(12)), 7 * GiB), CellPlacement(1, 1, tuple(range(12, 24)), 5 * GiB)),
        ),
        ("cells", "db1", "kvm1", None),
    ),
    "cell memory not whole pages": (
        lambda p: replace_placement(
            p, "db1",
            cells=(CellPlacement(0, 0, tuple(range(12)), 6 * GiB + MiB), CellPlacement(1, 1, tuple(range(12, 24)), 6 * GiB - MiB)),
        ),
        ("cells", "db1", "kvm1", 0),
    ),
    "cell memory sum wrong": (
        lambda p: replace_placement(p, "web01", cells=(CellPlacement(0, 0, (0, 1), 3 * GiB),)),
        ("cells", "web01", "kvm1", None),
    ),
    "two cells on one node": (
        lambda p: replace_placement(
            p, "db1",
            cells=(CellPlacement(0, 0, tuple(range(12)), 6 * GiB), CellPlacement(1, 0, tuple(range(12, 24)), 6 * GiB)),
        ),
        ("cells", "db1", "kvm1", 0),
    ),
    "cell on a node the host lacks": (
        lambda p: replace_placement(p, "web01", cells=(CellPlacement(0, 7, (0, 1), 4 * GiB),)),
        ("cells", "web01", "kvm1", 7),
    ),
    "cell ids out of order": (
        lambda p: replace_placement(
            p, "db1",
            cells=(CellPlacement(1, 0, tuple(range(12)), 6 * GiB), CellPlacement(0, 1, tuple(range(12, 24)), 6 * GiB)),
        ),
        ("cells", "db1", "kvm1", 0),
    ),
    "cell count differs from numa": (lambda p: replace_guest(p, "db2", numa=3), ("cells", "db2", "kvm2", None)),
    "no cells": (lambda p: replace_placement(p, "web03", cells=()), ("cells", "web03", "kvm1", None)),
    "dedicated vCPU on a CPU the host lacks": (lambda p: set_pin(p, "db1", 3, (999,)), ("cpus", "db1", "kvm1", 0)),
    "emulator isolate on a CPU the host lacks": (lambda p: replace_placement(p, "rt1", emulator_pins=(999,)), ("emulator", "rt1", "kvm1", 0)),
    "shared vCPU on a CPU the host lacks": (lambda p: set_pin(p, "web06", 0, POOL1 + (999,)), ("cpus", "web06", "kvm1", 1)),
    "too few vCPU pins": (lambda p: replace_placement(p, "web06", vcpu_pins=(POOL1,)), ("cells", "web06", "kvm1", None)),
    "require cell of odd size": (
        lambda p: replace_guest(p, "rt1", vcpus=5, memory_kib=8 * GiB),
        ("threads", "rt1", "kvm1", None),
    ),
    # placement
    "fixed host moved": (lambda p: replace_guest(p, "rt1", host="kvm2"), ("placement", "rt1", "kvm1", None)),
    "anti-affinity broken": (
        lambda p: replace_placement(p, "db2", host="kvm1"),
        ("placement", "db2", "kvm1", None),
    ),
    "anti-affinity tag on web guests": (
        lambda p: replace_guest(replace_guest(p, "web01", anti_affinity=("web",)), "web05", anti_affinity=("web",)),
        ("placement", "web05", "kvm1", None),
    ),
    # coverage, status
    "guest missing from both": (lambda p: _unplace(p, "web06", reason=None), ("coverage", "web06", None, None)),
    "missing guest and status not partial": (lambda p: _unplace(p, "web06", status="feasible"), ("status", None, None, None)),
    "unplaced without a reason": (lambda p: _unplace(p, "web06", reason="  "), ("coverage", "web06", None, None)),
    "placed and unplaced": (lambda p: dataclasses.replace(p, unplaced_reasons={"web01": "no room"}), ("coverage", "web01", "kvm1", None)),
    "placed on an unknown host": (lambda p: replace_placement(p, "web01", host="kvm9"), ("coverage", "web01", "kvm9", None)),
    "unknown guest placed": (
        lambda p: dataclasses.replace(p, placed={**p.placed, "ghost": dataclasses.replace(p.placed["web01"], guest="ghost")}),
        ("coverage", "ghost", "kvm1", None),
    ),
    "status partial with all placed": (lambda p: dataclasses.replace(p, status="partial"), ("status", None, None, None)),
    "status unknown": (lambda p: dataclasses.replace(p, status="done"), ("status", None, None, None)),
}

EXTRA_MUTATIONS = {
    "isolate sibling used by a shared vCPU": (lambda p: set_pin(p, "web07", 0, POOL2_KVM2 + (108,)), ("threads", "iso1", "kvm2", 2)),
    "isolate sibling used: the shared guest is told": (lambda p: set_pin(p, "web07", 0, POOL2_KVM2 + (108,)), ("cpus", "web07", "kvm2", 2)),
    "isolate sibling used by its own vCPU": (lambda p: set_pin(p, "iso1", 1, (108,)), ("threads", "iso1", "kvm2", 2)),
    "isolate sibling used by another dedicated guest": (
        lambda p: set_pin(p, "db2", 23, (109,)),
        ("threads", "iso1", "kvm2", 2),
    ),
    "isolate sibling used by an emulator": (lambda p: replace_placement(p, "web07", emulator_pins=(0, 72, 108)), ("threads", "iso1", "kvm2", 2)),
    "shared emulator on an idle sibling": (lambda p: replace_placement(p, "iso1", emulator_pins=POOL2_KVM2 + (109,)), ("emulator", "iso1", "kvm2", None)),
    "shared emulator on a dedicated CPU": (lambda p: replace_placement(p, "iso1", emulator_pins=POOL2_KVM2 + (1,)), ("emulator", "iso1", "kvm2", 0)),
    "shared emulator off the guest's nodes": (lambda p: replace_placement(p, "iso1", emulator_pins=parse_cpulist("7-17")), ("emulator", "iso1", "kvm2", None)),
    "emulator host on a host without reserved CPUs acts as shared": (
        lambda p: dataclasses.replace(
            replace_placement(p, "web07", emulator_pins=(0, 72)),
            scenario=scenario_of(list(p.scenario.guests), model=dataclasses.replace(guide_4n(), reserved_cpus=frozenset())),
        ),
        ("emulator", "web07", "kvm2", None),
    ),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_one_broken_rule_is_caught(name):
    mutate, expected = MUTATIONS[name]
    violations = check_plan(mutate(example_plan()))
    assert expected in keys(violations), f"{name}: expected {expected}, got {violations}"
    for v in violations:
        assert v.message and (v.host is None or v.host in v.message) and (v.guest is None or v.guest in v.message)
        assert v.node is None or f"node {v.node}" in v.message, v


@pytest.mark.parametrize("name", sorted(EXTRA_MUTATIONS))
def test_one_broken_rule_is_caught_isolate(name):
    mutate, expected = EXTRA_MUTATIONS[name]
    violations = check_plan(mutate(example_plan(extra=True)))
    assert expected in keys(violations), f"{name}: expected {expected}, got {violations}"


def test_overcommit_boundary_and_message():
    assert check_plan(_tiny_guests_plan(62)) == []  # 68 shared vCPUs = 8 x 8.5
    violations = check_plan(_tiny_guests_plan(63))
    assert [v.rule for v in violations] == ["overcommit"]
    assert violations[0].message == (
        "kvm1 node 0: shared pool 10-17,81-89 (8.5 cores) carries 69 shared vCPUs, above 8 x 8.5 = 68"
    )


def test_load_boundary_is_exact():
    # node 0: load 1.8 on 17 CPUs; a target of 1.8/17 is met exactly, a hair below is not
    assert check_plan(replace_policy(example_plan(), cpu_load_target=Fraction(18, 170))) == []
    violations = check_plan(replace_policy(example_plan(), cpu_load_target=Fraction(18, 170) - Fraction(1, 10**9)))
    assert keys(violations) == {("load", None, "kvm1", 0)}


def test_memory_boundary_is_exact():
    # kvm1 node 0 has 2GiB of 4K memory left: web01 may grow by exactly 2GiB, not a KiB more
    def grown(extra_kib):
        plan = replace_guest(example_plan(), "web01", memory_kib=4 * GiB + extra_kib)
        return replace_placement(plan, "web01", cells=(CellPlacement(0, 0, (0, 1), 4 * GiB + extra_kib),))

    assert check_plan(grown(2 * GiB)) == []
    assert keys(check_plan(grown(2 * GiB + 1))) == {("memory", None, "kvm1", 0)}


def test_only_the_broken_rule_for_clean_mutations():
    """Mutations that break exactly one thing report exactly that one violation."""
    cases = [
        (lambda p: replace_guest(p, "rt1", host="kvm2"), {("placement", "rt1", "kvm1", None)}),
        (lambda p: replace_policy(p, cpu_load_target=Fraction(1, 10)), {("load", None, "kvm1", 0)}),
        (lambda p: dataclasses.replace(p, status="partial"), {("status", None, None, None)}),
        (lambda p: replace_placement(p, "rt1", vcpu_pins=((7,), (8,), (79,), (80,))), {("threads", "rt1", "kvm1", 0)}),
        (lambda p: replace_placement(p, "web01", emulator_pins=(10, 11)), {("emulator", "web01", "kvm1", None)}),
        (lambda p: set_pin(p, "db1", 0, (0,)), {("cpus", "db1", "kvm1", 0)}),
    ]
    for mutate, expected in cases:
        assert keys(check_plan(mutate(example_plan()))) == expected


def test_isolate_emulator_serving_a_vcpu_message_names_both():
    violations = check_plan(replace_placement(example_plan(), "rt1", emulator_pins=(10,)))
    msgs = [v.message for v in violations if v.rule == "emulator" and v.guest == "rt1"]
    assert any("web01" in m and "CPU 10" in m for m in msgs), msgs


# ----------------------------------------------------------------------------------------------- independence
READERS = {"audit.py", "evaccheck.py"}  # the modules of planner.verify that read files (domain XML, plan.json)


def _imports(path: Path) -> set[str]:
    imported: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            imported.add(node.module or "")
    return imported


def test_checker_shares_no_code_with_the_solver():
    """Every module of planner.verify but the file readers imports only planner.model (and planner.verify itself),
    function-level imports included: no engine, no files, no ortools."""
    root = Path(__file__).resolve().parents[2] / "planner" / "verify"
    modules = sorted(p for p in root.rglob("*.py") if p.name not in READERS)
    names = {str(p.relative_to(root)) for p in modules}
    assert {"check.py", "usage.py", "violation.py", "rules/__init__.py", "rules/memory.py"} <= names, names
    for path in modules:
        imported = _imports(path)
        ours = {m for m in imported if m.split(".")[0] == "planner"}
        foreign = {m for m in ours if not m.startswith(("planner.model.", "planner.verify.")) or
                   m.startswith(tuple(f"planner.verify.{r[:-3]}" for r in READERS))}
        assert not foreign, (path.name, foreign)
        assert not any("ortools" in m for m in imported), path.name


# ----------------------------------------------------------------------------------------------- property test
def small_model(threads: int, cores_per_node: int, nodes: int) -> HostModel:
    n = threads * cores_per_node * nodes
    per_thread = n // threads
    cores = tuple(tuple(c + k * per_thread for k in range(threads)) for c in range(per_thread))
    node_list = []
    for i in range(nodes):
        first = [c for c in range(i * cores_per_node, (i + 1) * cores_per_node)]
        cpus = tuple(sorted(c + k * per_thread for c in first for k in range(threads)))
        node_list.append(Node(i, cpus, 4 * GiB))
    distances = tuple(tuple(10 if a == b else 20 for b in range(nodes)) for a in range(nodes))
    return HostModel("small", tuple(node_list), distances, cores, frozenset({0}), 256 * MiB)


def round_robin_plan(model: HostModel, hosts: int, specs: list[tuple[int, int, Fraction]], policy: Policy) -> Plan:
    """Shared guests (vcpus, memory MiB, load) placed round robin on the first node with room; the rest unplaced."""
    host_list = tuple(Host(f"h{i}", "small") for i in range(hosts))
    guests = tuple(Guest(f"g{i:03d}", v, m * MiB, load=ld) for i, (v, m, ld) in enumerate(specs))
    scenario = Scenario("prop", policy, {"small": model}, host_list, guests)
    pools = {n.id: tuple(c for c in n.cpus if c not in model.reserved_cpus) for n in model.nodes}
    pool_cores = {
        nid: sum((Fraction(1, len(model.core_of_cpu[c])) for c in pool), Fraction(0)) for nid, pool in pools.items()
    }
    used = {(h.name, n.id): [0, Fraction(0), 0] for h in host_list for n in model.nodes}
    host_vcpus = {h.name: 0 for h in host_list}
    placements, unplaced = {}, {}
    slots = [(h.name, n.id) for h in host_list for n in model.nodes]
    for i, g in enumerate(guests):
        for k in range(len(slots)):
            host, nid = slots[(i + k) % len(slots)]
            vc, load, mem = used[(host, nid)]
            node = model.node_by_id[nid]
            fits = (
                host_vcpus[host] + g.vcpus <= policy.cpu_overcommit_max * len(model.cores)
                and vc + g.vcpus <= policy.cpu_overcommit_max * pool_cores[nid]
                and load + g.vcpus * g.load <= policy.cpu_load_target * len(pools[nid])
                and mem + g.memory_kib <= model.free_4k_kib(node) * policy.memory_overcommit
            )
            if fits:
                used[(host, nid)] = [vc + g.vcpus, load + g.vcpus * g.load, mem + g.memory_kib]
                host_vcpus[host] += g.vcpus
                pins = pools[nid]
                placements[g.name] = GuestPlacement(
                    g.name, host, (CellPlacement(0, nid, tuple(range(g.vcpus)), g.memory_kib),), (pins,) * g.vcpus, (0,)
                )
                break
        else:
            unplaced[g.name] = "no node has room"
    status = "partial" if unplaced else "feasible"
    return Plan(scenario, status, placements, unplaced)


guest_specs = st.lists(
    st.tuples(
        st.integers(1, 4),
        st.integers(1, 1024),
        st.sampled_from([Fraction(1, 10), Fraction(3, 10), Fraction(1, 2), Fraction(1)]),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    threads=st.sampled_from([1, 2]),
    cores_per_node=st.integers(1, 4),
    nodes=st.integers(1, 3),
    hosts=st.integers(1, 3),
    specs=guest_specs,
    overcommit=st.sampled_from([Fraction(1), Fraction(2), Fraction(8)]),
    target=st.sampled_from([Fraction(1, 2), Fraction(7, 10), Fraction(1)]),
    extra_kind=st.sampled_from(["memory", "load"]),
)
def test_round_robin_plans_pass_and_one_more_guest_fails(threads, cores_per_node, nodes, hosts, specs, overcommit, target, extra_kind):
    model = small_model(threads, cores_per_node, nodes)
    policy = Policy(cpu_overcommit_max=overcommit, cpu_load_target=target)
    plan = round_robin_plan(model, hosts, specs, policy)
    assert check_plan(plan) == []

    # one more guest forced onto h0 node 0, just beyond what is left there
    usage = node_usage(plan)["h0"][0]
    if extra_kind == "memory":
        vcpus, load = 1, Fraction(1, 1000)
        memory = usage.memory_4k_free_kib + MiB
        expected = ("memory", None, "h0", 0)
        if (usage.shared_load + load > target * len(usage.pool_cpus)
                or usage.shared_vcpus + 1 > overcommit * usage.pool_cores):
            return  # node 0 is already full on CPU: the memory case is not isolated
    else:
        room = target * len(usage.pool_cpus) - usage.shared_load  # load still allowed
        vcpus, load = int(room) + 1, Fraction(1)
        memory = MiB
        expected = ("load", None, "h0", 0)
    extra = Guest("extra", vcpus, memory, load=load)
    pins = usage.pool_cpus
    scenario = dataclasses.replace(plan.scenario, guests=plan.scenario.guests + (extra,))
    placements = dict(plan.placed)
    placements["extra"] = GuestPlacement("extra", "h0", (CellPlacement(0, 0, tuple(range(vcpus)), memory),), (pins,) * vcpus, (0,))
    bad = Plan(scenario, plan.status, placements, plan.unplaced_reasons)
    assert expected in keys(check_plan(bad))


# ----------------------------------------------------------------------------------------------- speed
def test_large_fleet_checks_fast():
    """2,000 hosts and 60,000 guests (30 per host: 26 shared, 4 dedicated) check in a few seconds."""
    model = guide_4n(pages_1g=8)
    hosts = tuple(Host(f"kvm{i:04d}", model.name) for i in range(2000))
    guests: list[Guest] = []
    placements: dict[str, GuestPlacement] = {}
    web = Guest("w", 2, 512 * MiB, load=Fraction(3, 10))
    db = Guest("d", 6, 2 * GiB, cpu="dedicated", threads="prefer", hugepage_kib=G1)
    # per node: one dedicated guest on cores 1..3 (+ siblings) of the node, then shared guests on the rest
    pools, ded_pins = {}, {}
    for node in model.nodes:
        first = node.cpus[1] if node.id == 0 else node.cpus[0]
        cores = [first + k for k in range(3)]
        ded_pins[node.id] = tuple((c + 72 * j,) for c in cores for j in (0, 1))
        pools[node.id] = tuple(c for c in node.cpus if c not in model.reserved_cpus and (c % 72) not in cores)
    for h in hosts:
        for node in model.nodes:
            name = f"{h.name}-d{node.id}"
            guests.append(dataclasses.replace(db, name=name, hugepage_kib=G1 if node.hugepages else None))
            placements[name] = GuestPlacement(
                name, h.name, (CellPlacement(0, node.id, tuple(range(6)), 2 * GiB),), ded_pins[node.id], RESERVED
            )
        for k in range(26):
            nid = k % 4
            name = f"{h.name}-w{k:02d}"
            guests.append(dataclasses.replace(web, name=name))
            placements[name] = GuestPlacement(
                name, h.name, (CellPlacement(0, nid, (0, 1), 512 * MiB),), (pools[nid], pools[nid]), RESERVED
            )
    scenario = Scenario("big", Policy(), {model.name: model}, hosts, tuple(guests))
    plan = Plan(scenario, "feasible", placements, {})
    start = time.perf_counter()
    violations = check_plan(plan)
    elapsed = time.perf_counter() - start
    assert violations == []
    assert elapsed < 8, f"check_plan took {elapsed:.1f}s"


# ----------------------------------------------------------------------------------------------- robustness
cpu_ids = st.integers(0, 150)
pin_sets = st.lists(cpu_ids, max_size=4).map(lambda xs: tuple(sorted(set(xs))))


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    guest=st.sampled_from(["db1", "rt1", "web01", "web04"]),
    what=st.sampled_from(["pins", "emulator", "cells", "host"]),
)
def test_malformed_plans_give_violations_not_exceptions(data, guest, what):
    plan = example_plan()
    p = plan.placed[guest]
    if what == "pins":
        pins = data.draw(st.lists(pin_sets, min_size=0, max_size=len(p.vcpu_pins) + 2))
        bad = replace_placement(plan, guest, vcpu_pins=tuple(pins))
    elif what == "emulator":
        bad = replace_placement(plan, guest, emulator_pins=data.draw(pin_sets))
    elif what == "cells":
        cells = data.draw(
            st.lists(
                st.builds(
                    CellPlacement,
                    st.integers(-1, 3),
                    st.integers(-1, 5),
                    st.lists(st.integers(-2, 30), max_size=6).map(tuple),
                    st.integers(-1, 16 * GiB),
                ),
                max_size=4,
            )
        )
        bad = replace_placement(plan, guest, cells=tuple(cells))
    else:
        bad = replace_placement(plan, guest, host=data.draw(st.sampled_from(["kvm1", "kvm2", "nope"])))
    violations = check_plan(bad)
    assert all(v.rule in {"coverage", "cells", "cpus", "threads", "emulator", "overcommit", "load", "memory",
                          "hugepages", "placement", "status"} for v in violations)
    node_usage(bad)
