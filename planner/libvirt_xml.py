"""The libvirt domain XML of one placed guest.

The XML is assembled from small frozen pieces (``VcpuPin``, ``CputuneSpec``, ``NumatuneSpec``, ``NumaCell``, ...),
each with a ``to_element()`` that builds an lxml element with a fixed element and attribute order. ``serialize``
writes the tree in libvirt's own style (two-space indentation, single-quoted attributes, ``<x/>`` for empty
elements, a final newline), so the output matches the spec's example files byte for byte.

Public API::

    domain_spec(plan, guest_name) -> DomainSpec     # the typed description, from plan + plan.scenario
    domain_xml(plan, guest_name) -> str             # serialised text, ends with a newline
    serialize(element) -> str                       # libvirt-style text of any lxml element

Only what vplan decides is written (name, memory, vCPUs, pinning, numatune, guest NUMA topology, hugepages); the
rest (disks, interfaces, ...) is left to whoever adopts the XML.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from lxml import etree

from planner.plan import Plan
from planner.units import format_cpulist

#: ``<os><type machine=...>`` per host architecture.
MACHINE_OF_ARCH: dict[str, str] = {
    "x86_64": "q35",
    "aarch64": "virt",
    "ppc64le": "pseries",
    "s390x": "s390-ccw-virtio",
}

MEMORY_MODES = ("strict", "preferred", "interleave", "restrictive")


def _sub(parent: etree._Element, tag: str, attrs: Iterable[tuple[str, object]] = (), text: str | None = None):
    """A child element with attributes in the given order."""
    child = etree.SubElement(parent, tag)
    for key, value in attrs:
        child.set(key, str(value))
    if text is not None:
        child.text = text
    return child


def _element(tag: str, attrs: Iterable[tuple[str, object]] = (), text: str | None = None) -> etree._Element:
    element = etree.Element(tag)
    for key, value in attrs:
        element.set(key, str(value))
    if text is not None:
        element.text = text
    return element


def _cpuset(ids: Iterable[int], what: str) -> str:
    text = format_cpulist(ids)
    if not text:
        raise ValueError(f"{what} is empty")
    return text


# ---------------------------------------------------------------------------------------------------------------
# The pieces


@dataclass(frozen=True)
class VcpuPin:
    vcpu: int
    cpuset: tuple[int, ...]

    def to_element(self) -> etree._Element:
        cpuset = _cpuset(self.cpuset, f"cpuset of vCPU {self.vcpu}")
        return _element("vcpupin", [("vcpu", self.vcpu), ("cpuset", cpuset)])


@dataclass(frozen=True)
class EmulatorPin:
    cpuset: tuple[int, ...]

    def to_element(self) -> etree._Element:
        return _element("emulatorpin", [("cpuset", _cpuset(self.cpuset, "emulator cpuset"))])


@dataclass(frozen=True)
class CputuneSpec:
    vcpupins: tuple[VcpuPin, ...]
    emulatorpin: EmulatorPin

    def to_element(self) -> etree._Element:
        element = _element("cputune")
        for pin in self.vcpupins:
            element.append(pin.to_element())
        element.append(self.emulatorpin.to_element())
        return element


@dataclass(frozen=True)
class MemNode:
    cellid: int
    mode: str
    nodeset: tuple[int, ...]

    def to_element(self) -> etree._Element:
        return _element(
            "memnode",
            [("cellid", self.cellid), ("mode", self.mode), ("nodeset", _cpuset(self.nodeset, "memnode nodeset"))],
        )


@dataclass(frozen=True)
class NumatuneSpec:
    mode: str
    nodeset: tuple[int, ...]  # host node ids
    memnodes: tuple[MemNode, ...]

    def to_element(self) -> etree._Element:
        element = _element("numatune")
        _sub(element, "memory", [("mode", self.mode), ("nodeset", _cpuset(self.nodeset, "numatune nodeset"))])
        for memnode in self.memnodes:
            element.append(memnode.to_element())
        return element


@dataclass(frozen=True)
class Sibling:
    id: int  # guest cell id
    value: int  # distance

    def to_element(self) -> etree._Element:
        return _element("sibling", [("id", self.id), ("value", self.value)])


@dataclass(frozen=True)
class NumaCell:
    id: int
    cpus: tuple[int, ...]  # guest vCPU ids
    memory_kib: int
    distances: tuple[Sibling, ...]

    def to_element(self) -> etree._Element:
        element = _element(
            "cell",
            [
                ("id", self.id),
                ("cpus", _cpuset(self.cpus, f"vCPUs of guest cell {self.id}")),
                ("memory", self.memory_kib),
                ("unit", "KiB"),
            ],
        )
        if self.distances:
            distances = _sub(element, "distances")
            for sibling in self.distances:
                distances.append(sibling.to_element())
        return element


@dataclass(frozen=True)
class Topology:
    sockets: int
    dies: int
    cores: int
    threads: int

    @property
    def vcpus(self) -> int:
        return self.sockets * self.dies * self.cores * self.threads

    def to_element(self) -> etree._Element:
        return _element(
            "topology",
            [("sockets", self.sockets), ("dies", self.dies), ("cores", self.cores), ("threads", self.threads)],
        )


@dataclass(frozen=True)
class CpuSpec:
    topology: Topology
    cells: tuple[NumaCell, ...]
    mode: str = "host-passthrough"

    def to_element(self) -> etree._Element:
        element = _element("cpu", [("mode", self.mode)])
        element.append(self.topology.to_element())
        if self.cells:
            numa = _sub(element, "numa")
            for cell in self.cells:
                numa.append(cell.to_element())
        return element


@dataclass(frozen=True)
class HugepagesSpec:
    page_kib: int
    nodeset: tuple[int, ...]  # guest cell ids

    def to_element(self) -> etree._Element:
        """``<memoryBacking><hugepages><page .../></hugepages></memoryBacking>``."""
        element = _element("memoryBacking")
        hugepages = _sub(element, "hugepages")
        _sub(
            hugepages,
            "page",
            [("size", self.page_kib), ("unit", "KiB"), ("nodeset", _cpuset(self.nodeset, "hugepage nodeset"))],
        )
        return element


@dataclass(frozen=True)
class OsSpec:
    arch: str
    machine: str

    def to_element(self) -> etree._Element:
        element = _element("os")
        _sub(element, "type", [("arch", self.arch), ("machine", self.machine)], text="hvm")
        return element


@dataclass(frozen=True)
class DomainSpec:
    name: str
    memory_kib: int
    current_memory_kib: int
    vcpus: int
    cputune: CputuneSpec
    numatune: NumatuneSpec
    os: OsSpec
    cpu: CpuSpec
    hugepages: HugepagesSpec | None = None
    type: str = "kvm"

    def to_element(self) -> etree._Element:
        element = _element("domain", [("type", self.type)])
        _sub(element, "name", text=self.name)
        _sub(element, "memory", [("unit", "KiB")], text=str(self.memory_kib))
        _sub(element, "currentMemory", [("unit", "KiB")], text=str(self.current_memory_kib))
        if self.hugepages is not None:
            element.append(self.hugepages.to_element())
        _sub(element, "vcpu", [("placement", "static")], text=str(self.vcpus))
        element.append(self.cputune.to_element())
        element.append(self.numatune.to_element())
        element.append(self.os.to_element())
        element.append(self.cpu.to_element())
        return element

    def to_xml(self) -> str:
        return serialize(self.to_element())


# ---------------------------------------------------------------------------------------------------------------
# Serialisation in libvirt's style


def _escape_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _escape_attr(text: str) -> str:
    return _escape_text(text).replace("'", "&apos;").replace('"', "&quot;")


def _write(element: etree._Element, depth: int, out: list[str]) -> None:
    indent = "  " * depth
    attrs = "".join(f" {key}='{_escape_attr(value)}'" for key, value in element.attrib.items())
    children = list(element)
    if children:
        if element.text and element.text.strip():
            raise ValueError(f"<{element.tag}> mixes text and child elements")
        out.append(f"{indent}<{element.tag}{attrs}>\n")
        for child in children:
            _write(child, depth + 1, out)
        out.append(f"{indent}</{element.tag}>\n")
    elif element.text is not None:
        out.append(f"{indent}<{element.tag}{attrs}>{_escape_text(element.text)}</{element.tag}>\n")
    else:
        out.append(f"{indent}<{element.tag}{attrs}/>\n")


def serialize(element: etree._Element) -> str:
    """libvirt-style text: two-space indentation, single-quoted attributes, ends with a newline, no XML
    declaration."""
    out: list[str] = []
    _write(element, 0, out)
    return "".join(out)


# ---------------------------------------------------------------------------------------------------------------
# From a plan


def guest_topology(vcpus: int, cells: int, threads_policy: str | None) -> Topology:
    """threads = 2 for ``threads: require`` else 1; one socket per cell when the cores divide evenly among the
    cells, else a single socket; dies = 1."""
    threads = 2 if threads_policy == "require" else 1
    if vcpus % threads:
        raise ValueError(f"{vcpus} vCPUs cannot form sibling pairs (threads: require needs an even count)")
    cores_total = vcpus // threads
    sockets = cells if cells >= 1 and cores_total % cells == 0 else 1
    return Topology(sockets=sockets, dies=1, cores=cores_total // sockets, threads=threads)


def domain_spec(plan: Plan, guest_name: str) -> DomainSpec:
    """The domain of a placed guest, from its placement in ``plan`` and its data in ``plan.scenario``.

    Raises ``ValueError`` when the guest is not placed or the placement is inconsistent with the guest
    (libvirt would silently ignore or rewrite such parts, so they are refused here)."""
    scenario = plan.scenario
    if guest_name not in plan.placed:
        raise ValueError(f"guest '{guest_name}' is not placed in this plan")
    placement = plan.placed[guest_name]
    guest = scenario.guest_by_name[guest_name]
    model = scenario.model_of(placement.host)

    if guest.memory_mode not in MEMORY_MODES:
        raise ValueError(f"guest '{guest_name}': unknown memory_mode '{guest.memory_mode}'")
    if model.arch not in MACHINE_OF_ARCH:
        raise ValueError(
            f"host model '{model.name}': no machine type known for arch '{model.arch}' "
            f"(known: {', '.join(MACHINE_OF_ARCH)})"
        )
    cells = placement.cells
    if not cells:
        raise ValueError(f"guest '{guest_name}': placement has no NUMA cell")
    if len(placement.vcpu_pins) != guest.vcpus:
        raise ValueError(
            f"guest '{guest_name}': {len(placement.vcpu_pins)} vCPU pin sets for {guest.vcpus} vCPUs"
        )
    if sorted(v for cell in cells for v in cell.vcpus) != list(range(guest.vcpus)):
        raise ValueError(f"guest '{guest_name}': the cells' vCPUs are not exactly 0..{guest.vcpus - 1}")
    if sum(cell.memory_kib for cell in cells) != guest.memory_kib:
        raise ValueError(
            f"guest '{guest_name}': the cells' memory ({sum(c.memory_kib for c in cells)} KiB) differs from the "
            f"guest's ({guest.memory_kib} KiB)"
        )
    if [cell.cell_id for cell in cells] != list(range(len(cells))):
        raise ValueError(f"guest '{guest_name}': cell ids are not 0..{len(cells) - 1} in order")
    if len({cell.node_id for cell in cells}) != len(cells):
        raise ValueError(f"guest '{guest_name}': two cells share a host node")

    cputune = CputuneSpec(
        vcpupins=tuple(VcpuPin(v, tuple(sorted(pins))) for v, pins in enumerate(placement.vcpu_pins)),
        emulatorpin=EmulatorPin(tuple(sorted(placement.emulator_pins))),
    )
    numatune = NumatuneSpec(
        mode=guest.memory_mode,
        nodeset=tuple(sorted(cell.node_id for cell in cells)),
        memnodes=tuple(MemNode(cell.cell_id, guest.memory_mode, (cell.node_id,)) for cell in cells),
    )
    numa_cells = tuple(
        NumaCell(
            id=cell.cell_id,
            cpus=tuple(cell.vcpus),
            memory_kib=cell.memory_kib,
            distances=tuple(Sibling(other.cell_id, model.distance(cell.node_id, other.node_id)) for other in cells),
        )
        for cell in cells
    )
    cpu = CpuSpec(topology=guest_topology(guest.vcpus, len(cells), guest.threads), cells=numa_cells)
    hugepages = None
    if guest.hugepage_kib is not None:
        hugepages = HugepagesSpec(page_kib=guest.hugepage_kib, nodeset=tuple(cell.cell_id for cell in cells))
    return DomainSpec(
        name=guest.name,
        memory_kib=guest.memory_kib,
        current_memory_kib=guest.memory_kib,
        vcpus=guest.vcpus,
        cputune=cputune,
        numatune=numatune,
        os=OsSpec(arch=model.arch, machine=MACHINE_OF_ARCH[model.arch]),
        cpu=cpu,
        hugepages=hugepages,
    )


def domain_xml(plan: Plan, guest_name: str) -> str:
    """The domain XML text of a placed guest (ends with a newline)."""
    return domain_spec(plan, guest_name).to_xml()
