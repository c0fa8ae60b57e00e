"""planner.io.loader: a scenario file → a resolved Scenario, or one ScenarioError listing every problem."""

from __future__ import annotations

import copy
from fractions import Fraction
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.io.loader import ScenarioError, load_scenario, load_scenario_text
from planner.model.scenario import HostModel, Node

FIXTURES = Path(__file__).parents[1] / "fixtures" / "loader"
GIB = 1024**2

BASE = """
version: 1
name: quick
policy: {cpu_overcommit_max: 4, cpu_load_target: 0.7}
host_models:
  r650:
    nodes:
      - {id: 0, cpus: "0-7,16-23", memory: 64GiB, hugepages: {2M: 1024}}
      - {id: 1, cpus: "8-15,24-31", memory: 64GiB, hugepages: {1G: 8}}
    distances: [[10,21],[21,10]]
    threads_per_core: 2
    reserved: {cpus: "0,16", memory: 2GiB}
  suse-4n:
    nodes:
      - {id: 0, cpus: "0-17,72-89",    memory: 32GiB, hugepages: {1G: 16, 2M: 0}}
      - {id: 1, cpus: "18-35,90-107",  memory: 32GiB, hugepages: {1G: 16}}
      - {id: 2, cpus: "36-53,108-125", memory: 32GiB}
      - {id: 3, cpus: "54-71,126-143", memory: 32GiB}
    distances: [[10,21,21,21],[21,10,21,21],[21,21,10,21],[21,21,21,10]]
    threads_per_core: 2
    reserved: {cpus: "0,72", memory: 2GiB}
hosts:
  - {name: "kvm[01-08]", model: r650}
  - {name: big1, model: suse-4n}
guests:
  - {name: "web[01-10]", vcpus: 2, memory: 4GiB, load: 0.3}
  - {name: db1, vcpus: 8, memory: 16GiB, cpu: dedicated, hugepages: 1G, anti_affinity: db, numa: 2}
  - {name: rt1, vcpus: 4, memory: 8GiB, cpu: dedicated, threads: require, emulator: isolate}
  - {name: batch, vcpus: auto, cpu_demand: 2.1, memory: 2GiB, priority: 3}
"""
BASE_DATA = yaml.safe_load(BASE)
DELETE = object()


def build(*changes: tuple[tuple, object]) -> str:
    """BASE with changes applied: ((key, index, ...), value), value DELETE removes the key."""
    data = copy.deepcopy(BASE_DATA)
    for path, value in changes:
        target = data
        for key in path[:-1]:
            target = target[key]
        if value is DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value
    return yaml.safe_dump(data, sort_keys=False)


def problems_of(text: str, filename: str = "quick.yaml") -> list[str]:
    with pytest.raises(ScenarioError) as info:
        load_scenario_text(text, filename)
    assert str(info.value) == "\n".join(info.value.problems)
    assert "Traceback" not in str(info.value)
    return info.value.problems


# ---------------------------------------------------------------------------------------------------------------
# A valid scenario


@pytest.fixture(scope="module")
def quick():
    return load_scenario_text(BASE, "quick.yaml")


def test_top_level_and_policy(quick):
    assert quick.name == "quick"
    assert quick.path == "quick.yaml"
    assert quick.policy.cpu_overcommit_max == Fraction(4)
    assert quick.policy.cpu_load_target == Fraction(7, 10)  # exact, not 0.6999999999999999555910790149937
    assert isinstance(quick.policy.cpu_load_target, Fraction)
    assert quick.policy.memory_overcommit == Fraction(1)
    assert quick.policy.objective == "pack"
    assert quick.policy.time_limit_s == 60.0


def test_suse_4n_cores_from_threads_per_core(quick):
    model = quick.host_models["suse-4n"]
    assert isinstance(model, HostModel)
    assert len(model.cores) == 72
    assert (0, 72) in model.cores and (17, 89) in model.cores and (71, 143) in model.cores
    assert model.cores[0] == (0, 72) and model.cores == tuple(sorted(model.cores))
    assert model.cpu_count == 144
    assert model.reserved_cpus == frozenset({0, 72})
    assert model.reserved_memory_kib == 2 * GIB
    assert model.arch == "x86_64"
    assert model.source == "quick.yaml"


def test_suse_4n_nodes_and_free_memory(quick):
    model = quick.host_models["suse-4n"]
    node0 = model.nodes[0]
    assert isinstance(node0, Node)
    assert node0.id == 0
    assert node0.cpus == tuple(range(0, 18)) + tuple(range(72, 90))
    assert node0.hugepages == {1024**2: 16, 2048: 0}
    assert node0.memory_kib == 32 * GIB
    assert model.free_4k_kib(node0) == 14 * GIB  # 32 - 2 reserved - 16 x 1G
    assert model.free_4k_kib(model.nodes[2]) == 30 * GIB
    assert model.distance(0, 3) == 21 and model.distance(2, 2) == 10


def test_r650_resolved(quick):
    model = quick.host_models["r650"]
    assert model.cores[:2] == ((0, 16), (1, 17))
    assert model.node_of_cpu[24] == 1
    assert model.nodes[1].hugepages == {1024**2: 8}
    assert model.free_4k_kib(model.nodes[1]) == 54 * GIB


def test_hosts_expanded(quick):
    assert [h.name for h in quick.hosts] == [f"kvm{i:02d}" for i in range(1, 9)] + ["big1"]
    assert quick.host_by_name["kvm08"].model == "r650"
    assert quick.model_of("big1").name == "suse-4n"


