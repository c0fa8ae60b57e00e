"""The libvirt domain XML of one placed guest.

The XML is assembled from small frozen pieces, each with a ``to_element()`` that builds an lxml element with a
fixed element and attribute order: vplan's own parts (``Vcpu``, ``Cputune``, ``Numatune``, ``Cpu``,
``NumaCell``, ``MemoryBacking``, ...) are declared once in ``planner.libvirt.elements`` (which also reads them
back, for ``vplan check`` and ``vplan apply``); the rest of a new domain (``<os>``, ``<features>``, ``<devices>``)
here. ``serialize`` writes the tree in libvirt's own style (two-space indentation, single-quoted attributes,
``<x/>`` for empty elements, a final newline), so the output matches the spec's example files byte for byte.

Public API::

    domain_spec(plan, guest_name) -> DomainSpec     # the typed description, from plan + plan.scenario
    domain_xml(plan, guest_name) -> str             # serialised text, ends with a newline
    serialize(element) -> str                       # libvirt-style text of any lxml element

Without a template the domain is complete and bootable as written (``virsh define`` + ``virsh start``): what
vplan decides (name, memory, vCPUs, pinning, numatune, guest NUMA topology, hugepages) plus a stable ``<uuid>``
(UUID v5 of the scenario and guest names), ``<os>`` with the machine type, the ``on_*`` actions and a serial
console; no disk, so it boots to its firmware. The scenario's ``domain:`` settings choose the domain type, CPU
mode (and model) and machine type.

With ``domain: {template: PATH}`` the template's domain is the base: everything vplan does not own (``<os>``,
``<features>``, ``<devices>``, disks, NICs, consoles, ...) is kept. First the identity and size are set on it
(``<domain type>``, ``<name>``, ``<uuid>`` unless the template has one, ``<memory>``/``<currentMemory>``,
the ``<vcpu>`` count, ``<os><type arch machine>``, ``<cpu mode>`` and ``<model>``); then vplan's parts are merged
in by ``planner.libvirt.apply.merge_domain``, exactly as ``vplan apply`` does.
"""

from __future__ import annotations

import re
import uuid as uuid_mod
from collections.abc import Iterable
from dataclasses import dataclass

from lxml import etree

from planner.libvirt.elements import (
    Cpu,
    CpuModel,
    Cputune,
    CurrentMemory,
    DomainParts,
    EmulatorPin,
    Hugepages,
    MemNode,
    Memory,
    MemoryBacking,
    Numa,
    NumaCell,
    Numatune,
    NumatuneMemory,
    Page,
    Sibling,
    Topology,
    Vcpu,
    VcpuPin,
    new_element,
)
from planner.libvirt.xmltext import serialize
from planner.model.plan import Plan
from planner.model.scenario import DomainSettings, DomainTemplate, Guest, Policy

#: ``<os><type machine=...>`` per host architecture.
MACHINE_OF_ARCH: dict[str, str] = {
    "x86_64": "q35",
    "aarch64": "virt",
    "ppc64le": "pseries",
    "s390x": "s390-ccw-virtio",
}

MEMORY_MODES = ("strict", "preferred", "interleave", "restrictive")

#: The namespace of the guests' domain UUIDs: uuid5(UUID_NAMESPACE, "SCENARIO/GUEST").
UUID_NAMESPACE = uuid_mod.uuid5(uuid_mod.NAMESPACE_URL, "urn:vplan:domain")


def domain_uuid(scenario_name: str, guest_name: str) -> str:
    """The stable UUID of a guest's domain: version 5 over the scenario name and the guest name, so re-defining
    the domain from a new plan of the same scenario updates it in place."""
    return str(uuid_mod.uuid5(UUID_NAMESPACE, f"{scenario_name}/{guest_name}"))


def _sub(parent: etree._Element, tag: str, attrs: Iterable[tuple[str, object]] = (), text: str | None = None):
    """A child element with attributes in the given order."""
    child = etree.SubElement(parent, tag)
    for key, value in attrs:
        child.set(key, str(value))
    if text is not None:
        child.text = text
    return child


# ---------------------------------------------------------------------------------------------------------------
# The pieces: vplan's own (vcpu, cputune, numatune, cpu, memoryBacking) are declared in planner.libvirt.elements


@dataclass(frozen=True)
class OsSpec:
    arch: str
    machine: str

    def to_element(self) -> etree._Element:
        element = new_element("os")
        _sub(element, "type", [("arch", self.arch), ("machine", self.machine)], text="hvm")
        return element


