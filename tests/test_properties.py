"""Property tests across every method on small random fleets (tests/strategies.py).

For each fleet: greedy, patterns, direct, auto and a re-plan each return a plan the checker accepts, with a
non-empty reason for every unplaced guest and no exception (strict mode: a failing phase raises); auto never
places less (Σ priority) than greedy, nor uses more hosts when it places as much; every reported bound is at most
the fleet, its own plan's hosts, and the hosts of every plan found that places every guest."""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.verify.check import check_evacuations, check_plan
from planner.engine.replan import replan
from planner.engine.solver import solve
from planner.files.planfile import solver_document
from tests.strategies import fleets

METHODS = ("greedy", "patterns", "direct", "auto")


def _placed_priority(plan) -> int:
    return sum(plan.scenario.guest_by_name[g].priority for g in plan.placed)


def _assert_sound(plan) -> None:
    assert check_plan(plan) == []
    assert check_evacuations(plan) == []
    for name, reason in plan.unplaced_reasons.items():
        assert reason.strip(), name
    extra = solver_document(plan.stats)  # the figures as plan.json has them
    bound = extra.get("bound_hosts", 0)
    assert bound <= len(plan.scenario.hosts)
    assert bound <= len(plan.hosts_used) or not plan.placed and bound == 0
    for kind, value in extra.get("bounds", {}).items():
        if kind != "lp_value":
            assert value <= len(plan.scenario.hosts), kind


@settings(max_examples=int(__import__("os").environ.get("VPLAN_PROPERTY_EXAMPLES", "100")), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(fleet=fleets(), data=st.data())
def test_every_method_gives_a_checked_plan(fleet, data):
    _text, scenario = fleet
    plans = {}
    for method in METHODS:
        plan = solve(scenario, time_limit_s=1, method=method, workers=1, seed=0)
        _assert_sound(plan)
        plans[method] = plan
    greedy, auto = plans["greedy"], plans["auto"]
    assert _placed_priority(auto) >= _placed_priority(greedy)
    if _placed_priority(auto) == _placed_priority(greedy) and scenario.policy.objective == "pack":
        assert len(auto.hosts_used) <= len(greedy.hosts_used)
    complete = [len(p.hosts_used) for p in plans.values() if not p.unplaced_reasons]
    for plan in plans.values():
        for hosts in complete:
            assert solver_document(plan.stats).get("bound_hosts", 0) <= hosts
    # a re-plan from the greedy plan after a change: one guest dropped, one changed, one added
    guests = list(scenario.guests)
    drop = data.draw(st.integers(0, len(guests) - 1))
    changed = [g for i, g in enumerate(guests) if i != drop]
    if changed:
        changed[0] = dataclasses.replace(changed[0], memory_kib=changed[0].memory_kib + (changed[0].hugepage_kib or 1024),
                                         numa_cells=())  # (listed cells become an even split of the new size)
    new = dataclasses.replace(guests[drop], name="new-guest", host=None, anti_affinity=())
    after = dataclasses.replace(scenario, guests=tuple(changed + [new]))
    plan = replan(after, greedy, time_limit_s=1, workers=1)
    _assert_sound(plan)
