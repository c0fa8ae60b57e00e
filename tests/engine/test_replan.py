"""Fast re-plans keep unchanged guests where they were and place only what changed."""

from __future__ import annotations

import dataclasses

from planner.verify.check import check_plan
from planner.engine.replan import replan
from planner.engine.solver import solve
from tests.builders import dedicated, host_model, scenario, shared


def base():
    model = host_model(nodes=2, cpus_per_node=16, memory_gib=32, reserved=(0, 16), reserved_gib=1)
    guests = [shared(f"web{i:02d}", 2, 4, load="0.3") for i in range(20)] + [dedicated(f"db{i}", 4, 8) for i in range(4)]
    return scenario([model], {f"h{i}": "m" for i in range(4)}, guests, time_limit_s=10)


def test_replan_keeps_unchanged_guests_and_places_new_ones():
    sc = base()
    before = solve(sc, workers=1)
    guests = [g for g in sc.guests if g.name != "web03"] + [shared("api1", 2, 4, load="0.3")]
    after = replan(dataclasses.replace(sc, guests=tuple(guests)), before, workers=1)
    assert check_plan(after) == []
    assert after.stats.quick_replan.moved == 0
    assert after.stats.quick_replan.kept == len(sc.guests) - 1
    assert after.stats.quick_replan.new == 1
    assert "api1" in after.placed and "web03" not in after.placed
    for name, p in after.placed.items():
        if name in before.placed:
            assert (p.host, p.nodes) == (before.placed[name].host, before.placed[name].nodes)


def test_changed_guest_is_placed_again_and_the_rest_stay():
    sc = base()
    before = solve(sc, workers=1)
    bigger = dataclasses.replace(sc.guest_by_name["db1"], memory_kib=12 * 1024**2)
    guests = [bigger if g.name == "db1" else g for g in sc.guests]
    after = replan(dataclasses.replace(sc, guests=tuple(guests)), before, workers=1)
    assert after.stats.quick_replan.kept == len(sc.guests) - 1
    assert check_plan(after) == []
    assert after.placed["db1"].cells[0].memory_kib + sum(c.memory_kib for c in after.placed["db1"].cells[1:]) == 12 * 1024**2


def test_guests_of_a_removed_host_move_and_are_counted():
    sc = base()
    before = solve(sc, workers=1)
    used = before.hosts_used[0]
    on_it = {p.guest for p in before.guests_on(used)}
    hosts = tuple(h for h in sc.hosts if h.name != used)
    after = replan(dataclasses.replace(sc, hosts=hosts), before, workers=1)
    assert check_plan(after) == []
    assert after.stats.quick_replan.moved == len(on_it)
    assert set(after.placed) == {g.name for g in sc.guests}