@dataclass(frozen=True)
class FeaturesSpec:
    """``<features>``: ACPI and the APIC on x86_64 (so that ``virsh shutdown`` works); nothing elsewhere."""

    acpi: bool = False
    apic: bool = False

    def to_element(self) -> etree._Element | None:
        if not (self.acpi or self.apic):
            return None
        element = new_element("features")
        if self.acpi:
            _sub(element, "acpi")
        if self.apic:
            _sub(element, "apic")
        return element


@dataclass(frozen=True)
class LifecycleSpec:
    on_poweroff: str = "destroy"
    on_reboot: str = "restart"
    on_crash: str = "destroy"

    def to_elements(self) -> list[etree._Element]:
        return [new_element(tag, text=getattr(self, tag)) for tag in ("on_poweroff", "on_reboot", "on_crash")]


@dataclass(frozen=True)
class DevicesSpec:
    """A serial port on a pty with the console on it (``virsh console``); on s390x the console is SCLP."""

    serial: bool = True
    console_target: str = "serial"

    def to_element(self) -> etree._Element:
        element = new_element("devices")
        if self.serial:
            serial = _sub(element, "serial", [("type", "pty")])
            _sub(serial, "target", [("port", 0)])
        console = _sub(element, "console", [("type", "pty")])
        _sub(console, "target", [("type", self.console_target), ("port", 0)])
        return element


@dataclass(frozen=True)
class DomainSpec:
    name: str
    memory_kib: int
    current_memory_kib: int
    vcpus: int
    cputune: Cputune
    numatune: Numatune
    os: OsSpec
    cpu: Cpu
    hugepages: Hugepages | None = None
    type: str = "kvm"
    uuid: str | None = None
    features: FeaturesSpec = FeaturesSpec()
    lifecycle: LifecycleSpec | None = None
    devices: DevicesSpec | None = None
    nosharepages: bool = False  # page_sharing: false

    def to_element(self) -> etree._Element:
        """In libvirt's own order: name, uuid, memory, currentMemory, memoryBacking, vcpu, cputune, numatune,
        os, features, cpu, on_*, devices."""
        element = new_element("domain", [("type", self.type)])
        _sub(element, "name", text=self.name)
        if self.uuid is not None:
            _sub(element, "uuid", text=self.uuid)
        element.append(Memory(self.memory_kib).to_element())
        element.append(CurrentMemory(self.current_memory_kib).to_element())
        if not self.memory_backing.empty:
            element.append(self.memory_backing.to_element())
        element.append(Vcpu(self.vcpus).to_element())
        element.append(self.cputune.to_element())
        element.append(self.numatune.to_element())
        element.append(self.os.to_element())
        features = self.features.to_element()
        if features is not None:
            element.append(features)
        element.append(self.cpu.to_element())
        if self.lifecycle is not None:
            element.extend(self.lifecycle.to_elements())
        if self.devices is not None:
            element.append(self.devices.to_element())
        return element

    def to_xml(self) -> str:
        return serialize(self.to_element())

    @property
    def memory_backing(self) -> MemoryBacking:
        return MemoryBacking(self.hugepages, self.nosharepages)

    def parts(self) -> DomainParts:
        """vplan's parts of this domain, as ``DomainParts.from_element`` reads them back from ``to_element()``."""
        backing = self.memory_backing
        return DomainParts(Memory(self.memory_kib), CurrentMemory(self.current_memory_kib),
                           None if backing.empty else backing, Vcpu(self.vcpus), self.cputune,
                           self.numatune, self.cpu)


# ---------------------------------------------------------------------------------------------------------------
# From a plan


