"""The host-model and flavour catalogues, the example scenarios and the fleet generator.

The expected numbers of each host model are taken from its source capture (see the model file's header and
tests/fixtures/hostimport/shared/hostcaps|numactl/SOURCES.md): node ids, CPU lists, sibling groups, memory per node
and distances.
"""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path

import pytest
import yaml

from planner.analysis.generate import MODELS_DIR, REPO, available_models, generate_fleet, read_flavours
from planner.model.units import parse_cpulist

SCENARIOS_DIR = REPO / "scenarios"
MIB = 1024
GIB = 1024 * 1024

# name -> facts from the capture. memory_kib None: the capture has no memory (planning choice in the file);
# distance_row0 None: no distance table in the capture.
EXPECTED: dict[str, dict] = {
    "suse-guide-4n": dict(  # SUSE Virtualization Best Practices §4.6, numactl --hardware
        node_ids=[0, 1, 2, 3], cpus=144, threads=2,
        node_cpus={0: "0-17,72-89", 1: "18-35,90-107", 2: "36-53,108-125", 3: "54-71,126-143"},
        memory_kib=[31975 * MIB, 32316 * MIB, 32316 * MIB, 32314 * MIB],
        cores_sample=[(0, 72), (17, 89), (18, 90), (71, 143)],
        distance_row0=[10, 21, 21, 21], arch="x86_64"),
    "intel-sandybridge-2s": dict(  # vdsm caps_libvirt_multiqemu.out
        node_ids=[0, 1], cpus=24, threads=2,
        node_cpus={0: "0-5,12-17", 1: "6-11,18-23"},
        memory_kib=[33444704, 33554432],
        cores_sample=[(0, 12), (5, 17), (6, 18), (11, 23)],
        distance_row0=[10, 21], arch="x86_64"),
    "intel-xeon-e5649-2s": dict(  # vdsm caps_libvirt_intel_E5649.out (interleaved ids)
        node_ids=[0, 1], cpus=24, threads=2,
        node_cpus={0: "0,2,4,6,8,10,12,14,16,18,20,22", 1: "1,3,5,7,9,11,13,15,17,19,21,23"},
        memory_kib=None,
        cores_sample=[(0, 12), (2, 14), (10, 22), (1, 13), (11, 23)],
        distance_row0=None, arch="x86_64"),
    "amd-nps4": dict(  # ROCm blogs affinity part 2, numactl -H, EPYC 2S NPS4
        node_ids=list(range(8)), cpus=256, threads=2,
        node_cpus={0: "0-15,128-143", 3: "48-63,176-191", 4: "64-79,192-207", 7: "112-127,240-255"},
        memory_kib=[m * MIB for m in (64306, 64502, 64502, 64447, 64502, 64502, 64502, 64492)],
        cores_sample=[(0, 128), (15, 143), (127, 255)],
        distance_row0=[10, 12, 12, 12, 32, 32, 32, 32], arch="x86_64"),
    "intel-xeon-e7-4870-8s": dict(  # LKML 2019 Phil Auld, numactl --hardware, 8-socket E7-4870
        node_ids=list(range(8)), cpus=160, threads=2,
        node_cpus={0: "0-9,80-89", 2: "20-29,100-109", 7: "70-79,150-159"},
        memory_kib=[m * MIB for m in (64177, 64507, 64507, 64507, 64507, 64507, 64507, 64480)],
        cores_sample=[(0, 80), (9, 89), (79, 159)],
        distance_row0=[10, 12, 17, 17, 19, 19, 19, 19], arch="x86_64"),
    "amd-opteron-6274-2s": dict(  # vdsm caps_libvirt_amd_6274.out (CMT module siblings '0-1')
        node_ids=[0, 1, 2, 3], cpus=32, threads=2,
        node_cpus={0: "0-7", 1: "8-15", 2: "16-23", 3: "24-31"},
        memory_kib=None,
        cores_sample=[(0, 1), (2, 3), (30, 31)],
        distance_row0=None, arch="x86_64"),
    "amd-epyc-7401-2s-memoryless": dict(  # LKML 2025 sheaves report, numactl --hardware
        node_ids=list(range(8)), cpus=96, threads=2,
        node_cpus={0: ",".join(map(str, range(0, 96, 8))), 1: ",".join(map(str, range(2, 96, 8))),
                   4: ",".join(map(str, range(1, 96, 8))), 7: ",".join(map(str, range(7, 96, 8)))},
        memory_kib=[0, 31584 * MIB, 0, 0, 0, 32214 * MIB, 0, 0],
        cores_sample=None,  # no sibling information in the capture
        distance_row0=None, arch="x86_64"),
    "arm-neoverse-n1-2s": dict(  # virt-manager kvm-aarch64.xml
        node_ids=[0, 1], cpus=160, threads=1,
        node_cpus={0: "0-79", 1: "80-159"},
        memory_kib=[263763320, 262082520],
        cores_sample=[(0,), (159,)],
        distance_row0=[10, 20], arch="aarch64"),
    "ibm-s822l-power8": dict(  # vdsm caps_libvirt_ibm_S822L_le.out (sparse node and CPU ids)
        node_ids=[0, 1, 16, 17], cpus=20, threads=1,
        node_cpus={0: "0,8,16,24,32", 1: "40,48,56,64,72", 16: "80,88,96,104,112", 17: "120,128,136,144,152"},
        memory_kib=[67108864] * 4,
        cores_sample=[(0,), (152,)],
        distance_row0=[10, 20, 40, 40], arch="ppc64le"),
    "intel-skylake-desktop-1n": dict(  # virt-manager kvm-x86_64.xml
        node_ids=[0], cpus=8, threads=2,
        node_cpus={0: "0-7"},
        memory_kib=[32731708],
        cores_sample=[(0, 4), (1, 5), (3, 7)],
        distance_row0=[10], arch="x86_64"),
}

