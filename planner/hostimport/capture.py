"""Host import: a real host's NUMA topology, as the host reports it, into a :class:`planner.model.scenario.HostModel`
(and the YAML text of a scenario-v1 host model with a header naming its source).

Three kinds of capture are read (the kind is told from the content, not the file name):

* ``virsh capabilities`` XML: ``<host><topology><cells>``, each cell with its ``<cpus>`` (``id``, ``socket_id``,
  ``die_id``, ``core_id`` and ``siblings`` written as a list ``'0,12'`` or a range ``'0-7'``), ``<memory unit>``,
  ``<pages unit size>`` (``unit`` may be missing: KiB, libvirt's default) and ``<distances>``; the architecture
  from ``<host><cpu><arch>``.
* ``numactl --hardware`` text: ``available:``, ``node N cpus:`` (lists wrapped over several lines by a mail client
  are joined), ``node N size: M MB`` (numactl's MB is 2^20 bytes: MiB), the distance table (rows may be wrapped
  too; the table may be missing). It has no SMT siblings: give ``threads_per_core`` or an ``lscpu -p`` file
  (found beside the capture as ``FILE.lscpu`` or ``STEM.lscpu``).
* a sysfs snapshot, a directory or a tarball (``.tar``, ``.tar.gz``, ``.tgz``, ...) holding
  ``sys/devices/system/node/nodeN/{cpulist,meminfo,distance,hugepages/hugepages-SIZEkB/nr_hugepages}`` and
  ``sys/devices/system/cpu/cpuN/topology/{thread_siblings_list,core_id,physical_package_id}``, made with
  :data:`SYSFS_CAPTURE_COMMAND` (tar pads sysfs files with NUL bytes, which are ignored; an ``arch`` file at the
  top, from ``uname -m``, gives the architecture).

Rules of the model made from a capture (the same for ``vplan host import`` and for ``capabilities:``/``numactl:``/
``sysfs:`` in a scenario's host model):

* nodes are the capture's nodes/cells, sorted by id (ids may be sparse: 0, 1, 16, 17); CPU ids as the host numbers
  them (they may interleave across nodes); a node may have no CPUs or no memory (it then holds no guest cell).
* node memory is the cell's ``<memory>`` / numactl's ``size`` / sysfs ``MemTotal``. When the capture has none
  (libvirt before 1.2.x wrote no ``<memory>``), the import is refused with the nodes named, unless ``memory``
  overrides are given: one size for every node the capture gives no memory for, or per node id (which also
  replaces a value the capture has).
* hugepage pools are the capture's per-node page counts of every size above the base page (the smallest size the
  host lists, 4K on x86 and most aarch64 kernels, 64K on POWER), including empty pools (count 0) so the sizes the
  host supports stay visible. ``hugepages`` overrides set per node id and size ``{0: {1G: 8}}``; other sizes keep
  the capture's count. A size the capture does not list is allowed with a warning (a kernel lists a size only
  when it was enabled, e.g. ``hugepagesz=1G`` on its command line).
* SMT sibling groups come from ``siblings`` (capabilities) or ``thread_siblings_list`` (sysfs), only the CPUs the
  capture lists (offline siblings dropped); where the capture has none, from the CPUs' socket/die/core ids, else
  from an ``lscpu -p`` file, else ``threads_per_core`` (Linux's usual numbering: the siblings of c are c + k*N/T,
  which needs CPU ids 0..N-1). A group must sit inside one node. ``threads_per_core`` given with a capture that
  has siblings must agree with them.
* distances come from the capture; when it has none at all, 10 on the diagonal and 20 elsewhere (the scenario
  default), said in the header. A partial table is refused. Off-diagonal values must be 11..254.
* ``reserved`` (CPUs and memory per node with memory) and ``arch`` are taken as given; the architecture defaults to
  the capture's (capabilities, or a sysfs snapshot's ``arch`` file), else x86_64 (said in the header).
* A capture that lacks something required raises :class:`CaptureError` naming the file and what to add.

Public API::

    read_capture(path) -> Capture                      # parse, whatever the kind
    build_model(capture, name=..., overrides) -> Imported   # .model (HostModel), .spec, .notes, .choices
    import_host(path, ...) -> Imported                 # both
    Imported.yaml_text(source=..., command=...) -> str # scenario-v1 host model with its header
"""

from __future__ import annotations

import io
import os
import re
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal, Mapping

from lxml import etree

from planner.files.safeio import InputFileError, check_regular, read_input_bytes
from planner.model.scenario import HostModel, Node
from planner.model.units import (MAX_CPU_ID, scaled_kib, MAX_MEMORY_KIB, MAX_NODE_ID, check_page_kib, format_cpulist, format_memory,
                           format_page, parse_cpulist)

__all__ = [
    "CaptureError",
    "Capture",
    "CaptureNode",
    "Imported",
    "SYSFS_CAPTURE_COMMAND",
    "read_capture",
    "build_model",
    "import_host",
    "parse_capabilities",
    "parse_numactl",
    "parse_sysfs",
    "parse_lscpu",
    "scaled_kib",
    "model_spec",
    "spec_yaml",
]

ARCHES = ("x86_64", "aarch64", "ppc64le", "s390x")
Kind = Literal["capabilities", "numactl", "sysfs"]
Style = Literal["cli", "yaml"]

#: The one-line sysfs capture (run as root on the host; tar exits 1 because sysfs files shrink, which is harmless).
SYSFS_CAPTURE_COMMAND = (
    "uname -m > arch && tar czf host-sysfs.tgz arch "
    "/sys/devices/system/node/node*/{cpulist,meminfo,distance} "
    "/sys/devices/system/node/node*/hugepages/hugepages-*/nr_hugepages "
    "/sys/devices/system/cpu/cpu*/topology/{thread_siblings_list,core_id,physical_package_id}"
)

MAX_FILE_BYTES = 64 * 1024 * 1024


class CaptureError(ValueError):
    """A capture that cannot be imported. ``str()`` names the file and what is wrong or what to add; ``key`` names
    the override the problem is about (``memory``, ``hugepages``, ``reserved``, ``threads_per_core``, ``arch``,
    ``lscpu``) or is None for the capture itself."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


# ---------------------------------------------------------------------------------------------------------------
# Units




def page_kib(value: str | None, unit: str | None, what: str) -> int:
    """A page size attribute (``<pages size='2048'>``, ``<page size='1' unit='G'>``): a scaled integer that is a
    power of two from 4K to 16G. Raises ValueError naming ``what``."""
    return check_page_kib(scaled_kib(value, unit, what), f"{what}: {value!r} {unit or 'KiB'}")


def _mem_text(kib: int) -> str:
    """Exact memory text for YAML: 0, 32GiB, 64306MiB, 263763320KiB."""
    if kib == 0:
        return "0"
    for unit, size in (("TiB", 1024**3), ("GiB", 1024**2), ("MiB", 1024)):
        if kib % size == 0:
            return f"{kib // size}{unit}"
    return f"{kib}KiB"


# ---------------------------------------------------------------------------------------------------------------
# What a capture says


@dataclass
class CaptureNode:
    id: int
    cpus: tuple[int, ...]
    memory_kib: int | None  # None: the capture does not say
    pages: dict[int, int] = field(default_factory=dict)  # page KiB -> pages (every size listed, base included)


@dataclass
class Capture:
    kind: Kind
    path: str
    nodes: list[CaptureNode]  # sorted by id
    distances: dict[int, dict[int, int]] | None  # node id -> node id -> distance; None: not in the capture
    siblings: list[tuple[int, ...]] | None  # SMT groups; None: not in the capture
    siblings_from: str = ""  # where the groups came from (for the header)
    arch: str | None = None
    page_sizes: tuple[int, ...] = ()  # every page size the host lists, KiB, sorted
    cpu_model: str | None = None
    vendor: str | None = None
    quirks: list[str] = field(default_factory=list)  # irregularities met and how they were read
    lists_base_page: bool = True  # False: every size listed is a hugepage size (sysfs lists no base page)

    @property
    def base_page_kib(self) -> int | None:
        """The base (non-huge) page: the smallest size listed if it is at most 64 KiB (a capture that lists it)."""
        if not self.lists_base_page:
            return None
        sizes = sorted(set(self.page_sizes) | {s for n in self.nodes for s in n.pages})
        return sizes[0] if sizes and sizes[0] <= 64 else None

    @property
    def huge_sizes(self) -> tuple[int, ...]:
        base = self.base_page_kib
        sizes = set(self.page_sizes) | {s for n in self.nodes for s in n.pages}
        return tuple(sorted(s for s in sizes if s != base))

    @property
    def cpu_count(self) -> int:
        return sum(len(n.cpus) for n in self.nodes)


def _fail(path: str, message: str, key: str | None = None) -> CaptureError:
    return CaptureError(f"{path}: {message}", key)


def _hint(style: Style, cli: str, yaml: str) -> str:
    return cli if style == "cli" else yaml


# ---------------------------------------------------------------------------------------------------------------
# virsh capabilities


def _read_bytes(path: str) -> bytes:
    """A capture file's bytes: a regular file of at most ``MAX_FILE_BYTES`` (not a device or FIFO)."""
    if os.path.isdir(path):
        raise _fail(path, "is a directory (a sysfs snapshot directory holds sys/devices/system/node/...)")
    try:
        return read_input_bytes(path, MAX_FILE_BYTES)
    except InputFileError as exc:
        raise _fail(path, str(exc)) from None


