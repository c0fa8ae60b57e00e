"""Variants: each returns a new scenario with exactly the change asked for, and leaves the original untouched."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import pytest

from planner.analysis import variants as v
from planner.io.loader import load_scenario
from planner.model.scenario import Guest

REPO = Path(__file__).resolve().parents[2]
GIB = 1024**2


@pytest.fixture(scope="module")
def quick():
    return load_scenario(REPO / "scenarios" / "quickstart.yaml")


def snapshot(sc):
    """Everything a variant could change, by value."""
    return (sc.name, sc.policy, tuple(sc.hosts), tuple(sc.guests),
            {k: (m.nodes, m.cores, m.reserved_cpus, tuple(tuple(dict(n.hugepages).items()) for n in m.nodes))
             for k, m in sc.host_models.items()})


@pytest.fixture(autouse=True)
def original_untouched(quick):
    before = snapshot(quick)
    yield
    assert snapshot(quick) == before


def test_read_flavours_and_flavour_guest():
    flavours = v.read_flavours()
    assert flavours["db-small"] == {"vcpus": 4, "memory": "8GiB", "cpu": "dedicated", "threads": "prefer",
                                    "hugepages": "1G"}
    g = v.flavour_guest("nfv-medium", "n1")
    assert (g.vcpus, g.memory_kib, g.threads, g.hugepage_kib, g.numa, g.emulator) == (
        8, 8 * GIB, "require", GIB, 1, "isolate")
    for name, spec in flavours.items():  # every flavour makes a valid guest
        assert v.flavour_guest(name, "x").vcpus == spec["vcpus"]


def test_add_guests_from_flavour(quick):
    sc = v.add_guests(quick, flavour="db-small", count=3, name="newdb[1-3]", anti_affinity="newdb", priority=4)
    assert sc is not quick and len(sc.guests) == 34 and sc.guests[:31] == quick.guests
    added = sc.guests[31:]
    assert [g.name for g in added] == ["newdb1", "newdb2", "newdb3"]
    for g in added:
        assert (g.vcpus, g.memory_kib, g.cpu, g.threads, g.hugepage_kib) == (4, 8 * GIB, "dedicated", "prefer", GIB)
        assert g.anti_affinity == ("newdb",) and g.priority == 4
    assert "newdb1" not in quick.guest_by_name
    default = v.add_guests(quick, flavour="medium", count=2)
    assert [g.name for g in default.guests[31:]] == ["medium-001", "medium-002"]
    fmt = v.add_guests(quick, flavour="tiny", count=2, name="t-{i:02d}", start=7)
    assert [g.name for g in fmt.guests[31:]] == ["t-07", "t-08"]
    assert fmt.guests[31].load == Fraction(1, 5)


def test_add_guests_objects_and_mappings(quick):
    sc = v.add_guests(quick, [Guest("g1", 2, 2 * GIB),
                              {"name": "kv[01-02]", "vcpus": 2, "memory": "1536MiB", "load": 0.3, "hugepages": "2M"}])
    assert [g.name for g in sc.guests[31:]] == ["g1", "kv01", "kv02"]
    kv = sc.guest_by_name["kv02"]
    assert (kv.memory_kib, kv.hugepage_kib, kv.load) == (1536 * 1024, 2048, Fraction(3, 10))
    with pytest.raises(ValueError, match="already used"):
        v.add_guests(quick, {"name": "WEB01", "vcpus": 1, "memory": "1GiB"})
    with pytest.raises(ValueError, match="whole number"):
        v.add_guests(quick, {"name": "odd", "vcpus": 1, "memory": "1536MiB", "hugepages": "1G"})
    with pytest.raises(ValueError, match="threads"):
        v.add_guests(quick, {"name": "bad", "vcpus": 1, "memory": "1GiB", "threads": "isolate"})


def test_remove_guests(quick):
    assert [g.name for g in v.remove_guests(quick, "web*").guests if g.name.startswith("web")] == []
    assert len(v.remove_guests(quick, "web*").guests) == 19
    sc = v.remove_guests(quick, ["db1", "app[01-03]"])
    assert len(sc.guests) == 27 and not {"db1", "app01", "app03"} & set(sc.guest_by_name)
    assert [g.name for g in v.remove_guests(quick, where=lambda g: g.dedicated).guests if g.dedicated] == []
    assert len(v.remove_guests(quick, lambda g: g.dedicated).guests) == 31 - 6
    with pytest.raises(KeyError):
        v.remove_guests(quick, "nosuch")


def test_scale_demand_by_count(quick):
    double = v.scale_demand(quick, 2)
    assert len(double.guests) == 62
    names = [g.name for g in double.guests]
    assert names[:2] == ["web01", "web01-s2"] and "db2-s2" in names
    copy, orig = double.guest_by_name["db1-s2"], quick.guest_by_name["db1"]
    assert replace(copy, name="db1") == orig and copy.anti_affinity == ("db",)
    new_tags = v.scale_demand(quick, 2, anti_affinity="new")
    assert new_tags.guest_by_name["db1-s2"].anti_affinity == ("db-s2",)
    one_half = v.scale_demand(quick, 1.5)
    assert len(one_half.guests) == 46  # floor(1.5 x 31)
    assert sum(g.name.startswith("web") for g in one_half.guests) == 18  # 12 web -> 18
    half = v.scale_demand(quick, 0.5)
    assert len(half.guests) == 15 and sum(g.name.startswith("web") for g in half.guests) == 6
    fixed = replace(quick, guests=tuple(replace(g, host="kvm1") if g.name == "dev1" else g for g in quick.guests))
    assert v.scale_demand(fixed, 2).guest_by_name["dev1-s2"].host is None  # a copy is a new guest
    only_web = v.scale_demand(quick, 3, where=lambda g: g.name.startswith("web"))
    assert len(only_web.guests) == 31 + 24


def test_scale_demand_by_size_and_load(quick):
    big = v.scale_demand(quick, 1.5, by="size")
    assert [g.name for g in big.guests] == [g.name for g in quick.guests]
    web = big.guest_by_name["web01"]
    assert (web.vcpus, web.memory_kib) == (3, 6 * GIB)
    rt = big.guest_by_name["rt1"]
    assert rt.vcpus == 6 and rt.threads == "require"  # 4 x 1.5 = 6, even
    dev = big.guest_by_name["dev1"]
    assert (dev.vcpus, dev.memory_kib) == (2, 3 * GIB)  # ceil(1.5), 2 GiB x 1.5
    db = big.guest_by_name["db1"]
    assert (db.vcpus, db.memory_kib, db.hugepage_kib) == (12, 12 * GIB, GIB)
    rt_odd = v.scale_demand(quick, 1.25, by="size").guest_by_name["rt1"]
    assert rt_odd.vcpus == 6  # ceil(5) rounded up to even
    busy = v.scale_demand(quick, 3, by="load")
    assert busy.guest_by_name["web01"].load == Fraction(9, 10)
    assert busy.guest_by_name["big1"].load == 1  # 0.5 x 3 capped at 1.0
    assert busy.guest_by_name["db1"] == quick.guest_by_name["db1"]


def test_swap_host_model(quick):
    sc = v.swap_host_model(quick, "amd-nps4", hosts="sb*")
    assert [(h.name, h.model) for h in sc.hosts] == [("kvm1", "suse-guide-4n"), ("kvm2", "suse-guide-4n"),
                                                     ("sb1", "amd-nps4"), ("sb2", "amd-nps4")]
    nps4 = sc.host_models["amd-nps4"]
    assert len(nps4.nodes) == 8 and nps4.cpu_count == 256 and nps4.reserved_cpus == {0, 128}
    assert "amd-nps4" not in quick.host_models
    same = v.swap_host_model(quick, "suse-guide-4n")  # a model of the scenario
    assert {h.model for h in same.hosts} == {"suse-guide-4n"}
    assert same.host_models["suse-guide-4n"] is quick.host_models["suse-guide-4n"]


def test_with_hosts(quick):
    sc = v.with_hosts(quick, "intel-xeon-e7-4870-8s", 12)
    assert [h.name for h in sc.hosts][:2] == ["intel-xeon-e7-4870-8s-01", "intel-xeon-e7-4870-8s-02"]
    assert len(sc.hosts) == 12 and set(sc.host_models) == {"intel-xeon-e7-4870-8s"}
    assert sc.guests == quick.guests


def test_set_policy(quick):
    sc = v.set_policy(quick, cpu_load_target=0.5, objective="spread", time_limit="2m")
    assert sc.policy.cpu_load_target == Fraction(1, 2) and sc.policy.objective == "spread"
    assert sc.policy.time_limit_s == 120 and sc.policy.cpu_overcommit_max == 8
    assert quick.policy.cpu_load_target == Fraction(7, 10)
    with pytest.raises(ValueError):
        v.set_policy(quick, cpu_overcommit_max=9)
    with pytest.raises(ValueError):
        v.set_policy(quick, nosuch=1)
    auto = v.add_guests(quick, {"name": "sized", "vcpus": "auto", "cpu_demand": 1.4, "memory": "2GiB"})
    assert auto.guest_by_name["sized"].vcpus == 2  # ceil(1.4 / 0.7)
    assert v.set_policy(auto, cpu_load_target=0.5).guest_by_name["sized"].vcpus == 3  # ceil(1.4 / 0.5)


def test_switch_page_size_to_2m(quick):
    sc = v.switch_page_size(quick, "2M")
    db = sc.guest_by_name["db1"]
    assert (db.hugepage_kib, db.memory_kib) == (2048, 8 * GIB)
    assert sc.guest_by_name["web01"] == quick.guest_by_name["web01"]  # 4K guests untouched
    guide, sb = sc.host_models["suse-guide-4n"], sc.host_models["intel-sandybridge-2s"]
    assert [dict(n.hugepages) for n in guide.nodes] == [{2048: 4096}, {2048: 4096}, {2048: 2048}, {2048: 2048}]
    assert [dict(n.hugepages) for n in sb.nodes] == [{2048: 2048}, {2048: 1024}]
    for key, model in sc.host_models.items():  # the same memory stays in hugepages
        old = quick.host_models[key]
        assert [model.free_4k_kib(n) for n in model.nodes] == [old.free_4k_kib(n) for n in old.nodes]


def test_switch_page_size_to_1g_rounds_up(quick):
    with_kv = v.add_guests(quick, {"name": "kv1", "vcpus": 1, "memory": "1536MiB", "load": 0.2, "hugepages": "2M"})
    sc = v.switch_page_size(with_kv, "1G")
    assert (sc.guest_by_name["cache1"].hugepage_kib, sc.guest_by_name["cache1"].memory_kib) == (GIB, 2 * GIB)
    assert (sc.guest_by_name["kv1"].hugepage_kib, sc.guest_by_name["kv1"].memory_kib) == (GIB, 2 * GIB)
    assert [dict(n.hugepages) for n in sc.host_models["suse-guide-4n"].nodes] == [{GIB: 8}, {GIB: 8}, {GIB: 4}, {GIB: 4}]
    only = v.switch_page_size(with_kv, "1G", from_page="2M", where=lambda g: g.name == "kv1")
    assert only.guest_by_name["kv1"].hugepage_kib == GIB and only.guest_by_name["cache1"].hugepage_kib == 2048


def test_smt_off(quick):
    sc = v.smt_off(quick)
    guide = sc.host_models["suse-guide-4n"]
    assert guide.cpu_count == 72 and all(len(core) == 1 for core in guide.cores)
    assert guide.nodes[0].cpus == tuple(range(0, 18)) and guide.nodes[3].cpus == tuple(range(54, 72))
    assert guide.reserved_cpus == {0}
    assert sc.host_models["intel-sandybridge-2s"].cpu_count == 12
    assert quick.host_models["suse-guide-4n"].cpu_count == 144
    assert sc.guest_by_name["rt1"].threads == "isolate"  # no sibling pairs left
    assert sc.guest_by_name["iso1"].threads == "isolate" and sc.guest_by_name["ded1"].threads == "prefer"
    kept = v.smt_off(quick, require="keep")
    assert kept.guest_by_name["rt1"].threads == "require"
    partial = v.smt_off(quick, models=["intel-sandybridge-2s"])  # the guide hosts keep SMT: rt1 unchanged
    assert partial.guest_by_name["rt1"].threads == "require"
    assert partial.host_models["suse-guide-4n"] is quick.host_models["suse-guide-4n"]


def test_variants_solve_and_pass_the_checker(quick):
    from planner.engine.solver import solve

    for sc in (v.smt_off(quick), v.switch_page_size(quick, "2M"), v.switch_page_size(quick, "1G")):
        plan = solve(sc, time_limit_s=5)  # solve() raises PlanBug on any breach of a hard rule
        assert not plan.unplaced_reasons


def test_set_policy_takes_the_newer_policy_keys():
    from planner.analysis.variants import set_policy

    base = load_scenario(REPO / "scenarios" / "quickstart.yaml")
    sc = set_policy(base, survive={"racks": 1}, stall="5s", anti_affinity_scope="rack")
    assert (sc.policy.survive_hosts, sc.policy.survive_racks, sc.policy.stall_s) == (0, 1, 5.0)
    assert sc.policy.anti_affinity_scope == "rack"
    assert set_policy(sc, survive=None).policy.survive_racks == 0
    iso = set_policy(base, tenant_isolation="node", page_sharing=False).policy
    assert (iso.tenant_isolation, iso.page_sharing) == ("node", False)
    for bad in ({"survive": {"hosts": 2}}, {"survive": {"disks": 1}}, {"anti_affinity_scope": "row"},
                {"tenant_isolation": "rack"}, {"page_sharing": "no"}):
        with pytest.raises(ValueError):
            set_policy(base, **bad)


# ------------------------------------------------------------------------------------------------ one guest parser


def test_guest_from_spec_is_the_loaders_guest_parser(quick):
    """Every flavour, and guests with every kind of key, give the very Guest a scenario file gives."""
    import yaml

    from planner.io.loader import load_scenario_text

    specs = [{"name": f"f-{name}", **spec} for name, spec in v.read_flavours().items()]
    specs += [{"name": "auto1", "vcpus": "auto", "cpu_demand": 1.4, "memory": "2GiB", "anti_affinity": ["a", "a"]},
              {"name": "cells1", "cpu": "dedicated", "threads": "require", "hugepages": "1G",
               "numa": [{"vcpus": 2, "memory": "2GiB"}, {"vcpus": 4, "memory": "6GiB"}], "tenant": "t1"},
              {"name": "fixed1", "vcpus": 2, "memory": "1GiB", "host": "kvm01", "priority": 3, "emulator": "shared"}]
    text = yaml.safe_dump({"version": 1, "name": "one-parser", "policy": {"cpu_load_target": 0.7},
                           "host_models": {"m": {"include": str(REPO / "models" / "hosts" / "amd-nps4.yaml")}},
                           "hosts": [{"name": "kvm01", "model": "m"}], "guests": specs})
    loaded = load_scenario_text(text, filename="one.yaml")
    assert len(specs) > 20
    for spec, guest in zip(specs, loaded.guests, strict=True):
        assert v.guest_from_spec(spec, loaded.policy) == guest
    assert loaded.guest_by_name["auto1"].vcpus == 2 and loaded.guest_by_name["auto1"].anti_affinity == ("a",)


def test_guest_from_spec_speaks_the_loaders_messages():
    with pytest.raises(ValueError) as info:
        v.guest_from_spec({"name": "w1", "vcpus": 0, "memmory": "1GiB", "cpu": "shared", "threads": "isolate"})
    assert str(info.value).split("; ") == [
        ("guest w1: memmory: unknown key (did you mean 'memory'? known keys: name, vcpus, memory, cpu, threads, "
         "load, cpu_demand, hugepages, numa, memory_mode, emulator, anti_affinity, priority, host, domain, "
         "anti_affinity_scope, tenant, page_sharing)"),
        "guest w1: memory: required key is missing",
        "guest w1: vcpus: 0 is out of range (must be >= 1)",
        "guest w1: threads: only a dedicated guest has threads (this guest is cpu: shared)",
    ]
    # Python-made specs: GuestCell items, a page size in KiB, keys set to None (left out)
    from planner.model.scenario import GuestCell

    g = v.guest_from_spec({"name": "c", "numa": [GuestCell(1, GIB), GuestCell(1, GIB)], "hugepages": 2048,
                           "host": None, "tenant": None})
    assert (g.vcpus, g.memory_kib, g.hugepage_kib, g.numa, g.host) == (2, 2 * GIB, 2048, 2, None)


def test_the_catalogue_is_read_once_per_file_version(tmp_path, monkeypatch):
    from planner.files import safeio

    reads: list[str] = []
    real = safeio.read_input_text
    monkeypatch.setattr(safeio, "read_input_text", lambda path, limit: reads.append(path) or real(path, limit))
    catalogue = tmp_path / "flavours.yaml"
    catalogue.write_text("flavours:\n  one: {vcpus: 1, memory: 1GiB}\n")
    first = v.read_flavours(catalogue)
    first["one"]["vcpus"] = 99  # a copy: the cache is not changed through it
    assert v.read_flavours(catalogue) == {"one": {"vcpus": 1, "memory": "1GiB"}}
    assert len(reads) == 1
    catalogue.write_text("flavours:\n  one: {vcpus: 2, memory: 1GiB}\n  two: {vcpus: 1, memory: 2GiB}\n")
    assert list(v.read_flavours(catalogue)) == ["one", "two"] and len(reads) == 2  # a new version: read again
    assert v.catalogue_model("amd-nps4") is v.catalogue_model("amd-nps4")  # one load per catalogue model


@pytest.mark.parametrize("key, value", [("cpu_overcommit_max", 9), ("cpu_load_target", 0), ("memory_overcommit", 0.5),
                                        ("node_memory_target", 1.5)])
def test_set_policy_ranges_are_the_scenario_files(key, value):
    """set_policy judges numbers by the scenario schema's own fields: the same words as the loader's message."""
    from planner.io.loader import ScenarioError, load_scenario_text
    from planner.analysis.variants import set_policy

    sc = load_scenario(REPO / "scenarios" / "quickstart.yaml")
    with pytest.raises(ValueError) as api:
        set_policy(sc, **{key: value})
    import yaml

    doc = yaml.safe_load((REPO / "scenarios" / "quickstart.yaml").read_text())
    doc["policy"][key] = value
    text = yaml.safe_dump(doc, sort_keys=False)
    with pytest.raises(ScenarioError) as file:
        load_scenario_text(text, "q.yaml", base_dir=str(REPO / "scenarios"))
    said = [p for p in file.value.problems if f"policy.{key}:" in p]
    assert said and said[0].endswith(str(api.value).removeprefix(f"{key} ")), (said, str(api.value))