def test_guest_defaults_and_values(quick):
    web = quick.guest_by_name["web07"]
    assert (web.vcpus, web.memory_kib, web.cpu, web.threads, web.load) == (2, 4 * GIB, "shared", None, Fraction(3, 10))
    assert (web.numa, web.hugepage_kib, web.emulator, web.memory_mode, web.priority) == (None, None, "host",
                                                                                         "strict", 1)
    db1 = quick.guest_by_name["db1"]
    assert (db1.cpu, db1.threads, db1.load, db1.hugepage_kib, db1.numa) == ("dedicated", "prefer", Fraction(1),
                                                                            1024**2, 2)
    assert db1.anti_affinity == ("db",)
    rt1 = quick.guest_by_name["rt1"]
    assert (rt1.threads, rt1.emulator) == ("require", "isolate")
    assert len(quick.guests) == 13


def test_vcpus_auto_is_exact(quick):
    batch = quick.guest_by_name["batch"]
    # 2.1 / 0.7 is 3.0000000000000004 in floats (ceil 4); exactly it is 3
    assert batch.vcpus == 3
    assert batch.vcpus_auto is True
    assert batch.cpu_demand == Fraction(21, 10)
    assert batch.priority == 3
    assert quick.guest_by_name["db1"].vcpus_auto is False


def test_vcpus_auto_with_require_rounds_to_even():
    text = build((("guests", 3, "cpu"), "dedicated"), (("guests", 3, "threads"), "require"))
    batch = load_scenario_text(text, "quick.yaml").guest_by_name["batch"]
    assert batch.vcpus == 4 and batch.vcpus_auto


def test_policy_values_and_optional_keys():
    text = build((("policy",), {"cpu_overcommit_max": 1.5, "cpu_load_target": 1, "memory_overcommit": 1.25,
                                "node_memory_target": 0.9, "objective": "spread", "time_limit": "2m"}),
                 (("host_models", "r650", "arch"), "aarch64"),
                 (("guests", 0, "anti_affinity"), ["web", "front", "web"]),
                 (("guests", 1, "threads"), "isolate"),
                 (("guests", 1, "numa"), "auto"),
                 (("guests", 1, "hugepages"), "none"),
                 (("guests", 1, "host"), "kvm03"),
                 (("guests", 1, "memory_mode"), "interleave"),
                 (("guests", 1, "emulator"), "shared"))
    scenario = load_scenario_text(text, "quick.yaml")
    assert scenario.policy.cpu_overcommit_max == Fraction(3, 2)
    assert scenario.policy.cpu_load_target == Fraction(1)
    assert scenario.policy.memory_overcommit == Fraction(5, 4)
    assert scenario.policy.node_memory_target == Fraction(9, 10)
    assert (scenario.policy.objective, scenario.policy.time_limit_s) == ("spread", 120.0)
    assert scenario.host_models["r650"].arch == "aarch64"
    assert scenario.guest_by_name["web03"].anti_affinity == ("web", "front")
    db1 = scenario.guest_by_name["db1"]
    assert (db1.threads, db1.numa, db1.hugepage_kib, db1.host, db1.memory_mode, db1.emulator) == (
        "isolate", None, None, "kvm03", "interleave", "shared")


def test_explicit_cores_sparse_ids_and_defaults():
    text = """
version: 1
name: sparse
host_models:
  odd:
    nodes:
      - {id: 0, cpus: [0, 1, 4, 5], memory: 16GiB}
      - {id: 16, cpus: "8-9,12-13", memory: 0}
      - {id: 17, cpus: "", memory: 8GiB, hugepages: {64K: 16, 16M: 2}}
    cores: [[4, 0], "1,5", [8, 12], [9, 13]]
    reserved: {memory: 1GiB}
hosts: [{name: h1, model: odd}]
guests: []
"""
    model = load_scenario_text(text, "sparse.yaml").host_models["odd"]
    assert model.cores == ((0, 4), (1, 5), (8, 12), (9, 13))
    assert [n.id for n in model.nodes] == [0, 16, 17]
    assert model.distances == ((10, 20, 20), (20, 10, 20), (20, 20, 10))
    assert model.distance(16, 17) == 20
    assert model.nodes[2].hugepages == {64: 16, 16384: 2}
    assert model.free_4k_kib(model.nodes[1]) == 0  # memory-less: exempt from the reserve
    assert model.free_4k_kib(model.nodes[2]) == 7 * GIB - 64 * 16 - 32 * 1024
    assert model.reserved_cpus == frozenset()


def test_threads_per_core_default_is_one():
    text = build((("host_models", "r650", "threads_per_core"), DELETE))
    model = load_scenario_text(text, "quick.yaml").host_models["r650"]
    assert len(model.cores) == 32 and model.cores[:3] == ((0,), (1,), (2,))


def test_spec_example_scenario():
    scenario = load_scenario(FIXTURES / "example-scenario.yaml")
    assert scenario.name == "example"
    assert [h.name for h in scenario.hosts] == ["kvm1", "kvm2"]
    model = scenario.host_models["guide-4n"]
    assert (0, 72) in model.cores and (17, 89) in model.cores and len(model.cores) == 72
    assert model.free_4k_kib(model.nodes[0]) == 22 * GIB  # 32 - 2 - 8 x 1G
    assert [g.name for g in scenario.guests] == [f"web0{i}" for i in range(1, 7)] + ["db1", "db2", "rt1"]
    assert scenario.guest_by_name["web01"].load == Fraction(3, 10)
    db2 = scenario.guest_by_name["db2"]
    assert (db2.vcpus, db2.hugepage_kib, db2.anti_affinity, db2.threads) == (24, 1024**2, ("db",), "prefer")
    rt1 = scenario.guest_by_name["rt1"]
    assert (rt1.threads, rt1.emulator, rt1.memory_kib) == ("require", "isolate", 8 * GIB)
    assert scenario.path == str(FIXTURES / "example-scenario.yaml")


