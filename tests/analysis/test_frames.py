"""Plan DataFrames (planner.analysis.frames via the Plan methods): columns as documented, values that add up."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from planner.analysis import frames
from planner.verify.check import node_usage as checker_usage
from planner.engine.solver import solve
from planner.model.units import parse_cpulist
from tests.builders import dedicated, host_model, scenario, shared

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny():
    """One host, 2 nodes x 8 CPUs (4 two-thread cores each), 16 GiB per node; a shared and a dedicated guest, and
    a dedicated guest too big for any node (unplaced)."""
    m = host_model(nodes=2, cpus_per_node=8, threads=2, memory_gib=16)
    sc = scenario([m], {"h1": "m"}, [
        shared("web", 4, memory_gib=2, load="0.5"),
        dedicated("db", 2, memory_gib=4),
        dedicated("huge", 2, memory_gib=40),
    ])
    return solve(sc, time_limit_s=5)


def test_columns_are_the_documented_ones(quickstart_plan):
    assert list(quickstart_plan.placements().columns) == list(frames.PLACEMENT_COLUMNS)
    assert list(quickstart_plan.unplaced().columns) == list(frames.UNPLACED_COLUMNS)
    assert list(quickstart_plan.summary().columns) == list(frames.SUMMARY_COLUMNS)
    sizes = ["hugepages_2M_pages", "hugepages_2M_used", "hugepages_2M_free",
             "hugepages_1G_pages", "hugepages_1G_used", "hugepages_1G_free"]
    nodes = list(quickstart_plan.node_usage().columns)
    assert nodes[-6:] == sizes and nodes[:-6] == [c for c in frames.NODE_COLUMNS if "<size>" not in c]
    hosts = list(quickstart_plan.host_usage().columns)
    assert hosts[-6:] == sizes and hosts[:-6] == [c for c in frames.HOST_COLUMNS if "<size>" not in c]


def test_every_column_is_documented_in_docs_api_md():
    text = (REPO / "docs" / "api.md").read_text()
    for table, columns in frames.COLUMNS.items():
        for column in columns:
            assert f"`{column}`" in text, f"docs/api.md does not document {table} column {column}"
        for column in columns:
            assert column in getattr(frames, table).__doc__


def test_placements_add_up_to_the_guests(quickstart_plan):
    sc = quickstart_plan.scenario
    df = quickstart_plan.placements()
    assert len(df) == sum(len(p.cells) for p in quickstart_plan.placed.values()) == 32  # big1 has two cells
    assert df["memory_kib"].sum() == sum(g.memory_kib for g in sc.guests) == 200704 * 1024
    assert df.groupby("guest")["vcpus"].sum().to_dict() == {g.name: g.vcpus for g in sc.guests}
    big1 = df[df["guest"] == "big1"]
    assert list(big1["cell"]) == [0, 1] and list(big1["vcpus"]) == [8, 8] and list(big1["memory_kib"]) == [12288 * 1024, 12288 * 1024]
    assert big1["node"].nunique() == 2 and list(big1["distance"]) == [10, 21]
    pages = df.set_index("guest")["page_size"]
    assert pages["db1"] == "1G" and pages["cache1"] == "2M" and pages["web01"] == "4K"
    for _, row in df[df["cpu"] == "dedicated"].iterrows():  # one pCPU per dedicated vCPU
        assert len(parse_cpulist(row["pcpus"])) == row["vcpus"]
        assert row["host"] == quickstart_plan.placed[row["guest"]].host
    assert df.loc[df["guest"] == "web01", "expected_load_cpus"].item() == pytest.approx(0.6)
    assert math.isnan(df.loc[df["guest"] == "db1", "load"].item())
    assert set(df.loc[df["guest"] == "ded1", "threads"]) == {"prefer"}


def test_node_usage_matches_the_checker(quickstart_plan):
    usage = checker_usage(quickstart_plan)
    df = quickstart_plan.node_usage()
    assert len(df) == 2 * 4 + 2 * 2  # every host, every node
    for _, row in df.iterrows():
        u = usage[row["host"]][row["node"]]
        assert row["pool_cpus"] == len(u.pool_cpus)
        assert parse_cpulist(row["pool_cpulist"]) == u.pool_cpus
        assert row["dedicated_cpus"] == len(u.dedicated_cpus)
        assert row["shared_vcpus"] == u.shared_vcpus
        assert row["memory_4k_used_kib"] == u.memory_4k_used_kib
        assert row["memory_4k_free_kib"] == u.memory_4k_free_kib
        assert row["hugepages_1G_used"] == u.hugepages_used.get(1048576, 0)
        assert row["hugepages_2M_free"] == u.hugepages_free.get(2048, 0)
        assert row["usable_cpus"] == row["dedicated_cpus"] + row["idle_cpus"] + row["emulator_cpus"] + row["pool_cpus"]
    kvm1_0 = df[(df["host"] == "kvm1") & (df["node"] == 0)].iloc[0]
    assert (kvm1_0["cpus"], kvm1_0["reserved_cpus"], kvm1_0["usable_cpus"]) == (36, 2, 34)
    assert kvm1_0["hugepages_1G_pages"] == 8 and kvm1_0["hugepages_capacity_kib"] == 8192 * 1024
    assert df["expected_load_cpus"].sum() == pytest.approx(26.4)  # web 7.2 + app 9.6 + dev 0.4 + cache 1.2 + big1 8
    assert df["hugepages_1G_used"].sum() == 16 and df["hugepages_2M_used"].sum() == 2048
    assert set(df.loc[~df["host_used"], "host"]) == {h.name for h in quickstart_plan.scenario.hosts} - set(quickstart_plan.hosts_used)


def test_tiny_plan_exact_values(tiny):
    nodes = tiny.node_usage()
    assert nodes["dedicated_cpus"].sum() == 2 and nodes["pool_cpus"].sum() == 14
    assert nodes["expected_load_cpus"].sum() == pytest.approx(2.0)
    assert nodes["load_capacity_cpus"].sum() == pytest.approx(0.7 * 14)
    assert nodes["memory_4k_used_kib"].sum() == 6 * 1024 * 1024
    host = tiny.host_usage().iloc[0]
    assert (host["guests"], host["vcpus"], host["physical_cores"], host["vcpu_cap"]) == (2, 6, 8, 64)
    assert host["host_vcpu_per_core"] == pytest.approx(6 / 8)
    # 2 dedicated CPUs + the shared load at the 70 % target: 2 + 2.0 / 0.7, wherever the guests went
    assert host["cpu_committed_cpus"] == pytest.approx(2 + 2 / 0.7)
    assert host["cpu_used_fraction"] == pytest.approx((2 + 2 / 0.7) / 16)
    assert host["memory_4k_capacity_kib"] == 32 * 1024**2 and host["memory_4k_free_kib"] == 26 * 1024**2
    un = tiny.unplaced()
    assert list(un["guest"]) == ["huge"]
    row = un.iloc[0]
    assert row["vcpus"] == 2 and row["memory_kib"] == 40 * 1024**2 and row["cpu"] == "dedicated"
    assert row["reason"] == tiny.unplaced_reasons["huge"] and row["reason"]
    assert un["numa"].isna().all()
    s = tiny.summary().iloc[0]
    assert (s["status"], s["guests"], s["placed"], s["unplaced"], s["hosts_used"]) == ("partial", 3, 2, 1, 1)
    assert s["memory_placed_kib"] == 6 * 1024**2 and s["vcpus_placed"] == 6 and s["dedicated_vcpus"] == 2


def test_summary_of_quickstart(quickstart_plan):
    s = quickstart_plan.summary()
    assert len(s) == 1
    s = s.iloc[0]
    assert (s["scenario"], s["guests"], s["placed"], s["unplaced"]) == ("quickstart", 31, 31, 0)
    assert s["hosts_used"] == len(quickstart_plan.hosts_used)
    assert (s["vcpus_placed"], s["dedicated_vcpus"], s["shared_vcpus"]) == (112, 40, 72)
    assert s["spanning_guests"] == 1 and s["numa_distance_cost"] == 21  # big1 over two nodes at distance 21
    hosts = quickstart_plan.host_usage()
    used = hosts[hosts["host_used"]]
    assert s["cpu_used_fraction"] == pytest.approx(used["cpu_committed_cpus"].sum() / used["usable_cpus"].sum())


def test_write(quickstart_plan, tmp_path):
    out = quickstart_plan.write(tmp_path / "out")
    doc = json.loads((out / "plan.json").read_text())
    assert doc["scenario"] == "quickstart" and doc["headline"]["placed"] == 31
    assert len(list((out / "hosts").rglob("*.xml"))) == 31