MODEL_FILES = sorted(MODELS_DIR.glob("*.yaml"))
SCENARIO_FILES = sorted(SCENARIOS_DIR.glob("*.yaml"))
GUEST_KEYS = {"vcpus", "memory", "cpu", "threads", "load", "cpu_demand", "hugepages", "numa", "memory_mode",
              "emulator"}


def _loader():
    from planner.io import loader

    return loader


def _wrap_model(tmp_path: Path, model_file: Path, guests: str = "guests: []\n") -> Path:
    """A one-host scenario that includes ``model_file`` by a path relative to the scenario (as users do)."""
    scenario = tmp_path / "wrap.yaml"
    include = Path(os.path.relpath(model_file, tmp_path)).as_posix()
    scenario.write_text(f"version: 1\nname: wrap\nhost_models:\n  m: {{include: \"{include}\"}}\n"
                        f"hosts:\n  - {{name: h1, model: m}}\n{guests}")
    return scenario


def _expand(name: str) -> int:
    m = re.fullmatch(r"(.*)\[([0-9]+)-([0-9]+)\](.*)", name)
    return int(m.group(3)) - int(m.group(2)) + 1 if m else 1


# ------------------------------------------------------------------------------------------------ host models

def test_every_model_file_has_expectations():
    assert {p.stem for p in MODEL_FILES} == set(EXPECTED)
    assert available_models() == sorted(EXPECTED)


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: p.stem)
def test_model_file_parses_and_names_its_source(path: Path):
    text = path.read_text()
    data = yaml.safe_load(text)
    assert isinstance(data, dict) and "nodes" in data and "include" not in data
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    assert "Source:" in header
    assert "Planning choices" in header  # reserved / hugepages are ours, not the capture's
    for node in data["nodes"]:
        assert isinstance(node["cpus"], str), "CPU lists are written in list syntax"


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: p.stem)
def test_model_raw_cpus_match_capture(path: Path):
    """Without the loader: node ids and CPU lists as in the capture."""
    data = yaml.safe_load(path.read_text())
    want = EXPECTED[path.stem]
    assert [n["id"] for n in data["nodes"]] == want["node_ids"]
    cpus = {n["id"]: parse_cpulist(n["cpus"]) for n in data["nodes"]}
    assert sum(len(c) for c in cpus.values()) == want["cpus"]
    for node_id, listed in want["node_cpus"].items():
        assert cpus[node_id] == parse_cpulist(listed)


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: p.stem)
def test_model_loads_with_capture_topology(path: Path, tmp_path: Path):
    loader = _loader()
    scenario = loader.load_scenario(_wrap_model(tmp_path, path))
    model = scenario.host_models["m"]
    want = EXPECTED[path.stem]
    assert [n.id for n in model.nodes] == want["node_ids"]
    assert model.cpu_count == want["cpus"]
    assert {len(core) for core in model.cores} == {want["threads"]}
    assert len(model.cores) == want["cpus"] // want["threads"]
    for node_id, listed in want["node_cpus"].items():
        assert model.node_by_id[node_id].cpus == parse_cpulist(listed)
    if want["memory_kib"] is not None:
        assert [n.memory_kib for n in model.nodes] == want["memory_kib"]
    if want["cores_sample"]:
        for core in want["cores_sample"]:
            assert model.core_of_cpu[core[0]] == core
    if want["distance_row0"] is not None:
        assert list(model.distances[0]) == want["distance_row0"]
    assert model.arch == want["arch"]
    # every core sits in one node; reserved CPUs are whole cores; every node with memory keeps some 4K memory
    for core in model.cores:
        assert len({model.node_of_cpu[c] for c in core}) == 1
    assert set().union(*(model.core_of_cpu[c] for c in model.reserved_cpus)) == model.reserved_cpus
    for node in model.nodes:
        if node.memory_kib:
            assert model.free_4k_kib(node) >= 16 * GIB


