"""`vplan check` (planner.verify.audit): deployed domain XML audited with planner.verify.check.

The XML that `vplan solve` writes for scenarios/quickstart.yaml must give no finding; a hand-broken copy per rule
must give exactly that rule's finding, for the guest (or host node) broken."""

from __future__ import annotations

import json
import shutil
from fractions import Fraction
from pathlib import Path

import pytest
import yaml
from lxml import etree

from planner.verify.audit import AuditInputError, audit, read_domains, read_loads
from planner.io.loader import load_scenario
from planner.model.scenario import Scenario
from planner.model.units import format_cpulist, parse_cpulist
from tests.conftest import vplan

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "scenarios" / "quickstart.yaml"
G = 1024 * 1024


@pytest.fixture(scope="module")
def solved(tmp_path_factory) -> Path:
    """`vplan solve scenarios/quickstart.yaml -o OUT` (once per module)."""
    from planner.analysis.output import write_plan
    from planner.engine.solver import solve

    out = tmp_path_factory.mktemp("qs") / "out"
    plan = solve(load_scenario(QUICKSTART), time_limit_s=20, seed=0)
    assert not plan.unplaced_reasons
    write_plan(plan, out)
    return out


@pytest.fixture(scope="module")
def scenario():
    return load_scenario(QUICKSTART)


@pytest.fixture
def copy(solved, tmp_path) -> Path:
    target = tmp_path / "out"
    shutil.copytree(solved, target)
    return target


def doc(out: Path) -> dict:
    return json.loads((out / "plan.json").read_text())


def xml_of(out: Path, guest: str) -> Path:
    return out / doc(out)["guests"][guest]["xml"]


def edit(path: Path, change) -> None:
    tree = etree.parse(str(path))
    change(tree.getroot())
    tree.write(str(path))


def run_audit(out: Path, scenario, loads=None):
    return audit(scenario, read_domains([str(out)]), loads)


# ------------------------------------------------------------------------------------------------ clean


def test_solve_output_is_clean(solved, scenario):
    result = run_audit(solved, scenario)
    assert result.findings == [], result.text()
    assert len(result.plan.placed) == 31


def test_solve_output_is_clean_without_guest_attributes(solved, scenario):
    """Only the hosts: cpu mode, threads require and the emulator policy are inferred from the XML."""
    hosts_only = Scenario(name="h", policy=scenario.policy, host_models=scenario.host_models, hosts=scenario.hosts,
                          guests=())
    result = run_audit(solved, hosts_only)
    assert result.findings == [], result.text()
    guests = result.scenario.guest_by_name
    assert guests["rt1"].threads == "require" and guests["rt1"].emulator == "isolate"
    assert guests["db1"].cpu == "dedicated" and guests["web01"].cpu == "shared" and guests["web01"].emulator == "host"


