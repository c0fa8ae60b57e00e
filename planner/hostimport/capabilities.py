"""``virsh capabilities`` XML → :class:`Capture` (tolerantly: old and new libvirt formats, no schema validation).

``<host><topology><cells>``: each cell with its ``<cpus>`` (``id``, ``socket_id``, ``die_id``, ``core_id`` and
``siblings`` written as a list ``'0,12'`` or a range ``'0-7'``), ``<memory unit>``, ``<pages unit size>`` (``unit``
may be missing: KiB, libvirt's default) and ``<distances>`` (all cells or none); the architecture from
``<host><cpu><arch>``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lxml import etree

from planner.hostimport.captured import Capture, CaptureNode, cpu_layout_quirk, page_kib, read_bytes
from planner.hostimport.errors import fail, ids_text
from planner.hostimport.siblings import siblings_from_cpu_facts
from planner.model.units import MAX_CPU_ID, MAX_NODE_ID, format_cpulist, format_page, parse_cpulist, scaled_kib


@dataclass
class _Cells:
    """What the cells say, gathered cell by cell."""

    nodes: list[CaptureNode] = field(default_factory=list)
    distances: dict[int, dict[int, int]] = field(default_factory=dict)  # cell id -> sibling id -> distance
    without_distances: list[int] = field(default_factory=list)
    owner: dict[int, int] = field(default_factory=dict)  # cpu id -> cell id
    cpu_facts: dict[int, dict[str, object]] = field(default_factory=dict)
    no_unit_pages: bool = False


def parse_capabilities(path: str, data: bytes | None = None) -> Capture:
    """Parse ``virsh capabilities`` XML (tolerantly: old and new libvirt formats, no schema validation)."""
    host = _host_element(path, read_bytes(path) if data is None else data)
    quirks: list[str] = []
    arch = (host.findtext("cpu/arch") or "").strip() or None
    cpu_model = (host.findtext("cpu/model") or "").strip() or None
    vendor = (host.findtext("cpu/vendor") or "").strip() or None
    page_sizes: set[int] = set()
    for page in host.findall("cpu/pages"):
        try:
            page_sizes.add(page_kib(page.get("size"), page.get("unit"), "<host><cpu><pages size>"))
        except ValueError as exc:
            raise fail(path, str(exc)) from None
    cells = host.findall("topology/cells/cell")
    if not cells:
        raise fail(path, "no <host><topology><cells>: libvirt could not read this host's NUMA topology; capture "
                         "`numactl --hardware` or a sysfs snapshot instead")
    read = _Cells()
    for cell in cells:
        _read_cell(path, cell, read)
    nodes = sorted(read.nodes, key=lambda n: n.id)
    ids = [n.id for n in nodes]
    if ids != list(range(len(ids))):
        quirks.append(f"sparse node ids {format_cpulist(ids)}")
    if read.no_unit_pages:
        quirks.append("<pages> without a unit attribute (read as KiB, libvirt's default)")
    matrix = _distance_matrix(path, ids, read)
    siblings, siblings_from = siblings_from_cpu_facts(path, read.cpu_facts, read.owner, quirks)
    if (layout := cpu_layout_quirk(nodes)) is not None:
        quirks.append(layout)
    return Capture(kind="capabilities", path=path, nodes=nodes, distances=matrix, siblings=siblings,
                   siblings_from=siblings_from, arch=arch, page_sizes=tuple(sorted(page_sizes)),
                   cpu_model=cpu_model, vendor=vendor, quirks=quirks)


def _host_element(path: str, raw: bytes):
    """The ``<host>`` element of a capabilities document (or a bare ``<host>``); no entities, no network."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_comments=True, huge_tree=False)
    try:
        root = etree.fromstring(raw, parser)
    except etree.XMLSyntaxError as exc:
        raise fail(path, f"not well-formed XML ({exc.msg}, line {exc.lineno})") from None
    host = root if root.tag == "host" else root.find("host")
    if root.tag not in ("capabilities", "host") or host is None:
        raise fail(path, f"not a `virsh capabilities` document (root <{root.tag}>, expected <capabilities> "
                         "with <host>)")
    return host


def _int_attr(element, name: str, path: str, what: str, maximum: int = MAX_CPU_ID) -> int | None:
    """A non-negative integer attribute of at most ``maximum``; None when absent."""
    value = element.get(name)
    if value is None:
        return None
    if not re.fullmatch(r"\s*[0-9]+\s*", value):
        raise fail(path, f"{what}: {name}={value[:40]!r} is not a non-negative integer")
    if len(value.strip()) > 9 or int(value) > maximum:
        raise fail(path, f"{what}: {name}={value.strip()[:20]!r} is out of range (at most {maximum})")
    return int(value)