def test_memoryless_nodes_are_zero():
    data = yaml.safe_load((MODELS_DIR / "amd-epyc-7401-2s-memoryless.yaml").read_text())
    assert [n["id"] for n in data["nodes"] if n["memory"] == 0] == [0, 2, 3, 4, 6, 7]


# ------------------------------------------------------------------------------------------------ flavours

def test_flavours_are_guest_keys():
    flavours = read_flavours()
    assert len(flavours) >= 20
    for name, spec in flavours.items():
        assert set(spec) <= GUEST_KEYS, name
        assert {"vcpus", "memory"} <= set(spec), name
        if spec.get("cpu", "shared") == "shared":
            assert "threads" not in spec and 0 < spec["load"] <= 1, name
        else:
            assert "load" not in spec and spec["threads"] in ("prefer", "isolate", "require"), name
    kinds = {(s.get("cpu", "shared"), s.get("threads"), s.get("hugepages")) for s in flavours.values()}
    for policy in ("prefer", "isolate", "require"):
        assert any(k[0] == "dedicated" and k[1] == policy for k in kinds)
    assert any(k[2] == "1G" for k in kinds) and any(k[2] == "2M" for k in kinds)
    assert any(s.get("numa") == 2 for s in flavours.values())


def test_every_flavour_loads_as_a_guest(tmp_path: Path):
    loader = _loader()
    flavours = read_flavours()
    lines = "".join(f"  - {yaml.safe_dump(dict(name=name, **spec), default_flow_style=True, width=1000)}"
                    for name, spec in flavours.items())
    scenario = loader.load_scenario(_wrap_model(tmp_path, MODELS_DIR / "amd-nps4.yaml", "guests:\n" + lines))
    assert [g.name for g in scenario.guests] == list(flavours)


# ------------------------------------------------------------------------------------------------ scenarios

SCENARIO_COUNTS = {
    "quickstart": (4, 31),
    "overcommit-web": (5, 210),
    "dedicated-numa": (2, 43),
    "fleet-50x1500": (50, 1500),
}


def test_expected_scenarios_exist():
    assert set(SCENARIO_COUNTS) <= {p.stem for p in SCENARIO_FILES}


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=lambda p: p.stem)
def test_scenario_loads(path: Path):
    loader = _loader()
    scenario = loader.load_scenario(path)
    assert scenario.hosts and scenario.guests
    if path.stem in SCENARIO_COUNTS:
        assert (len(scenario.hosts), len(scenario.guests)) == SCENARIO_COUNTS[path.stem]


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=lambda p: p.stem)
def test_scenario_raw_counts_and_header(path: Path):
    text = path.read_text()
    assert text.startswith("#"), "a header comment says what the scenario shows"
    data = yaml.safe_load(text)
    if path.stem in SCENARIO_COUNTS:
        hosts = sum(_expand(h["name"]) for h in data["hosts"])
        guests = sum(_expand(g["name"]) for g in data["guests"])
        assert (hosts, guests) == SCENARIO_COUNTS[path.stem]
    for spec in data["host_models"].values():
        assert set(spec) == {"include"}
        assert (path.parent / spec["include"]).is_file()


def test_quickstart_features():
    data = yaml.safe_load((SCENARIOS_DIR / "quickstart.yaml").read_text())
    guests = data["guests"]
    assert any(g.get("threads") == "require" and g.get("emulator") == "isolate" for g in guests)
    assert any(g.get("threads") == "isolate" for g in guests)
    assert any(g.get("numa") == 2 for g in guests)
    db = [g for g in guests if g.get("hugepages") == "1G"]
    assert db and all(g.get("anti_affinity") for g in db) and sum(_expand(g["name"]) for g in db) == 2
    assert len({h["model"] for h in data["hosts"]}) == 2


def test_committed_fleet_is_up_to_date():
    path = SCENARIOS_DIR / "fleet-50x1500.yaml"
    assert path.read_text() == generate_fleet(50, 1500, seed=1, out_path=path), \
        "regenerate: python -m planner.analysis.generate --hosts 50 --guests 1500 --seed 1 -o scenarios/fleet-50x1500.yaml"


# ------------------------------------------------------------------------------------------------ generator

def test_generator_is_deterministic():
    assert generate_fleet(20, 500, seed=3) == generate_fleet(20, 500, seed=3)