def guest_topology(vcpus: int, cells: int, threads_policy: str | None,
                   cell_vcpus: tuple[int, ...] | None = None) -> Topology:
    """threads = 2 for ``threads: require`` else 1; one socket per cell when the cores divide evenly among the
    cells (and, given ``cell_vcpus``, every cell holds as many vCPUs: a socket never spans two cells), else a
    single socket; dies = 1."""
    threads = 2 if threads_policy == "require" else 1
    if vcpus % threads:
        raise ValueError(f"{vcpus} vCPUs cannot form sibling pairs (threads: require needs an even count)")
    cores_total = vcpus // threads
    alike = cell_vcpus is None or len(set(cell_vcpus)) <= 1
    sockets = cells if cells >= 1 and cores_total % cells == 0 and alike else 1
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

    cputune = Cputune(
        vcpupins=tuple(VcpuPin(v, tuple(sorted(pins))) for v, pins in enumerate(placement.vcpu_pins)),
        emulatorpin=EmulatorPin(tuple(sorted(placement.emulator_pins))),
    )
    numatune = Numatune(
        memory=NumatuneMemory(guest.memory_mode, tuple(sorted(cell.node_id for cell in cells))),
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
    settings = guest.domain
    cpu = cpu_part(guest_topology(guest.vcpus, len(cells), guest.threads, tuple(len(c.vcpus) for c in cells)),
                   numa_cells, settings.effective_cpu_mode(), settings.effective_cpu_model())
    hugepages = None
    if guest.hugepage_kib is not None:
        hugepages = Hugepages((Page(guest.hugepage_kib, tuple(cell.cell_id for cell in cells)),))
    return DomainSpec(
        name=guest.name,
        memory_kib=guest.memory_kib,
        current_memory_kib=guest.memory_kib,
        vcpus=guest.vcpus,
        cputune=cputune,
        numatune=numatune,
        os=OsSpec(arch=model.arch, machine=settings.effective_machine(model.arch, MACHINE_OF_ARCH[model.arch])),
        cpu=cpu,
        hugepages=hugepages,
        type=settings.effective_type(),
        uuid=domain_uuid(scenario.name, guest.name),
        features=FeaturesSpec(acpi=model.arch == "x86_64", apic=model.arch == "x86_64"),
        lifecycle=LifecycleSpec(),
        devices=DevicesSpec(serial=model.arch != "s390x", console_target="sclp" if model.arch == "s390x" else "serial"),
        nosharepages=not page_sharing(guest, scenario.policy),
    )


def cpu_part(topology: Topology, cells: tuple[NumaCell, ...], mode: str, model: str | None) -> Cpu:
    """``<cpu mode>`` with the topology and the cells (no ``<numa>`` without cells); with a model (mode custom):
    ``match='exact'`` and ``<model fallback='forbid'>NAME</model>``: exactly this model."""
    return Cpu(topology=topology, numa=Numa(cells) if cells else None, mode=mode,
               match="exact" if model is not None else None, model=CpuModel(model) if model is not None else None)


def page_sharing(guest: Guest, policy: Policy) -> bool:
    """Whether KSM may merge the guest's pages: the guest's ``page_sharing``, else the policy's (default true)."""
    return policy.page_sharing if guest.page_sharing is None else guest.page_sharing


def domain_xml(plan: Plan, guest_name: str) -> str:
    """The domain XML text of a placed guest (ends with a newline): complete as built, or the guest's template
    with vplan's parts merged in."""
    spec = domain_spec(plan, guest_name)
    template = plan.scenario.guest_by_name[guest_name].domain.template
    if template is None:
        return spec.to_xml()
    return template_domain_xml(template.text, spec, template.path)


# ---------------------------------------------------------------------------------------------------------------
# Templates


_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)
_PROLOGUE = re.compile(r"(?:\s+|<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^>\[]*(?:\[.*?\])?\s*>)*", re.S)


def _place(parent: etree._Element, element: etree._Element, after: Iterable[str]) -> etree._Element:
    """Insert ``element`` into ``parent`` after the last child named in ``after`` (else first), indented like its
    siblings."""
    children = list(parent)
    anchor = None
    for tag in after:
        found = [c for c in children if c.tag == tag]
        if found:
            anchor = found[-1] if anchor is None or parent.index(found[-1]) > parent.index(anchor) else anchor
    if anchor is None:
        element.tail = parent.text
        parent.insert(0, element)
    else:
        element.tail = anchor.tail
        anchor.addnext(element)
    return element


def _child(parent: etree._Element, tag: str, after: Iterable[str]) -> etree._Element:
    found = parent.find(tag)
    return found if found is not None else _place(parent, etree.Element(tag), after)