def _read_cell(path: str, cell, read: _Cells) -> None:
    """One ``<cell>``: its node (memory, pages, CPUs) and its distance row, added to ``read``."""
    cell_id = _int_attr(cell, "id", path, "<cell>", MAX_NODE_ID)
    if cell_id is None:
        raise fail(path, "a <cell> has no id attribute")
    where = f"cell {cell_id}"
    if any(n.id == cell_id for n in read.nodes):
        raise fail(path, f"cell id {cell_id} appears twice")
    memory_el = cell.find("memory")
    memory = None
    if memory_el is not None:
        try:
            memory = scaled_kib(memory_el.text, memory_el.get("unit"), f"{where} <memory>")
        except ValueError as exc:
            raise fail(path, str(exc)) from None
    pages = _cell_pages(path, cell, where, read)
    distances_el = cell.find("distances")
    if distances_el is not None:
        row: dict[int, int] = {}
        for sibling in distances_el.findall("sibling"):
            other = _int_attr(sibling, "id", path, f"{where} <distances><sibling>", MAX_NODE_ID)
            value = _int_attr(sibling, "value", path, f"{where} <distances><sibling>", 255)
            if other is None or value is None:
                raise fail(path, f"{where}: a <sibling> lacks id or value")
            row[other] = value
        read.distances[cell_id] = row
    else:
        read.without_distances.append(cell_id)
    cpu_ids = _cell_cpus(path, cell, cell_id, read)
    read.nodes.append(CaptureNode(cell_id, tuple(sorted(cpu_ids)), memory, pages))


def _cell_pages(path: str, cell, where: str, read: _Cells) -> dict[int, int]:
    """A cell's ``<pages>``: page KiB → count (each size once)."""
    pages: dict[int, int] = {}
    for page in cell.findall("pages"):
        if page.get("unit") is None:
            read.no_unit_pages = True
        try:
            size = page_kib(page.get("size"), page.get("unit"), f"{where} <pages size>")
        except ValueError as exc:
            raise fail(path, str(exc)) from None
        count_text = (page.text or "").strip()
        if not re.fullmatch(r"[0-9]{1,15}", count_text):
            raise fail(path, f"{where} <pages size='{str(page.get('size'))[:20]}'>: {count_text[:20]!r} is not a "
                             "page count")
        if size in pages:
            raise fail(path, f"{where} lists {format_page(size)} pages twice")
        pages[size] = int(count_text)
    return pages


def _cell_cpus(path: str, cell, cell_id: int, read: _Cells) -> list[int]:
    """A cell's CPU ids; each CPU's socket/die/cluster/core ids and siblings go to ``read.cpu_facts``."""
    where = f"cell {cell_id}"
    cpus_el = cell.find("cpus")
    cpu_ids: list[int] = []
    cpu_elements = cpus_el.findall("cpu") if cpus_el is not None else []
    for cpu in cpu_elements:
        cpu_id = _int_attr(cpu, "id", path, f"{where} <cpu>")
        if cpu_id is None:
            raise fail(path, f"{where}: a <cpu> has no id attribute")
        if cpu_id > MAX_CPU_ID:
            raise fail(path, f"{where}: CPU id {cpu_id} is out of range")
        if cpu_id in read.owner:
            raise fail(path, f"CPU {cpu_id} is in cell {read.owner[cpu_id]} and in cell {cell_id} (a CPU belongs to "
                             "one node; this capture looks edited by hand)")
        read.owner[cpu_id] = cell_id
        cpu_ids.append(cpu_id)
        facts: dict[str, object] = {}
        for attr in ("socket_id", "die_id", "cluster_id", "core_id"):
            facts[attr] = _int_attr(cpu, attr, path, f"{where} CPU {cpu_id}", 999_999_999)  # ids, not counts
        text = cpu.get("siblings")
        if text is not None:
            try:
                facts["siblings"] = parse_cpulist(text)
            except ValueError as exc:
                raise fail(path, f"{where} CPU {cpu_id}: siblings: {exc}") from None
        read.cpu_facts[cpu_id] = facts
    if cpus_el is not None and cpus_el.get("num") is not None:
        num = _int_attr(cpus_el, "num", path, f"{where} <cpus>")
        if num != len(cpu_elements):
            raise fail(path, f"{where}: <cpus num='{num}'> but {len(cpu_elements)} <cpu> elements (the capture "
                             "is cut short or edited)")
    return cpu_ids


def _distance_matrix(path: str, ids: list[int], read: _Cells) -> dict[int, dict[int, int]] | None:
    """The distance table: every cell has ``<distances>`` naming every cell, or none has (None)."""
    if read.distances and read.without_distances:
        raise fail(path, f"{ids_text('cell', read.without_distances, 'has')} no <distances> but other cells do; "
                         "the distance table is partial")
    if not read.distances:
        return None
    matrix: dict[int, dict[int, int]] = {}
    for a in ids:
        row = read.distances[a]
        unknown = sorted(set(row) - set(ids))
        if unknown:
            raise fail(path, f"cell {a} <distances> names {ids_text('cell', unknown)}, which the capture "
                             "does not have")
        missing = [b for b in ids if b not in row]
        if missing:
            raise fail(path, f"cell {a} <distances> has no sibling for {ids_text('cell', missing)}; the "
                             "distance table is partial")
        matrix[a] = {b: row[b] for b in ids}
    return matrix
