"""planner.libvirt.domain: golden domain XML files, byte for byte, and libvirt's own validators.

Scenarios and plans are built by hand here (not from YAML) so these tests depend only on the core types."""

from __future__ import annotations

import os
import re
from fractions import Fraction
from pathlib import Path

import pytest
from lxml import etree

from planner.libvirt.domain import (
    MACHINE_OF_ARCH,
    DomainSpec,
    domain_spec,
    domain_xml,
    guest_topology,
    serialize,
)
from planner.libvirt.elements import (
    DomainParts,
    Hugepages,
    MemoryBacking,
    NumaCell,
    Page,
    Sibling,
    Topology,
    Vcpu,
    VcpuPin,
    declared_parts,
    owned_children,
    owned_parts,
)
from planner.model.plan import CellPlacement, GuestPlacement, Plan
from planner.model.scenario import Guest, Host, HostModel, Node, Policy, Scenario
from tests.libvirt_validate import define_errors, domain_errors, schema_errors, topology_errors

GOLDEN = Path(__file__).parents[1] / "golden" / "libvirt_xml"
SPEC_EXAMPLE = Path(__file__).parents[1] / "fixtures" / "spec" / "example" / "out" / "hosts" / "kvm1"  # see SOURCES.md

GIB = 1024**2
MIB = 1024


# --------------------------------------------------------------------------------------------------------------
# Hand-built scenarios and plans


def _smt_cores(n_cpus: int, threads: int) -> tuple[tuple[int, ...], ...]:
    """Linux's usual enumeration: the siblings of c are c + k·N/T."""
    step = n_cpus // threads
    return tuple(tuple(c + k * step for k in range(threads)) for c in range(step))


def guide_4n() -> HostModel:
    """The spec example's host model."""
    node_cpus = [(0, 18), (18, 36), (36, 54), (54, 72)]
    nodes = tuple(
        Node(
            id=i,
            cpus=tuple(range(lo, hi)) + tuple(range(lo + 72, hi + 72)),
            memory_kib=32 * GIB,
            hugepages={GIB: 8} if i < 2 else {},
        )
        for i, (lo, hi) in enumerate(node_cpus)
    )
    distances = tuple(tuple(10 if a == b else 21 for b in range(4)) for a in range(4))
    return HostModel(
        name="guide-4n",
        nodes=nodes,
        distances=distances,
        cores=_smt_cores(144, 2),
        reserved_cpus=frozenset({0, 72}),
        reserved_memory_kib=2 * GIB,
    )


