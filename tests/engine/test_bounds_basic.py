"""Bounds are bounds: no penalty terms, never above the fleet or a plan found, each kept with its kind, said in words."""

from __future__ import annotations

import json

import pytest

from planner.verify.check import check_plan
from planner.engine.solver import solve
from planner.files.planfile import solver_document
from tests.builders import host_model, scenario, shared


def _one_node(hosts: int):
    model = host_model("m", nodes=1, cpus_per_node=4, threads=1, memory_gib=8)
    return model, {f"h{i}": "m" for i in range(1, hosts + 1)}


@pytest.mark.parametrize("method", ["auto", "patterns", "direct", "greedy"])
def test_never_fitting_guest_adds_no_penalty_to_the_bound(method):
    model, hosts = _one_node(1)
    plan = solve(scenario([model], hosts, [shared("g", 2, 20, priority=7)]), time_limit_s=2, method=method)
    extra = solver_document(plan.stats)  # the figures as plan.json has them
    assert extra["bound_hosts"] <= 0 == len(plan.hosts_used)  # the "lower bound 14 by pattern_lp"
    assert all(v <= 1 for k, v in extra["bounds"].items() if k != "lp_value")
    assert extra.get("pattern_lp") in (None, 0, 0.0)


@pytest.mark.parametrize("method", ["auto", "patterns"])
def test_bound_never_above_the_fleet_or_a_plan_found(method):
    model, hosts = _one_node(2)
    plan = solve(scenario([model], hosts, [shared("g", 2, 20, priority=7), shared("a", 2, 2)]), time_limit_s=2, method=method)
    assert plan.stats.bound.hosts <= len(plan.hosts_used) == 1  # was 16
    model, hosts = _one_node(1)
    plan = solve(scenario([model], hosts, [shared(f"a{i}", 2, 3) for i in range(5)]), time_limit_s=2, method=method)
    assert plan.status == "partial"
    extra = solver_document(plan.stats)  # the figures as plan.json has them
    assert extra["bound_hosts"] <= 1 and all(v <= 1 for k, v in extra["bounds"].items() if k != "lp_value")
    assert "placing every guest would take at least" in extra["bound_text"]


def test_bound_kept_with_its_kind_and_said_in_words(tmp_path):
    small = host_model("small", nodes=2, cpus_per_node=16, memory_gib=8)
    big = host_model("big", nodes=2, cpus_per_node=16, memory_gib=32)
    hosts = {"s1": "small", "s2": "small", "b1": "big", "b2": "big", "b3": "big"}
    guests = [shared(f"g{i:02d}", 1, 15, load="0.1") for i in range(8)]  # 120 GiB: memory binds, on big hosts
    plan = solve(scenario([small, big], hosts, guests), time_limit_s=3)
    assert check_plan(plan) == []
    extra = solver_document(plan.stats)  # the figures as plan.json has them
    assert extra["bound_binding"] in ("memory_4k", "lp", "pattern_lp")
    assert extra["bounds"]["memory_4k"] == 2
    assert extra["bound_hosts"] <= len(plan.hosts_used)
    if extra["bound_binding"] == "memory_4k":
        assert extra["bound_text"] == f"4K memory of big hosts binds: at least {extra['bound_hosts']} hosts"
    plan.write(tmp_path / "out")
    solver = json.loads((tmp_path / "out" / "plan.json").read_text())["solver"]
    assert solver["bounds"]["memory_4k"] == 2 and solver["bound_binding"] == extra["bound_binding"]
    assert f"binds: at least {extra['bound_hosts']} hosts" in solver["bound_text"]


def test_lp_bound_names_the_tightest_resource():
    from planner.engine.bounds import lower_bounds
    from planner.engine.problem import compile_problem

    small = host_model("small", nodes=2, cpus_per_node=16, memory_gib=8)
    big = host_model("big", nodes=2, cpus_per_node=16, memory_gib=32)
    hosts = {"s1": "small", "b1": "big", "b2": "big", "b3": "big"}
    guests = [shared(f"g{i:02d}", 1, 15, load="0.1") for i in range(8)]
    bounds = lower_bounds(compile_problem(scenario([small, big], hosts, guests)))
    assert bounds.all_bounds["memory_4k"] == 2 and bounds.all_bounds["lp"] == 2
    assert bounds.binding == "memory_4k"  # on a tie the concrete resource is named
    assert bounds.text == "4K memory of big hosts binds: at least 2 hosts"
    from planner.engine.bounds import describe

    text = describe(compile_problem(scenario([small, big], hosts, guests)), "lp", 3, bounds.all_bounds)
    assert text == ("the LP relaxation of the node-shaped packing binds: at least 3 hosts "
                    "(tightest resource alone: 4K memory of big hosts, at least 2 hosts)")