def _int_attr(element, name: str, path: str, what: str, maximum: int = MAX_CPU_ID) -> int | None:
    value = element.get(name)
    if value is None:
        return None
    if not re.fullmatch(r"\s*[0-9]+\s*", value):
        raise _fail(path, f"{what}: {name}={value[:40]!r} is not a non-negative integer")
    if len(value.strip()) > 9 or int(value) > maximum:
        raise _fail(path, f"{what}: {name}={value.strip()[:20]!r} is out of range (at most {maximum})")
    return int(value)


def parse_capabilities(path: str, data: bytes | None = None) -> Capture:
    """Parse ``virsh capabilities`` XML (tolerantly: old and new libvirt formats, no schema validation)."""
    raw = _read_bytes(path) if data is None else data
    parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_comments=True, huge_tree=False)
    try:
        root = etree.fromstring(raw, parser)
    except etree.XMLSyntaxError as exc:
        raise _fail(path, f"not well-formed XML ({exc.msg}, line {exc.lineno})") from None
    host = root if root.tag == "host" else root.find("host")
    if root.tag not in ("capabilities", "host") or host is None:
        raise _fail(path, f"not a `virsh capabilities` document (root <{root.tag}>, expected <capabilities> "
                          "with <host>)")
    quirks: list[str] = []
    arch = (host.findtext("cpu/arch") or "").strip() or None
    cpu_model = (host.findtext("cpu/model") or "").strip() or None
    vendor = (host.findtext("cpu/vendor") or "").strip() or None
    page_sizes: set[int] = set()
    for page in host.findall("cpu/pages"):
        try:
            page_sizes.add(page_kib(page.get("size"), page.get("unit"), "<host><cpu><pages size>"))
        except ValueError as exc:
            raise _fail(path, str(exc)) from None
    cells = host.findall("topology/cells/cell")
    if not cells:
        raise _fail(path, "no <host><topology><cells>: libvirt could not read this host's NUMA topology; capture "
                          "`numactl --hardware` or a sysfs snapshot instead")
    nodes: list[CaptureNode] = []
    distances: dict[int, dict[int, int]] = {}
    cells_without_distances: list[int] = []
    owner: dict[int, int] = {}
    cpu_facts: dict[int, dict[str, object]] = {}
    no_unit_pages = False
    for cell in cells:
        cell_id = _int_attr(cell, "id", path, "<cell>", MAX_NODE_ID)
        if cell_id is None:
            raise _fail(path, "a <cell> has no id attribute")
        where = f"cell {cell_id}"
        if any(n.id == cell_id for n in nodes):
            raise _fail(path, f"cell id {cell_id} appears twice")
        memory_el = cell.find("memory")
        memory = None
        if memory_el is not None:
            try:
                memory = scaled_kib(memory_el.text, memory_el.get("unit"), f"{where} <memory>")
            except ValueError as exc:
                raise _fail(path, str(exc)) from None
        pages: dict[int, int] = {}
        for page in cell.findall("pages"):
            if page.get("unit") is None:
                no_unit_pages = True
            try:
                size = page_kib(page.get("size"), page.get("unit"), f"{where} <pages size>")
            except ValueError as exc:
                raise _fail(path, str(exc)) from None
            count_text = (page.text or "").strip()
            if not re.fullmatch(r"[0-9]{1,15}", count_text):
                raise _fail(path, f"{where} <pages size='{str(page.get('size'))[:20]}'>: {count_text[:20]!r} is not a "
                                  "page count")
            if size in pages:
                raise _fail(path, f"{where} lists {format_page(size)} pages twice")
            pages[size] = int(count_text)
        siblings_el = cell.find("distances")
        if siblings_el is not None:
            row: dict[int, int] = {}
            for sibling in siblings_el.findall("sibling"):
                other = _int_attr(sibling, "id", path, f"{where} <distances><sibling>", MAX_NODE_ID)
                value = _int_attr(sibling, "value", path, f"{where} <distances><sibling>", 255)
                if other is None or value is None:
                    raise _fail(path, f"{where}: a <sibling> lacks id or value")
                row[other] = value
            distances[cell_id] = row
        else:
            cells_without_distances.append(cell_id)
        cpus_el = cell.find("cpus")
        cpu_ids: list[int] = []
        cpu_elements = cpus_el.findall("cpu") if cpus_el is not None else []
        for cpu in cpu_elements:
            cpu_id = _int_attr(cpu, "id", path, f"{where} <cpu>")
            if cpu_id is None:
                raise _fail(path, f"{where}: a <cpu> has no id attribute")
            if cpu_id > MAX_CPU_ID:
                raise _fail(path, f"{where}: CPU id {cpu_id} is out of range")
            if cpu_id in owner:
                raise _fail(path, f"CPU {cpu_id} is in cell {owner[cpu_id]} and in cell {cell_id} (a CPU belongs to "
                                  "one node; this capture looks edited by hand)")
            owner[cpu_id] = cell_id
            cpu_ids.append(cpu_id)
            facts: dict[str, object] = {}
            for attr in ("socket_id", "die_id", "cluster_id", "core_id"):
                facts[attr] = _int_attr(cpu, attr, path, f"{where} CPU {cpu_id}", 999_999_999)  # ids, not counts
            text = cpu.get("siblings")
            if text is not None:
                try:
                    facts["siblings"] = parse_cpulist(text)
                except ValueError as exc:
                    raise _fail(path, f"{where} CPU {cpu_id}: siblings: {exc}") from None
            cpu_facts[cpu_id] = facts
        if cpus_el is not None and cpus_el.get("num") is not None:
            num = _int_attr(cpus_el, "num", path, f"{where} <cpus>")
            if num != len(cpu_elements):
                raise _fail(path, f"{where}: <cpus num='{num}'> but {len(cpu_elements)} <cpu> elements (the capture "
                                  "is cut short or edited)")
        nodes.append(CaptureNode(cell_id, tuple(sorted(cpu_ids)), memory, pages))
    nodes.sort(key=lambda n: n.id)
    ids = [n.id for n in nodes]
    if ids != list(range(len(ids))):
        quirks.append(f"sparse node ids {format_cpulist(ids)}")
    if no_unit_pages:
        quirks.append("<pages> without a unit attribute (read as KiB, libvirt's default)")
    # distances: all or nothing
    if distances and cells_without_distances:
        raise _fail(path, f"{_ids('cell', cells_without_distances, 'has')} no <distances> but other cells do; "
                          "the distance table is partial")
    matrix: dict[int, dict[int, int]] | None = None
    if distances:
        matrix = {}
        for a in ids:
            row = distances[a]
            unknown = sorted(set(row) - set(ids))
            if unknown:
                raise _fail(path, f"cell {a} <distances> names {_ids('cell', unknown)}, which the capture "
                                  "does not have")
            missing = [b for b in ids if b not in row]
            if missing:
                raise _fail(path, f"cell {a} <distances> has no sibling for {_ids('cell', missing)}; the "
                                  "distance table is partial")
            matrix[a] = {b: row[b] for b in ids}
    siblings, siblings_from = _siblings_from_cpu_facts(path, cpu_facts, owner, quirks)
    if (layout := _cpu_layout_quirk(nodes)) is not None:
        quirks.append(layout)
    return Capture(kind="capabilities", path=path, nodes=nodes, distances=matrix, siblings=siblings,
                   siblings_from=siblings_from, arch=arch, page_sizes=tuple(sorted(page_sizes)),
                   cpu_model=cpu_model, vendor=vendor, quirks=quirks)