def amd_8n() -> HostModel:
    """Two sockets of 4 NPS4 nodes: 10 local, 12 same socket, 32 other socket; 128 CPUs, siblings c+64."""
    nodes = tuple(
        Node(
            id=k,
            cpus=tuple(range(8 * k, 8 * k + 8)) + tuple(range(64 + 8 * k, 64 + 8 * k + 8)),
            memory_kib=64 * GIB,
            hugepages={2 * MIB: 4096},
        )
        for k in range(8)
    )
    distances = tuple(tuple(10 if a == b else 12 if a // 4 == b // 4 else 32 for b in range(8)) for a in range(8))
    return HostModel(
        name="amd-8n",
        nodes=nodes,
        distances=distances,
        cores=_smt_cores(128, 2),
        reserved_cpus=frozenset({0, 64}),
        reserved_memory_kib=4 * GIB,
    )


def ampere_2n(arch: str = "aarch64") -> HostModel:
    nodes = (
        Node(id=0, cpus=tuple(range(0, 80)), memory_kib=256 * GIB),
        Node(id=1, cpus=tuple(range(80, 160)), memory_kib=256 * GIB),
    )
    return HostModel(
        name="ampere-2n",
        nodes=nodes,
        distances=((10, 20), (20, 10)),
        cores=_smt_cores(160, 1),
        reserved_cpus=frozenset({0, 80}),
        reserved_memory_kib=4 * GIB,
        arch=arch,
    )


def power9_2s() -> HostModel:
    """Sparse node ids 0 and 8, SMT4 cores listed explicitly (4i..4i+3)."""
    nodes = (
        Node(id=0, cpus=tuple(range(0, 80)), memory_kib=128 * GIB),
        Node(id=8, cpus=tuple(range(80, 160)), memory_kib=128 * GIB),
    )
    return HostModel(
        name="power9-2s",
        nodes=nodes,
        distances=((10, 40), (40, 10)),
        cores=tuple(tuple(range(4 * i, 4 * i + 4)) for i in range(40)),
        reserved_cpus=frozenset({0, 1, 2, 3}),
        reserved_memory_kib=8 * GIB,
        arch="ppc64le",
    )


def _pairs(first_cpus: list[int], sibling_offset: int) -> list[tuple[int, ...]]:
    """One pin per vCPU, packing sibling threads: c, c+offset, c+1, c+1+offset, ..."""
    return [(c + k * sibling_offset,) for c in first_cpus for k in range(2)]


def example_plan() -> Plan:
    """web01, db1 and rt1 on kvm1 exactly as in the spec's example output."""
    model = guide_4n()
    guests = tuple(
        Guest(name=f"web{i:02d}", vcpus=2, memory_kib=4 * GIB, load=Fraction(3, 10)) for i in range(1, 7)
    ) + tuple(
        Guest(
            name=f"db{i}",
            vcpus=24,
            memory_kib=12 * GIB,
            cpu="dedicated",
            threads="prefer",
            hugepage_kib=GIB,
            anti_affinity=("db",),
        )
        for i in (1, 2)
    ) + (
        Guest(name="rt1", vcpus=4, memory_kib=8 * GIB, cpu="dedicated", threads="require", emulator="isolate"),
    )
    scenario = Scenario(
        name="example",
        policy=Policy(),
        host_models={"guide-4n": model},
        hosts=(Host("kvm1", "guide-4n"), Host("kvm2", "guide-4n")),
        guests=guests,
    )
    pool0 = tuple(range(10, 18)) + tuple(range(81, 90))
    web01 = GuestPlacement(
        guest="web01",
        host="kvm1",
        cells=(CellPlacement(0, 0, (0, 1), 4 * GIB),),
        vcpu_pins=(pool0, pool0),
        emulator_pins=(0, 72),
    )
    db1 = GuestPlacement(
        guest="db1",
        host="kvm1",
        cells=(
            CellPlacement(0, 0, tuple(range(0, 12)), 6 * GIB),
            CellPlacement(1, 1, tuple(range(12, 24)), 6 * GIB),
        ),
        vcpu_pins=tuple(_pairs(list(range(1, 7)), 72) + _pairs(list(range(18, 24)), 72)),
        emulator_pins=(0, 72),
    )
    rt1 = GuestPlacement(
        guest="rt1",
        host="kvm1",
        cells=(CellPlacement(0, 0, (0, 1, 2, 3), 8 * GIB),),
        vcpu_pins=((7,), (79,), (8,), (80,)),
        emulator_pins=(9,),
    )
    placements = {"web01": web01, "db1": db1, "rt1": rt1}
    return Plan(scenario=scenario, status="feasible", placed=placements, unplaced_reasons={})


def own_plan(arm_arch: str = "aarch64") -> Plan:
    """Cases the example lacks: uneven cells with 2M pages on an 8-node AMD matrix, aarch64 with interleave,
    ppc64le with sparse node ids, SMT4, threads: require and restrictive."""
    models = {m.name: m for m in (amd_8n(), ampere_2n(arm_arch), power9_2s())}
    page_2m = 2 * MIB
    guests = (
        Guest(
            name="uneven3",
            vcpus=5,
            memory_kib=2050 * page_2m,  # 4100MiB: 2050 pages, not divisible by 3
            cpu="dedicated",
            threads="prefer",
            hugepage_kib=page_2m,
            numa=3,
        ),
        Guest(name="arm01", vcpus=6, memory_kib=6 * GIB, memory_mode="interleave", numa=2),
        Guest(
            name="p9db",
            vcpus=8,
            memory_kib=16 * GIB,
            cpu="dedicated",
            threads="require",
            memory_mode="restrictive",
            emulator="isolate",
            numa=2,
        ),
    )
    scenario = Scenario(
        name="own",
        policy=Policy(),
        host_models=models,
        hosts=(Host("amd1", "amd-8n"), Host("arm1", "ampere-2n"), Host("p9-1", "power9-2s")),
        guests=guests,
    )
    uneven3 = GuestPlacement(
        guest="uneven3",
        host="amd1",
        cells=(
            CellPlacement(0, 2, (0, 1), 684 * page_2m),
            CellPlacement(1, 3, (2, 3), 683 * page_2m),
            CellPlacement(2, 4, (4,), 683 * page_2m),
        ),
        vcpu_pins=((16,), (80,), (24,), (88,), (32,)),
        emulator_pins=(0, 64),
    )
    pool_a, pool_b = tuple(range(1, 80)), tuple(range(81, 160))
    arm01 = GuestPlacement(
        guest="arm01",
        host="arm1",
        cells=(CellPlacement(0, 0, (0, 1, 2), 3 * GIB), CellPlacement(1, 1, (3, 4, 5), 3 * GIB)),
        vcpu_pins=(pool_a,) * 3 + (pool_b,) * 3,
        emulator_pins=(0, 80),
    )
    p9db = GuestPlacement(
        guest="p9db",
        host="p9-1",
        cells=(CellPlacement(0, 0, (0, 1, 2, 3), 8 * GIB), CellPlacement(1, 8, (4, 5, 6, 7), 8 * GIB)),
        vcpu_pins=((4,), (5,), (8,), (9,), (80,), (81,), (84,), (85,)),
        emulator_pins=(12,),
    )
    placements = {"uneven3": uneven3, "arm01": arm01, "p9db": p9db}
    return Plan(scenario=scenario, status="feasible", placed=placements, unplaced_reasons={})


EXAMPLE_GUESTS = ["web01", "db1", "rt1"]
OWN_GUESTS = ["uneven3", "arm01", "p9db"]
ALL_GOLDEN = sorted(GOLDEN.glob("*.xml"))


# --------------------------------------------------------------------------------------------------------------
# Golden files


def _golden(name: str, actual: str) -> str:
    """The golden file's text; ``VPLAN_UPDATE_GOLDEN=1`` rewrites it from ``actual`` first (review the diff)."""
    path = GOLDEN / f"{name}.xml"
    if os.environ.get("VPLAN_UPDATE_GOLDEN") == "1":
        path.write_text(actual)
    return path.read_text()


@pytest.mark.parametrize("guest", EXAMPLE_GUESTS)
def test_spec_example_byte_for_byte(guest: str) -> None:
    actual = domain_xml(example_plan(), guest)
    assert actual == _golden(guest, actual)


#: What a complete domain adds to the spec example's files (which hold only what vplan decides).
COMPLETE_DOMAIN_PARTS = ["uuid", "features", "on_poweroff", "on_reboot", "on_crash", "devices"]


@pytest.mark.parametrize("guest", EXAMPLE_GUESTS)
def test_golden_copies_match_the_spec(guest: str) -> None:
    """Every element of the spec's example is in the golden file, identical; the golden file adds exactly the
    parts of a complete domain."""
    source = SPEC_EXAMPLE / f"{guest}.xml"
    spec_root = etree.parse(str(source)).getroot()
    golden_root = etree.parse(str(GOLDEN / f"{guest}.xml")).getroot()
    assert dict(spec_root.attrib) == dict(golden_root.attrib)
    for child in spec_root:
        twin = golden_root.find(child.tag)
        assert twin is not None, child.tag
        assert etree.tostring(twin, method="c14n") == etree.tostring(child, method="c14n")
    added = [c.tag for c in golden_root if spec_root.find(c.tag) is None]
    assert added == COMPLETE_DOMAIN_PARTS


@pytest.mark.parametrize("guest", OWN_GUESTS)
def test_own_golden_byte_for_byte(guest: str) -> None:
    actual = domain_xml(own_plan(), guest)
    assert actual == _golden(guest, actual)


def test_every_golden_file_is_covered() -> None:
    assert sorted(p.stem for p in ALL_GOLDEN) == sorted(EXAMPLE_GUESTS + OWN_GUESTS)


# --------------------------------------------------------------------------------------------------------------
# libvirt's validators


@pytest.mark.parametrize("path", ALL_GOLDEN, ids=lambda p: p.name)
def test_golden_passes_libvirt(path: Path) -> None:
    assert schema_errors(path) is None
    assert define_errors(path) is None
    assert topology_errors(path) is None


def _broken(tmp_path: Path, source: str, old: str, new: str) -> Path:
    text = (GOLDEN / source).read_text()
    assert old in text
    path = tmp_path / f"broken-{source}"
    path.write_text(text.replace(old, new, 1))
    return path


def test_schema_rejects_a_missing_required_attribute(tmp_path: Path) -> None:
    path = _broken(tmp_path, "rt1.xml", "<vcpupin vcpu='0' cpuset='7'/>", "<vcpupin cpuset='7'/>")
    assert schema_errors(path) is not None
    assert define_errors(path) is not None


def test_define_rejects_a_vcpupin_beyond_the_vcpu_count(tmp_path: Path) -> None:
    """libvirt only logs a warning and drops the pin; define_errors reports it."""
    path = _broken(tmp_path, "rt1.xml", "<vcpupin vcpu='3' cpuset='80'/>", "<vcpupin vcpu='4' cpuset='80'/>")
    assert schema_errors(path) is None  # the schema cannot see it
    errors = define_errors(path)
    assert errors is not None and "vcpupin" in errors


def test_define_rejects_a_memnode_without_a_cell(tmp_path: Path) -> None:
    path = _broken(tmp_path, "db1.xml", "<memnode cellid='1'", "<memnode cellid='2'")
    errors = define_errors(path)
    assert errors is not None and "cellid" in errors


def test_define_rejects_hugepages_on_a_missing_cell(tmp_path: Path) -> None:
    path = _broken(tmp_path, "uneven3.xml", "nodeset='0-2'/>\n    </hugepages>", "nodeset='0-3'/>\n    </hugepages>")
    assert define_errors(path) is not None


def test_topology_check_catches_what_the_test_driver_accepts(tmp_path: Path) -> None:
    path = _broken(tmp_path, "rt1.xml", "cores='2' threads='2'", "cores='1' threads='2'")
    assert define_errors(path) is None  # only the QEMU driver refuses this
    assert "topology" in (topology_errors(path) or "")
    assert domain_errors(path) is not None


# --------------------------------------------------------------------------------------------------------------
# Pieces and errors


def test_domain_spec_is_typed_and_round_trips() -> None:
    spec = domain_spec(example_plan(), "db1")
    assert isinstance(spec, DomainSpec)
    assert spec.cpu.topology.vcpus == spec.vcpus == 24
    assert spec.hugepages is not None and spec.hugepages.nodeset == (0, 1)
    assert spec.numatune.nodeset == (0, 1)
    assert [s.value for s in spec.cpu.cells[0].distances] == [10, 21]
    assert spec.to_xml() == serialize(etree.fromstring(spec.to_xml().encode()))


@pytest.mark.parametrize(
    ("vcpus", "cells", "threads", "expected"),
    [
        (2, 1, None, (1, 1, 2, 1)),
        (24, 2, "prefer", (2, 1, 12, 1)),
        (4, 1, "require", (1, 1, 2, 2)),
        (5, 3, "prefer", (1, 1, 5, 1)),
        (6, 2, "require", (1, 1, 3, 2)),  # 3 pairs do not split over 2 sockets
        (8, 2, "require", (2, 1, 2, 2)),
        (7, 7, None, (7, 1, 1, 1)),
    ],
)
def test_guest_topology(vcpus: int, cells: int, threads: str | None, expected: tuple[int, int, int, int]) -> None:
    topology = guest_topology(vcpus, cells, threads)
    assert (topology.sockets, topology.dies, topology.cores, topology.threads) == expected
    assert topology.vcpus == vcpus


@pytest.mark.parametrize(("arch", "machine"), sorted(MACHINE_OF_ARCH.items()))
def test_machine_per_arch(arch: str, machine: str) -> None:
    plan = own_plan(arm_arch=arch)
    assert f"<type arch='{arch}' machine='{machine}'>hvm</type>" in domain_xml(plan, "arm01")


def test_unknown_arch_is_refused() -> None:
    plan = own_plan(arm_arch="riscv64")
    with pytest.raises(ValueError, match="riscv64"):
        domain_xml(plan, "arm01")


def test_unplaced_guest_is_refused() -> None:
    with pytest.raises(ValueError, match="not placed"):
        domain_xml(example_plan(), "web02")


def test_inconsistent_memory_is_refused() -> None:
    plan = example_plan()
    good = plan.placed["rt1"]
    bad = GuestPlacement(
        guest="rt1",
        host="kvm1",
        cells=(CellPlacement(0, 0, (0, 1, 2, 3), 4 * GIB),),
        vcpu_pins=good.vcpu_pins,
        emulator_pins=good.emulator_pins,
    )
    plan = Plan(scenario=plan.scenario, status="feasible", placed={"rt1": bad}, unplaced_reasons={})
    with pytest.raises(ValueError, match="memory"):
        domain_xml(plan, "rt1")


def test_serialize_escapes_in_libvirt_style() -> None:
    element = etree.Element("x")
    element.set("a", "it's <&>")
    child = etree.SubElement(element, "y")
    child.text = "1 < 2 & 3"
    assert serialize(element) == "<x a='it&apos;s &lt;&amp;&gt;'>\n  <y>1 &lt; 2 &amp; 3</y>\n</x>\n"


@pytest.mark.parametrize("ci", ["true", ""])
def test_missing_tool_skips_or_fails_under_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ci: str) -> None:
    import tests.libvirt_validate as lv

    monkeypatch.setattr(lv.shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", ci)
    expected = pytest.fail.Exception if ci == "true" else pytest.skip.Exception
    with pytest.raises(expected, match="virsh.*apt-get install libvirt-clients"):
        lv.define_errors(tmp_path / "any.xml")
    with pytest.raises(expected, match="virt-xml-validate"):
        lv.schema_errors(tmp_path / "any.xml")


# --------------------------------------------------------------------------------------------------------------
# One declaration per element: written and read by the same typed parts (planner.libvirt.elements)

FIXTURES = Path(__file__).parents[1] / "fixtures"
#: every domain XML the tests hold: the goldens, the apply corpus (and its refused files), the audit corpus
ALL_DOMAINS = ALL_GOLDEN + sorted(
    p for p in [*(FIXTURES / "apply").rglob("*.xml"), *(FIXTURES / "domains").rglob("*.xml"),
                *(FIXTURES / "domains-bad").rglob("*.xml")]
    if etree.parse(str(p)).getroot().tag == "domain")


def test_the_corpus_is_not_empty() -> None:
    assert len(ALL_GOLDEN) == 6 and len(ALL_DOMAINS) >= 25


@pytest.mark.parametrize("path", ALL_DOMAINS, ids=lambda p: p.relative_to(p.parents[2]).as_posix())
def test_every_part_round_trips(path: Path) -> None:
    """For each declared part found in the domain: from_element(to_element(x)) == x (x read from the file)."""
    root = etree.parse(str(path)).getroot()
    seen = 0
    for part in declared_parts():
        for element in root.findall(part.PATH):
            if part is NumaCell:  # a cell's messages name its position; the value does not depend on it
                value = part.from_element(element, "", 0)
            else:
                value = part.from_element(element)
            assert part.from_element(value.to_element()) == value, (part.__name__, value)
            seen += 1
    assert seen >= 2  # at least <memory> and <vcpu>


@pytest.mark.parametrize("guest", EXAMPLE_GUESTS + OWN_GUESTS)
def test_reading_a_written_domain_gives_back_the_plans_parts(guest: str) -> None:
    plan = example_plan() if guest in EXAMPLE_GUESTS else own_plan()
    spec = domain_spec(plan, guest)
    read = DomainParts.from_element(etree.fromstring(domain_xml(plan, guest).encode()))
    assert read == spec.parts()
    assert read.cputune.vcpupins[0] == VcpuPin(0, spec.cputune.vcpupins[0].cpuset)
    assert read.cpu.numa.cells == spec.cpu.cells and read.vcpu == Vcpu(spec.vcpus, "static")


def test_a_part_writes_its_attributes_in_declared_order() -> None:
    cell = NumaCell(1, (2, 3), 1024, (Sibling(0, 21), Sibling(1, 10)))
    assert serialize(cell.to_element()) == ("<cell id='1' cpus='2-3' memory='1024' unit='KiB'>\n  <distances>\n"
                                            "    <sibling id='0' value='21'/>\n    <sibling id='1' value='10'/>\n"
                                            "  </distances>\n</cell>\n")
    assert [a.name for a in Topology.ATTRS] == ["sockets", "dies", "cores", "threads"]


def test_reading_takes_libvirt_units_and_defaults() -> None:
    cell = NumaCell.from_element(etree.fromstring("<cell cpus='0-1' memory='2' unit='GiB' memAccess='shared'/>"),
                                 "<numa>", 3)
    assert cell == NumaCell(None, (0, 1), 2 * GIB, None)
    with pytest.raises(ValueError, match=re.escape("<cell id='3' memory>: unknown unit 'x'")):  # named by position
        NumaCell.from_element(etree.fromstring("<cell cpus='0' memory='1' unit='x'/>"), "<numa>", 3)
    assert Topology.from_element(etree.fromstring("<topology sockets='2' cores='4' threads='2'/>")) == \
        Topology(2, 1, 4, 2)
    backing = MemoryBacking.from_element(etree.fromstring(
        "<memoryBacking><hugepages><page size='1' unit='G' nodeset='1'/><page size='2048'/></hugepages>"
        "<nosharepages/></memoryBacking>"))
    assert backing == MemoryBacking(Hugepages((Page(GIB, (1,)), Page(2048, None))), True)
    assert Vcpu.from_element(etree.fromstring("<vcpu cpuset='0-3' current='2'>4</vcpu>")) == \
        Vcpu(4, None, (0, 1, 2, 3), "2")


@pytest.mark.parametrize(("xml", "part", "where", "message"), [
    ("<vcpupin vcpu='²' cpuset='1'/>", "VcpuPin", "", "<vcpupin vcpu> is '²', not a number 0..65536 (ASCII digits)"),
    ("<vcpupin vcpu='1' cpuset='x'/>", "VcpuPin", "", "<vcpupin vcpu='1' cpuset>: 'x' is not a CPU list"),
    ("<vcpupin cpuset='1'/>", "VcpuPin", "", "<vcpupin vcpu> is nothing, not a number"),
    ("<cell id='¹' cpus='0' memory='1'/>", "NumaCell", "<numa>", "<numa><cell id> is '¹', not a number"),
    ("<cell id='4' cpus='0' memory='1' unit='x'/>", "NumaCell", "<numa>", "<cell id='4' memory>: unknown unit 'x'"),
    ("<cell id='2' cpus='0'/>", "NumaCell", "", "<cell id='2'> has no memory"),
    ("<cell id='0' cpus='0' memory='1'><distances><sibling id='1' value='300'/></distances></cell>", "NumaCell", "",
     "<cell id='0'> <sibling value> is '300', not a number 0..255"),
    ("<page size='3' unit='KiB'/>", "Page", "", "<page size>: '3' KiB is not a page size"),
])
def test_reading_names_the_element_and_attribute(xml: str, part: str, where: str, message: str) -> None:
    import planner.libvirt.elements as elements

    with pytest.raises(ValueError, match=re.escape(message)):
        getattr(elements, part).from_element(etree.fromstring(xml.encode()), where)


def test_writing_an_empty_cpuset_is_refused() -> None:
    with pytest.raises(ValueError, match=re.escape("<vcpupin vcpu='3' cpuset> is empty")):
        VcpuPin(3, ()).to_element()


def test_owned_parts_are_declared_in_libvirt_order() -> None:
    assert [p.PATH for p in owned_parts()] == ["memoryBacking/hugepages", "vcpu", "cputune/vcpupin",
                                               "cputune/emulatorpin", "numatune", "cpu/topology", "cpu/numa"]
    assert {path: tuple(p.TAG for p in parts) for path, parts in owned_children().items()} == {
        "memoryBacking": ("hugepages",), ".": ("vcpu", "numatune"), "cputune": ("vcpupin", "emulatorpin"),
        "cpu": ("topology", "numa")}
