"""Explicit vNUMA cells (``numa: [{vcpus: 1, memory: 1GiB}, {vcpus: 3, memory: 3GiB}]``): the loader's rules,
the listed sizes through options, CP-SAT, greedy, pinning, explanations, the checker, the XML, the audit and the
variants; rule 2's evenness stays for ``auto`` and ``N``."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import yaml
from lxml import etree
from ortools.sat.python import cp_model

from planner.engine import cpsat_model as m
from planner.analysis import variants
from planner.verify.audit import audit, read_domains
from planner.verify.check import check_plan
from planner.libvirt.domain import domain_xml
from planner.io.loader import ScenarioError, load_scenario
from planner.analysis.output import write_plan
from planner.model.plan import CellPlacement
from planner.engine.problem import compile_problem, guest_options, model_capacity, split_cells
from planner.model.scenario import Guest, GuestCell, HostModel, Node
from planner.engine.solver import solve
from tests.builders import GIB, host_model, placed_by_families, scenario, shared
from tests.libvirt_validate import domain_errors

HALF = Fraction(1, 2)
REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "scenarios" / "explicit-cells.yaml"

MODEL = """\
version: 1
name: t
host_models:
  m:
    nodes:
      - {id: 0, cpus: "0-3,8-11", memory: 16GiB, hugepages: {1G: 4}}
      - {id: 1, cpus: "4-7,12-15", memory: 16GiB}
    distances: [[10, 21], [21, 10]]
    threads_per_core: 2