def test_cli_clean_exit_0_text_and_json(solved):
    result = vplan("check", str(QUICKSTART), "--domains", str(solved))
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "31 guests on 2 hosts: no findings" in result.stdout
    result = vplan("check", str(QUICKSTART), "--domains", str(solved), "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["clean"] is True and data["findings"] == [] and data["guests"]["big1"]["nodes"] == [0, 1]


# ------------------------------------------------------------------------------------------------ one breach per rule


def _pins(root) -> dict[int, str]:
    return {int(p.get("vcpu")): p.get("cpuset") for p in root.findall("cputune/vcpupin")}


def _set_pin(root, vcpu: int, cpuset: str) -> None:
    for p in root.findall("cputune/vcpupin"):
        if int(p.get("vcpu")) == vcpu:
            p.set("cpuset", cpuset)


def _set_memory(root, kib: int) -> None:
    for tag in ("memory", "currentMemory"):
        root.find(tag).text = str(kib)
        root.find(tag).set("unit", "KiB")
    cells = root.findall("cpu/numa/cell")
    assert len(cells) == 1
    cells[0].set("memory", str(kib))


def _sibling(scenario, host: str, cpu: int) -> int:
    model = scenario.model_of(host)
    return next(c for c in model.core_of_cpu[cpu] if c != cpu)


def _node_usage(out: Path, guest: str) -> tuple[str, str, dict]:
    d = doc(out)
    g = d["guests"][guest]
    node = str(g["nodes"][0])
    return g["host"], node, d["hosts"][g["host"]]["nodes"][node]


def _add_hog(out: Path, like: str, name: str, vcpus: int) -> tuple[str, int]:
    """A shared guest `name` on the node of `like` with `vcpus` vCPUs and 1 GiB (a copy of like's XML)."""
    source = xml_of(out, like)
    root = etree.parse(str(source)).getroot()
    root.find("name").text = name
    root.find("vcpu").text = str(vcpus)
    pool = root.find("cputune/vcpupin").get("cpuset")
    tune = root.find("cputune")
    for p in tune.findall("vcpupin"):
        tune.remove(p)
    for v in range(vcpus):
        pin = etree.Element("vcpupin", vcpu=str(v), cpuset=pool)
        tune.insert(v, pin)
    root.find("cpu/topology").set("cores", str(vcpus))
    root.find("cpu/topology").set("sockets", "1")
    root.find("cpu/numa/cell").set("cpus", f"0-{vcpus - 1}")
    _set_memory(root, G)
    (source.parent / f"{name}.xml").write_bytes(etree.tostring(root))
    host = doc(out)["guests"][like]["host"]
    return host, doc(out)["guests"][like]["nodes"][0]


def break_cells(out, sc):
    def change(root):
        cell = root.findall("cpu/numa/cell")[1]
        cell.set("memory", str(int(cell.get("memory")) - G))
    edit(xml_of(out, "big1"), change)
    return "big1", None


def break_cpus_reserved(out, sc):
    host = doc(out)["guests"]["web01"]["host"]
    reserved = sorted(sc.model_of(host).reserved_cpus)[0]
    edit(xml_of(out, "web01"), lambda root: _set_pin(root, 0, str(reserved)))
    return "web01", None


def break_cpus_missing(out, sc):
    edit(xml_of(out, "dev1"), lambda root: _set_pin(root, 0, "500"))
    return "dev1", None


def break_cpus_dedicated_shared(out, sc):
    def change(root):
        pins = _pins(root)
        _set_pin(root, 1, pins[0])
    edit(xml_of(out, "ded1"), change)
    return "ded1", None


def break_cpus_unpinned(out, sc):
    def change(root):
        tune = root.find("cputune")
        for p in tune.findall("vcpupin"):
            tune.remove(p)
    edit(xml_of(out, "app01"), change)
    return "app01", None


def break_threads_isolate(out, sc):
    host = doc(out)["guests"]["iso1"]["host"]

    def change(root):
        pins = _pins(root)
        _set_pin(root, 1, str(_sibling(sc, host, int(pins[0]))))
    edit(xml_of(out, "iso1"), change)
    return "iso1", None


def break_threads_require(out, sc):
    def change(root):
        pins = _pins(root)
        _set_pin(root, 1, pins[2])
        _set_pin(root, 2, pins[1])
    edit(xml_of(out, "rt1"), change)
    return "rt1", None


def break_emulator(out, sc):
    d = doc(out)
    host = d["guests"]["web01"]["host"]
    dedicated = next(g for g, v in d["guests"].items() if v["host"] == host and v["cpu"] == "dedicated")
    cpu = parse_cpulist(d["guests"][dedicated]["cells"][0]["pcpus"])[0]
    edit(xml_of(out, "web01"), lambda root: root.find("cputune/emulatorpin").set("cpuset", str(cpu)))
    return "web01", None


def break_overcommit(out, sc):
    host, node, usage = _node_usage(out, "app01")
    vcpus = int(8 * Fraction(str(usage["pool_cores"]))) - usage["shared_vcpus"] + 1
    _add_hog(out, "app01", "hog", vcpus)
    loads = out / "loads.yaml"
    loads.write_text("hog: 0.01\n")
    return None, (host, int(node), loads)


def break_load(out, sc):
    host, node, usage = _node_usage(out, "app01")
    pool = len(parse_cpulist(usage["pool_cpulist"]))
    vcpus = int(Fraction(7, 10) * pool - Fraction(str(usage["expected_load_cpus"]))) + 1
    _add_hog(out, "app01", "hog", vcpus)
    return None, (host, int(node), None)


def break_memory(out, sc):
    host, node, usage = _node_usage(out, "app01")
    free_kib = usage["memory_4k_free_kib"]
    edit(xml_of(out, "app01"), lambda root: _set_memory(root, 8 * G + free_kib + G))
    return None, (host, int(node), None)


def break_hugepages(out, sc):
    host, node, usage = _node_usage(out, "cache1")
    free_pages = usage["hugepages_free_pages"]["2M"]
    edit(xml_of(out, "cache1"), lambda root: _set_memory(root, 2 * G + (free_pages + 1) * 2048))
    return None, (host, int(node), None)


def break_pagesize(out, sc):
    edit(xml_of(out, "db1"), lambda root: root.find("memoryBacking/hugepages/page").set("size", "16384"))
    return "db1", None


def break_numatune(out, sc):
    def change(root):
        memnode = root.findall("numatune/memnode")[1]
        memnode.set("nodeset", "0-1")
    edit(xml_of(out, "big1"), change)
    return "big1", None


def break_numatune_cellid(out, sc):
    edit(xml_of(out, "big1"), lambda root: root.findall("numatune/memnode")[1].set("cellid", "2"))
    return "big1", None


def break_numatune_missing(out, sc):
    def change(root):
        root.remove(root.find("numatune"))
    edit(xml_of(out, "web02"), change)
    return "web02", None


def break_distances(out, sc):
    def change(root):
        sibling = root.findall("cpu/numa/cell")[0].findall("distances/sibling")[1]
        sibling.set("value", str(int(sibling.get("value")) - 1))
    edit(xml_of(out, "big1"), change)
    return "big1", None


def break_pins(out, sc):
    def change(root):
        root.find("cputune").insert(0, etree.Element("vcpupin", vcpu="8", cpuset="5"))
    edit(xml_of(out, "db1"), change)
    return "db1", None


def break_numatune_unknown_nodes(out, sc):
    edit(xml_of(out, "big1"), lambda root: root.findall("numatune/memnode")[1].set("nodeset", "0-8"))
    return "big1", None


def break_vcpu_cpuset(out, sc):
    edit(xml_of(out, "db1"), lambda root: root.find("vcpu").set("cpuset", "0-3,525"))
    return "db1", None


BREAKS = {
    "cells": break_cells,
    "cpus/reserved": break_cpus_reserved,
    "cpus/missing-cpu": break_cpus_missing,
    "cpus/dedicated-shared": break_cpus_dedicated_shared,
    "cpus/no-vcpupin": break_cpus_unpinned,
    "threads/isolate": break_threads_isolate,
    "threads/require": break_threads_require,
    "emulator": break_emulator,
    "overcommit": break_overcommit,
    "load": break_load,
    "memory": break_memory,
    "hugepages": break_hugepages,
    "pagesize": break_pagesize,
    "numatune/crossing": break_numatune,
    "numatune/missing": break_numatune_missing,
    "numatune/cellid": break_numatune_cellid,
    "distances": break_distances,
    "pins": break_pins,
    "pins/vcpu-cpuset": break_vcpu_cpuset,
    "numatune/unknown-nodes": break_numatune_unknown_nodes,
}


def test_unknown_host_cpus_and_nodes_are_named(copy, scenario):
    """libvirt's own test domains name CPUs (``<vcpu cpuset='...,525'>``) and nodes (``<memnode nodeset='0-8'>``)
    a host may not have: both are said, with the names."""
    break_vcpu_cpuset(copy, scenario)
    break_numatune_unknown_nodes(copy, scenario)
    messages = [f.message for f in run_audit(copy, scenario).findings]
    host = doc(copy)["guests"]["db1"]["host"]
    assert f"db1 on {host}: <vcpu cpuset='0-3,525'> names CPU(s) 525, which {host} does not have" in " ".join(
        messages), messages
    assert any("<memnode cellid='1' nodeset='0-8'> names node(s) 4-8, which" in m for m in messages), messages


#: what each breach's finding says (a finding of the right rule that says something else does not pass)
SAYS = {
    "cells": "cell memories",
    "cpus/reserved": "is reserved)",
    "cpus/missing-cpu": "CPU 500 is not a CPU of",
    "cpus/dedicated-shared": "is a dedicated pCPU of ded1 but serves 2 vCPUs",
    "cpus/no-vcpupin": "shared app01 vCPUs 0-3 are pinned to",
    "threads/isolate": "iso1 (threads: isolate) has vCPUs 0 and 1 on one core",
    "threads/require": "rt1 (threads: require) vCPUs 0 and 1 are on CPUs",
    "emulator": "the emulator of web01 is pinned to CPU",
    "overcommit": "shared vCPUs, above 8 x",
    "load": "(Σ vCPUs × load), above 0.7 x",
    "memory": "of 4K memory, above the free",
    "hugepages": "above the node's pool of",
    "pagesize": "uses 16M pages, a size kvm1 lacks",
    "numatune/crossing": "cell 1 memory is bound to nodes 0-1: its memory crosses nodes",
    "numatune/missing": "no <numatune>: the guest's memory is not bound to a host node",
    "numatune/cellid": "<memnode cellid='2'> names guest cell 2, which the domain does not have",
    "distances": "cell 0 -> cell 1 distance is",
    "pins": "<vcpupin vcpu='8'> names a vCPU the domain does not have",
    "pins/vcpu-cpuset": "<vcpu cpuset='0-3,525'> names CPU(s) 525, which kvm1 does not have",
    "numatune/unknown-nodes": "<memnode cellid='1' nodeset='0-8'> names node(s) 4-8, which kvm1 does not have",
}


@pytest.mark.parametrize("case", sorted(BREAKS))
def test_broken_copy_reports_exactly_that_breach(case, copy, scenario):
    rule = case.split("/")[0]
    guest, node_level = BREAKS[case](copy, scenario)
    loads = read_loads(str(node_level[2])) if node_level and node_level[2] else None
    result = run_audit(copy, scenario, loads)
    assert result.findings, f"{case}: nothing found"
    assert {f.rule for f in result.findings} == {rule}, result.text()
    for f in result.findings:
        if guest is not None:  # (the owner of a CPU the guest takes is told too, naming the guest)
            assert f.guest == guest or f" {guest} " in f.message, result.text()
        else:
            assert (f.host, f.node) == node_level[:2], result.text()
        assert f.message and f.host
    assert any(SAYS[case] in f.message for f in result.findings), (case, result.text())


def test_every_breach_says_what_it_found():
    assert set(SAYS) == set(BREAKS)


def test_finding_messages_carry_numbers(copy, scenario):
    break_memory(copy, scenario)
    [finding] = run_audit(copy, scenario).findings
    assert "KiB" in finding.message and "above the free" in finding.message and finding.node is not None


def test_cli_findings_exit_1_and_json(copy):
    break_pagesize(copy, None)
    result = vplan("check", str(QUICKSTART), "--domains", str(copy))
    assert result.exit_code == 1
    assert "[pagesize] db1 on kvm" in result.stdout and "uses 16M pages, a size" in result.stdout
    data = json.loads(vplan("check", str(QUICKSTART), "--domains", str(copy), "--json").stdout)
    assert data["clean"] is False
    assert [(f["rule"], f["guest"]) for f in data["findings"]] == [("pagesize", "db1")]
    assert data["findings"][0]["file"].endswith("db1.xml")


# ------------------------------------------------------------------------------------------------ inputs


def test_flat_files_with_mapping_and_loads(solved, tmp_path, scenario):
    flat = tmp_path / "flat"
    flat.mkdir()
    d = doc(solved)
    for guest, entry in d["guests"].items():
        shutil.copy(solved / entry["xml"], flat / f"{guest}.xml")
    mapping = tmp_path / "map.txt"
    mapping.write_text("".join(f"{g} {v['host']}\n" for g, v in d["guests"].items() if g != "web01"))
    loads = tmp_path / "loads.yaml"
    loads.write_text("web02: 0.5\n")
    result = vplan("check", str(QUICKSTART), "--domains", str(flat), "--map-file", str(mapping),
                   "--map", f"web01={d['guests']['web01']['host']}", "--loads", str(loads))
    assert result.exit_code == 0, result.stdout + result.stderr
    assert run_audit(solved, scenario, read_loads(str(loads))).scenario.guest_by_name["web02"].load == Fraction(1, 2)


def test_bad_input_exit_2(solved, tmp_path):
    unmapped = tmp_path / "u"
    unmapped.mkdir()
    shutil.copy(xml_of(solved, "web01"), unmapped / "web01.xml")
    result = vplan("check", str(QUICKSTART), "--domains", str(unmapped))
    assert result.exit_code == 2 and "domain web01 has no host" in result.stderr
    bad = tmp_path / "b" / "kvm1"
    bad.mkdir(parents=True)
    (bad / "x.xml").write_text("<domain><name>x</name>")
    result = vplan("check", str(QUICKSTART), "--domains", str(bad.parent))
    assert result.exit_code == 2 and "not well-formed XML" in result.stderr
    other = tmp_path / "o" / "kvm9"
    other.mkdir(parents=True)
    shutil.copy(xml_of(solved, "web01"), other / "web01.xml")
    result = vplan("check", str(QUICKSTART), "--domains", str(other.parent))
    assert result.exit_code == 2 and "host kvm9 is not a host of the scenario" in result.stderr
    loads = tmp_path / "l.txt"
    loads.write_text("web01 1.5\n")
    with pytest.raises(AuditInputError, match="load 1.5 is out of range"):
        read_loads(str(loads))
    assert vplan("check", "--domains", str(solved)).exit_code == 2


def test_to_scenario_round_trip(solved, tmp_path, scenario):
    out = tmp_path / "deployed.yaml"
    hosts_only = tmp_path / "hosts.yaml"
    data = yaml.safe_load(QUICKSTART.read_text())
    data["guests"] = []
    data["host_models"] = {k: {"include": str((QUICKSTART.parent / v["include"]).resolve())}
                           for k, v in data["host_models"].items()}
    hosts_only.write_text(yaml.safe_dump(data))
    result = vplan("check", str(hosts_only), "--domains", str(solved), "--to-scenario", str(out))
    assert result.exit_code == 0, result.stdout + result.stderr
    written = load_scenario(out)
    assert len(written.guests) == 31 and all(g.host for g in written.guests)
    placed = doc(solved)["guests"]
    assert {g.name: g.host for g in written.guests} == {g: v["host"] for g, v in placed.items()}
    assert written.guest_by_name["rt1"].threads == "require" and written.guest_by_name["rt1"].emulator == "isolate"
    assert written.guest_by_name["big1"].numa == 2 and written.guest_by_name["db1"].hugepage_kib == G
    # auditing again with the written scenario (now with guest attributes) is still clean
    assert run_audit(solved, written).findings == []


def test_host_from_a_capture(solved, tmp_path):
    """--host NAME=PATH takes a host model file (or a capture) instead of a scenario."""
    d = doc(solved)
    guests = [g for g, v in d["guests"].items() if v["host"] == "kvm1"]
    only = tmp_path / "kvm1"
    only.mkdir()
    for g in guests:
        shutil.copy(solved / d["guests"][g]["xml"], only / f"{g}.xml")
    model = REPO / "models" / "hosts" / "suse-guide-4n.yaml"
    result = vplan("check", "--host", f"kvm1={model}", "--domains", str(tmp_path))
    assert result.exit_code == 0, result.stdout + result.stderr
    assert f"{len(guests)} guests on 1 hosts: no findings" in result.stdout
