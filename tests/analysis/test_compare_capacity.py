"""compare (moved guests in a constructed case), hosts_needed and growth_curve on scenarios sized by hand."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from planner.analysis import capacity

from planner.analysis import variants
from planner.verify.check import check_plan
from planner.analysis.compare import compare
from planner.model.plan import GuestPlacement, Plan
from planner.engine.solver import solve
from tests.builders import dedicated, host_model, scenario, shared

REPO = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------------------------- compare
@pytest.fixture(scope="module")
def two_hosts():
    """Two identical hosts (2 nodes x 8 CPUs, 16 GiB each); three small shared guests, all packed on one host."""
    m = host_model(nodes=2, cpus_per_node=8, threads=2, memory_gib=16)
    sc = scenario([m], {"h1": "m", "h2": "m"}, [shared(f"s{i}", 2, memory_gib=1, load="0.5") for i in (1, 2, 3)])
    return solve(sc, time_limit_s=5)


def _on_node(p: GuestPlacement, node: int, cpus: tuple[int, ...]) -> GuestPlacement:
    cells = tuple(replace(c, node_id=node) for c in p.cells)
    return replace(p, cells=cells, vcpu_pins=tuple(cpus for _ in p.vcpu_pins), emulator_pins=cpus)


def test_compare_finds_exactly_the_moved_guests(two_hosts):
    a = two_hosts
    assert len(a.hosts_used) == 1
    host = a.hosts_used[0]
    other = "h2" if host == "h1" else "h1"
    model = a.scenario.model_of(host)
    placed = dict(a.placed)
    placed["s1"] = replace(placed["s1"], host=other)  # same node and pins, on the other (identical) host
    node = 1 - placed["s2"].cells[0].node_id
    placed["s2"] = _on_node(placed["s2"], node, model.node_by_id[node].cpus)  # same host, the other node
    b = Plan(scenario=a.scenario, status="feasible", placed=placed, unplaced_reasons={})
    assert check_plan(b) == []  # B is a valid plan too
    result = compare(a, b, labels=("A", "B"))
    moved = result.moved.set_index("guest")
    assert sorted(moved.index) == ["s1", "s2"]
    assert moved.loc["s1", "change"] == "moved host" and moved.loc["s1", "host_b"] == other
    assert moved.loc["s2", "change"] == "moved node" and moved.loc["s2", "nodes_b"] == str(node)
    assert moved.loc["s2", "host_a"] == moved.loc["s2", "host_b"] == host
    assert len(result.guests) == 2  # s3 did not move
    summary = result.summary.set_index("figure")
    assert summary.loc["hosts_used", "a"] == 1 and summary.loc["hosts_used", "b"] == 2
    assert summary.loc["hosts_used", "change"] == 1
    cpus = result.utilisation.set_index("resource").loc["cpus"]
    assert cpus["capacity_a"] == 16 and cpus["capacity_b"] == 32
    assert cpus["used_a"] == pytest.approx(3 / 0.7) and cpus["used_b"] == pytest.approx(3 / 0.7)  # load 3.0 at 70 %
    text = str(result)
    assert "2 moved (1 to another host, 1 to other nodes of the same host)" in text
    assert f"only in B: {other}" in text


def test_compare_scenarios_added_removed_unplaced(two_hosts):
    sc = two_hosts.scenario
    b = variants.add_guests(variants.remove_guests(sc, "s3"), [shared("s4", 2, memory_gib=1, load="0.5"),
                                                                 dedicated("big", 2, memory_gib=40)])
    result = compare(sc, b, time_limit_s=5)
    changes = dict(zip(result.guests["guest"], result.guests["change"]))
    assert changes.get("s3") == "removed" and changes.get("s4") == "added" and changes.get("big") == "added"
    assert result.plan_b.status == "partial"
    assert result.summary.set_index("figure").loc["unplaced", "change"] == 1


# ----------------------------------------------------------------------------------------------- capacity
def fragmented(count: int):
    """Dedicated 3-vCPU guests on hosts of 2 nodes x 8 CPUs: a node holds two (6 CPUs; the 2 left cannot take a
    third, and numa: auto keeps a guest that fits one node on one node), so a host holds 4. By hand: 10 guests need
    ceil(10 / 4) = 3 hosts while the CPU totals say ceil(30 / 16) = 2."""
    m = host_model(nodes=2, cpus_per_node=8, threads=2, memory_gib=16)
    return scenario([m], {"h1": "m"}, [dedicated(f"d{i:02d}", 3, memory_gib=2) for i in range(count)])


def test_hosts_needed_by_hand():
    sc = fragmented(10)
    assert capacity.lower_bound(sc) == {"cpus": 2, "vcpu_cap": 1, "memory_4k": 1, "anti_affinity": 0}
    sizing = capacity.fewest_hosts(sc, time_limit_s=5)
    assert sizing.hosts == 3 and sizing.lower_bound == 2
    assert sizing.proven  # CP-SAT proves that 2 hosts place at most 8
    assert [a.hosts for a in sizing.attempts][0] == 2 and sizing.attempts[0].placed == 8
    assert len(sizing.plan.placed) == 10 and len(sizing.plan.hosts_used) == 3
    assert capacity.hosts_needed(sc) == 3
    assert capacity.hosts_needed(fragmented(8)) == 2


def test_hosts_needed_memory_and_anti_affinity():
    m = host_model(nodes=2, cpus_per_node=8, threads=2, memory_gib=16)
    # 10 GiB guests: one per 16 GiB node, two per host -> 5 guests need 3 hosts
    sc = scenario([m], {"h1": "m"}, [shared(f"m{i}", 1, memory_gib=10, load="0.1") for i in range(5)])
    assert capacity.hosts_needed(sc) == 3
    # four tiny guests sharing an anti-affinity tag: 4 hosts
    sc = scenario([m], {"h1": "m"}, [shared(f"a{i}", 1, memory_gib=1, load="0.1", anti_affinity=("x",)) for i in range(4)])
    assert capacity.hosts_needed(sc) == 4


def test_hosts_needed_cannot_fit():
    m = host_model(nodes=2, cpus_per_node=8, threads=2, memory_gib=16)
    sc = scenario([m], {"h1": "m"}, [dedicated("wide", 10, memory_gib=2, numa=1)])
    with pytest.raises(capacity.CannotFit, match="wide"):
        capacity.hosts_needed(sc)


def test_hosts_needed_quickstart_by_model():
    from planner.io.loader import load_scenario

    quick = load_scenario(REPO / "scenarios" / "quickstart.yaml")
    # two databases on 8 x 1G pages each, anti-affinity: two guide hosts, and 176 GiB of 4K memory needs two too
    assert capacity.hosts_needed(quick, "suse-guide-4n") == 2
    with pytest.raises(capacity.CannotFit, match="db1, db2"):  # sandybridge nodes have 4 x 1G pages at most
        capacity.hosts_needed(quick, "intel-sandybridge-2s")
    with pytest.raises(ValueError, match="say which model"):
        capacity.hosts_needed(quick)


def test_growth_curve():
    curve = capacity.growth_curve(fragmented(10), factors=(1.0, 1.5, 2.0))
    assert list(curve.columns) == list(capacity.GROWTH_COLUMNS)
    assert list(curve["guests"]) == [10, 15, 20]
    assert list(curve["hosts_needed"]) == [3, 4, 5]  # ceil(n / 4)
    assert list(curve["lower_bound_hosts"]) == [2, 3, 4]  # ceil(3n / 16)
    assert curve["proven"].all()
    assert curve.attrs["model"] == "m"
