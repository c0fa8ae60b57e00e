"""The parts of a libvirt domain XML that vplan writes, reads and owns: one declaration per element.

Each part is a frozen dataclass that declares its element (``TAG``, and ``PATH`` from ``<domain>``), its attributes
in the order libvirt writes them (``ATTRS``: XML name, field, kind), and both directions: ``to_element()`` builds
the lxml element (attributes in declared order, so ``planner.libvirt.xmltext.serialize`` writes the same bytes
every time) and ``from_element(element, where)`` reads a deployed element back into the same typed part.
``from_element(to_element(x)) == x`` for every part vplan writes.

Attribute kinds (``Attr.kind``)::

    str     the text as written
    count   ASCII digits, 0..maximum (libvirt reads no other)
    ids     a cpulist ('0-3,^2'), ids 0..maximum; written with planner.model.units.format_cpulist
    kib     a libvirt scaled integer with the ``unit`` attribute beside it (any libvirt unit), in KiB; written in KiB
    page    a hugepage size with the ``unit`` attribute beside it (a power of two, 4K..16G), in KiB
    unit    the unit of a kib/page attribute: written 'KiB', read by that attribute

A missing attribute reads as the ``Attr.default`` (None unless declared). Errors are ``ValueError`` naming the
element and attribute (``<vcpupin vcpu='1' cpuset>: ...``), prefixed by ``where`` (the caller's context).

Ownership (``vplan apply``): a part with ``REPLACED = True`` is vplan's whole element (replaced, or inserted, or
removed when the plan has none); containers (``<cputune>``, ``<cpu>``, ``<memoryBacking>``) are the domain's and
hold owned children. ``owned_parts()`` walks the declarations (``DOMAIN_PARTS`` and each ``CHILDREN``) in
libvirt's order; ``owned_children()`` groups them by parent path: the set ``apply`` edits and verifies. ``AFTER``
(preceding siblings in libvirt's order, the last present one is the anchor), ``BEFORE`` and ``FALLBACK``
('first' or 'last') say where a missing element goes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from lxml import etree

from planner.hostimport.capture import page_kib
from planner.model.units import MAX_CPU_ID, MAX_NODE_ID, format_cpulist, parse_cpulist, scaled_kib

MAX_VCPUS = MAX_CPU_ID + 1


@dataclass(frozen=True)
class Attr:
    """One declared attribute: XML ``name``, dataclass ``field`` (None for ``unit``), ``kind`` (see the module
    docstring), ``maximum`` for count/ids, the ``default`` a missing attribute reads as."""

    name: str
    field: str | None
    kind: str = "str"

    @property
    def attribute(self) -> str:
        """The dataclass field of a value attribute (every kind but ``unit``)."""
        if self.field is None:
            raise TypeError(f"attribute {self.name} ({self.kind}) has no field")
        return self.field

    maximum: int = MAX_VCPUS
    default: object = None
    required: bool = False  # a missing count attribute is an error (the message says 'nothing')


def new_element(tag: str, attrs: Iterable[tuple[str, object]] = (), text: str | None = None) -> etree._Element:
    """An element with attributes in the given order (libvirt's), and text."""
    element = etree.Element(tag)
    for key, value in attrs:
        element.set(key, str(value))
    if text is not None:
        element.text = text
    return element


def read_count(text: str | None, label: str, maximum: int) -> int:
    """A whole number written in ASCII digits (libvirt reads no other), 0..maximum."""
    value = (text or "").strip()
    if not re.fullmatch(r"[0-9]{1,12}", value) or int(value) > maximum:
        shown = repr(value[:20]) if value else "nothing"
        raise ValueError(f"{label} is {shown}, not a number 0..{maximum} (ASCII digits)")
    return int(value)


def _read_value(attr: Attr, element: etree._Element, label: str) -> object:
    raw = element.get(attr.name)
    if attr.kind == "count":
        return read_count(raw, label, attr.maximum)
    if attr.kind == "ids":
        try:
            return parse_cpulist(raw, attr.maximum)
        except ValueError as exc:
            raise ValueError(f"{label}: {exc}") from None
    if attr.kind == "kib":
        return scaled_kib(raw, element.get("unit"), label)
    if attr.kind == "page":
        return page_kib(raw, element.get("unit"), label)
    return raw


def _write_value(attr: Attr, value: Any, label: str) -> str:
    if attr.kind == "ids":
        text = format_cpulist(value)
        if not text:
            raise ValueError(f"{label} is empty")
        return text
    return str(value)


class Part:
    """The declaration machinery shared by every part: attributes in declared order, both directions."""

    TAG: ClassVar[str]
    PATH: ClassVar[str]
    ATTRS: ClassVar[tuple[Attr, ...]] = ()
    LABEL_KEY: ClassVar[str | None] = None  # the attribute that names the element in messages (vcpupin: vcpu)
    CHILDREN: ClassVar[tuple[type[Part], ...]] = ()  # declared child parts, in libvirt's order
    REPLACED: ClassVar[bool] = False  # vplan apply replaces the whole element
    AFTER: ClassVar[tuple[str, ...]] = ()  # a missing element goes after the last of these siblings present
    BEFORE: ClassVar[tuple[str, ...]] = ()  # else before the first of these
    FALLBACK: ClassVar[str] = "first"  # else first or last in its parent

    @classmethod
    def _label(cls, name: str, key: object, where: str) -> str:
        """``<vcpupin vcpu='1' cpuset>`` once the key attribute is read (it names the element), else
        ``WHERE<vcpupin vcpu>`` (the caller's context)."""
        if cls.LABEL_KEY and key is not None and name != cls.LABEL_KEY:
            return f"<{cls.TAG} {cls.LABEL_KEY}='{key}' {name}>"
        return f"{where}<{cls.TAG} {name}>"

    def _attrs(self) -> list[tuple[str, object]]:
        """The declared attributes with a value, in declared order (units written as KiB)."""
        key = getattr(self, self.LABEL_KEY) if self.LABEL_KEY else None
        out: list[tuple[str, object]] = []
        for attr in self.ATTRS:
            if attr.kind == "unit":
                out.append((attr.name, "KiB"))
                continue
            value = getattr(self, attr.attribute)
            if value is not None:
                out.append((attr.name, _write_value(attr, value, self._label(attr.name, key, ""))))
        return out

    @classmethod
    def _read_attrs(cls, element: etree._Element, where: str, key: object = None) -> dict[str, Any]:
        """The declared attributes of ``element`` by field name: the key attribute first (it labels the others;
        ``key`` labels them when the element has none, e.g. a cell's position)."""
        ordered = sorted((a for a in cls.ATTRS if a.kind != "unit"), key=lambda a: a.name != cls.LABEL_KEY)
        values: dict[str, Any] = {}
        for attr in ordered:
            if element.get(attr.name) is None:
                if attr.required:
                    read_count(None, cls._label(attr.name, key, where), attr.maximum)  # raises: nothing
                values[attr.attribute] = attr.default
                continue
            values[attr.attribute] = _read_value(attr, element, cls._label(attr.name, key, where))
            if attr.name == cls.LABEL_KEY and values[attr.attribute] is not None:
                key = values[attr.attribute]
        return values

    # A leaf part (attributes only) reads and writes itself from its declaration; parts with text or children
    # override both.
    def to_element(self) -> etree._Element:
        return _leaf_element(self)

    @classmethod
    def from_element(cls, element: etree._Element, where: str = ""):
        return _leaf(cls, element, where)


def _leaf(cls: type[Part], element: etree._Element, where: str) -> Part:
    return cls(**cls._read_attrs(element, where))


def _leaf_element(part: Part) -> etree._Element:
    return new_element(part.TAG, part._attrs())


# ---------------------------------------------------------------------------------------------------------------
# <memory>, <currentMemory>, <vcpu>


@dataclass(frozen=True)
class Memory(Part):
    """``<memory unit='KiB'>N</memory>``: the guest's maximum memory (libvirt counts memory devices in it)."""

    TAG: ClassVar[str] = "memory"
    PATH: ClassVar[str] = "memory"
    kib: int

    def to_element(self) -> etree._Element:
        return new_element(self.TAG, [("unit", "KiB")], str(self.kib))

    @classmethod
    def from_element(cls, element: etree._Element, where: str = ""):
        return cls(scaled_kib(element.text, element.get("unit"), f"{where}<{cls.TAG}>"))


@dataclass(frozen=True)
class CurrentMemory(Memory):
    """``<currentMemory unit='KiB'>N</currentMemory>``: the memory at boot."""

    TAG: ClassVar[str] = "currentMemory"
    PATH: ClassVar[str] = "currentMemory"


@dataclass(frozen=True)
class Vcpu(Part):
    """``<vcpu placement cpuset current>COUNT</vcpu>``: vplan writes ``placement='static'``; a deployed domain's
    ``cpuset`` is where unpinned vCPUs run and its ``current`` (vCPUs online at boot) is kept by ``apply``."""

    TAG: ClassVar[str] = "vcpu"
    PATH: ClassVar[str] = "vcpu"
    ATTRS: ClassVar[tuple[Attr, ...]] = (Attr("placement", "placement"), Attr("cpuset", "cpuset", "ids", MAX_CPU_ID),
                                         Attr("current", "current"))
    KEPT: ClassVar[tuple[str, ...]] = ("current",)  # attributes apply keeps from the deployed element
    REPLACED: ClassVar[bool] = True
    count: int
    placement: str | None = "static"
    cpuset: tuple[int, ...] | None = None
    current: str | None = None  # the domain's, kept verbatim (apply checks it is a count 1..count)

    def to_element(self) -> etree._Element:
        return new_element(self.TAG, self._attrs(), str(self.count))

    @classmethod
    def from_element(cls, element: etree._Element, where: str = ""):
        return cls(read_count(element.text, f"{where}<vcpu>", MAX_VCPUS), **cls._read_attrs(element, ""))


# ---------------------------------------------------------------------------------------------------------------
# <cputune>


@dataclass(frozen=True)
class VcpuPin(Part):
    TAG: ClassVar[str] = "vcpupin"
    PATH: ClassVar[str] = "cputune/vcpupin"
    ATTRS: ClassVar[tuple[Attr, ...]] = (Attr("vcpu", "vcpu", "count", required=True),
                                         Attr("cpuset", "cpuset", "ids", MAX_CPU_ID))
    LABEL_KEY: ClassVar[str] = "vcpu"
    REPLACED: ClassVar[bool] = True
    vcpu: int
    cpuset: tuple[int, ...] = ()


@dataclass(frozen=True)
class EmulatorPin(Part):
    TAG: ClassVar[str] = "emulatorpin"
    PATH: ClassVar[str] = "cputune/emulatorpin"
    ATTRS: ClassVar[tuple[Attr, ...]] = (Attr("cpuset", "cpuset", "ids", MAX_CPU_ID),)
    REPLACED: ClassVar[bool] = True
    AFTER: ClassVar[tuple[str, ...]] = ("vcpupin",)
    cpuset: tuple[int, ...] = ()


@dataclass(frozen=True)
class Cputune(Part):
    """``<cputune>``: the domain's; vplan owns its ``<vcpupin>``s and ``<emulatorpin>`` (``<shares>``,
    ``<iothreadpin>``, ``<vcpusched>``, ... are the domain's)."""

    TAG: ClassVar[str] = "cputune"
    PATH: ClassVar[str] = "cputune"
    CHILDREN: ClassVar[tuple[type[Part], ...]] = (VcpuPin, EmulatorPin)
    AFTER: ClassVar[tuple[str, ...]] = ("vcpu",)
    vcpupins: tuple[VcpuPin, ...]
    emulatorpin: EmulatorPin | None

    def to_element(self) -> etree._Element:
        element = new_element(self.TAG)
        element.extend(pin.to_element() for pin in self.vcpupins)
        if self.emulatorpin is not None:
            element.append(self.emulatorpin.to_element())
        return element

    @classmethod
    def from_element(cls, element: etree._Element, where: str = ""):
        emulator = element.find(EmulatorPin.TAG)
        return cls(tuple(VcpuPin.from_element(p, where) for p in element.findall(VcpuPin.TAG)),
                   EmulatorPin.from_element(emulator, where) if emulator is not None else None)


# ---------------------------------------------------------------------------------------------------------------
# <numatune>


@dataclass(frozen=True)
class NumatuneMemory(Part):
    """``<numatune><memory mode nodeset placement/>``: host nodes (nodeset) of the whole guest's memory."""

    TAG: ClassVar[str] = "memory"
    PATH: ClassVar[str] = "numatune/memory"
    ATTRS: ClassVar[tuple[Attr, ...]] = (Attr("mode", "mode"), Attr("nodeset", "nodeset", "ids", MAX_NODE_ID),
                                         Attr("placement", "placement"))
    mode: str | None = None
    nodeset: tuple[int, ...] | None = None
    placement: str | None = None


@dataclass(frozen=True)
class MemNode(Part):
    """``<memnode cellid mode nodeset/>``: the host nodes of one guest cell's memory."""

    TAG: ClassVar[str] = "memnode"
    PATH: ClassVar[str] = "numatune/memnode"
    ATTRS: ClassVar[tuple[Attr, ...]] = (Attr("cellid", "cellid", "count", required=True), Attr("mode", "mode"),
                                         Attr("nodeset", "nodeset", "ids", MAX_NODE_ID))
    LABEL_KEY: ClassVar[str] = "cellid"
    cellid: int
    mode: str | None = None
    nodeset: tuple[int, ...] = ()


@dataclass(frozen=True)
class Numatune(Part):
    """``<numatune>``: vplan's whole element (the ``<memory>`` of the guest, one ``<memnode>`` per cell)."""

    TAG: ClassVar[str] = "numatune"
    PATH: ClassVar[str] = "numatune"
    CHILDREN: ClassVar[tuple[type[Part], ...]] = (NumatuneMemory, MemNode)
    REPLACED: ClassVar[bool] = True
    AFTER: ClassVar[tuple[str, ...]] = ("vcpu", "cputune")
    memory: NumatuneMemory | None
    memnodes: tuple[MemNode, ...] = ()

    @property
    def mode(self) -> str | None:
        return self.memory.mode if self.memory is not None else None

    @property
    def nodeset(self) -> tuple[int, ...] | None:
        return self.memory.nodeset if self.memory is not None else None

    def to_element(self) -> etree._Element:
        element = new_element(self.TAG)
        if self.memory is not None:
            element.append(self.memory.to_element())
        element.extend(memnode.to_element() for memnode in self.memnodes)
        return element

    @classmethod
    def from_element(cls, element: etree._Element, where: str = ""):
        memory = element.find(NumatuneMemory.TAG)
        return cls(NumatuneMemory.from_element(memory, f"{where}<numatune>") if memory is not None else None,
                   tuple(MemNode.from_element(m, where) for m in element.findall(MemNode.TAG)))


# ---------------------------------------------------------------------------------------------------------------
# <cpu>: <model>, <topology>, <numa>


@dataclass(frozen=True)
class CpuModel(Part):
    """``<model fallback>NAME</model>``: for mode custom, exactly this model (``fallback='forbid'``)."""

    TAG: ClassVar[str] = "model"
    PATH: ClassVar[str] = "cpu/model"
    ATTRS: ClassVar[tuple[Attr, ...]] = (Attr("fallback", "fallback"),)
    name: str | None
    fallback: str | None = "forbid"

    def to_element(self) -> etree._Element:
        return new_element(self.TAG, self._attrs(), self.name)

    @classmethod
    def from_element(cls, element: etree._Element, where: str = ""):
        return cls(element.text, **cls._read_attrs(element, where))


@dataclass(frozen=True)
class Topology(Part):
    """``<topology sockets dies cores threads/>`` (a missing attribute reads as libvirt's default, 1)."""

    TAG: ClassVar[str] = "topology"
    PATH: ClassVar[str] = "cpu/topology"
    ATTRS: ClassVar[tuple[Attr, ...]] = tuple(Attr(n, n, "count", MAX_VCPUS, 1)
                                              for n in ("sockets", "dies", "cores", "threads"))
    REPLACED: ClassVar[bool] = True
    AFTER: ClassVar[tuple[str, ...]] = ("model", "vendor")
    sockets: int
    dies: int
    cores: int
    threads: int

    @property
    def vcpus(self) -> int:
        return self.sockets * self.dies * self.cores * self.threads


@dataclass(frozen=True)
class Sibling(Part):
    """``<sibling id value/>`` in a cell's ``<distances>``: the distance from the cell to guest cell ``id``."""

    TAG: ClassVar[str] = "sibling"
    PATH: ClassVar[str] = "cpu/numa/cell/distances/sibling"
    ATTRS: ClassVar[tuple[Attr, ...]] = (Attr("id", "id", "count", required=True),
                                         Attr("value", "value", "count", 255, required=True))
    id: int
    value: int


@dataclass(frozen=True)
class NumaCell(Part):
    """``<cell id cpus memory unit>`` with ``<distances>``: a guest NUMA cell (vCPU ids, memory). Attributes not
    declared here (``memAccess``, ``discard``) and HMAT children (``<cache>``) are the domain's."""

    TAG: ClassVar[str] = "cell"
    PATH: ClassVar[str] = "cpu/numa/cell"
    ATTRS: ClassVar[tuple[Attr, ...]] = (Attr("id", "id", "count"), Attr("cpus", "cpus", "ids", MAX_VCPUS - 1),
                                         Attr("memory", "memory_kib", "kib"), Attr("unit", None, "unit"))
    LABEL_KEY: ClassVar[str] = "id"
    CHILDREN: ClassVar[tuple[type[Part], ...]] = (Sibling,)
    id: int | None  # None: a deployed cell without id (libvirt numbers it by position)
    cpus: tuple[int, ...]
    memory_kib: int
    distances: tuple[Sibling, ...] | None = None  # None: no <distances> element

    def to_element(self) -> etree._Element:
        element = new_element(self.TAG, self._attrs())
        if self.distances is not None:
            etree.SubElement(element, "distances").extend(s.to_element() for s in self.distances)
        return element

    @classmethod
    def from_element(cls, element: etree._Element, where: str = "", position: int | None = None):
        """``position``: the cell's place in ``<numa>`` (libvirt's id of a cell without one), for messages."""
        values = cls._read_attrs(element, where, position)
        key = values["id"] if values["id"] is not None else position
        label = f"<cell id='{key}'>" if key is not None else "<cell>"
        if values["memory_kib"] is None:
            raise ValueError(f"{label} has no memory")
        distances = element.find("distances")
        siblings = None if distances is None else \
            tuple(Sibling.from_element(s, f"{label} ") for s in distances.findall(Sibling.TAG))
        return cls(values["id"], values["cpus"] or (), values["memory_kib"], siblings)


@dataclass(frozen=True)
class Numa(Part):
    """``<numa>``: vplan's whole element, the guest's cells (HMAT ``<interconnects>`` are kept by ``apply``)."""

    TAG: ClassVar[str] = "numa"
    PATH: ClassVar[str] = "cpu/numa"
    CHILDREN: ClassVar[tuple[type[Part], ...]] = (NumaCell,)
    REPLACED: ClassVar[bool] = True
    FALLBACK: ClassVar[str] = "last"
    cells: tuple[NumaCell, ...]

    def to_element(self) -> etree._Element:
        element = new_element(self.TAG)
        element.extend(cell.to_element() for cell in self.cells)
        return element

    @classmethod
    def from_element(cls, element: etree._Element, where: str = ""):
        return cls(tuple(NumaCell.from_element(c, f"{where}<numa>", i)
                         for i, c in enumerate(element.findall(NumaCell.TAG))))


@dataclass(frozen=True)
class Cpu(Part):
    """``<cpu mode match>``: the domain's; vplan owns its ``<topology>`` and ``<numa>`` (``<model>``,
    ``<feature>``, ``<cache>`` ... are the domain's; vplan writes mode and model only in a new domain)."""

    TAG: ClassVar[str] = "cpu"
    PATH: ClassVar[str] = "cpu"
    ATTRS: ClassVar[tuple[Attr, ...]] = (Attr("mode", "mode"), Attr("match", "match"))
    CHILDREN: ClassVar[tuple[type[Part], ...]] = (CpuModel, Topology, Numa)
    AFTER: ClassVar[tuple[str, ...]] = ("os", "features")
    BEFORE: ClassVar[tuple[str, ...]] = ("devices",)
    FALLBACK: ClassVar[str] = "last"
    topology: Topology | None
    numa: Numa | None
    mode: str | None = "host-passthrough"
    match: str | None = None
    model: CpuModel | None = None

    @property
    def cells(self) -> tuple[NumaCell, ...]:
        return self.numa.cells if self.numa is not None else ()

    def to_element(self) -> etree._Element:
        element = new_element(self.TAG, self._attrs())
        element.extend(p.to_element() for p in (self.model, self.topology, self.numa) if p is not None)
        return element

    @classmethod
    def from_element(cls, element: etree._Element, where: str = ""):
        found = {part: element.find(part.TAG) for part in cls.CHILDREN}
        read = {part: part.from_element(e, f"{where}<cpu>") if e is not None else None for part, e in found.items()}
        return cls(read[Topology], read[Numa], model=read[CpuModel], **cls._read_attrs(element, where))


# ---------------------------------------------------------------------------------------------------------------
# <memoryBacking>


@dataclass(frozen=True)
class Page(Part):
    """``<page size unit nodeset/>``: the hugepage size of the guest cells in ``nodeset`` (all others without)."""

    TAG: ClassVar[str] = "page"
    PATH: ClassVar[str] = "memoryBacking/hugepages/page"
    ATTRS: ClassVar[tuple[Attr, ...]] = (Attr("size", "size_kib", "page"), Attr("unit", None, "unit"),
                                         Attr("nodeset", "nodeset", "ids", MAX_VCPUS))
    size_kib: int
    nodeset: tuple[int, ...] | None = None  # guest cell ids

    def to_element(self) -> etree._Element:
        return new_element(self.TAG, self._attrs())

    @classmethod
    def from_element(cls, element: etree._Element, where: str = ""):
        values = cls._read_attrs(element, where)
        if values["size_kib"] is None:
            page_kib(None, None, f"{where}<page size>")  # raises: not a whole number
        return cls(values["size_kib"], values["nodeset"] or None)


@dataclass(frozen=True)
class Hugepages(Part):
    """``<hugepages>`` with its ``<page>``s (none: the architecture's default size)."""

    TAG: ClassVar[str] = "hugepages"
    PATH: ClassVar[str] = "memoryBacking/hugepages"
    CHILDREN: ClassVar[tuple[type[Part], ...]] = (Page,)
    REPLACED: ClassVar[bool] = True
    pages: tuple[Page, ...] = ()

    @property
    def page_kib(self) -> int:
        return self.pages[0].size_kib

    @property
    def nodeset(self) -> tuple[int, ...] | None:
        return self.pages[0].nodeset

    def to_element(self) -> etree._Element:
        element = new_element(self.TAG)
        element.extend(page.to_element() for page in self.pages)
        return element

    @classmethod
    def from_element(cls, element: etree._Element, where: str = ""):
        return cls(tuple(Page.from_element(p, where) for p in element.findall(Page.TAG)))


@dataclass(frozen=True)
class MemoryBacking(Part):
    """``<memoryBacking>``: the domain's; vplan owns its ``<hugepages>`` and writes ``<nosharepages/>`` (KSM never
    merges the guest's pages) in a new domain (``<locked>``, ``<source>``, ... are the domain's)."""

    TAG: ClassVar[str] = "memoryBacking"
    PATH: ClassVar[str] = "memoryBacking"
    CHILDREN: ClassVar[tuple[type[Part], ...]] = (Hugepages,)
    AFTER: ClassVar[tuple[str, ...]] = ("memory", "currentMemory")
    hugepages: Hugepages | None = None
    nosharepages: bool = False

    @property
    def empty(self) -> bool:
        """Nothing of vplan's to say (a new domain gets no ``<memoryBacking>``)."""
        return self.hugepages is None and not self.nosharepages

    def to_element(self) -> etree._Element:
        element = new_element(self.TAG)
        if self.hugepages is not None:
            element.append(self.hugepages.to_element())
        if self.nosharepages:
            etree.SubElement(element, "nosharepages")
        return element

    @classmethod
    def from_element(cls, element: etree._Element, where: str = ""):
        hugepages = element.find(Hugepages.TAG)
        return cls(Hugepages.from_element(hugepages, where) if hugepages is not None else None,
                   element.find("nosharepages") is not None)


# ---------------------------------------------------------------------------------------------------------------
# The domain's parts and what vplan owns


#: The top-level parts, in libvirt's order.
DOMAIN_PARTS: tuple[type[Part], ...] = (Memory, CurrentMemory, MemoryBacking, Vcpu, Cputune, Numatune, Cpu)


@dataclass(frozen=True)
class DomainParts:
    """vplan's parts of one domain, read by the declarations (None where the domain has no such element)."""

    memory: Memory | None
    current_memory: CurrentMemory | None
    memory_backing: MemoryBacking | None
    vcpu: Vcpu | None
    cputune: Cputune | None
    numatune: Numatune | None
    cpu: Cpu | None

    @classmethod
    def from_element(cls, root: etree._Element, where: str = "") -> DomainParts:
        return cls(*(read_part(part, root, where) for part in DOMAIN_PARTS))


def read_part(part: type[Part], root: etree._Element, where: str = ""):
    """``part`` read from its ``PATH`` under ``root`` (a ``<domain>``), None when the domain has none."""
    element = root.find(part.PATH)
    return part.from_element(element, where) if element is not None else None


def _walk(parts: tuple[type[Part], ...]) -> Iterator[type[Part]]:
    for part in parts:
        yield part
        yield from _walk(part.CHILDREN)


def declared_parts() -> tuple[type[Part], ...]:
    """Every declared part, depth first in libvirt's order."""
    return tuple(_walk(DOMAIN_PARTS))


def owned_parts() -> tuple[type[Part], ...]:
    """The parts ``vplan apply`` replaces whole, in libvirt's order (their children come with them)."""
    out: list[type[Part]] = []

    def visit(parts: tuple[type[Part], ...]) -> None:
        for part in parts:
            if part.REPLACED:
                out.append(part)
            else:
                visit(part.CHILDREN)

    visit(DOMAIN_PARTS)
    return tuple(out)


def parent_path(part: type[Part]) -> str:
    """The path of the part's parent from ``<domain>`` ('.' for the domain itself)."""
    return part.PATH.rpartition("/")[0] or "."


def owned_children() -> dict[str, tuple[type[Part], ...]]:
    """The owned parts grouped by parent path, both in libvirt's order: ``{'memoryBacking': (Hugepages,), '.':
    (Vcpu, Numatune), 'cputune': (VcpuPin, EmulatorPin), 'cpu': (Topology, Numa)}``."""
    groups: dict[str, tuple[type[Part], ...]] = {}
    for part in owned_parts():
        groups[parent_path(part)] = groups.get(parent_path(part), ()) + (part,)
    return groups


def container_of(path: str) -> type[Part]:
    """The declared top-level part at ``path`` (``cpu`` -> Cpu); the domain ('.') has none."""
    found = next((part for part in DOMAIN_PARTS if part.PATH == path), None)
    if found is None:
        raise KeyError(f"no declared part at {path!r}")
    return found
