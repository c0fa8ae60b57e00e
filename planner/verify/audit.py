"""Audit deployed guests: read their libvirt domain XML, rebuild what they take from each host as a plan, and check
it with the same checker as ``vplan solve`` (``planner.verify.check.check_plan``), plus what only the XML shows.

Input: the hosts (a scenario's ``host_models`` and ``hosts``, which may name captures) and one domain XML per
deployed guest, with the host it runs on (a directory per host, or files plus a guest → host mapping).

A domain is read through the declarations of ``planner.libvirt.elements`` (``Vcpu``, ``Cputune``, ``Numatune``,
``Numa``/``NumaCell``, ``MemoryBacking``, ``Topology``: the same typed parts ``vplan solve`` writes) and becomes a
:class:`planner.model.plan.GuestPlacement` and a :class:`planner.model.scenario.Guest`:

* vCPUs: ``<vcpu>``; memory: ``<memory>`` (any libvirt unit); hugepage size: ``<memoryBacking><hugepages><page>``
  (``<hugepages/>`` without a page: the architecture's default, 2M on x86_64/aarch64, 16M on ppc64le, 1M on s390x);
* cells: ``<cpu><numa><cell>`` (a cell without ``id`` is numbered by its position, as libvirt does; without
  ``<numa>``: one cell holding every vCPU and ``<memory>`` less file-backed memory devices); a ``dimm`` or
  ``virtio-mem`` ``<devices><memory>`` adds its size to the cell it targets (``nvdimm``/``virtio-pmem`` are
  file-backed: not counted); the host node of a cell: its ``<numatune><memnode>`` nodeset, else the ``<memory
  nodeset>`` when that is a single node; a cell whose memory is not bound to one node is a ``numatune`` finding and
  is checked on the node its vCPUs are pinned to, or, when they are not pinned to one node, on no node at all
  (``UNKNOWN_NODE``: its memory and vCPUs are left out of the node checks, and the finding says so);
* hugepages per cell: a ``<page nodeset>`` names guest cells, a ``<page>`` without one the other cells;
* vCPU pins: ``<cputune><vcpupin>``; a vCPU without one runs on ``<vcpu cpuset>``, else on every host CPU (which
  the checker flags); emulator pins: ``<emulatorpin>``, else the same default;
* what XML cannot say comes from the scenario's guest of the same name when there is one (``cpu``, ``threads``,
  ``load``, ``emulator``, ``numa``, ``anti_affinity``, ``priority``, ``host``), loads also from ``--loads``;
  otherwise it is inferred: ``cpu: dedicated`` when every vCPU is pinned to one pCPU of its own that no other
  guest's vCPU on the host may use (judged on the whole host), else shared;
  ``threads: require`` for a dedicated guest whose ``<topology>`` has threads=2 (vplan writes that only for
  require), else ``prefer``; ``emulator: host`` when the emulator is pinned to exactly the host's reserved CPUs,
  ``isolate`` when to one CPU that is not reserved and serves no vCPU, else ``shared``; load 1.0.

Rules: every rule of ``planner.verify.check`` (``cells``, ``cpus``, ``threads``, ``emulator``, ``overcommit``, ``load``,
``memory``, ``hugepages``, ``placement``) and, from the XML alone:

* ``numatune``  memnode/cell mismatch: a memnode for a cell that does not exist, a cell without a memnode whose
  memory is not bound to a single node, a memnode or memory nodeset that spans nodes or names a node the host does
  not have, ``<memory nodeset>`` other than the memnodes' nodes;
* ``pagesize``  a hugepage size none of the host's nodes has;
* ``distances`` after libvirt's fill-ins (10 from a cell to itself, b -> a from a -> b), a cell pair's distance
  unlike the host's between the two cells' nodes, or a pair given in neither direction;
* ``pins``      a vcpupin for a vCPU the domain does not have (libvirt ignores it), a ``<vcpu cpuset>`` naming
  CPUs the host does not have.

Public API::

    read_domains(sources, mapping) -> list[DomainFile]
    audit(scenario_or_hosts, domains, loads=None) -> AuditResult    # .findings, .plan, .scenario
    AuditResult.text(), .document(), .scenario_yaml()
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import cast

import yaml
from lxml import etree

from planner.files.safeio import InputFileError, check_regular, read_input_bytes, read_input_text
from planner.hostimport.capture import model_spec, spec_lines
from planner.io.loader import Problems as LoaderProblems
from planner.io.loader import yaml_shape_ok
from planner.libvirt.elements import (
    Cputune,
    Hugepages,
    Memory,
    MemoryBacking,
    Numa,
    Numatune,
    Topology,
    Vcpu,
    read_part,
)
from planner.model.errors import VplanError
from planner.model.plan import CellPlacement, GuestPlacement, Plan
from planner.model.scenario import EmulatorPolicy, Guest, HostModel, MemoryMode, Scenario
from planner.model.units import (
    MAX_CPU_ID,
    MAX_NODE_ID,
    format_cpulist,
    format_memory,
    format_page,
    parse_cpulist,
    scaled_kib,
)
from planner.verify.check import check_plan

__all__ = ["AuditInputError", "DomainFile", "Finding", "AuditResult", "read_domains", "read_loads", "read_mapping",
           "audit", "AUDIT_RULES"]

AUDIT_RULES = ("numatune", "pagesize", "distances", "pins")
DEFAULT_HUGEPAGE_KIB = {"x86_64": 2048, "aarch64": 2048, "ppc64le": 16384, "s390x": 1024}


class AuditInputError(VplanError):
    """Input that cannot be audited (unreadable XML, unknown host, a guest twice, ...): one line per problem."""

    def __init__(self, problems: Iterable[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class Finding:
    rule: str
    guest: str | None
    host: str | None
    node: int | None
    message: str
    file: str | None = None  # the domain XML the finding is about, where there is one

    def as_dict(self) -> dict:
        return {"rule": self.rule, "guest": self.guest, "host": self.host, "node": self.node,
                "message": self.message, "file": self.file}

    def __str__(self) -> str:
        return f"[{self.rule}] {self.message}"


@dataclass(frozen=True)
class DomainFile:
    path: str
    host: str
    root: etree._Element
    name: str


# ---------------------------------------------------------------------------------------------------------------
# Reading the inputs


MAX_DOMAIN_BYTES = 16 * 1024 * 1024  # a domain XML is a few KiB
MAX_VCPUS = MAX_CPU_ID + 1


def parse_domain_xml(path: str) -> etree._Element:
    """A domain XML file's root element: a regular file of at most ``MAX_DOMAIN_BYTES``, parsed without network,
    without entity expansion and without huge-tree mode; a document with a DTD (entity declarations) is refused,
    as is one that is not well-formed. Raises :class:`AuditInputError`."""
    try:
        data = read_input_bytes(path, MAX_DOMAIN_BYTES)
    except InputFileError as exc:
        raise AuditInputError([f"{path}: {exc}"]) from None
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False)
    try:
        tree = etree.fromstring(data, parser).getroottree()
    except etree.XMLSyntaxError as exc:
        raise AuditInputError([f"{path}: not well-formed XML ({str(exc.msg)[:120]})"]) from None
    except ValueError as exc:  # lxml refuses some inputs outright (e.g. an encoding declaration it cannot use)
        raise AuditInputError([f"{path}: not a readable XML document ({str(exc)[:120]})"]) from None
    if tree.docinfo.internalDTD is not None or tree.docinfo.doctype:
        raise AuditInputError([f"{path}: the document has a <!DOCTYPE> (entity declarations): libvirt domain XML "
                               "has none; remove it"])
    return tree.getroot()


_parse_xml = parse_domain_xml


def _read_text(path: str) -> str:
    try:
        return read_input_text(path, MAX_DOMAIN_BYTES)
    except InputFileError as exc:
        raise AuditInputError([f"{path}: {exc}"]) from None


def read_mapping(path: str) -> dict[str, str]:
    """A guest → host mapping file: YAML/JSON ``{guest: host}``, or lines ``guest host`` / ``guest=host``."""
    return _pairs(path, _read_text(path), "host")


def read_loads(path: str) -> dict[str, Fraction]:
    """A guest → load file (YAML/JSON mapping, or lines ``guest load``); each load 0 < load <= 1."""
    raw = _pairs(path, _read_text(path), "load")
    loads: dict[str, Fraction] = {}
    problems = []
    for guest, value in raw.items():
        try:
            text = str(value).strip()
            if not re.fullmatch(r"[0-9]{1,9}(\.[0-9]{1,9})?|[0-9]{1,9}/[0-9]{1,9}", text):
                raise ValueError(text)
            load = Fraction(text)
        except (ValueError, ZeroDivisionError):
            problems.append(f"{path}: {guest[:40]}: {str(value)[:40]!r} is not a number")
            continue
        if not 0 < load <= 1:
            problems.append(f"{path}: {guest}: load {value} is out of range (0 < load <= 1)")
            continue
        loads[guest] = load
    if problems:
        raise AuditInputError(problems)
    return loads


def _pairs(path: str, text: str, what: str) -> dict[str, str]:
    data = None
    problems = LoaderProblems()
    if not _yaml_shape_ok_quiet(text, path, problems):
        raise AuditInputError(problems.lines)
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, RecursionError):
        data = None
    if isinstance(data, dict):
        return {str(k): str(v) for k, v in data.items()}
    result: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = re.split(r"\s*[=:]\s*|\s+", line, maxsplit=1)
        if len(parts) != 2 or not parts[1]:
            raise AuditInputError([f"{path}: line {number}: expected 'guest {what}', got {line[:40]!r}"
                                   + (" (not a mapping file?)" if number > 1 else "")])
        result[parts[0]] = parts[1]
    return result


def _yaml_shape_ok_quiet(text: str, path: str, problems: LoaderProblems) -> bool:
    try:
        return yaml_shape_ok(text, path, problems)
    except (yaml.YAMLError, ValueError):
        return True  # not YAML: read as lines


def read_domains(sources: Iterable[str], mapping: Mapping[str, str] | None = None) -> list[DomainFile]:
    """Domain XML files with their host. Each source is a directory ``DIR/HOST/*.xml`` (``vplan solve``'s output
    directory works too: its ``hosts/``), a directory of ``*.xml`` or an XML file; files outside a host directory
    take their host from ``mapping`` (by domain name, else file stem)."""
    mapping = dict(mapping or {})
    found: list[tuple[str, str | None]] = []
    problems: list[str] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            if (path / "plan.json").is_file() and (path / "hosts").is_dir():
                path = path / "hosts"
            flat = sorted(p for p in path.glob("*.xml") if p.is_file())
            for p in flat:
                found.append((str(p), None))
            for sub in sorted(p for p in path.iterdir() if p.is_dir()):
                for p in sorted(sub.glob("*.xml")):
                    found.append((str(p), sub.name))
        elif path.is_file():
            found.append((str(path), None))
        elif path.exists():
            try:
                check_regular(path)
            except InputFileError as exc:
                problems.append(f"{source}: {exc}")
        else:
            problems.append(f"{source}: no such file or directory")
    if problems:
        raise AuditInputError(problems)
    domains: list[DomainFile] = []
    seen: dict[str, str] = {}
    for file, host in found:
        root = _parse_xml(file)
        if root.tag != "domain":
            problems.append(f"{file}: not a libvirt domain (root element <{root.tag}>)")
            continue
        name = (root.findtext("name") or "").strip()
        if not name:
            problems.append(f"{file}: the domain has no <name>")
            continue
        mapped = mapping.get(name) or mapping.get(Path(file).stem)
        if host is None:
            host = mapped
            if host is None:
                problems.append(f"{file}: domain {name} has no host (put it under DIR/HOST/, or map it: --map "
                                f"{name}=HOST)")
                continue
        elif mapped is not None and mapped != host:
            problems.append(f"{file}: domain {name} is under host directory {host} but mapped to {mapped}")
            continue
        if name in seen:
            problems.append(f"{file}: domain {name} is also in {seen[name]} (a guest runs once)")
            continue
        seen[name] = file
        domains.append(DomainFile(file, host, root, name))
    if problems:
        raise AuditInputError(problems)
    return domains


# ---------------------------------------------------------------------------------------------------------------
# One domain


UNKNOWN_NODE = -1  # a cell whose host node cannot be told (memory not bound, vCPUs not pinned to one node)
RAM_DEVICES = ("dimm", "virtio-mem")  # <memory model> devices backed by host RAM; nvdimm, virtio-pmem: by a file


@dataclass
class _Read:
    """What one domain XML says, in vplan's terms."""

    domain: DomainFile
    vcpus: int
    memory_kib: int
    cells: list[tuple[int, tuple[int, ...], int, int, int | None]]  # (cell id, vCPUs, KiB, host node, page KiB)
    pins: list[tuple[int, ...]]
    emulator: tuple[int, ...]
    page_kib: int | None  # the guest's hugepage size (the one most cells use); cells may differ
    memory_mode: str
    topology_threads: int
    cell_distances: dict[int, dict[int, int]]  # guest cell id -> cell id -> value, libvirt's fill-ins applied
    findings: list[Finding] = field(default_factory=list)
    page_sharing: bool = True  # False: <memoryBacking><nosharepages/> (KSM never merges the guest's pages)


def _mem(element, what: str, file: str) -> int:
    try:
        return scaled_kib(element.text, element.get("unit"), what)
    except ValueError as exc:
        raise AuditInputError([f"{file}: {exc}"]) from None


def _cpulist(text: str | None, what: str, file: str, maximum: int = MAX_CPU_ID) -> tuple[int, ...]:
    try:
        return parse_cpulist(text or "", maximum)
    except ValueError as exc:
        raise AuditInputError([f"{file}: {what}: {exc}"]) from None


def _number(text: str | None, what: str, file: str, maximum: int) -> int:
    """A whole number written in ASCII digits (libvirt reads no other), 0..maximum."""
    value = (text or "").strip()
    if not re.fullmatch(r"[0-9]{1,12}", value) or int(value) > maximum:
        shown = repr(value[:20]) if value else "nothing"
        raise AuditInputError([f"{file}: {what} is {shown}, not a number 0..{maximum} (ASCII digits)"])
    return int(value)


def _memory_devices(root, file: str) -> list[tuple[str, int, int, tuple[int, ...] | None]]:
    """``<devices><memory model>``: (model, KiB of host memory it takes or holds, guest cell, host nodes of its
    ``<source><nodemask>`` or None)."""
    out = []
    for dev in root.findall("devices/memory"):
        model = dev.get("model", "")
        target = dev.find("target")
        if target is None:
            continue
        size_el = target.find("requested") if model == "virtio-mem" and target.find("requested") is not None \
            else target.find("size")
        kib = _mem(size_el, f"<memory model='{model[:20]}'> <size>", file) if size_el is not None else 0
        cell_el = target.find("node")
        cell = _number(cell_el.text, f"<memory model='{model[:20]}'> <target><node>", file, MAX_VCPUS) \
            if cell_el is not None else 0
        mask = dev.findtext("source/nodemask")
        nodes = _cpulist(mask, f"<memory model='{model[:20]}'> <source><nodemask>", file, MAX_NODE_ID) \
            if mask is not None else None
        out.append((model, kib, cell, nodes))
    return out


def _libvirt_distances(given: dict[int, dict[int, int]], cell_ids: list[int]) -> dict[int, dict[int, int]]:
    """The distance matrix libvirt makes of partial ``<distances>``: the local distance 10 where a cell does not
    give its own, b -> a = a -> b where only one direction is given. Pairs given in neither direction stay out."""
    if not given:
        return {}
    full: dict[int, dict[int, int]] = {a: dict(given.get(a, {})) for a in cell_ids}
    for a in cell_ids:
        full[a].setdefault(a, 10)
        for b, value in given.get(a, {}).items():
            if b in full and a not in given.get(b, {}):
                full[b].setdefault(a, value)
    return full


class _Reading:
    """One domain being read: its file, host model and the findings so far."""

    def __init__(self, d: DomainFile, model: HostModel):
        self.d, self.model = d, model
        self.findings: list[Finding] = []

    def add(self, rule: str, node: int | None, message: str) -> None:
        self.findings.append(Finding(rule, self.d.name, self.d.host, node, message, self.d.path))

    def part(self, part: type, where: str = ""):
        """The declared part (planner.libvirt.elements) at its path, None when the domain has none; a value
        libvirt would refuse is an :class:`AuditInputError` naming the file."""
        try:
            return read_part(part, self.d.root, where)
        except ValueError as exc:
            raise AuditInputError([f"{self.d.path}: {exc}"]) from None

    @property
    def who(self) -> str:
        return f"{self.d.name} on {self.d.host}"


def _read_domain(d: DomainFile, model: HostModel) -> _Read:
    """A deployed domain in vplan's terms, read through the declarations of ``planner.libvirt.elements`` (the same
    typed parts ``vplan solve`` writes), with libvirt's defaults and the XML-only findings."""
    r = _Reading(d, model)
    vcpu = r.part(Vcpu, f"domain {d.name}: ")
    if vcpu is None or vcpu.count < 1:
        raise AuditInputError([f"{d.path}: domain {d.name} has no valid <vcpu> count"])
    memory = r.part(Memory)
    default_pins = vcpu.cpuset or tuple(sorted(model.node_of_cpu))
    stray = sorted(set(vcpu.cpuset or ()) - set(model.node_of_cpu))
    if stray:
        r.add("pins", None, f"{r.who}: <vcpu cpuset='{format_cpulist(vcpu.cpuset or ())}'> names CPU(s) "
                            f"{format_cpulist(stray)}, which {d.host} does not have")
    pins, emulator = _read_pins(r, r.part(Cputune), vcpu.count, default_pins)
    numatune = r.part(Numatune)
    numa = r.part(Numa)
    devices = _memory_devices(d.root, d.path)
    raw_cells = _raw_cells(r, numa, vcpu.count, memory, devices)
    cell_ids = {c[0] for c in raw_cells}
    given = {(c.id if c.id is not None else i): {s.id: s.value for s in c.distances}
             for i, c in enumerate(numa.cells if numa is not None else ()) if c.distances is not None}
    _numatune_findings(r, numatune, cell_ids)
    cells, bound_nodes = _cell_nodes(r, raw_cells, numatune, pins, vcpu.count)
    _device_findings(r, devices, cells, numa is not None and bool(numa.cells))
    _nodeset_finding(r, numatune, bound_nodes)
    backing = r.part(MemoryBacking)
    page, cell_pages = _cell_pages(backing.hugepages if backing is not None else None, cell_ids, model.arch)
    try:
        topology = read_part(Topology, d.root)
    except ValueError:  # libvirt refuses it; the audit only wants to know whether threads=2
        topology = None
    return _Read(d, vcpu.count, sum(m for _c, _v, m in raw_cells),
                 [(cid, vs, mem, node, cell_pages.get(cid)) for cid, vs, mem, node in cells], pins, emulator, page,
                 _memory_mode(numatune), topology.threads if topology is not None else 1,
                 _libvirt_distances(given, sorted(cell_ids)), r.findings,
                 page_sharing=backing is None or not backing.nosharepages)


def _memory_mode(numatune: Numatune | None) -> str:
    """``<numatune><memory mode>``, libvirt's default strict."""
    mode = numatune.mode if numatune is not None else None
    return "strict" if mode is None else mode


def _read_pins(r: _Reading, cputune: Cputune | None, vcpus: int,
               default: tuple[int, ...]) -> tuple[list[tuple[int, ...]], tuple[int, ...]]:
    """The CPUs each vCPU and the emulator may run on: ``<vcpupin>``/``<emulatorpin>``, else ``default`` (the
    ``<vcpu cpuset>``, else every host CPU). A pin of a vCPU the domain does not have is a ``pins`` finding."""
    pins: list[tuple[int, ...] | None] = [None] * vcpus
    for pin in cputune.vcpupins if cputune is not None else ():
        if pin.vcpu >= vcpus:
            r.add("pins", None, f"{r.who}: <vcpupin vcpu='{pin.vcpu}'> names a vCPU the domain does not have "
                                f"({vcpus} vCPUs; libvirt ignores it)")
            continue
        if pins[pin.vcpu] is not None:
            raise AuditInputError([f"{r.d.path}: vCPU {pin.vcpu} has two <vcpupin> elements"])
        pins[pin.vcpu] = pin.cpuset or ()
    emulator = cputune.emulatorpin if cputune is not None else None
    return ([p if p is not None else default for p in pins],
            (emulator.cpuset or ()) if emulator is not None else default)


def _raw_cells(r: _Reading, numa: Numa | None, vcpus: int, memory: Memory | None,
               devices: list[tuple[str, int, int, tuple[int, ...] | None]]) -> list[tuple[int, tuple[int, ...], int]]:
    """(cell id, vCPUs, KiB) per guest cell: libvirt numbers cells without an id by position; a ``dimm`` or
    ``virtio-mem`` device adds its size to the cell it targets. Without cells: one cell of every vCPU with
    ``<memory>`` less the file-backed devices."""
    cells = numa.cells if numa is not None else ()
    if not cells:
        if memory is None:
            raise AuditInputError([f"{r.d.path}: domain {r.d.name} has no <memory> and no <numa> cells"])
        ram = memory.kib - sum(kib for model_name, kib, _c, _n in devices if model_name not in RAM_DEVICES)
        if ram <= 0:
            raise AuditInputError([f"{r.d.path}: domain {r.d.name}: <memory> {memory.kib} KiB is not more than its "
                                   "file-backed memory devices"])
        return [(0, tuple(range(vcpus)), ram)]
    raw = [(c.id if c.id is not None else i, c.cpus, c.memory_kib) for i, c in enumerate(cells)]
    extra: dict[int, int] = {}
    ids = {c[0] for c in raw}
    for model_name, kib, cell, _nodes in devices:
        if model_name not in RAM_DEVICES:
            continue
        if cell not in ids:
            r.add("numatune", None, f"{r.who}: a <memory model='{model_name}'> device targets guest cell {cell}, "
                                    "which the domain does not have")
            continue
        extra[cell] = extra.get(cell, 0) + kib
    return [(c, vs, m + extra.get(c, 0)) for c, vs, m in raw]


def _numatune_findings(r: _Reading, numatune: Numatune | None, cell_ids: set[int]) -> None:
    """Memnodes of cells the domain does not have, a memory nodeset naming nodes the host does not have, no
    numatune at all, ``placement='auto'``."""
    memnodes = _memnodes(numatune)
    memory = numatune.memory if numatune is not None else None
    for cid in sorted(set(memnodes) - cell_ids):
        r.add("numatune", None, f"{r.who}: <memnode cellid='{cid}'> names guest cell {cid}, which the domain does "
                                f"not have (cells {format_cpulist(cell_ids)})")
    for cid, nodes in sorted(memnodes.items()):
        missing = sorted(set(nodes) - set(r.model.node_by_id))
        if len(nodes) > 1 and missing:  # (one unknown node: _bound_node says so)
            r.add("numatune", None, f"{r.who}: <memnode cellid='{cid}' nodeset='{format_cpulist(nodes)}'> names "
                                    f"node(s) {format_cpulist(missing)}, which {r.d.host} does not have")
    nodeset = memory.nodeset if memory is not None else None
    unknown = sorted(set(nodeset or ()) - set(r.model.node_by_id))
    if nodeset is not None and unknown:
        r.add("numatune", None, f"{r.who}: <numatune><memory nodeset='{format_cpulist(nodeset)}'> names node(s) "
                                f"{format_cpulist(unknown)}, which {r.d.host} does not have")
    if memory is None and not memnodes:
        r.add("numatune", None, f"{r.who}: no <numatune>: the guest's memory is not bound to a host node and may "
                                "cross nodes")
    elif memory is not None and memory.placement == "auto" and not memnodes:
        r.add("numatune", None, f"{r.who}: <numatune><memory placement='auto'>: the memory node is chosen at start, "
                                "not planned")


def _memnodes(numatune: Numatune | None) -> dict[int, tuple[int, ...]]:
    """Guest cell id -> the host nodes of its ``<memnode>`` (a later memnode of a cell wins, as in libvirt)."""
    return {m.cellid: m.nodeset or () for m in numatune.memnodes} if numatune is not None else {}


def _cell_nodes(r: _Reading, raw_cells: list[tuple[int, tuple[int, ...], int]], numatune: Numatune | None,
                pins: list[tuple[int, ...]], vcpus: int) -> tuple[list[tuple[int, tuple[int, ...], int, int]],
                                                                  list[int]]:
    """(cell id, vCPUs, KiB, host node) per cell: the node of its memnode, else the ``<memory nodeset>`` when that
    is one node; a cell not bound so is checked on the node its vCPUs are pinned to, else on ``UNKNOWN_NODE``. Also
    the nodes the cells are bound to."""
    memnodes = _memnodes(numatune)
    memory = numatune.memory if numatune is not None else None
    nodeset = memory.nodeset if memory is not None else None
    bound = memory is not None or bool(memnodes)
    cells: list[tuple[int, tuple[int, ...], int, int]] = []
    bound_nodes: list[int] = []
    for cid, cell_vcpus, cell_mem in raw_cells:
        pin_nodes = sorted({r.model.node_of_cpu[c] for v in cell_vcpus if v < vcpus for c in pins[v]
                            if c in r.model.node_of_cpu})
        node = _bound_node(r, cid, memnodes, nodeset)
        if node is None:
            _unbound_finding(r, cid, pin_nodes, nodeset, bound and cid not in memnodes)
        if node is not None:
            bound_nodes.append(node)
        else:
            node = pin_nodes[0] if len(pin_nodes) == 1 else UNKNOWN_NODE  # the kernel allocates there first
        cells.append((cid, cell_vcpus, cell_mem, node))
    return cells, bound_nodes


def _nodeset_finding(r: _Reading, numatune: Numatune | None, bound_nodes: list[int]) -> None:
    """``<memory nodeset>`` other than the nodes the memnodes bind the cells to."""
    nodeset = numatune.nodeset if numatune is not None else None
    if nodeset is not None and _memnodes(numatune) and bound_nodes and set(nodeset) != set(bound_nodes):
        r.add("numatune", None, f"{r.who}: <numatune><memory nodeset='{format_cpulist(nodeset)}'> is not the cells' "
                                f"nodes {format_cpulist(bound_nodes)}")


def _bound_node(r: _Reading, cid: int, memnodes: dict[int, tuple[int, ...]],
                nodeset: tuple[int, ...] | None) -> int | None:
    """The host node a cell's memory is bound to (its memnode, else a one-node memory nodeset), or None."""
    host_nodes = set(r.model.node_by_id)
    if cid not in memnodes:
        return nodeset[0] if nodeset is not None and len(nodeset) == 1 and nodeset[0] in host_nodes else None
    nodes = memnodes[cid]
    if len(nodes) == 1 and nodes[0] in host_nodes:
        return nodes[0]
    if len(nodes) == 1:
        r.add("numatune", nodes[0], f"{r.who}: cell {cid} memory is bound to node {nodes[0]}, which {r.d.host} "
                                    "does not have")
    else:
        r.add("numatune", None, f"{r.who}: cell {cid} memory is bound to nodes {format_cpulist(nodes)}: its memory "
                                "crosses nodes (a cell's memory on one node)")
    return None


def _unbound_finding(r: _Reading, cid: int, pin_nodes: list[int], nodeset: tuple[int, ...] | None,
                     bound: bool) -> None:
    """A cell whose memory is not bound to one node: checked where its vCPUs run, or nowhere. ``bound``: the
    domain binds memory (a numatune memory or memnodes) but not this cell (it has no memnode)."""
    unknown = ("its vCPUs are not pinned to one node either: its host node is unknown, so its memory and vCPUs are "
               "not checked against a node")
    if not bound:
        if len(pin_nodes) != 1:
            r.add("numatune", None, f"{r.who}: cell {cid} memory is not bound to one node and " + unknown)
        return
    shown = format_cpulist(nodeset) if nodeset is not None else "none"
    where = unknown if len(pin_nodes) != 1 else f"checked on node {pin_nodes[0]}, where its vCPUs run"
    r.add("numatune", None, f"{r.who}: cell {cid} has no <memnode> and the memory nodeset is {shown}: its memory "
                            f"is not bound to one node (add <memnode cellid='{cid}' nodeset='N'/>); {where}")


def _device_findings(r: _Reading, devices: list[tuple[str, int, int, tuple[int, ...] | None]],
                     cells: list[tuple[int, tuple[int, ...], int, int]], has_cells: bool) -> None:
    """A RAM memory device backed (``<source><nodemask>``) by other nodes than its cell's."""
    node_of_cell = {cid: node for cid, _vs, _m, node in cells}
    for model_name, kib, cell, nodes in devices:
        here = node_of_cell.get(cell, UNKNOWN_NODE) if has_cells else cells[0][3]
        if model_name in RAM_DEVICES and nodes is not None and here != UNKNOWN_NODE and list(nodes) != [here]:
            r.add("numatune", here, f"{r.who}: a <memory model='{model_name}'> of {format_memory(kib)} in cell "
                                    f"{cell} is backed by host node(s) {format_cpulist(nodes)} (its <source>"
                                    f"<nodemask>), not the cell's node {here}: checked as if on node {here}")


def _cell_pages(hugepages: Hugepages | None, cell_ids: set[int], arch: str) -> tuple[int | None, dict[int, int | None]]:
    """(the guest's page size, page size per cell): a ``<page nodeset>`` names guest cells, a ``<page>`` without
    one sets the other cells; ``<hugepages/>`` without a page is the architecture's default size. The guest's size
    is the one most cells use (each cell is checked with its own)."""
    if hugepages is None:
        return None, {cid: None for cid in cell_ids}
    if not hugepages.pages:
        size = DEFAULT_HUGEPAGE_KIB.get(arch, 2048)
        return size, {cid: size for cid in cell_ids}
    default: int | None = None
    explicit: dict[int, int] = {}
    for p in hugepages.pages:
        if p.nodeset:
            explicit.update((cid, p.size_kib) for cid in p.nodeset)
        else:
            default = p.size_kib
    cell_pages = {cid: explicit.get(cid, default) for cid in cell_ids}
    sizes: dict[int, set[int]] = {}
    for cid, cell_page_kib in cell_pages.items():
        if cell_page_kib is not None:
            sizes.setdefault(cell_page_kib, set()).add(cid)
    return (max(sizes, key=lambda s: (len(sizes[s]), s)) if sizes else None), cell_pages


# ---------------------------------------------------------------------------------------------------------------
# The audit


@dataclass
class AuditResult:
    scenario: Scenario  # the hosts and the deployed guests (fixed to their hosts)
    plan: Plan
    findings: list[Finding]
    files: dict[str, str]  # guest -> domain XML file

    @property
    def clean(self) -> bool:
        return not self.findings

    def text(self) -> str:
        lines = []
        for f in self.findings:
            lines.append(f"[{f.rule}] {f.message}")  # the message names the guest, host and node
        hosts = sorted({p.host for p in self.plan.placed.values()})
        counts: dict[str, int] = {}
        for f in self.findings:
            counts[f.rule] = counts.get(f.rule, 0) + 1
        summary = (f"{len(self.plan.placed)} guests on {len(hosts)} hosts: "
                   + (f"{len(self.findings)} findings (" + ", ".join(f"{r} {n}" for r, n in counts.items()) + ")"
                      if self.findings else "no findings"))
        return "\n".join(lines + [summary]) + "\n"

    def document(self) -> dict:
        return {
            "clean": self.clean,
            "guests": {g: {"host": p.host, "file": self.files.get(g),
                           "nodes": [None if n == UNKNOWN_NODE else n for n in p.nodes]}  # None: unknown
                       for g, p in sorted(self.plan.placed.items())},
            "findings": [f.as_dict() for f in self.findings],
        }

    def scenario_yaml(self, name: str | None = None) -> str:
        """The found placement as a scenario: the hosts' models inline, every guest fixed to its host."""
        sc = self.scenario
        pol = sc.policy
        lines = [
            f"# Deployed guests found by `vplan check` ({len(self.plan.placed)} guests on "
            f"{len({p.host for p in self.plan.placed.values()})} hosts), every guest fixed to its host (host:).",
            "# Re-plan it with `vplan solve`; drop a guest's host: to let the solver move it.",
            "version: 1",
            f"name: {name or (sc.name + '-deployed')}",
            "policy:",
            f"  cpu_overcommit_max: {_num(pol.cpu_overcommit_max)}",
            f"  cpu_load_target: {_num(pol.cpu_load_target)}",
            f"  memory_overcommit: {_num(pol.memory_overcommit)}",
            *([f"  node_memory_target: {_num(pol.node_memory_target)}"] if pol.node_memory_target != 1 else []),
            f"  objective: {pol.objective}",
            f"  time_limit: {pol.time_limit_s:g}s",
            f"  stall: {pol.stall_s:g}s",
            *([f"  survive: {{hosts: {pol.survive_hosts}}}"] if pol.survive_hosts else []),
            *([f"  survive: {{racks: {pol.survive_racks}}}"] if pol.survive_racks else []),
            *([f"  anti_affinity_scope: {pol.anti_affinity_scope}"] if pol.anti_affinity_scope != "host" else []),
            *([f"  tenant_isolation: {pol.tenant_isolation}"] if pol.tenant_isolation != "none" else []),
            *(["  page_sharing: false"] if not pol.page_sharing else []),
            "host_models:",
        ]
        used_models = [m for m in sc.host_models if any(h.model == m for h in sc.hosts)]
        for model_name in used_models:
            lines.append(f"  {model_name}:")
            spec = model_spec(sc.host_models[model_name])
            lines.extend("    " + line for line in spec_lines(spec))
        lines.append("hosts:")
        for h in sc.hosts:  # failure domains too: survive and rack/zone anti-affinity mean the same after a re-plan
            host = {"name": h.name, "model": h.model, **({"rack": h.rack} if h.rack else {}),
                    **({"zone": h.zone} if h.zone else {})}
            lines.append("  - " + yaml.safe_dump(host, default_flow_style=True, width=10000, sort_keys=False).strip())
        lines.append("guests:")
        for g in sc.guests:
            item = {"name": g.name, "vcpus": g.vcpus, "memory": _mem_text(g.memory_kib)}
            if g.cpu != "shared":
                item["cpu"] = g.cpu
                item["threads"] = g.threads
            elif g.load != 1:
                item["load"] = _yaml_number(g.load)  # a number, not a string: `vplan validate` reads it back
            if g.hugepage_kib:
                item["hugepages"] = format_page(g.hugepage_kib)
            item["numa"] = _numa_item(g, self.plan.placed[g.name].cells)
            if g.memory_mode != "strict":
                item["memory_mode"] = g.memory_mode
            if g.emulator != "host":
                item["emulator"] = g.emulator
            if g.anti_affinity:
                item["anti_affinity"] = list(g.anti_affinity)
                if g.anti_affinity_scope is not None:
                    item["anti_affinity_scope"] = g.anti_affinity_scope
            if g.priority != 1:
                item["priority"] = g.priority
            if g.tenant is not None:
                item["tenant"] = g.tenant
            if g.page_sharing is False:
                item["page_sharing"] = False
            item["host"] = self.plan.placed[g.name].host
            lines.append("  - " + yaml.safe_dump(item, default_flow_style=True, width=10000, sort_keys=False).strip())
        return "\n".join(lines) + "\n"


def _num(value: Fraction) -> str:
    value = Fraction(value)
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):.6f}".rstrip("0").rstrip(".")


def _yaml_number(value: Fraction) -> int | float:
    value = Fraction(value)
    return value.numerator if value.denominator == 1 else float(value)


def _numa_item(guest: Guest, cells: tuple) -> int | list[dict]:
    """``numa:`` as written back: the cell count, or the explicit cells where the scenario lists them or the
    domain's cells are not the even split (so the written scenario asks for exactly what the domain has)."""
    counts = [len(c.vcpus) for c in cells]
    memories = [c.memory_kib for c in cells]
    spread = 2 if guest.threads == "require" else 1
    unit = guest.hugepage_kib or 1024
    uneven = bool(cells) and (max(counts) - min(counts) > spread or max(memories) - min(memories) > unit)
    if guest.numa_cells or uneven:
        return [{"vcpus": n, "memory": _mem_text(kib)} for n, kib in zip(counts, memories, strict=False)]
    return len(cells)


def _mem_text(kib: int) -> str:
    for unit, size in (("GiB", 1024**2), ("MiB", 1024)):
        if kib % size == 0:
            return f"{kib // size}{unit}"
    return f"{kib}KiB"


def _infer_emulator(read: _Read, model: HostModel, used_by_vcpus: set[int]) -> str:
    emu = set(read.emulator)
    if model.reserved_cpus and emu == set(model.reserved_cpus):
        return "host"
    if len(emu) == 1 and not emu & set(model.reserved_cpus) and not emu & used_by_vcpus:
        return "isolate"
    return "shared"


def audit(scenario: Scenario, domains: list[DomainFile], loads: Mapping[str, Fraction] | None = None) -> AuditResult:
    """Check deployed domains on the hosts of ``scenario`` (its guests, if any, give the policies the XML cannot
    say). Raises :class:`AuditInputError` for input that cannot be audited."""
    loads = dict(loads or {})
    problems = []
    for d in domains:
        if d.host not in scenario.host_by_name:
            known = ", ".join(h.name for h in scenario.hosts)
            problems.append(f"{d.path}: host {d.host} is not a host of the scenario (hosts: {known})")
    unknown_loads = sorted(set(loads) - {d.name for d in domains})
    if unknown_loads:
        problems.append(f"loads given for guests that are not deployed: {', '.join(unknown_loads)}")
    if problems:
        raise AuditInputError(problems)
    reads: list[_Read] = [_read_domain(d, scenario.model_of(d.host)) for d in domains]
    declared = scenario.guest_by_name
    vcpu_cpus_by_host: dict[str, dict[str, set[int]]] = {}
    for r in reads:
        vcpu_cpus_by_host.setdefault(r.domain.host, {})[r.domain.name] = {c for p in r.pins for c in p}
    guests: list[Guest] = []
    placements: dict[str, GuestPlacement] = {}
    findings: list[Finding] = []
    for r in reads:
        d = r.domain
        model = scenario.model_of(d.host)
        spec = declared.get(d.name)
        others = set().union(*(cpus for g, cpus in vcpu_cpus_by_host[d.host].items() if g != d.name))
        singles = [p[0] for p in r.pins if len(p) == 1]
        # dedicated: every vCPU on a pCPU of its own, which no other guest's vCPU on this host may use
        inferred_dedicated = len(singles) == r.vcpus and len(set(singles)) == r.vcpus and not set(singles) & others
        cpu = spec.cpu if spec is not None else ("dedicated" if inferred_dedicated else "shared")
        if cpu == "dedicated":
            threads = spec.threads if spec is not None and spec.threads else (
                "require" if r.topology_threads == 2 and r.vcpus % 2 == 0 else "prefer")
            load = Fraction(1)
        else:
            threads = None
            load = loads.get(d.name, spec.load if spec is not None and spec.cpu == "shared" else Fraction(1))
        emulator = spec.emulator if spec is not None else _infer_emulator(r, model, others | {
            c for p in r.pins for c in p})
        guest = Guest(
            name=d.name, vcpus=r.vcpus, memory_kib=r.memory_kib, cpu=cpu, threads=threads, load=load,
            hugepage_kib=r.page_kib, numa=spec.numa if spec is not None else None,
            memory_mode=cast(MemoryMode, r.memory_mode),
            numa_cells=spec.numa_cells if spec is not None else (),
            emulator=cast(EmulatorPolicy, emulator), anti_affinity=spec.anti_affinity if spec is not None else (),
            priority=spec.priority if spec is not None else 1,
            host=spec.host if spec is not None and spec.host else d.host,
            anti_affinity_scope=spec.anti_affinity_scope if spec is not None else None,
            tenant=spec.tenant if spec is not None else None,
            page_sharing=None if r.page_sharing else False)
        guests.append(guest)
        cells = tuple(CellPlacement(cell_id=cid, node_id=node, vcpus=vs, memory_kib=mem,
                                    hugepage_kib=-1 if cell_page == r.page_kib else (cell_page or 0))
                      for cid, vs, mem, node, cell_page in sorted(r.cells))
        placements[d.name] = GuestPlacement(guest=d.name, host=d.host, cells=cells,
                                            vcpu_pins=tuple(tuple(sorted(p)) for p in r.pins),
                                            emulator_pins=tuple(sorted(r.emulator)))
        findings.extend(r.findings)
        findings.extend(_distance_findings(r, model))
    lacking = _page_findings(reads, scenario, findings)
    unknown_guests = {r.domain.name for r in reads if any(c[3] == UNKNOWN_NODE for c in r.cells)}
    audit_scenario = Scenario(name=scenario.name, policy=scenario.policy, host_models=scenario.host_models,
                              hosts=scenario.hosts, guests=tuple(guests), path=scenario.path)
    plan = Plan(scenario=audit_scenario, status="feasible", placed=placements, unplaced_reasons={})
    files = {r.domain.name: r.domain.path for r in reads}
    for v in check_plan(plan):
        if v.rule == "hugepages" and any(v.host == h and v.node == n and f" {format_page(s)} pages" in v.message
                                         for h, n, s in lacking):
            continue  # the size is one the node lacks: told as 'pagesize'
        if v.node == UNKNOWN_NODE or (v.rule == "cells" and f"node {UNKNOWN_NODE}" in v.message):
            continue  # a cell whose node is unknown: told as 'numatune'
        if v.rule == "emulator" and v.guest in unknown_guests:
            continue  # its nodes are unknown, and with them the pools its emulator may use
        findings.append(Finding(v.rule, v.guest, v.host, v.node, v.message, files.get(v.guest or "")))
    order = {r.domain.name: i for i, r in enumerate(reads)}
    findings.sort(key=lambda f: (f.host or "", order.get(f.guest or "", -1)))
    return AuditResult(scenario=audit_scenario, plan=plan, findings=findings, files=files)


def _distance_findings(r: _Read, model: HostModel) -> list[Finding]:
    """Each guest cell pair's distance (after libvirt's fill-ins) against the host's between the cells' nodes;
    a pair given in neither direction is told once."""
    d = r.domain
    out = []
    all_cells = {cid for cid, *_rest in r.cells}
    node_of_cell = {cid: node for cid, _vs, _m, node, _p in r.cells if node != UNKNOWN_NODE}
    for cid, row in sorted(r.cell_distances.items()):
        if cid not in node_of_cell:
            continue
        for other, node in sorted(node_of_cell.items()):
            a, b = node_of_cell[cid], node
            if a not in model.node_index or b not in model.node_index:
                continue
            want = model.distance(a, b)
            if other not in row:
                if other > cid:  # after the fill-ins a missing pair is missing both ways: told once
                    out.append(Finding("distances", d.name, d.host, a, f"{d.name} on {d.host}: no <distances> "
                                       f"sibling between cells {min(cid, other)} and {max(cid, other)} (host distance "
                                       f"node {a} -> node {b} is {want})", d.path))
            elif row[other] != want:
                out.append(Finding("distances", d.name, d.host, a, f"{d.name} on {d.host}: cell {cid} -> cell "
                                   f"{other} distance is {row[other]}, but the host's node {a} -> node {b} "
                                   f"distance is {want}", d.path))
        for other in sorted(set(row) - all_cells):
            out.append(Finding("distances", d.name, d.host, node_of_cell[cid], f"{d.name} on {d.host}: cell {cid} "
                               f"<distances> names cell {other}, which the domain does not have", d.path))
    return out


def _page_findings(reads: list[_Read], scenario: Scenario, findings: list[Finding]) -> set[tuple[str, int, int]]:
    """``pagesize`` findings for page sizes a host lacks; returns the (host, node, size) cells concerned."""
    lacking: set[tuple[str, int, int]] = set()
    for r in reads:
        d = r.domain
        model = scenario.model_of(d.host)
        host_sizes = {s for n in model.nodes for s in n.hugepages}
        used = sorted({p for *_rest, p in r.cells if p is not None})
        for size in used:
            if size in host_sizes:
                continue
            listed = ", ".join(format_page(s) for s in sorted(host_sizes)) or "none"
            findings.append(Finding("pagesize", d.name, d.host, None, f"{d.name} on {d.host} uses "
                                    f"{format_page(size)} pages, a size {d.host} lacks (its nodes list: "
                                    f"{listed})", d.path))
            lacking.update((d.host, node, size) for _c, _v, _m, node, p in r.cells if p == size)
    return lacking