def _runs(ids: Iterable[int]) -> int:
    """Number of contiguous runs in a sorted id list: (0-5,12-17) → 2."""
    values = sorted(ids)
    return sum(1 for i, v in enumerate(values) if i == 0 or values[i - 1] != v - 1)


def _cpu_layout_quirk(nodes: list[CaptureNode]) -> str | None:
    """How node CPU lists are laid out when they are not one contiguous range each."""
    runs = {n.id: _runs(n.cpus) for n in nodes if n.cpus}
    if not runs or max(runs.values()) <= 1:
        return None
    spans = sorted((min(n.cpus), max(n.cpus)) for n in nodes if n.cpus)
    overlap = any(spans[i + 1][0] < spans[i][1] for i in range(len(spans) - 1))
    if not overlap:
        return "sparse CPU ids (gaps in the numbering)"
    if max(runs.values()) <= 4:
        return "node CPU lists split in ranges (e.g. cores first, their SMT siblings after all cores)"
    return "CPU ids interleaved across nodes"


def _siblings_from_cpu_facts(path: str, facts: dict[int, dict[str, object]], owner: dict[int, int],
                             quirks: list[str]) -> tuple[list[tuple[int, ...]] | None, str]:
    """SMT groups from the ``siblings`` attributes, else from socket/die/core ids; (None, '') if neither."""
    if not facts:
        return [], "no CPUs"
    present = set(facts)
    with_siblings = [c for c, f in facts.items() if "siblings" in f]
    if with_siblings and len(with_siblings) != len(facts):
        missing = sorted(present - set(with_siblings))
        raise _fail(path, f"{_ids('CPU', missing, 'has')} no siblings attribute but others do")
    if with_siblings:
        groups: dict[int, tuple[int, ...]] = {}
        offline: set[int] = set()
        ranges = False
        for cpu in sorted(facts):
            listed = facts[cpu]["siblings"]
            if cpu not in listed:
                raise _fail(path, f"CPU {cpu}: siblings {format_cpulist(listed)} do not include CPU {cpu} itself")
            offline.update(c for c in listed if c not in present)
            group = tuple(c for c in listed if c in present)
            groups[cpu] = group
        for cpu, group in groups.items():
            for other in group:
                if groups[other] != group:
                    raise _fail(path, f"CPU {cpu} lists siblings {format_cpulist(group)} but CPU {other} lists "
                                      f"{format_cpulist(groups[other])}; sibling groups must agree")
        unique = sorted(set(groups.values()))
        for group in unique:
            spanned = sorted({owner[c] for c in group})
            if len(spanned) > 1:
                raise _fail(path, f"the siblings {format_cpulist(group)} sit in cells {', '.join(map(str, spanned))}; "
                                  "a core sits in one node")
            if len(group) > 2 and group == tuple(range(group[0], group[-1] + 1)):
                ranges = True
        sizes = sorted({len(g) for g in unique})
        if offline:
            quirks.append(f"siblings name CPUs the capture does not list (offline: {format_cpulist(offline)}); "
                          "they are left out")
        if ranges or any(len(g) >= 2 and g == tuple(range(g[0], g[-1] + 1)) for g in unique):
            quirks.append(f"siblings written as ranges (SMT{max(sizes)} groups like {format_cpulist(unique[0])})"
                          if max(sizes) > 2 else f"siblings of adjacent ids ({format_cpulist(unique[0])}, ...)")
        return unique, "the capture's siblings attributes"
    keys = ("socket_id", "die_id", "core_id")
    if all(facts[c].get("core_id") is not None and facts[c].get("socket_id") is not None for c in facts):
        by_key: dict[tuple, list[int]] = {}
        for cpu in sorted(facts):
            key = tuple(facts[cpu].get(k) for k in keys) + (owner[cpu],)
            by_key.setdefault(key, []).append(cpu)
        quirks.append("no siblings attributes: sibling groups from socket_id/die_id/core_id")
        return sorted(tuple(g) for g in by_key.values()), "the CPUs' socket_id/die_id/core_id"
    return None, ""


# ---------------------------------------------------------------------------------------------------------------
# numactl --hardware


_AVAILABLE = re.compile(r"^available:\s*([0-9]+)\s+nodes?\s*(?:\(([^)]*)\))?\s*$")
_NODE_CPUS = re.compile(r"^node\s+([0-9]+)\s+cpus:\s*(.*?)\s*$")
_NODE_SIZE = re.compile(r"^node\s+([0-9]+)\s+size:\s*([0-9]+)\s*([A-Za-z]*)\s*$")
_NODE_FREE = re.compile(r"^node\s+([0-9]+)\s+free:.*$")
_DIST_TITLE = re.compile(r"^node\s+distances:\s*$")
_DIST_HEAD = re.compile(r"^node((?:\s+[0-9]+)+)\s*$")
_DIST_ROW = re.compile(r"^([0-9]+):((?:\s+[0-9]+)*)\s*$")
_NUMBERS = re.compile(r"^[0-9]+(?:\s+[0-9]+)*$")
_NUMACTL_UNITS = {"MB": 1024, "kB": 1, "KB": 1, "GB": 1024**2}


def _no_long_numbers(path: str, text: str, key: str | None = None) -> None:
    """Numbers in a text capture have at most 12 digits (a CPU id, a size in MB): refused before any is read."""
    m = re.search(r"[0-9]{13,}", text)
    if m:
        line = text.count("\n", 0, m.start()) + 1
        raise _fail(path, f"line {line}: the number {m.group()[:20]}... has too many digits for a capture", key)


def _node_id(path: str, line: int, text: str) -> int:
    if len(text) > 9 or int(text) > MAX_NODE_ID:
        raise _fail(path, f"line {line}: node id {text[:20]} is out of range (at most {MAX_NODE_ID})")
    return int(text)