def identity_edit(text: str, spec: DomainSpec, where: str) -> str:
    """The template's text with the domain's identity and size set (type, name, uuid unless it has one, memory,
    currentMemory, the vCPU count, os type arch and machine, cpu mode and model): what ``merge_domain`` needs
    before it merges the pins, numatune, topology, cells and hugepages."""
    try:
        root = etree.fromstring(text.encode("utf-8"), _PARSER)
    except etree.XMLSyntaxError as exc:
        raise ValueError(f"{where}: not well-formed XML ({exc.msg})") from None
    if root.tag != "domain":
        raise ValueError(f"{where}: not a domain XML (the root element is <{root.tag}>)")
    root.set("type", spec.type)
    _child(root, "name", ()).text = spec.name
    if root.find("uuid") is None and spec.uuid is not None:
        _place(root, new_element("uuid", text=spec.uuid), ("name",))
    memory = _child(root, "memory", ("name", "uuid", "title", "description"))
    memory.attrib.clear()
    memory.set("unit", "KiB")
    memory.text = str(spec.memory_kib)
    current = root.find("currentMemory")
    if current is not None:
        current.attrib.clear()
        current.set("unit", "KiB")
        current.text = str(spec.current_memory_kib)
    if spec.nosharepages:  # page_sharing: false; the merge keeps it (vplan owns only <hugepages> there)
        backing = _child(root, "memoryBacking", ("name", "uuid", "title", "description", "memory", "currentMemory"))
        if backing.find("nosharepages") is None:
            if len(backing) == 0:
                backing.text = None
            _place(backing, etree.Element("nosharepages"), ("hugepages",))
    vcpu = _child(root, "vcpu", ("memory", "currentMemory", "memoryBacking"))
    vcpu.text = str(spec.vcpus)
    vcpu.attrib.pop("current", None)  # the template guest's online count is not this guest's: all planned vCPUs run
    os_element = _child(root, "os", ("vcpu", "cputune", "numatune", "iothreads", "resource", "sysinfo"))
    os_type = os_element.find("type")
    if os_type is None:
        os_type = _place(os_element, new_element("type", text="hvm"), ())
    os_type.set("arch", spec.os.arch)
    os_type.set("machine", spec.os.machine)
    cpu = _child(root, "cpu", ("os", "features"))
    cpu.set("mode", spec.cpu.mode)
    models = cpu.findall("model")
    if spec.cpu.model is not None:
        cpu.set("match", cpu.get("match", "exact"))
        model = models[0] if models else _place(cpu, new_element("model", [("fallback", "forbid")]), ())
        model.text = spec.cpu.model
    elif spec.cpu.mode != "custom":
        for model in models:  # a model names the CPU of mode custom only (host-model may keep its fallback)
            if spec.cpu.mode != "host-model" or model.text:
                cpu.remove(model)
        if "match" in cpu.attrib:
            del cpu.attrib["match"]
    matched = _PROLOGUE.match(text)  # the XML declaration, comments, ... before <domain>, as written
    prologue = matched.group(0) if matched is not None else ""
    epilogue = "".join("\n" + etree.tostring(node, encoding="unicode", with_tail=False)
                       for node in root.itersiblings())
    return prologue + etree.tostring(root, encoding="unicode", with_tail=False) + epilogue + "\n"


def template_domain_xml(template_text: str, spec: DomainSpec, where: str) -> str:
    """The template with the guest's identity and size set and vplan's parts merged in by ``vplan apply``'s
    merge (``planner.libvirt.apply.merge_domain``): everything else of the template stays."""
    from planner.libvirt.apply import ApplyError, merge_domain

    prepared = identity_edit(template_text, spec, where)
    try:
        return merge_domain(prepared, spec.to_element(), spec.name, where)
    except ApplyError as exc:
        raise ValueError("; ".join(exc.problems)) from None


def check_template(template: DomainTemplate) -> None:
    """Raise ``ValueError`` (a message without the path) when vplan could not merge a plan into the template:
    the merge of a one-vCPU, one-cell plan is tried, so a template the loader accepts never fails at write
    time."""
    from planner.libvirt.apply import ApplyError, memory_devices_kib

    settings = DomainSettings(template=template)
    arch = template.arch if template.arch in MACHINE_OF_ARCH else "x86_64"
    try:  # the probe guest is as big as the template's own memory devices need (they sit in its cells)
        devices_kib = sum(memory_devices_kib(etree.fromstring(template.text.encode("utf-8"), _PARSER), "template")
                          .values())
    except (etree.XMLSyntaxError, ApplyError):
        devices_kib = 0  # the merge below says what is wrong
    memory_kib = 1024 * 1024 + devices_kib
    spec = DomainSpec(
        name="vplan-template-check",
        memory_kib=memory_kib,
        current_memory_kib=memory_kib,
        vcpus=1,
        cputune=Cputune((VcpuPin(0, (0,)),), EmulatorPin((0,))),
        numatune=Numatune(NumatuneMemory("strict", (0,)), (MemNode(0, "strict", (0,)),)),
        os=OsSpec(arch=arch, machine=settings.effective_machine(arch, MACHINE_OF_ARCH[arch])),
        cpu=cpu_part(Topology(1, 1, 1, 1), (NumaCell(0, (0,), memory_kib, (Sibling(0, 10),)),), "host-passthrough",
                     None),
        hugepages=Hugepages((Page(2048, (0,)),)),
        type="kvm",
        uuid=domain_uuid("check", "check"),
    )
    try:
        template_domain_xml(template.text, spec, "template")
    except ValueError as exc:
        message = str(exc).removeprefix("vplan-template-check: ").removeprefix("template: ")
        raise ValueError(message) from None