def test_generator_differs_by_seed():
    assert generate_fleet(20, 500, seed=3) != generate_fleet(20, 500, seed=4)


@pytest.mark.parametrize("hosts,guests", [(1, 5), (3, 40), (50, 1500), (200, 6000), (7, 0)])
def test_generator_counts(hosts: int, guests: int):
    data = yaml.safe_load(generate_fleet(hosts, guests, seed=11))
    assert sum(_expand(h["name"]) for h in data["hosts"]) == hosts
    assert sum(_expand(g["name"]) for g in data["guests"]) == guests


def test_generator_counts_through_loader(tmp_path: Path):
    loader = _loader()
    out = tmp_path / "deep" / "fleet.yaml"
    out.parent.mkdir()
    out.write_text(generate_fleet(40, 1200, seed=5, out_path=out))
    scenario = loader.load_scenario(out)
    assert len(scenario.hosts) == 40 and len(scenario.guests) == 1200
    assert len({g.name.lower() for g in scenario.guests}) == 1200
    guests = scenario.guests
    assert any(g.cpu == "shared" and g.load < 1 for g in guests)
    for policy in ("prefer", "isolate", "require"):
        assert any(g.threads == policy for g in guests)
    assert {1024 * 1024, 2048} <= {g.hugepage_kib for g in guests}
    assert any(g.numa == 2 for g in guests)
    tagged = [g for g in guests if g.anti_affinity]
    assert tagged
    groups: dict[str, int] = {}
    for g in tagged:
        for tag in g.anti_affinity:
            groups[tag] = groups.get(tag, 0) + 1
    assert max(groups.values()) <= 4 and min(groups.values()) >= 2


def test_generator_include_paths_follow_output(tmp_path: Path):
    default = yaml.safe_load(generate_fleet(4, 20, seed=0))
    assert all(spec["include"].startswith("../models/hosts/") for spec in default["host_models"].values())
    out = tmp_path / "a" / "b" / "f.yaml"
    out.parent.mkdir(parents=True)
    data = yaml.safe_load(generate_fleet(4, 20, seed=0, out_path=out))
    for spec in data["host_models"].values():
        assert not os.path.isabs(spec["include"])
        assert os.path.samefile(out.parent / spec["include"], MODELS_DIR / Path(spec["include"]).name)


@pytest.mark.parametrize("hosts,guests", [(50, 1500), (2000, 60000)])
def test_generator_sizes_demand_to_the_target(hosts: int, guests: int):
    text = generate_fleet(hosts, guests, seed=1).replace("\n#   ", " ")
    m = re.search(r"\(([0-9]+) % of the binding resource", text)
    assert m and 70 <= int(m.group(1)) <= 85


def test_generator_stays_compact():
    text = generate_fleet(2000, 60000, seed=1)
    assert len(text.splitlines()) < 4000 and len(text) < 600_000


def test_generator_models_argument():
    data = yaml.safe_load(generate_fleet(6, 60, seed=2, models=["intel-sandybridge-2s", "intel-xeon-e5649-2s"]))
    assert set(data["host_models"]) == {"intel-sandybridge-2s", "intel-xeon-e5649-2s"}
    with pytest.raises(ValueError):
        generate_fleet(2, 2, models=["no-such-model"])


def test_generator_main_writes_file(tmp_path: Path):
    from planner.analysis.generate import main

    out = tmp_path / "f.yaml"
    assert main(["--hosts", "5", "--guests", "50", "--seed", "1", "-o", str(out)]) == 0
    assert out.read_text() == generate_fleet(5, 50, seed=1, out_path=out)


@pytest.mark.parametrize("text, expected", [
    ("x: 1\n", "flavours.yaml: flavours: expected a mapping of flavour name -> guest keys"),
    ("flavours: {small: [1]}\n", "flavours.yaml: flavours.small: expected a mapping"),
    ("flavours: {small: {vcpu: 2, memory: 1GiB}}\n", "flavours.yaml: flavours.small.vcpu: unknown key (did you mean "
                                                       "'vcpus'?"),
    ("flavours: {small: {vcpus: two, memory: 1GiB}}\n", "flavours.yaml: flavours.small.vcpus: 'two' is not an "
                                                          "integer"),
])
def test_a_broken_flavour_catalogue_is_named_file_key_and_flavour(tmp_path, text, expected):
    """Found in review: a catalogue without ``flavours:`` raised a bare KeyError, a bad flavour key surfaced as a
    guest named 'probe'. Now one message names the file, the key path and the flavour."""
    from planner.io.catalogue import read_flavours

    path = tmp_path / "flavours.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        read_flavours(path)
    assert str(info.value).startswith(str(tmp_path) + "/") and expected in str(info.value), str(info.value)