def parse_numactl(path: str, text: str | None = None) -> Capture:
    """Parse ``numactl --hardware`` output (wrapped lists joined, a missing distance table allowed)."""
    if text is None:
        raw = _read_bytes(path)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _fail(path, "not UTF-8 text") from None
    _no_long_numbers(path, text)
    quirks: list[str] = []
    available: list[int] | None = None
    cpus: dict[int, list[int]] = {}
    sizes: dict[int, int] = {}
    head: list[int] | None = None
    rows: dict[int, list[int]] = {}
    target: list[int] | None = None  # the list a wrapped continuation line extends
    target_kind = ""
    started = False
    section = "nodes"
    wrapped = False
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            target = None
            continue
        if stripped.startswith("No NUMA available"):
            raise _fail(path, "numactl says 'No NUMA available on this system': the kernel sees no NUMA; capture a "
                              "sysfs snapshot or `virsh capabilities` instead")
        m = _AVAILABLE.match(stripped)
        if m:
            started = True
            count = int(m.group(1)[:9])
            if count > MAX_NODE_ID + 1:
                raise _fail(path, f"line {number}: {m.group(1)[:20]} nodes is out of range (at most {MAX_NODE_ID + 1})")
            if m.group(2) is not None:
                try:
                    available = list(parse_cpulist(m.group(2), MAX_NODE_ID))
                except ValueError as exc:
                    raise _fail(path, f"line {number}: node list: {exc}") from None
                if len(available) != count:
                    raise _fail(path, f"line {number}: 'available: {count} nodes' lists {len(available)} ids")
            else:
                available = list(range(count))
            target = None
            continue
        if not started and not (_NODE_CPUS.match(stripped) or _NODE_SIZE.match(stripped)):
            continue  # a shell prompt or text before the output
        started = True
        if _NUMBERS.match(stripped) and target is not None:
            target.extend(int(x) for x in stripped.split())
            wrapped = True
            continue
        m = _NODE_CPUS.match(stripped)
        if m:
            node = _node_id(path, number, m.group(1))
            if node in cpus:
                raise _fail(path, f"line {number}: node {node} cpus are given twice")
            listed = m.group(2)
            if listed and not _NUMBERS.match(listed):
                raise _fail(path, f"line {number}: node {node} cpus {listed!r} is not a list of CPU ids")
            cpus[node] = [int(x) for x in listed.split()]
            target, target_kind = cpus[node], "cpus"
            continue
        m = _NODE_SIZE.match(stripped)
        if m:
            node, value, unit = _node_id(path, number, m.group(1)), int(m.group(2)), m.group(3) or "MB"
            if unit not in _NUMACTL_UNITS:
                raise _fail(path, f"line {number}: node {node} size unit {unit!r} is unknown (numactl writes MB)")
            sizes[node] = value * _NUMACTL_UNITS[unit]
            if sizes[node] > MAX_MEMORY_KIB:
                raise _fail(path, f"line {number}: node {node} size {value} {unit} is more than 4 PiB")
            target = None
            continue
        if _NODE_FREE.match(stripped):
            target = None
            continue
        if _DIST_TITLE.match(stripped):
            section = "distances"
            target = None
            continue
        if section == "distances":
            m = _DIST_HEAD.match(stripped)
            if m and head is None:
                head = [int(x) for x in m.group(1).split()]
                target, target_kind = head, "head"
                continue
            m = _DIST_ROW.match(stripped)
            if m and head is not None:
                node = int(m.group(1))
                rows[node] = [int(x) for x in m.group(2).split()]
                target, target_kind = rows[node], "row"
                continue
        raise _fail(path, f"line {number}: {stripped[:60]!r} is not numactl --hardware output (expected 'available:', "
                          "'node N cpus:', 'node N size:', 'node N free:' or the distance table)")
    if wrapped:
        quirks.append("line-wrapped lists (joined)")
    listed_nodes = sorted(set(cpus) | set(sizes))
    if available is None and not listed_nodes:
        raise _fail(path, "no 'available:' line and no 'node N cpus:' lines: not numactl --hardware output")
    ids = available if available is not None else listed_nodes
    extra = sorted(set(listed_nodes) - set(ids))
    if extra:
        raise _fail(path, f"{_ids('node', extra, 'has')} lines but 'available:' lists only "
                          f"{format_cpulist(ids)}")
    no_cpus = [n for n in ids if n not in cpus]
    no_size = [n for n in ids if n not in sizes]
    if no_cpus:
        raise _fail(path, f"{_ids('node', no_cpus, 'has')} no 'node N cpus:' line (the output is cut short: "
                          "capture the whole `numactl --hardware` output)")
    nodes = []
    owner: dict[int, int] = {}
    for node in sorted(ids):
        for cpu in cpus[node]:
            if cpu in owner:
                raise _fail(path, f"CPU {cpu} is listed in node {owner[cpu]} and in node {node}")
            if cpu > MAX_CPU_ID:
                raise _fail(path, f"node {node}: CPU id {cpu} is out of range")
            owner[cpu] = node
        nodes.append(CaptureNode(node, tuple(sorted(cpus[node])), sizes.get(node)))
    if no_size:
        quirks.append(f"no 'size:' line for {_ids('node', no_size)}")
    if sorted(ids) != list(range(len(ids))):
        quirks.append(f"sparse node ids {format_cpulist(ids)}")
    if (layout := _cpu_layout_quirk(nodes)) is not None:
        quirks.append(layout)
    matrix: dict[int, dict[int, int]] | None = None
    if head is None and rows:
        raise _fail(path, "distance rows without the 'node 0 1 ...' header line")
    if head is not None:
        if sorted(head) != sorted(ids):
            raise _fail(path, f"the distance table's header names nodes {format_cpulist(head)}, the output has "
                              f"nodes {format_cpulist(ids)}")
        missing = [n for n in head if n not in rows]
        if missing:
            raise _fail(path, f"the distance table has no row for {_ids('node', missing)} (cut short?)")
        matrix = {}
        for a in head:
            if len(rows[a]) != len(head):
                raise _fail(path, f"distance row {a}: {len(rows[a])} values for {len(head)} nodes")
            matrix[a] = dict(zip(head, rows[a]))
    else:
        quirks.append("no distance table")
    return Capture(kind="numactl", path=path, nodes=nodes, distances=matrix, siblings=None, quirks=quirks)


# ---------------------------------------------------------------------------------------------------------------
# lscpu -p