hosts: [{name: h1, model: m}]
guests:
"""


def load(tmp_path: Path, *guests: str):
    path = tmp_path / "s.yaml"
    path.write_text(MODEL + "".join(f"  - {g}\n" for g in guests))
    return load_scenario(str(path))


def problems(tmp_path: Path, *guests: str) -> list[str]:
    with pytest.raises(ScenarioError) as err:
        load(tmp_path, *guests)
    prefix = f"{tmp_path / 's.yaml'}: "
    return [line.removeprefix(prefix) for line in err.value.problems]


def two_sizes_model() -> HostModel:
    """Node 0: 8 GiB, node 1: 32 GiB; 8 CPUs each (4 cores x 2 threads)."""
    nodes = (Node(0, (0, 1, 2, 3, 8, 9, 10, 11), 8 * GIB), Node(1, (4, 5, 6, 7, 12, 13, 14, 15), 32 * GIB))
    cores = tuple((c, c + 8) for c in range(8))
    return HostModel("m", nodes, ((10, 21), (21, 10)), cores)


def cells(*sizes: tuple[int, int]) -> tuple[GuestCell, ...]:
    return tuple(GuestCell(v, g * GIB) for v, g in sizes)


def asym(name: str, sizes: tuple[tuple[int, int], ...] = ((1, 2), (3, 20)), **kw) -> Guest:
    listed = cells(*sizes)
    return Guest(name, sum(c.vcpus for c in listed), sum(c.memory_kib for c in listed), numa=len(listed),
                 numa_cells=listed, **kw)


# ------------------------------------------------------------------------------------------------ loader


def test_loader_reads_cells_and_fills_in_the_totals(tmp_path):
    sc = load(tmp_path, "{name: a, load: 0.5, numa: [{vcpus: 1, memory: 1GiB}, {vcpus: 3, memory: 3GiB}]}",
              "{name: b, vcpus: 4, memory: 4GiB, numa: [{vcpus: 1, memory: 1GiB}, {vcpus: 3, memory: 3GiB}]}")
    a, b = sc.guests
    assert a.numa_cells == (GuestCell(1, GIB), GuestCell(3, 3 * GIB))
    assert (a.vcpus, a.memory_kib, a.numa) == (4, 4 * GIB, 2)
    assert dataclasses.replace(b, name="a", load=a.load) == a


def test_loader_refuses_bad_cells_naming_the_item(tmp_path):
    lines = problems(
        tmp_path,
        "{name: a, vcpus: 5, memory: 4GiB, numa: [{vcpus: 1, memory: 1GiB}, {vcpus: 3, memory: 3GiB}]}",
        "{name: b, memory: 5GiB, numa: [{vcpus: 1, memory: 1GiB}, {vcpus: 3, memory: 3GiB}]}",
        "{name: c, numa: [{vcpus: 1}, {vcpus: 0, memory: 1GiB}, {vcpus: 1, memory: 1024, x: 1}]}",
        "{name: d, numa: []}",
        "{name: e, cpu: dedicated, threads: require, numa: [{vcpus: 2, memory: 1GiB}, {vcpus: 1, memory: 1GiB}]}",
        "{name: f, hugepages: 1G, numa: [{vcpus: 1, memory: 1GiB}, {vcpus: 1, memory: 1536MiB}]}",
        "{name: g, numa: [{vcpus: 1, memory: 1GiB}, {vcpus: 1, memory: 1GiB}, {vcpus: 1, memory: 1GiB}]}",
        "{name: h, vcpus: auto, cpu_demand: 2, numa: [{vcpus: 1, memory: 1GiB}]}",
    )
    assert lines == [
        "guests[0] (a).vcpus: 5 vCPUs, but the numa cells hold 1 + 3 = 4 (the cells must add up to vcpus; or leave "
        "vcpus out)",
        "guests[1] (b).memory: 5GiB, but the numa cells hold 1GiB + 3GiB = 4GiB (the cells must add up to memory; or "
        "leave memory out)",
        "guests[2] (c).numa[0].memory: required key is missing",
        "guests[2] (c).numa[1].vcpus: 0 is out of range (must be >= 1)",
        "guests[2] (c).numa[2].x: unknown key (known keys: vcpus, memory)",
        "guests[2] (c).numa[2].memory: 1024: memory needs a unit, e.g. 32GiB",
        "guests[3] (d).numa: an empty list of cells (give auto, a number of cells, or cells like [{vcpus: 2, "
        "memory: 4GiB}, ...])",
        "guests[4] (e).numa[1].vcpus: 1 vCPUs with threads: require (each cell holds whole sibling pairs: give an "
        "even number)",
        "guests[5] (f).numa[1].memory: 1.5GiB is not a whole number of 1G pages (hugepages: 1G: each cell takes "
        "whole pages)",
        "guests[7] (h).vcpus: auto cannot go with explicit numa cells (the cells give the vCPU count: leave vcpus "
        "out)",
        "guests[6] (g).numa: 3 NUMA cells, but no host has more than 2 nodes that hold guest cells (each cell "
        "needs a node of its own)",
    ]


def test_cli_validate_exits_2_without_traceback(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(MODEL + "  - {name: a, vcpus: 3, numa: [{vcpus: 1, memory: 1GiB}, {vcpus: 1, memory: 1GiB}]}\n")
    result = subprocess.run([sys.executable, "-m", "planner.cli.main", "validate", str(path)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert f"{path}: guests[0] (a).vcpus: 3 vCPUs, but the numa cells hold 1 + 1 = 2" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------------------------------------------ problem


def test_split_keeps_the_listed_sizes_in_order_and_even_split_is_unchanged():
    g = asym("a", ((1, 1), (3, 3)))
    assert split_cells(g, 2) == [((0,), GIB), ((1, 2, 3), 3 * GIB)]
    assert split_cells(g, 1) is None and split_cells(g, 3) is None
    even = Guest("e", 4, 4 * GIB, numa=2)
    assert split_cells(even, 2) == [((0, 1), 2 * GIB), ((2, 3), 2 * GIB)]


def test_options_put_each_cell_on_a_node_that_holds_it():
    cap = model_capacity(two_sizes_model(), scenario([two_sizes_model()], {"h1": "m"}, []).policy)
    policy = scenario([two_sizes_model()], {"h1": "m"}, []).policy
    small_first = guest_options(asym("a"), cap, policy)
    assert [(o.nodes, [len(c.vcpus) for c in o.cells]) for o in small_first] == [((0, 1), [1, 3])]
    big_first = guest_options(asym("b", ((3, 20), (1, 2))), cap, policy)
    assert [o.nodes for o in big_first] == [(1, 0)]
    assert [c.memory_kib for c in big_first[0].cells] == [20 * GIB, 2 * GIB]
    both_small = guest_options(asym("c", ((1, 2), (3, 4))), cap, policy)
    assert sorted(o.nodes for o in both_small) == [(0, 1), (1, 0)]  # the order matters: both arrangements
    alike = guest_options(asym("d", ((2, 2), (2, 2))), cap, policy)
    assert [o.nodes for o in alike] == [(0, 1)]  # equal cells: one arrangement


def test_shape_keys_tell_cell_sizes_apart():
    from planner.engine.problem import shape_key

    model = host_model(nodes=2, memory_gib=32)
    sc = scenario([model], {"h1": "m"}, [asym("a", ((1, 2), (3, 6))), asym("b", ((3, 6), (1, 2))),
                                          asym("c", ((2, 4), (2, 4)))])
    problem = compile_problem(sc)
    assert len(problem.classes) == 3
    for shape in (lambda c: shape_key(c, priority=True), shape_key):  # decompose's and greedy's
        assert len({shape(c) for c in problem.classes}) == 3


_placed = placed_by_families


@pytest.mark.parametrize("count, explicit, expected", [(2, True, 2), (3, True, 2), (3, False, 3)])
def test_node_memory_family_counts_each_listed_cell(count, explicit, expected):
    # 2 nodes of 16 GiB: cells of 1 + 9 GiB: one 9 GiB cell per node; the even split (5 + 5 GiB) lets 3 in
    model = host_model(nodes=2, memory_gib=16)
    if explicit:
        guests = [asym(f"g{i}", ((1, 1), (1, 9))) for i in range(count)]
    else:
        guests = [shared(f"g{i}", 2, 10, numa=2) for i in range(count)]
    assert _placed(scenario([model], {"h1": "m"}, guests), m.define_node_memory) == expected


# ------------------------------------------------------------------------------------------------ solve


@pytest.mark.parametrize("method", ["greedy", "direct", "patterns"])
def test_each_method_places_every_cell_on_a_node_with_room(method):
    # node 1 (32 GiB) takes both large cells (20 + 10 GiB), node 0 (8 GiB) both small ones
    sc = scenario([two_sizes_model()], {"h1": "m"}, [asym("a", load=HALF), asym("b", ((3, 10), (1, 2)), load=HALF)],
                  time_limit_s=10)
    plan = solve(sc, method=method, workers=1)
    assert check_plan(plan) == []
    a, b = plan.placed["a"], plan.placed["b"]
    assert [(c.node_id, c.vcpus, c.memory_kib) for c in a.cells] == [(0, (0,), 2 * GIB), (1, (1, 2, 3), 20 * GIB)]
    assert [(c.node_id, c.vcpus, c.memory_kib) for c in b.cells] == [(1, (0, 1, 2), 10 * GIB), (0, (3,), 2 * GIB)]
    node_of = two_sizes_model().node_of_cpu
    for p in (a, b):
        for cell in p.cells:
            assert {node_of[c] for v in cell.vcpus for c in p.vcpu_pins[v]} == {cell.node_id}


def test_a_cell_too_large_for_any_node_is_refused_naming_the_cell():
    sc = scenario([two_sizes_model()], {"h1": "m"}, [asym("big", ((1, 2), (1, 40)))], time_limit_s=5)
    plan = solve(sc, method="greedy")
    reason = plan.unplaced_reasons["big"]
    assert reason.startswith("fits no host even when empty: needs 1 shared vCPUs at load 1 in cell 1 (of 2 "
                             "explicit cells: 1+1 vCPUs), 40GiB of 4K memory")
    assert "cell 1 (1 vCPUs, 40GiB) on node 1: 4K memory for one cell" in reason
    assert "short by 8GiB" in reason


# ------------------------------------------------------------------------------------------------ checker


def _solved():
    sc = scenario([two_sizes_model()], {"h1": "m"}, [asym("a"), Guest("e", 4, 4 * GIB, numa=2)], time_limit_s=5)
    plan = solve(sc, method="greedy")
    assert check_plan(plan) == []
    return plan


def _with_cells(plan, guest, new_cells):
    placed = dict(plan.placed)
    placed[guest] = dataclasses.replace(placed[guest], cells=new_cells)
    return dataclasses.replace(plan, placed=placed)


def test_checker_accepts_exactly_the_listed_sizes():
    plan = _solved()
    a = plan.placed["a"]
    c0, c1 = a.cells
    # the even split (2 + 2 vCPUs, 11 + 11 GiB) is refused for a guest that lists 1 + 3 and 2 + 20 GiB
    even = (dataclasses.replace(c0, vcpus=(0, 1), memory_kib=11 * GIB),
            dataclasses.replace(c1, vcpus=(2, 3), memory_kib=11 * GIB))
    assert [v.message for v in check_plan(_with_cells(plan, "a", even)) if v.rule == "cells"] == [
        "a on h1: cell 0 holds 2 vCPUs, but its numa cell 0 lists 1",
        "a on h1: cell 1 holds 2 vCPUs, but its numa cell 1 lists 3",
        f"a on h1: cell 0 has {11 * GIB} KiB (11GiB), but its numa cell 0 lists {2 * GIB} KiB (2GiB)",
        f"a on h1: cell 1 has {11 * GIB} KiB (11GiB), but its numa cell 1 lists {20 * GIB} KiB (20GiB)",
    ]
    memory_swapped = (dataclasses.replace(c0, memory_kib=20 * GIB), dataclasses.replace(c1, memory_kib=2 * GIB))
    assert {v.message for v in check_plan(_with_cells(plan, "a", memory_swapped)) if v.rule == "cells"} == {
        f"a on h1: cell 0 has {20 * GIB} KiB (20GiB), but its numa cell 0 lists {2 * GIB} KiB (2GiB)",
        f"a on h1: cell 1 has {2 * GIB} KiB (2GiB), but its numa cell 1 lists {20 * GIB} KiB (20GiB)",
    }
    one_cell = (CellPlacement(0, 1, (0, 1, 2, 3), 22 * GIB),)
    assert "a on h1 has 1 cells, but numa: 2 asks for 2" in {v.message for v in
                                                             check_plan(_with_cells(plan, "a", one_cell))}


def test_checker_still_enforces_evenness_for_numa_n():
    plan = _solved()
    e0, e1 = plan.placed["e"].cells
    uneven = (dataclasses.replace(e0, vcpus=(0,), memory_kib=GIB), dataclasses.replace(e1, vcpus=(1, 2, 3),
                                                                                       memory_kib=3 * GIB))
    messages = {v.message for v in check_plan(_with_cells(plan, "e", uneven)) if v.rule == "cells"}
    assert ("e on h1: cells hold [1, 3] vCPUs, which differ by 2 (at most 1; uneven cells must be listed: numa: "
            "[{vcpus: N, memory: SIZE}, ...])") in messages


# ------------------------------------------------------------------------------------------------ XML


def test_xml_has_the_listed_cells_memnodes_and_one_socket(tmp_path):
    plan = _solved()
    text = domain_xml(plan, "a")
    root = etree.fromstring(text.encode())
    assert [(c.get("id"), c.get("cpus"), c.get("memory")) for c in root.findall("cpu/numa/cell")] == [
        ("0", "0", str(2 * GIB)), ("1", "1-3", str(20 * GIB))]
    assert [(n.get("cellid"), n.get("nodeset")) for n in root.findall("numatune/memnode")] == [("0", "0"), ("1", "1")]
    assert dict(root.find("cpu/topology").attrib) == {"sockets": "1", "dies": "1", "cores": "4", "threads": "1"}
    path = tmp_path / "a.xml"
    path.write_text(text)
    assert domain_errors(path) is None


def test_xml_equal_explicit_cells_get_a_socket_each(tmp_path):
    sc = scenario([two_sizes_model()], {"h1": "m"}, [asym("d", ((2, 2), (2, 2)))], time_limit_s=5)
    plan = solve(sc, method="greedy")
    root = etree.fromstring(domain_xml(plan, "d").encode())
    assert dict(root.find("cpu/topology").attrib) == {"sockets": "2", "dies": "1", "cores": "2", "threads": "1"}


# ------------------------------------------------------------------------------------------------ example, audit


@pytest.fixture(scope="module")
def example_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("cells") / "out"
    plan = solve(load_scenario(str(EXAMPLE)), time_limit_s=10, workers=1)
    assert check_plan(plan) == []
    write_plan(plan, out)
    return plan, out


def test_example_places_the_uneven_cells_and_refuses_the_huge_one(example_out):
    plan, out = example_out
    assert sorted(plan.unplaced_reasons) == ["huge-cell"]
    assert "in cell 1 (of 2 explicit cells: 2+2 vCPUs), 40GiB of 4K memory" in plan.unplaced_reasons["huge-cell"]
    db = plan.placed["db-asym"]
    assert [(len(c.vcpus), c.memory_kib) for c in db.cells] == [(4, 2 * GIB), (8, 6 * GIB)]
    assert db.host == "kvm1" and db.cells[1].node_id in (0, 1)  # only kvm1's nodes 0, 1 hold 6 x 1G
    for name in ("nova-asym1", "nova-asym2", "db-asym", "rt-asym"):
        assert domain_errors(out / "hosts" / plan.placed[name].host / f"{name}.xml") is None, name


def test_audit_accepts_listed_cells_and_flags_them_without_the_list(example_out, tmp_path):
    _plan, out = example_out
    result = audit(load_scenario(str(EXAMPLE)), read_domains([str(out)]))
    assert result.findings == []
    text = EXAMPLE.read_text().replace("numa: [{vcpus: 2, memory: 4GiB}, {vcpus: 6, memory: 20GiB}]",
                                       "vcpus: 8, memory: 24GiB, numa: 2").replace("../models", str(REPO / "models"))
    even = tmp_path / "even.yaml"
    even.write_text(text)
    result = audit(load_scenario(str(even)), read_domains([str(out)]))
    assert sorted({(f.rule, f.guest) for f in result.findings}) == [("cells", "nova-asym1"), ("cells", "nova-asym2")]
    assert ("nova-asym1 on kvm1: cells hold [2, 6] vCPUs, which differ by 4 (at most 1; uneven cells must be "
            "listed: numa: [{vcpus: N, memory: SIZE}, ...])") in {f.message for f in result.findings}


@pytest.mark.parametrize("with_scenario", [True, False])
def test_to_scenario_writes_the_cells_and_reads_back_clean(example_out, tmp_path, with_scenario):
    plan, out = example_out
    sc = load_scenario(str(EXAMPLE))
    if not with_scenario:  # the audit sees only the hosts: the uneven cells come from the domain XML
        sc = dataclasses.replace(sc, guests=())
    written = tmp_path / "deployed.yaml"
    written.write_text(audit(sc, read_domains([str(out)])).scenario_yaml())
    guests = {g["name"]: g for g in yaml.safe_load(written.read_text())["guests"]}
    assert guests["nova-asym1"]["numa"] == [{"vcpus": 2, "memory": "4GiB"}, {"vcpus": 6, "memory": "20GiB"}]
    assert guests["db-asym"]["numa"] == [{"vcpus": 4, "memory": "2GiB"}, {"vcpus": 8, "memory": "6GiB"}]
    assert guests["web1"]["numa"] == 1
    again = load_scenario(str(written))
    assert again.guest_by_name["rt-asym"].numa_cells == cells((2, 2), (4, 4))
    assert audit(again, read_domains([str(out)])).findings == []


# ------------------------------------------------------------------------------------------------ variants


def test_variants_keep_and_resize_the_cells():
    g = variants.guest_from_spec({"name": "x", "cpu": "dedicated", "threads": "require", "hugepages": "1G",
                                  "numa": [{"vcpus": 2, "memory": "2GiB"}, {"vcpus": 4, "memory": "6GiB"}]})
    assert (g.vcpus, g.memory_kib, g.numa, g.numa_cells) == (6, 8 * GIB, 2, cells((2, 2), (4, 6)))
    with pytest.raises(ValueError, match=r"guest y: vcpus: 8 vCPUs, but the numa cells hold 2 \+ 4 = 6"):
        variants.guest_from_spec({"name": "y", "vcpus": 8, "memory": "8GiB",
                                  "numa": [{"vcpus": 2, "memory": "2GiB"}, {"vcpus": 4, "memory": "6GiB"}]})
    sc = scenario([host_model(nodes=2, memory_gib=64, pages={1048576: 32})], {"h1": "m"}, [g])
    doubled = variants.scale_demand(sc, 2, by="size").guests[0]
    assert doubled.numa_cells == cells((4, 4), (8, 12)) and (doubled.vcpus, doubled.memory_kib) == (12, 16 * GIB)
    shared_g = asym("s", ((1, 1), (2, 3)), hugepage_kib=2048)
    moved = variants.switch_page_size(scenario([host_model()], {"h1": "m"}, [shared_g]), "1G").guests[0]
    assert moved.numa_cells == cells((1, 1), (2, 3)) and moved.hugepage_kib == 1048576
    flavour = variants.flavour_guest("asym-xlarge", "f1")
    assert flavour.numa_cells == cells((2, 4), (6, 20))