# ---------------------------------------------------------------------------------------------------------------
# Includes


def test_include_relative_to_the_naming_file():
    path = FIXTURES / "include" / "scenarios" / "fleet.yaml"
    scenario = load_scenario(path)
    model = scenario.host_models["amd-nps4"]
    assert model.source == str(FIXTURES / "include" / "models" / "hosts" / "amd-nps4.yaml")
    assert (0, 32) in model.cores and (31, 63) in model.cores and len(model.cores) == 32
    assert model.reserved_cpus == frozenset({0, 32}) and model.reserved_memory_kib == 4 * GIB
    assert model.distance(1, 2) == 12
    assert scenario.guest_by_name["app"].hugepage_kib == 2048  # page size listed by the included model


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """A scenario directory and a models directory; the working directory is their parent."""
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "models").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


SMALL = """
version: 1
name: inc
host_models:
  amd: {include: ../models/amd.yaml}
hosts: [{name: h1, model: amd}]
guests: [{name: g1, vcpus: 2, memory: 1GiB}]
"""


def test_include_problem_names_the_included_file(tree):
    (tree / "scenarios" / "s.yaml").write_text(SMALL)
    (tree / "models" / "amd.yaml").write_text("nodes:\n  - {id: 0, cpus: '0-3', memory: 8GiB}\n"
                                              "  - {id: 1, cpus: '8-15,^9x', memory: 8GiB}\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario("scenarios/s.yaml")
    assert info.value.problems == [
        "models/amd.yaml: nodes[1].cpus: '8-15,^9x' is not a CPU list (expected e.g. '0-3,8,^2')"]


def test_include_loads_with_source(tree):
    (tree / "scenarios" / "s.yaml").write_text(SMALL)
    (tree / "models" / "amd.yaml").write_text("nodes: [{id: 0, cpus: '0-3', memory: 8GiB}]\n")
    scenario = load_scenario("scenarios/s.yaml")
    assert scenario.host_models["amd"].source == "models/amd.yaml"
    assert scenario.host_models["amd"].nodes[0].cpus == (0, 1, 2, 3)


def test_nested_include_is_refused(tree):
    (tree / "scenarios" / "s.yaml").write_text(SMALL)
    (tree / "models" / "amd.yaml").write_text("include: other.yaml\n")
    (tree / "models" / "other.yaml").write_text("nodes: [{id: 0, cpus: '0-3', memory: 8GiB}]\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario("scenarios/s.yaml")
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith("models/amd.yaml: include: nested include is not supported")


def test_missing_include_file(tree):
    (tree / "scenarios" / "s.yaml").write_text(SMALL.replace("amd.yaml", "nope.yaml"))
    with pytest.raises(ScenarioError) as info:
        load_scenario("scenarios/s.yaml")
    assert info.value.problems == [
        "scenarios/s.yaml: host_models.amd.include: '../models/nope.yaml' (models/nope.yaml): file not found"]


def test_include_must_stand_alone(tree):
    (tree / "scenarios" / "s.yaml").write_text(SMALL.replace("{include: ../models/amd.yaml}",
                                                             "{include: ../models/amd.yaml, arch: s390x}"))
    (tree / "models" / "amd.yaml").write_text("nodes: [{id: 0, cpus: '0-3', memory: 8GiB}]\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario("scenarios/s.yaml")
    assert info.value.problems == ["scenarios/s.yaml: host_models.amd.arch: an include must stand alone "
                                   "({include: PATH}); put this key in the included file"]


def test_include_from_text_uses_base_dir(tree):
    (tree / "models" / "amd.yaml").write_text("nodes: [{id: 0, cpus: '0-3', memory: 8GiB}]\n")
    scenario = load_scenario_text(SMALL, base_dir=str(tree / "scenarios"))
    assert scenario.host_models["amd"].cpu_count == 4
    assert scenario.path is None


def test_included_file_with_yaml_error(tree):
    (tree / "scenarios" / "s.yaml").write_text(SMALL)
    (tree / "models" / "amd.yaml").write_text("nodes: [{id: 0, cpus: '0-3', memory: 8GiB}\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario("scenarios/s.yaml")
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith("models/amd.yaml: line ")


def test_missing_scenario_file(tree):
    with pytest.raises(ScenarioError) as info:
        load_scenario("scenarios/nope.yaml")
    assert info.value.problems == ["scenarios/nope.yaml: file not found"]


# ---------------------------------------------------------------------------------------------------------------
# Input errors: one test each, every message names the file, the key path with the item, and what is wrong

Q = "quick.yaml: "
R650 = Q + "host_models.r650."
G = Q + "guests"

ERRORS = [
    # top level
    ("version-2", [(("version",), 2)], Q + "version: ", "2 is not supported (only version: 1)"),
    ("version-missing", [(("version",), DELETE)], Q + "version: ", "required key is missing"),
    ("version-string", [(("version",), "1")], Q + "version: ", "'1' is not supported"),
    ("name-missing", [(("name",), DELETE)], Q + "name: ", "required key is missing"),
    ("name-invalid", [(("name",), "quick start!")], Q + "name: ", "'quick start!' is not a valid name"),
    ("name-number", [(("name",), 42)], Q + "name: ", "42 is not a name (a name is a string"),
    ("top-unknown-key", [(("guest",), [])], Q + "guest: ", "unknown key (did you mean 'guests'?"),
    # policy
    ("overcommit-high", [(("policy", "cpu_overcommit_max"), 9)], Q + "policy.cpu_overcommit_max: ",
     "9 is out of range (must be 1 <= x <= 8)"),
    ("overcommit-low", [(("policy", "cpu_overcommit_max"), 0.5)], Q + "policy.cpu_overcommit_max: ",
     "0.5 is out of range"),
    ("overcommit-string", [(("policy", "cpu_overcommit_max"), "4x")], Q + "policy.cpu_overcommit_max: ",
     "'4x' is not a number"),
    ("load-target-zero", [(("policy", "cpu_load_target"), 0)], Q + "policy.cpu_load_target: ",
     "0 is out of range (must be 0 < x <= 1)"),
    ("load-target-high", [(("policy", "cpu_load_target"), 1.2)], Q + "policy.cpu_load_target: ",
     "1.2 is out of range"),
    ("memory-target-zero", [(("policy", "node_memory_target"), 0)], Q + "policy.node_memory_target: ",
     "0 is out of range (must be 0 < x <= 1)"),
    ("memory-target-high", [(("policy", "node_memory_target"), 1.1)], Q + "policy.node_memory_target: ",
     "1.1 is out of range"),
    ("memory-overcommit", [(("policy", "memory_overcommit"), 0.9)], Q + "policy.memory_overcommit: ",
     "0.9 is out of range (must be >= 1.0)"),
    ("objective", [(("policy", "objective"), "packed")], Q + "policy.objective: ",
     "'packed' is not one of: pack, spread; did you mean 'pack'?"),
    ("time-limit", [(("policy", "time_limit"), "1h")], Q + "policy.time_limit: ", "'1h' is not a duration"),
    ("policy-typo", [(("policy", "cpu_overcomit_max"), 4)], Q + "policy.cpu_overcomit_max: ",
     "unknown key (did you mean 'cpu_overcommit_max'?"),
    # host models
    ("model-typo", [(("host_models", "r650", "threads_per_cores"), 2)], R650 + "threads_per_cores: ",
     "unknown key (did you mean 'threads_per_core'?"),
    ("model-no-nodes", [(("host_models", "r650", "nodes"), DELETE), (("host_models", "r650", "distances"), DELETE)],
     R650 + "nodes: ", "required key is missing"),
    ("nodes-empty", [(("host_models", "r650", "nodes"), [])], R650 + "nodes: ",
     "a host model needs at least one node"),
    ("cpus-syntax", [(("host_models", "r650", "nodes", 1, "cpus"), "8-15,^9x")], R650 + "nodes[1].cpus: ",
     "'8-15,^9x' is not a CPU list (expected e.g. '0-3,8,^2')"),
    ("node-id-twice", [(("host_models", "r650", "nodes", 1, "id"), 0)], R650 + "nodes[1].id: ",
     "node id 0 is used twice (also nodes[0])"),
    ("node-id-negative", [(("host_models", "r650", "nodes", 0, "id"), -1)], R650 + "nodes[0].id: ",
     "-1 is out of range (must be 0..4095)"),
    ("node-id-bool", [(("host_models", "r650", "nodes", 0, "id"), True)], R650 + "nodes[0].id: ",
     "true is not an integer"),
    ("cpu-in-two-nodes", [(("host_models", "r650", "nodes", 1, "cpus"), "7-15,24-31")], R650 + "nodes[1].cpus: ",
     "CPU 7 also in nodes[0] (a CPU belongs to one node)"),
    ("node-memory-missing", [(("host_models", "r650", "nodes", 0, "memory"), DELETE)], R650 + "nodes[0].memory: ",
     "required key is missing"),
    ("node-memory-bare", [(("host_models", "r650", "nodes", 0, "memory"), 65536)], R650 + "nodes[0].memory: ",
     "65536: memory needs a unit, e.g. 32GiB"),
    ("node-memory-case", [(("host_models", "r650", "nodes", 0, "memory"), "64gib")], R650 + "nodes[0].memory: ",
     "unknown memory unit 'gib' (units are case-sensitive"),
    ("node-key-typo", [(("host_models", "r650", "nodes", 0, "hugepage"), {"2M": 1})], R650 + "nodes[0].hugepage: ",
     "unknown key (did you mean 'hugepages'?"),
    ("hugepage-size", [(("host_models", "r650", "nodes", 0, "hugepages"), {"2X": 4})],
     R650 + "nodes[0].hugepages.2X: ", "'2X' is not a page size"),
    ("hugepage-count-negative", [(("host_models", "r650", "nodes", 0, "hugepages"), {"2M": -1})],
     R650 + "nodes[0].hugepages.2M: ", "-1 is out of range (must be >= 0)"),
    ("hugepage-count-float", [(("host_models", "r650", "nodes", 0, "hugepages"), {"2M": 1.5})],
     R650 + "nodes[0].hugepages.2M: ", "1.5 is not an integer"),
    ("hugepage-size-twice", [(("host_models", "r650", "nodes", 0, "hugepages"), {"2M": 1, "2MiB": 2})],
     R650 + "nodes[0].hugepages.2MiB: ", "page size 2M is given twice (also as 2M)"),
    ("free-memory-negative", [(("host_models", "r650", "nodes", 1, "hugepages"), {"1G": 63})], R650 + "nodes[1]: ",
     "free 4K memory is negative: memory 64GiB - reserved.memory 2GiB - hugepage pools 63GiB = -1GiB"),
    ("memoryless-node-pool", [(("host_models", "r650", "nodes", 1, "memory"), 0)], R650 + "nodes[1]: ",
     "memory 0KiB - reserved.memory 0KiB - hugepage pools 8GiB = -8GiB"),
    ("distances-rows", [(("host_models", "r650", "distances"), [[10, 21], [21, 10], [21, 21]])],
     R650 + "distances: ", "3 rows for 2 nodes"),
    ("distances-row-length", [(("host_models", "r650", "distances"), [[10, 21], [21]])], R650 + "distances[1]: ",
     "1 values for 2 nodes"),
    ("distances-diagonal", [(("host_models", "r650", "distances"), [[10, 21], [21, 11]])],
     R650 + "distances[1][1]: ", "11 is not a valid distance (the diagonal is 10)"),
    ("distances-range", [(("host_models", "r650", "distances"), [[10, 300], [21, 10]])],
     R650 + "distances[0][1]: ", "300 is not a valid distance (off the diagonal 11..254)"),
    ("distances-float", [(("host_models", "r650", "distances"), [[10, 21], [20.5, 10]])],
     R650 + "distances[1][0]: ", "20.5 is not a valid distance"),
    ("threads-gaps", [(("host_models", "r650", "nodes", 1, "cpus"), "8-15,24-30,40")], R650 + "threads_per_core: ",
     "threads_per_core: 2 needs CPU ids 0..N-1 without gaps"),
    ("threads-divisible", [(("host_models", "r650", "threads_per_core"), 3)], R650 + "threads_per_core: ",
     "32 CPUs do not divide into cores of 3 threads; list the sibling groups with cores: instead"),
    ("threads-zero", [(("host_models", "r650", "threads_per_core"), 0)], R650 + "threads_per_core: ",
     "0 is out of range (must be >= 1)"),
    ("threads-span-nodes", [(("host_models", "r650", "nodes", 0, "cpus"), "0-15"),
                            (("host_models", "r650", "nodes", 1, "cpus"), "16-31")], R650 + "threads_per_core: ",
     "the siblings of CPU 0 (0,16) would span nodes"),
    ("cores-and-threads", [(("host_models", "r650", "cores"), [[i, i + 16] for i in range(16)])],
     R650 + "threads_per_core: ", "give either cores: or threads_per_core:, not both"),
    ("cores-span-nodes", [(("host_models", "r650", "threads_per_core"), DELETE),
                          (("host_models", "r650", "cores"), [[i, i + 16] for i in range(7)] + [[7, 8]]
                           + [[i, i + 16] for i in range(9, 16)] + [[23], [24]])],
     R650 + "cores[7]: ", "core 7-8 spans nodes 0, 1 (a core sits in one node)"),
    ("cores-cpu-missing", [(("host_models", "r650", "threads_per_core"), DELETE),
                           (("host_models", "r650", "cores"), [[i, i + 16] for i in range(15)])],
     R650 + "cores: ", "CPUs 15,31 in no core (every CPU of the model in exactly one core)"),
    ("cores-unknown-cpu", [(("host_models", "r650", "threads_per_core"), DELETE),
                           (("host_models", "r650", "cores"), [[i, i + 16] for i in range(16)] + [[40]])],
     R650 + "cores[16]: ", "CPU 40 not in any node of this host model"),
    ("cores-cpu-twice", [(("host_models", "r650", "threads_per_core"), DELETE),
                         (("host_models", "r650", "cores"), [[i, i + 16] for i in range(16)] + [[3]])],
     R650 + "cores[16]: ", "CPU 3 also in cores[3] (every CPU in exactly one core)"),
    ("reserved-unknown-cpu", [(("host_models", "r650", "reserved", "cpus"), "0,16,99")], R650 + "reserved.cpus: ",
     "CPU 99 not in any node of this host model"),
    ("reserved-memory", [(("host_models", "r650", "reserved", "memory"), "2 GB!")], R650 + "reserved.memory: ",
     "is not a memory size"),
    ("reserved-typo", [(("host_models", "r650", "reserved", "cpu"), "0")], R650 + "reserved.cpu: ",
     "unknown key (did you mean 'cpus'?"),
    ("arch", [(("host_models", "r650", "arch"), "arm64")], R650 + "arch: ",
     "'arm64' is not one of: x86_64, aarch64, ppc64le, s390x"),
    ("capabilities", [(("host_models", "r650"), {"capabilities": "caps/r650.xml"})], R650 + "capabilities: ",
     "caps/r650.xml: file not found"),
    ("numactl", [(("host_models", "r650"), {"numactl": "r650.txt"})], R650 + "numactl: ",
     "r650.txt: file not found"),
    # hosts
    ("host-unknown-model", [(("hosts", 0, "model"), "r65")], Q + "hosts[0] (kvm[01-08]).model: ",
     "unknown host model 'r65' (known: r650, suse-4n)"),
    ("host-model-missing", [(("hosts", 1, "model"), DELETE)], Q + "hosts[1] (big1).model: ", "required key is missing"),
    ("host-name-case", [(("hosts", 1, "name"), "KVM03")], Q + "hosts[1] (KVM03).name: ",
     "host name 'KVM03' is already used as 'kvm03' by hosts[0] (kvm[01-08]) (names must be unique, also ignoring "
     "case)"),
    ("host-pattern-backwards", [(("hosts", 0, "name"), "kvm[08-01]")], Q + "hosts[0] (kvm[08-01]).name: ",
     "pattern range 08-01 runs backwards"),
    ("host-typo", [(("hosts", 1, "modle"), "r650")], Q + "hosts[1] (big1).modle: ", "unknown key (did you mean"),
    # guests
    ("vcpus-zero", [(("guests", 1, "vcpus"), 0)], G + "[1] (db1).vcpus: ", "0 is out of range (must be >= 1)"),
    ("vcpus-bool", [(("guests", 1, "vcpus"), True)], G + "[1] (db1).vcpus: ", "true is not an integer"),
    ("vcpus-missing", [(("guests", 1, "vcpus"), DELETE)], G + "[1] (db1).vcpus: ", "required key is missing"),
    ("vcpus-auto-no-demand", [(("guests", 3, "cpu_demand"), DELETE)], G + "[3] (batch).vcpus: ",
     "auto needs cpu_demand"),
    ("cpu-demand-negative", [(("guests", 3, "cpu_demand"), -1)], G + "[3] (batch).cpu_demand: ",
     "-1 is out of range (must be > 0 cores)"),
    ("memory-bare", [(("guests", 0, "memory"), 4096)], G + "[0] (web[01-10]).memory: ",
     "4096: memory needs a unit, e.g. 32GiB"),
    ("memory-too-small", [(("guests", 0, "memory"), "512KiB")], G + "[0] (web[01-10]).memory: ",
     "512KiB is too small (a guest needs >= 1MiB)"),
    ("memory-unit", [(("guests", 0, "memory"), "4Gb")], G + "[0] (web[01-10]).memory: ",
     "unknown memory unit 'Gb'"),
    ("cpu-mode", [(("guests", 1, "cpu"), "dedicate")], G + "[1] (db1).cpu: ",
     "'dedicate' is not one of: shared, dedicated; did you mean 'dedicated'?"),
    ("threads-on-shared", [(("guests", 1, "cpu"), DELETE), (("guests", 1, "threads"), "prefer")],
     G + "[1] (db1).threads: ", "only a dedicated guest has threads (this guest is cpu: shared)"),
    ("threads-value", [(("guests", 1, "threads"), "required")], G + "[1] (db1).threads: ",
     "'required' is not one of: prefer, isolate, require"),
    ("load-on-dedicated", [(("guests", 1, "load"), 0.5)], G + "[1] (db1).load: ",
     "only a shared guest has a load"),
    ("load-zero", [(("guests", 0, "load"), 0)], G + "[0] (web[01-10]).load: ",
     "0 is out of range (must be 0 < load <= 1)"),
    ("load-high", [(("guests", 0, "load"), 1.5)], G + "[0] (web[01-10]).load: ", "1.5 is out of range"),
    ("hugepages-unlisted", [(("guests", 1, "hugepages"), "16G")], G + "[1] (db1).hugepages: ",
     "no host model lists 16G pages in a node's hugepages (listed: 2M, 1G)"),
    ("hugepages-syntax", [(("guests", 1, "hugepages"), "1 GB")], G + "[1] (db1).hugepages: ",
     "'1 GB' is not a page size"),
    ("hugepages-whole", [(("guests", 1, "memory"), "16.5GiB")], G + "[1] (db1).memory: ",
     "16.5GiB is not a whole number of 1G pages (hugepages: 1G)"),
    ("numa-above-vcpus", [(("guests", 1, "numa"), 9)], G + "[1] (db1).numa: ",
     "9 NUMA cells is more than allowed (at most vcpus = 8)"),
    ("numa-require", [(("guests", 2, "numa"), 3)], G + "[2] (rt1).numa: ",
     "3 NUMA cells is more than allowed (at most vcpus/2 = 2 with threads: require)"),
    ("numa-zero", [(("guests", 2, "numa"), 0)], G + "[2] (rt1).numa: ", "0 is out of range (must be >= 1)"),
    ("numa-word", [(("guests", 2, "numa"), "two")], G + "[2] (rt1).numa: ", "'two' is not an integer"),
    ("require-odd", [(("guests", 2, "vcpus"), 5)], G + "[2] (rt1).vcpus: ",
     "5 vCPUs with threads: require (vCPUs go in pairs"),
    ("memory-mode", [(("guests", 2, "memory_mode"), "lazy")], G + "[2] (rt1).memory_mode: ",
     "'lazy' is not one of: strict, preferred, interleave, restrictive"),
    ("emulator", [(("guests", 2, "emulator"), "pinned")], G + "[2] (rt1).emulator: ",
     "'pinned' is not one of: host, isolate, shared"),
    ("anti-affinity", [(("guests", 1, "anti_affinity"), ["db", 7])], G + "[1] (db1).anti_affinity: ",
     "7 is not a tag"),
    ("priority-zero", [(("guests", 3, "priority"), 0)], G + "[3] (batch).priority: ", "0 is out of range"),
    ("priority-float", [(("guests", 3, "priority"), 1.5)], G + "[3] (batch).priority: ", "1.5 is not an integer"),
    ("host-unknown", [(("guests", 1, "host"), "kvm09")], G + "[1] (db1).host: ", "unknown host 'kvm09'"),
    ("host-case", [(("guests", 1, "host"), "KVM01")], G + "[1] (db1).host: ",
     "unknown host 'KVM01'; did you mean 'kvm01'?"),
    ("guest-typo", [(("guests", 0, "memroy"), "1GiB")], G + "[0] (web[01-10]).memroy: ",
     "unknown key (did you mean 'memory'?"),
    ("guest-name-twice", [(("guests", 3, "name"), "Web07")], G + "[3] (Web07).name: ",
     "guest name 'Web07' is already used as 'web07' by guests[0] (web[01-10])"),
    ("guest-name-missing", [(("guests", 2, "name"), DELETE)], G + "[2].name: ", "required key is missing"),
    ("guest-not-mapping", [(("guests", 2), "rt1")], G + "[2]: ", "expected a mapping, e.g. {name: web01"),
    # hard rules 1 and 7
    ("vcpus-above-every-host", [(("guests", 1, "vcpus"), 200)], G + "[1] (db1).vcpus: ",
     "200 vCPUs is more than any host has logical CPUs (at most 144): always a misconfiguration"),
    ("vcpus-above-fixed-host", [(("guests", 1, "vcpus"), 64), (("guests", 1, "numa"), DELETE),
                                (("guests", 1, "host"), "kvm02")], G + "[1] (db1).vcpus: ",
     "64 vCPUs is more than its host kvm02 has logical CPUs (32)"),
    ("fixed-anti-affinity", [(("guests", 1, "name"), "db[1-2]"), (("guests", 1, "host"), "kvm01")],
     G + "[1] (db[1-2]).anti_affinity: ", "guests db1, db2 share anti-affinity tag 'db' but are all fixed on host "
                                          "kvm01"),
    ("fixed-cap", [(("guests", 0, "vcpus"), 8), (("guests", 0, "host"), "kvm01")], G + "[0] (web[01-10]).host: ",
     "have 80 vCPUs together, above its cap of 64 (cpu_overcommit_max 4 x 16 physical cores)"),
]


@pytest.mark.parametrize(("changes", "where", "what"), [case[1:] for case in ERRORS], ids=[c[0] for c in ERRORS])
def test_input_error(changes, where, what):
    problems = problems_of(build(*changes))
    assert len(problems) == 1, problems  # one mistake, one message: no cascade
    assert problems[0].startswith(where), problems[0]
    assert what in problems[0], problems[0]


def test_the_brief_examples_verbatim():
    problems = problems_of(build((("host_models", "r650", "nodes", 1, "cpus"), "8-15,^9x"),
                                 (("hosts", 0, "model"), "r65")))
    assert problems == [
        "quick.yaml: host_models.r650.nodes[1].cpus: '8-15,^9x' is not a CPU list (expected e.g. '0-3,8,^2')",
        "quick.yaml: hosts[0] (kvm[01-08]).model: unknown host model 'r65' (known: r650, suse-4n)",
    ]


def test_all_problems_come_at_once():
    text = build((("policy", "objective"), "fast"),
                 (("host_models", "suse-4n", "nodes", 2, "memory"), "32"),
                 (("guests", 1, "cpu"), DELETE), (("guests", 1, "threads"), "prefer"))
    problems = problems_of(text)
    assert problems == [
        "quick.yaml: policy.objective: 'fast' is not one of: pack, spread",
        "quick.yaml: host_models.suse-4n.nodes[2].memory: '32': memory needs a unit, e.g. 32GiB",
        "quick.yaml: guests[1] (db1).threads: only a dedicated guest has threads (this guest is cpu: shared)",
    ]


def test_many_problems_in_one_item_and_across_items():
    text = build((("guests", 0, "vcpus"), -2), (("guests", 0, "memory"), "4 gigs"), (("guests", 0, "cpu"), "x"),
                 (("guests", 2, "priority"), "high"), (("hosts", 1, "name"), "big 1"))
    problems = problems_of(text)
    assert len(problems) == 5
    assert problems[0].startswith("quick.yaml: hosts[1] (big 1).name: ")
    assert [p.split(": ")[1] for p in problems[1:]] == ["guests[0] (web[01-10]).vcpus", "guests[0] (web[01-10]).memory",
                                                         "guests[0] (web[01-10]).cpu", "guests[2] (rt1).priority"]


# ---------------------------------------------------------------------------------------------------------------
# YAML-level errors


def test_duplicate_key_names_key_and_line():
    text = BASE.replace("{name: rt1, vcpus: 4,", "{name: rt1, vcpus: 4, vcpus: 6,")
    problems = problems_of(text)
    assert len(problems) == 1
    assert problems[0].startswith("quick.yaml: guests[2] (rt1).vcpus: duplicate key 'vcpus' at line 28, column 27")
    assert "(first at line 28, column 17)" in problems[0]


def test_duplicate_host_model_and_more_problems_together():
    text = BASE.replace("  suse-4n:\n", "  r650:\n").replace("{name: batch, vcpus: auto,", "{name: batch, vcpus: 0,")
    problems = problems_of(text)
    assert problems[0] == "quick.yaml: host_models.r650: duplicate key 'r650' at line 13, column 3 (first at line " \
                          "6, column 3)"
    assert any(p.startswith("quick.yaml: guests[3] (batch).vcpus: 0 is out of range") for p in problems)


def test_object_tags_are_refused():
    text = BASE.replace("name: quick", "name: !!python/object/apply:os.system ['echo pwned']")
    problems = problems_of(text)
    assert problems == ["quick.yaml: name: line 3: YAML tag '!!python/object/apply:os.system' is not allowed (only "
                        "plain YAML data; tags that construct objects are refused)"]


def test_yaml_syntax_error_has_line():
    text = BASE.replace("{name: db1, vcpus: 8,", "{name: db1, vcpus: [8,")
    problems = problems_of(text)
    assert len(problems) == 1
    assert problems == ["quick.yaml: line 27, column 100: YAML syntax error: did not find expected ',' or ']' "
                        "(while parsing a flow sequence)"]  # libyaml's words


def test_refused_tag_on_a_key_gives_one_problem():
    problems = problems_of("version: 1\nname: x\n!!python/name:os.system : 1\n")
    assert problems == ["quick.yaml: '': line 3: YAML tag '!!python/name:os.system' is not allowed (only plain YAML "
                        "data; tags that construct objects are refused)"]


def test_control_character():
    assert problems_of("version: 1\nname: a\x07b\n") == [
        "quick.yaml: line 2: character #x0007 is not allowed in YAML (a control character)"]


def test_too_long_number_is_a_problem_not_a_crash():
    assert problems_of("version: 1\nname: x\nguests: " + "1" * 5000 + "\n") == [
        "quick.yaml: a number in the file has too many digits"]


def test_huge_cpu_range_is_refused_quickly():
    problems = problems_of(build((("host_models", "r650", "nodes", 0, "cpus"), "0-1000000000")))
    assert problems == ["quick.yaml: host_models.r650.nodes[0].cpus: '0-1000000000': CPU id 1000000000 is too large "
                        "(at most 65535)"]


def test_yaml_booleans_and_dates_are_not_names():
    problems = problems_of(build((("guests", 0, "name"), False), (("hosts", 1, "name"), 7)))
    assert problems == [
        'quick.yaml: hosts[1] (7).name: 7 is not a name (a name is a string; quote it, e.g. name: "01")',
        'quick.yaml: guests[0].name: false is not a name (a name is a string; quote it, e.g. name: "01")',
    ]


def test_merge_keys_and_anchors_are_plain_yaml():
    text = BASE.replace("  - {name: batch,", "  - &small {name: small, vcpus: 1, memory: 1GiB}\n"
                                              "  - {<<: *small, name: small2, priority: 2}\n  - {name: batch,")
    scenario = load_scenario_text(text, "quick.yaml")
    small2 = scenario.guest_by_name["small2"]
    assert (small2.vcpus, small2.memory_kib, small2.priority) == (1, GIB, 2)


def test_fixed_guests_exactly_at_the_cap_are_fine():
    # cap on kvm01: 4 x 16 cores = 64 vCPUs; 8 guests of 8 vCPUs fixed there
    text = build((("guests", 0, "name"), "web[01-08]"), (("guests", 0, "vcpus"), 8), (("guests", 0, "host"), "kvm01"))
    scenario = load_scenario_text(text, "quick.yaml")
    assert sum(g.vcpus for g in scenario.guests if g.host == "kvm01") == 64


def test_guest_with_as_many_vcpus_as_the_largest_host_is_fine():
    scenario = load_scenario_text(build((("guests", 1, "vcpus"), 144)), "quick.yaml")
    assert scenario.guest_by_name["db1"].vcpus == 144


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "quick.yaml: the file is empty"),
        ("- 1\n- 2\n", "quick.yaml: expected a mapping, e.g. version: 1, name: ..., got a list"),
        ("version: 1\nname: x\nguests:\n", "quick.yaml: guests: expected a list, e.g. [{name: web01"),
        ("version: 1\nname: x\nhost_models: [a]\n", "quick.yaml: host_models: expected a mapping"),
        ("a: 1\n---\nb: 2\n", "quick.yaml: line 2, column 1: YAML syntax error"),
    ],
)
def test_malformed_documents(text, problem):
    problems = problems_of(text)
    assert problems[0].startswith(problem), problems


def test_minimal_scenario_defaults():
    scenario = load_scenario_text("version: 1\nname: empty\n", "e.yaml")
    assert (scenario.hosts, scenario.guests, dict(scenario.host_models)) == ((), (), {})


# ---------------------------------------------------------------------------------------------------------------
# Robustness: whatever value lands anywhere, the loader answers with a ScenarioError (or a scenario), never a crash

LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-3, 300), st.floats(allow_nan=True),
                   st.text(max_size=12), st.lists(st.integers(-1, 200), max_size=3),
                   st.dictionaries(st.text(max_size=4), st.integers(-1, 3), max_size=2),
                   st.sampled_from(["auto", "none", "1G", "2M", "0-3", "8GiB", "dedicated", "require", "kvm01"]))


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, prefix + (index,))


PATHS = [p for p in _paths(BASE_DATA) if p]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(PATHS), LEAVES), min_size=1, max_size=3))
def test_fuzzed_values_never_crash(changes):
    data = copy.deepcopy(BASE_DATA)
    for path, value in changes:
        target = data
        try:
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    text = yaml.safe_dump(data)
    try:
        load_scenario_text(text, "fuzz.yaml")
    except ScenarioError as exc:
        assert exc.problems and all(p.startswith("fuzz.yaml: ") and "\n" not in p for p in exc.problems)


def test_fixture_is_a_copy_of_the_spec_example():
    spec = Path(__file__).parents[1] / "fixtures" / "spec" / "example" / "scenario.yaml"  # the spec's, see SOURCES.md
    assert (FIXTURES / "example-scenario.yaml").read_text() == spec.read_text()