def parse_lscpu(path: str, text: str | None = None) -> dict[int, dict[str, int | None]]:
    """``lscpu -p`` → {cpu: {"core": id, "socket": id, "node": id or None}} (columns named by its '# CPU,...'
    header; without a header, the default columns CPU,Core,Socket,Node)."""
    if text is None:
        try:
            text = _read_bytes(path).decode("utf-8")
        except UnicodeDecodeError:
            raise _fail(path, "not UTF-8 text", "lscpu") from None
    _no_long_numbers(path, text, "lscpu")
    columns = ["cpu", "core", "socket", "node"]
    result: dict[int, dict[str, int | None]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            body = stripped.lstrip("#").strip()
            if body.lower().startswith("cpu,"):
                columns = [c.strip().lower() for c in body.split(",")]
            continue
        fields = [f.strip() for f in stripped.split(",")]
        if "cpu" not in columns or "core" not in columns:
            raise _fail(path, "the lscpu -p header has no CPU and Core columns (use plain `lscpu -p`)", "lscpu")
        if len(fields) < len(columns) - columns[::-1].index("core"):
            raise _fail(path, f"line {number}: {stripped!r} has too few fields for {','.join(columns)}", "lscpu")
        values: dict[str, int | None] = {}
        for name in ("cpu", "core", "socket", "node"):
            if name in columns and columns.index(name) < len(fields):
                field_text = fields[columns.index(name)]
                if field_text == "":
                    values[name] = None
                elif re.fullmatch(r"[0-9]+", field_text):
                    values[name] = int(field_text)
                else:
                    raise _fail(path, f"line {number}: {name} {field_text!r} is not a number", "lscpu")
            else:
                values[name] = None
        if values["cpu"] is None or values["core"] is None:
            raise _fail(path, f"line {number}: no CPU or Core value", "lscpu")
        result[values["cpu"]] = values
    if not result:
        raise _fail(path, "no CPU lines: not `lscpu -p` output", "lscpu")
    return result


def _looks_like_lscpu(text: str) -> bool:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    data = [line for line in lines if not line.startswith("#")]
    return bool(data) and any(line.lower().lstrip("# ").startswith("cpu,") for line in lines if line.startswith("#")) \
        or bool(data) and all(re.fullmatch(r"[0-9]+(,[0-9]*)+", line) for line in data)


def lscpu_beside(path: str) -> str | None:
    """An ``lscpu -p`` file next to a capture: ``FILE.lscpu``, ``STEM.lscpu`` or ``lscpu.txt`` in its directory."""
    p = Path(path)
    for candidate in (Path(str(p) + ".lscpu"), p.with_suffix(".lscpu"), p.parent / "lscpu.txt"):
        if candidate != p and candidate.is_file():
            return str(candidate)
    return None


# ---------------------------------------------------------------------------------------------------------------
# sysfs snapshot


_SYS_NODE = re.compile(r"^sys/devices/system/node/node([0-9]{1,4})/(cpulist|meminfo|distance|"
                       r"hugepages/hugepages-([0-9]{1,9})kB/nr_hugepages)\Z")
_SYS_CPU = re.compile(r"^sys/devices/system/cpu/cpu([0-9]{1,5})/topology/"
                      r"(thread_siblings_list|core_id|physical_package_id|die_id)\Z")
_SYS_NODE_FILES = ("cpulist", "meminfo", "distance")
_SYS_CPU_FILES = ("thread_siblings_list", "core_id", "physical_package_id", "die_id")
MAX_SYSFS_FILE_BYTES = 1 << 20  # a sysfs file is one page; tar pads it to 4096 bytes
MAX_TAR_BYTES = 512 * 1024 * 1024  # decompressed tarball data read before giving up (a gzip bomb)


def _sysfs_keep(name: str) -> bool:
    """Only the documented layout at the snapshot's top: ``arch``, ``sys/devices/system/{node,cpu}/...``."""
    return name == "arch" or bool(_SYS_NODE.match(name) or _SYS_CPU.match(name))


def _sysfs_dir_files(path: str) -> dict[str, str]:
    """The snapshot files under a directory, looked up where the layout puts them (no recursive search)."""
    files: dict[str, str] = {}
    wanted: list[str] = ["arch"]
    base = os.path.join(path, "sys", "devices", "system")
    if not os.path.isdir(os.path.join(base, "node")):
        nested = sorted(name for name in _listdir(os.path.join(path))
                        if os.path.isdir(os.path.join(path, name, "sys", "devices", "system", "node")))
        hint = (f"; {', '.join(nested[:5])} {'hold snapshots' if len(nested) > 1 else 'holds a snapshot'}: give "
                "one snapshot directory per host" if nested else "")
        raise _fail(path, "no sys/devices/system/node/ at the top of this directory (a sysfs snapshot holds arch and "
                          f"sys/devices/system/node/nodeN/...{hint}); capture with: " + SYSFS_CAPTURE_COMMAND)
    for name in _listdir(os.path.join(base, "node")):
        if re.fullmatch(r"node[0-9]{1,4}", name):
            rel = f"sys/devices/system/node/{name}"
            wanted += [f"{rel}/{f}" for f in _SYS_NODE_FILES]
            wanted += [f"{rel}/hugepages/{h}/nr_hugepages" for h in _listdir(os.path.join(path, rel, "hugepages"))]
    for name in _listdir(os.path.join(base, "cpu")):
        if re.fullmatch(r"cpu[0-9]{1,5}", name):
            wanted += [f"sys/devices/system/cpu/{name}/topology/{f}" for f in _SYS_CPU_FILES]
    for rel in wanted:
        full = os.path.join(path, *rel.split("/"))
        if not _sysfs_keep(rel) or not os.path.lexists(full):
            continue
        try:
            data = read_input_bytes(full, MAX_SYSFS_FILE_BYTES)
        except InputFileError as exc:
            raise _fail(path, f"{rel}: {exc}") from None
        files[rel] = data.replace(b"\0", b"").decode("utf-8", "replace")
    return files


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _sysfs_files(path: str) -> dict[str, str]:
    """Relative path → text (NUL padding from tar removed) of the files of a snapshot directory or tarball."""
    if os.path.isdir(path):
        return _sysfs_dir_files(path)
    try:
        check_regular(path)
    except InputFileError as exc:
        raise _fail(path, str(exc)) from None
    files: dict[str, str] = {}
    total = 0
    try:
        archive = tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise _fail(path, f"not a directory nor a readable tarball ({exc})") from None
    try:
        with archive:
            for member in archive:
                if archive.offset > MAX_TAR_BYTES:
                    raise _fail(path, "the tarball holds too much data for a sysfs snapshot")
                name = member.name
                while name.startswith(("./", "/")):
                    name = name[1:] if name.startswith("/") else name[2:]
                if not member.isfile() or not _sysfs_keep(name):
                    continue
                if name in files:
                    raise _fail(path, f"{name} is in the tarball twice (two snapshots in one tarball? give one per "
                                      "host)")
                total += member.size
                if member.size > MAX_SYSFS_FILE_BYTES or total > MAX_FILE_BYTES:
                    raise _fail(path, "the tarball holds too much data for a sysfs snapshot")
                handle = archive.extractfile(member)
                if handle is None:
                    continue
                files[name] = handle.read().replace(b"\0", b"").decode("utf-8", "replace")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise _fail(path, f"the tarball is damaged or cut short ({exc})") from None
    return files


def _sysfs_int(path: str, cpu: int, name: str, text: str) -> int:
    text = text.strip()
    if not re.fullmatch(r"-?[0-9]{1,9}", text):
        raise _fail(path, f"cpu{cpu}/topology/{name} {text[:20]!r} is not a number")
    return int(text)


def parse_sysfs(path: str) -> Capture:
    """Parse a sysfs snapshot (directory or tarball), see :data:`SYSFS_CAPTURE_COMMAND`."""
    try:
        files = _sysfs_files(path)
    except (EOFError, tarfile.TarError, zlib.error) as exc:  # a truncated or damaged .tgz
        raise _fail(path, f"a truncated or damaged tarball ({exc}); capture it again") from None
    quirks: list[str] = []
    node_files: dict[int, dict[str, str]] = {}
    pages: dict[int, dict[int, int]] = {}
    cpu_files: dict[int, dict[str, str]] = {}
    arch = None
    for rel, text in files.items():
        m = _SYS_NODE.search(rel)
        if m:
            node = int(m.group(1))
            if node > MAX_NODE_ID:
                raise _fail(path, f"{rel}: node id {node} is out of range (at most {MAX_NODE_ID})")
            if m.group(3):
                value = text.strip()
                if not re.fullmatch(r"[0-9]{1,15}", value):
                    raise _fail(path, f"{rel}: {value[:20]!r} is not a page count")
                try:
                    size = check_page_kib(int(m.group(3)), f"{rel}: {m.group(3)}kB")
                except ValueError as exc:
                    raise _fail(path, str(exc)) from None
                pages.setdefault(node, {})[size] = int(value)
            else:
                node_files.setdefault(node, {})[m.group(2)] = text
            continue
        m = _SYS_CPU.search(rel)
        if m:
            if int(m.group(1)) > MAX_CPU_ID:
                raise _fail(path, f"{rel}: CPU id {m.group(1)} is out of range (at most {MAX_CPU_ID})")
            cpu_files.setdefault(int(m.group(1)), {})[m.group(2)] = text.strip()
            continue
        if rel == "arch" or rel.endswith("/arch"):
            arch = text.strip() or None
    if not node_files:
        raise _fail(path, "no sys/devices/system/node/nodeN/ files in the snapshot; capture with: "
                          + SYSFS_CAPTURE_COMMAND)
    ids = sorted(node_files)
    nodes: list[CaptureNode] = []
    owner: dict[int, int] = {}
    for node in ids:
        got = node_files[node]
        if "cpulist" not in got:
            raise _fail(path, f"node{node}/cpulist is missing from the snapshot")
        try:
            node_cpus = parse_cpulist(got["cpulist"].strip())
        except ValueError as exc:
            raise _fail(path, f"node{node}/cpulist: {exc}") from None
        for cpu in node_cpus:
            if cpu in owner:
                raise _fail(path, f"CPU {cpu} is in node{owner[cpu]}/cpulist and node{node}/cpulist")
            owner[cpu] = node
        memory = None
        if "meminfo" in got:
            m = re.search(r"MemTotal:\s*([0-9]{1,13})\s*kB", got["meminfo"])
            if not m:
                raise _fail(path, f"node{node}/meminfo has no 'MemTotal: N kB' line")
            memory = int(m.group(1))
            if memory > MAX_MEMORY_KIB:
                raise _fail(path, f"node{node}/meminfo: MemTotal {memory} kB is more than 4 PiB")
        nodes.append(CaptureNode(node, node_cpus, memory, dict(pages.get(node, {}))))
    if ids != list(range(len(ids))):
        quirks.append(f"sparse node ids {format_cpulist(ids)}")
    if (layout := _cpu_layout_quirk(nodes)) is not None:
        quirks.append(layout)
    have_distance = [n for n in ids if "distance" in node_files[n]]
    matrix: dict[int, dict[int, int]] | None = None
    if have_distance and len(have_distance) != len(ids):
        missing = [n for n in ids if n not in have_distance]
        raise _fail(path, f"node{format_cpulist(missing)}/distance missing while other nodes have theirs")
    if have_distance:
        matrix = {}
        for node in ids:
            values = node_files[node]["distance"].split()
            if len(values) != len(ids) or not all(re.fullmatch(r"[0-9]{1,3}", v) for v in values):
                raise _fail(path, f"node{node}/distance {' '.join(values)!r} does not give {len(ids)} distances "
                                  f"(one per node {format_cpulist(ids)})")
            matrix[node] = dict(zip(ids, (int(v) for v in values)))
    else:
        quirks.append("no node distance files")
    siblings: list[tuple[int, ...]] | None = None
    siblings_from = ""
    present = set(owner)
    topo = {c: f for c, f in cpu_files.items() if c in present}
    if topo and all("thread_siblings_list" in f for f in topo.values()) and set(topo) == present:
        facts = {}
        for cpu, f in topo.items():
            try:
                facts[cpu] = {"siblings": parse_cpulist(f["thread_siblings_list"])}
            except ValueError as exc:
                raise _fail(path, f"cpu{cpu}/topology/thread_siblings_list: {exc}") from None
        siblings, _ = _siblings_from_cpu_facts(path, facts, owner, quirks)
        siblings_from = "thread_siblings_list"
    elif topo and set(topo) == present and all("core_id" in f and "physical_package_id" in f for f in topo.values()):
        facts = {cpu: {"socket_id": _sysfs_int(path, cpu, "physical_package_id", f["physical_package_id"]),
                       "die_id": _sysfs_int(path, cpu, "die_id", f.get("die_id", "0") or "0"),
                       "core_id": _sysfs_int(path, cpu, "core_id", f["core_id"])} for cpu, f in topo.items()}
        siblings, siblings_from = _siblings_from_cpu_facts(path, facts, owner, quirks)
    elif topo:
        missing = sorted(present - set(topo))
        quirks.append(f"CPU topology files missing for CPUs {format_cpulist(missing)}")
    huge_sizes = tuple(sorted({s for p in pages.values() for s in p}))
    return Capture(kind="sysfs", path=path, nodes=nodes, distances=matrix, siblings=siblings,
                   siblings_from=siblings_from, arch=arch, page_sizes=huge_sizes, quirks=quirks,
                   lists_base_page=False)


# ---------------------------------------------------------------------------------------------------------------
# Any capture


def detect_kind(path: str) -> Kind | Literal["lscpu"]:
    if os.path.isdir(path):
        return "sysfs"
    raw = _read_bytes(path)
    if raw[:2] == b"\x1f\x8b" or raw[:3] == b"BZh" or raw[:6] == b"\xfd7zXZ\x00" or raw[257:262] == b"ustar":
        return "sysfs"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _fail(path, "neither text nor a tarball: not a capture") from None
    head = text.lstrip()
    if head.startswith("<"):
        return "capabilities"
    if _looks_like_lscpu(text):
        return "lscpu"
    if re.search(r"^\s*(available:\s*[0-9]+\s+node|node\s+[0-9]+\s+cpus:|No NUMA available)", text, re.M):
        return "numactl"
    raise _fail(path, "not a capture this importer reads (virsh capabilities XML, numactl --hardware output, "
                      "lscpu -p output, or a sysfs snapshot directory/tarball)")


def read_capture(path: str | os.PathLike) -> Capture:
    """Parse any capture (the kind is told from the content)."""
    path = os.fspath(path)
    kind = detect_kind(path)
    if kind == "capabilities":
        return parse_capabilities(path)
    if kind == "numactl":
        return parse_numactl(path)
    if kind == "sysfs":
        return parse_sysfs(path)
    raise _fail(path, "is `lscpu -p` output: it gives SMT siblings for a numactl capture; give it with the "
                      "capture (vplan host import host.txt host.lscpu) or name it host.txt.lscpu beside it")


# ---------------------------------------------------------------------------------------------------------------
# Capture + overrides → host model


@dataclass
class Imported:
    model: HostModel
    spec: dict  # the host model mapping (scenario v1), values in YAML-ready form
    capture: Capture
    notes: list[str]  # what the model says and where it came from (header lines)
    choices: list[str]  # planning choices given as overrides (header lines)
    warnings: list[str]  # things a user should look at (also printed by the CLI)

    def yaml_text(self, source: str | None = None, command: str | None = None, extra: Iterable[str] = ()) -> str:
        return spec_yaml(self, source=source, command=command, extra=extra)


def _derived_groups(cpus: list[int], threads: int) -> list[tuple[int, ...]] | None:
    """The threads_per_core rule: siblings of c are c + k*N/T; None when the ids are not 0..N-1 or N % T."""
    count = len(cpus)
    if threads == 1:
        return [(c,) for c in cpus]
    if cpus != list(range(count)) or count % threads:
        return None
    step = count // threads
    return [tuple(c + k * step for k in range(threads)) for c in range(step)]


def build_model(capture: Capture, *, name: str, threads_per_core: int | None = None,
                lscpu: str | Mapping[int, Mapping[str, int | None]] | None = None,
                memory: int | Mapping[int, int] | None = None,
                hugepages: Mapping[int, Mapping[int, int]] | None = None,
                reserved_cpus: Iterable[int] = (), reserved_memory_kib: int = 0,
                arch: str | None = None, style: Style = "cli") -> Imported:
    """The host model of ``capture`` with the overrides (see the module docstring for the rules).

    ``memory``: KiB for every node the capture gives no memory for, or {node id: KiB}. ``hugepages``:
    {node id: {page KiB: pages}}. ``lscpu``: a path or parsed ``lscpu -p``. ``style`` words the hints for the
    command line (``--memory 0=64GiB``) or a scenario (``memory: {0: 64GiB}``)."""
    path = capture.path
    notes: list[str] = []
    choices: list[str] = []
    warnings: list[str] = []
    ids = [n.id for n in capture.nodes]
    by_id = {n.id: n for n in capture.nodes}

    # ---- architecture
    if arch is not None:
        if arch not in ARCHES:
            raise CaptureError(f"arch {arch!r} is not one of {', '.join(ARCHES)}", "arch")
        if capture.arch and capture.arch != arch:
            raise _fail(path, f"the capture says arch {capture.arch}, not {arch}; remove the arch override", "arch")
        final_arch = arch
    elif capture.arch:
        if capture.arch not in ARCHES:
            raise _fail(path, f"arch {capture.arch[:20]!r} is not one vplan plans for ({', '.join(ARCHES)})")
        final_arch = capture.arch
    else:
        final_arch = "x86_64"
        notes.append("arch: not in the capture, x86_64 assumed" + _hint(style, " (give --arch)", " (give arch:)"))

    # ---- memory
    memories: dict[int, int | None] = {n.id: n.memory_kib for n in capture.nodes}
    if isinstance(memory, Mapping):
        unknown = sorted(set(memory) - set(ids))
        if unknown:
            raise _fail(path, f"memory override for {_ids('node', unknown)}, which the capture does not have "
                              f"(nodes {format_cpulist(ids)})", "memory")
        for node, kib in sorted(memory.items()):
            was = memories[node]
            memories[node] = kib
            choices.append(f"node {node} memory {format_memory(kib) if kib else '0'}"
                           + (f" (the capture says {format_memory(was)})" if was is not None else
                              " (not in the capture)"))
    elif memory is not None:
        filled = [n for n in ids if memories[n] is None]
        if not filled:
            warnings.append("the memory override changes nothing: the capture gives every node's memory")
        for node in filled:
            memories[node] = memory
        if filled:
            choices.append(f"memory {format_memory(memory)} on {_ids('node', filled)} (not in the capture)")
    missing_memory = [n for n in ids if memories[n] is None]
    if missing_memory:
        what = {"capabilities": "<memory> in cells", "numactl": "'node N size:' lines",
                "sysfs": "nodeN/meminfo files"}[capture.kind]
        example_node = missing_memory[0]
        raise _fail(path, f"no memory for {_ids('node', missing_memory)} (the capture has no {what}"
                          + ("; older libvirt wrote none" if capture.kind == "capabilities" else "")
                          + "): give the node memory, "
                          + _hint(style, f"--memory 64GiB (every node without one) or --memory {example_node}=64GiB "
                                         "(per node)",
                                  f"memory: 64GiB (every node without one) or memory: {{{example_node}: 64GiB}} "
                                  "(per node) in this host model"),
                    "memory")

    # ---- hugepage pools
    base = capture.base_page_kib
    huge = capture.huge_sizes
    pools: dict[int, dict[int, int]] = {n.id: {s: c for s, c in n.pages.items() if s != base} for n in capture.nodes}
    if hugepages:
        unknown = sorted(set(hugepages) - set(ids))
        if unknown:
            raise _fail(path, f"hugepages override for {_ids('node', unknown)}, which the capture does not "
                              f"have (nodes {format_cpulist(ids)})", "hugepages")
        for node, sizes in sorted(hugepages.items()):
            for size, count in sorted(sizes.items(), key=lambda kv: -kv[0]):
                if base is not None and size <= base:
                    raise _fail(path, f"hugepages override on node {node}: {format_page(size)} is not above the "
                                      f"base page {format_page(base)}", "hugepages")
                if huge and size not in huge:
                    warnings.append(f"{format_page(size)} pages are not listed by the capture (it lists "
                                    f"{', '.join(format_page(s) for s in huge)}): the host kernel must enable them "
                                    f"(hugepagesz={format_page(size)})")
                was = pools[node].get(size)
                pools[node][size] = count
                choices.append(f"node {node} hugepages {format_page(size)} x {count}"
                               + (f" (the capture: {was})" if was is not None else " (the capture: none)"))
    # ---- reserved
    reserved = frozenset(reserved_cpus)
    present = {c for n in capture.nodes for c in n.cpus}
    unknown = sorted(reserved - present)
    if unknown:
        raise _fail(path, f"reserved {_cpus_are(unknown)} not {'a CPU' if len(unknown) == 1 else 'CPUs'} of this host "
                          f"({format_cpulist(sorted(present)) or 'none'})", "reserved")
    if reserved or reserved_memory_kib:
        choices.insert(0, f"reserved CPUs {format_cpulist(reserved) or 'none'} and "
                          f"{format_memory(reserved_memory_kib) if reserved_memory_kib else 'no'} memory per node "
                          "with memory (for the host)")
    for node in ids:
        kib = memories[node] or 0
        pool = sum(s * c for s, c in pools[node].items())
        reserve = reserved_memory_kib if kib else 0
        if kib == 0 and any(pools[node].values()):
            raise _fail(path, f"node {node} has no memory but hugepage pools "
                              f"{_pools_text(pools[node])}", "hugepages" if hugepages else None)
        if pool + reserve > kib:
            in_capture = sum(s * c for s, c in by_id[node].pages.items() if s != base)
            if in_capture > kib and not (hugepages and node in hugepages):
                sizes = " ".join(f"{node}:{format_page(s)}=0" for s, c in sorted(pools[node].items()) if c)
                yaml_sizes = ", ".join(f"{format_page(s)}: 0" for s, c in sorted(pools[node].items()) if c)
                raise _fail(path, f"node {node}: the capture's hugepage pools ({_pools_text(pools[node])} = "
                                  f"{format_memory(pool)}) exceed its memory {format_memory(kib)}: the capture is "
                                  "inconsistent (a test mock?); override the pools: "
                                  + _hint(style, " ".join(f"--hugepages {x}" for x in sizes.split()),
                                          f"hugepages: {{{node}: {{{yaml_sizes}}}}}"), "hugepages")
            raise _fail(path, f"node {node}: hugepage pools {format_memory(pool)} + reserved memory "
                              f"{format_memory(reserve)} exceed its memory {format_memory(kib)}",
                        "hugepages" if hugepages else "reserved")

    # ---- SMT siblings
    cpus_all = sorted(present)
    node_of = {c: n.id for n in capture.nodes for c in n.cpus}
    groups: list[tuple[int, ...]] | None = capture.siblings
    siblings_from = capture.siblings_from
    lscpu_path = None
    if groups is None and lscpu is None and capture.kind == "numactl" and threads_per_core is None:
        lscpu_path = lscpu_beside(path)
        lscpu = lscpu_path
    if lscpu is not None:
        if groups is not None and capture.siblings_from:
            raise _fail(path, f"the capture has sibling information ({capture.siblings_from}); the lscpu file is not "
                              "needed", "lscpu")
        if isinstance(lscpu, str):
            lscpu_path = lscpu
            parsed = parse_lscpu(lscpu)
        else:
            parsed = dict(lscpu)
        shown = lscpu_path or "lscpu -p"
        missing = sorted(set(cpus_all) - set(parsed))
        if missing:
            raise _fail(shown, f"has no line for {_ids('CPU', missing)} of {path}", "lscpu")
        by_core: dict[tuple, list[int]] = {}
        for cpu in cpus_all:
            row = parsed[cpu]
            if row.get("node") is not None and row["node"] != node_of[cpu]:
                raise _fail(shown, f"CPU {cpu} is on node {row['node']} but {path} puts it on node {node_of[cpu]} "
                                   "(captures of two different hosts?)", "lscpu")
            by_core.setdefault((row.get("socket"), row["core"]), []).append(cpu)
        groups = sorted(tuple(g) for g in by_core.values())
        for group in groups:
            if len({node_of[c] for c in group}) > 1:
                raise _fail(shown, f"core {format_cpulist(group)} spans nodes "
                                   f"{', '.join(str(x) for x in sorted({node_of[c] for c in group}))}", "lscpu")
        siblings_from = f"lscpu -p ({shown})"
    if threads_per_core is not None:
        if threads_per_core < 1:
            raise CaptureError(f"threads_per_core {threads_per_core} must be at least 1", "threads_per_core")
        if groups is not None and cpus_all:
            sizes = sorted({len(g) for g in groups})
            if sizes != [threads_per_core]:
                raise _fail(path, f"threads_per_core {threads_per_core} disagrees with the capture's sibling groups "
                                  f"({'/'.join(map(str, sizes))} threads per core, from {siblings_from}); remove it",
                            "threads_per_core")
        else:
            derived = _derived_groups(cpus_all, threads_per_core)
            if derived is None:
                raise _fail(path, f"threads_per_core {threads_per_core} needs CPU ids 0..N-1 with N divisible by "
                                  f"{threads_per_core} (Linux's usual numbering; this host has "
                                  f"{format_cpulist(cpus_all)}): give an lscpu -p file instead", "threads_per_core")
            split = [g for g in derived if len({node_of[c] for c in g}) > 1]
            if split:
                raise _fail(path, f"with threads_per_core {threads_per_core} the siblings of CPU {split[0][0]} "
                                  f"({format_cpulist(split[0])}) would span nodes: give an lscpu -p file instead",
                            "threads_per_core")
            groups = derived
            siblings_from = f"threads_per_core {threads_per_core} (siblings of c are c + k*N/T; not in the capture)"
    if groups is None:
        if not cpus_all:
            groups = []
        else:
            raise _fail(path, "has no SMT sibling information (" + {"numactl": "numactl --hardware never has",
                                                                     "capabilities": "no siblings or core ids",
                                                                     "sysfs": "no cpu*/topology files"}[capture.kind]
                        + "): give "
                        + _hint(style, "--threads-per-core T", "threads_per_core: T")
                        + " (1 without SMT; siblings of c are c + k*N/T) or an `lscpu -p` file "
                        + _hint(style, f"(--lscpu FILE, or {Path(path).name}.lscpu beside it)",
                                f"(lscpu: FILE, or {Path(path).name}.lscpu beside it)"), "threads_per_core")
    in_groups = sorted(c for g in groups for c in g)
    if in_groups != cpus_all:
        raise _fail(path, "the sibling groups do not cover every CPU exactly once")

    # ---- distances
    if capture.distances is None:
        distances = tuple(tuple(10 if i == j else 20 for j in range(len(ids))) for i in range(len(ids)))
        notes.append("distances: not in the capture, the default 10 (same node) / 20 (other node)")
    else:
        rows = []
        for a in ids:
            row = []
            for b in ids:
                value = capture.distances[a][b]
                if a == b and value != 10:
                    raise _fail(path, f"distance from node {a} to itself is {value}, not 10")
                if a != b and not 11 <= value <= 254:
                    raise _fail(path, f"distance from node {a} to node {b} is {value} (between two nodes it is "
                                      "11..254): not a real topology")
                row.append(value)
            rows.append(tuple(row))
        distances = tuple(rows)

    # ---- the model
    nodes = tuple(Node(id=n, cpus=by_id[n].cpus, memory_kib=memories[n] or 0,
                       hugepages=dict(sorted(pools[n].items(), key=lambda kv: -kv[0]))) for n in ids)
    cores = tuple(sorted(tuple(sorted(g)) for g in groups))
    model = HostModel(name=name, nodes=nodes, distances=distances, cores=cores, reserved_cpus=reserved,
                      reserved_memory_kib=reserved_memory_kib, arch=final_arch, source=path)
    notes[:0] = _capture_notes(capture, model, siblings_from, base)
    return Imported(model=model, spec=model_spec(model, distances=capture.distances is not None), capture=capture,
                    notes=notes, choices=choices, warnings=warnings)


def _ids(noun: str, ids: Iterable[int], verb: str = "") -> str:
    """('node', [3], 'has') → 'node 3 has'; ('node', [0, 1, 2], 'has') → 'nodes 0-2 have'."""
    ids = sorted(set(ids))
    plural = {"has": "have", "is": "are", "lacks": "lack"}
    if len(ids) == 1:
        return f"{noun} {ids[0]}" + (f" {verb}" if verb else "")
    return f"{noun}s {format_cpulist(ids)}" + (f" {plural.get(verb, verb)}" if verb else "")


def _cpus_are(cpus: Iterable[int]) -> str:
    cpus = sorted(cpus)
    return f"CPU {cpus[0]} is" if len(cpus) == 1 else f"CPUs {format_cpulist(cpus)} are"


def _pools_text(pools: Mapping[int, int]) -> str:
    shown = [f"{format_page(s)} x {c}" for s, c in sorted(pools.items(), key=lambda kv: -kv[0]) if c]
    return ", ".join(shown) or "none"


def _capture_notes(capture: Capture, model: HostModel, siblings_from: str, base: int | None) -> list[str]:
    kind = {"capabilities": "virsh capabilities", "numactl": "numactl --hardware",
            "sysfs": "sysfs snapshot"}[capture.kind]
    lines = []
    what = ", ".join(x for x in (capture.vendor, capture.cpu_model) if x)
    lines.append(f"capture: {kind}" + (f" ({what})" if what else ""))
    for node in model.nodes:
        pools = ", ".join(f"{format_page(s)} x {c}" for s, c in node.hugepages.items())
        exact = _mem_text(node.memory_kib)
        approx = format_memory(node.memory_kib)
        mem = "no memory" if not node.memory_kib else (f"memory {exact}" if exact == approx or exact.endswith("MiB")
                                                        else f"memory {exact} ({approx})")
        cpus = f"cpus {format_cpulist(node.cpus)}" if node.cpus else "no CPUs"
        lines.append(f"  node {node.id}: {cpus}; {mem}" + (f"; pools {pools}" if pools else ""))
    threads = sorted({len(c) for c in model.cores})
    word = "thread" if threads == [1] else "threads"
    lines.append(f"siblings: {len(model.cores)} cores of {'/'.join(map(str, threads)) or '0'} {word}, from "
                 f"{siblings_from}")
    if capture.distances is not None:
        values = sorted({v for row in model.distances for v in row})
        lines.append(f"distances: from the capture ({'/'.join(map(str, values))})")
    sizes = sorted(set(capture.page_sizes) | {s for n in capture.nodes for s in n.pages})
    if sizes:
        shown = [f"{format_page(s)}{' (base)' if s == base else ''}" for s in sizes]
        lines.append(f"page sizes listed: {' '.join(shown)}")
    if capture.quirks:
        lines.append("quirks: " + "; ".join(capture.quirks))
    return lines


def import_host(path: str | os.PathLike, *, name: str | None = None, lscpu: str | None = None,
                **overrides) -> Imported:
    """``read_capture`` + ``build_model``; the name defaults to the capture's file stem."""
    path = os.fspath(path)
    capture = read_capture(path)
    if name is None:
        name = re.sub(r"[^A-Za-z0-9._-]", "-", Path(path).name.split(".")[0]) or "host"
    return build_model(capture, name=name, lscpu=lscpu, **overrides)


# ---------------------------------------------------------------------------------------------------------------
# Host model → YAML


def model_spec(model: HostModel, distances: bool = True) -> dict:
    """The scenario-v1 mapping of a host model (CPU lists as strings, memory with units, pools by size,
    ``threads_per_core`` where the groups follow the rule, else ``cores``)."""
    spec: dict = {}
    if model.arch != "x86_64":
        spec["arch"] = model.arch
    nodes = []
    for node in model.nodes:
        item: dict = {"id": node.id, "cpus": format_cpulist(node.cpus),
                      "memory": _mem_text(node.memory_kib) if node.memory_kib else 0}
        if node.hugepages:
            item["hugepages"] = {format_page(s): c for s, c in sorted(node.hugepages.items(), key=lambda kv: -kv[0])}
        nodes.append(item)
    spec["nodes"] = nodes
    if distances:
        spec["distances"] = [list(row) for row in model.distances]
    cpus = sorted(c for n in model.nodes for c in n.cpus)
    sizes = {len(c) for c in model.cores}
    threads = None
    if len(sizes) <= 1:
        t = sizes.pop() if sizes else 1
        derived = _derived_groups(cpus, t)
        if derived is not None and sorted(derived) == sorted(model.cores):
            threads = t
    if threads is not None:
        spec["threads_per_core"] = threads
    else:
        spec["cores"] = [list(c) for c in model.cores]
    if model.reserved_cpus or model.reserved_memory_kib:
        spec["reserved"] = {"cpus": format_cpulist(model.reserved_cpus),
                            "memory": _mem_text(model.reserved_memory_kib)}
    return spec


def _flow(value) -> str:
    """A compact YAML flow value (strings quoted)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, str) and (value == "" or re.fullmatch(r"[0-9,\-]+", value)):
        return f'"{value}"'
    return str(value)


def spec_lines(spec: Mapping) -> list[str]:
    """The YAML lines of a host model mapping, in the catalogue's compact style."""
    lines: list[str] = []
    if "arch" in spec:
        lines.append(f"arch: {spec['arch']}")
    lines.append("nodes:")
    for node in spec["nodes"]:
        lines.append(f"  - {_flow(node)}")
    if "distances" in spec:
        rows = spec["distances"]
        if len(rows) <= 4:
            lines.append(f"distances: {_flow(rows)}")
        else:
            lines.append("distances:")
            lines.extend(f"  - {_flow(row)}" for row in rows)
    if "threads_per_core" in spec:
        lines.append(f"threads_per_core: {spec['threads_per_core']}")
    if "cores" in spec:
        cores = spec["cores"]
        text = [_flow(c) for c in cores]
        out, line = [], "cores: ["
        for i, item in enumerate(text):
            piece = item + (", " if i < len(text) - 1 else "]")
            if len(line) + len(piece) > 116 and line.strip() not in ("cores: [",):
                out.append(line.rstrip())
                line = "        "
            line += piece
        out.append(line)
        if not cores:
            out = ["cores: []"]
        lines.extend(out)
    if "reserved" in spec:
        lines.append(f"reserved: {_flow(spec['reserved'])}")
    return lines


def _wrap_comment(text: str, width: int = 116, indent: str = "") -> list[str]:
    """``# text`` wrapped at ``width``; continuation lines indented two more spaces."""
    lines: list[str] = []
    line = indent
    for word in text.split():
        if len(line) + len(word) + 1 > width - 2 and line.strip():
            lines.append(line.rstrip())
            line = indent + "  "
        line += word + " "
    if line.strip():
        lines.append(line.rstrip())
    return ["# " + x for x in lines]


def spec_yaml(imported: Imported, source: str | None = None, command: str | None = None,
              extra: Iterable[str] = ()) -> str:
    """The host model as YAML with a header comment: title, source, what the capture gave, quirks, planning
    choices (the overrides) and the command that regenerates the file."""
    model = imported.model
    capture = imported.capture
    threads = sorted({len(c) for c in model.cores})
    word = "thread" if threads == [1] else "threads"
    title = (f"{model.name}: {len(model.nodes)} node{'s' if len(model.nodes) != 1 else ''}, {model.cpu_count} CPUs, "
             f"{len(model.cores)} cores ({'/'.join(map(str, threads)) or '0'} {word} per core), {model.arch}. "
             "Made by `vplan host import` from a capture: regenerate it rather than edit it.")
    header: list[str] = []
    header += _wrap_comment(title)
    header.append("#")
    if source:
        header += _wrap_comment(f"Source: {source}")
        header += _wrap_comment(f"Capture file: {capture.path}")
    else:
        header += _wrap_comment(f"Source: the capture file {capture.path}")
    for line in imported.notes:
        sub = line.startswith("  ")
        header += _wrap_comment(line.strip(), indent="  " if sub else "")
    for line in extra:
        header += _wrap_comment(line)
    header.append("#")
    if imported.choices:
        header += _wrap_comment("Planning choices (importer overrides, not from the capture): "
                                + "; ".join(imported.choices) + ".")
    else:
        header.append("# Planning choices: none (everything is from the capture).")
    if command:
        header.append("# Regenerate:")
        header += _wrap_comment(command, indent="  ")
    return "\n".join(header + spec_lines(imported.spec)) + "\n"
