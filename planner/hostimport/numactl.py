"""``numactl --hardware`` text → :class:`Capture`.

Lines read: ``available:``, ``node N cpus:`` (lists wrapped over several lines by a mail client are joined),
``node N size: M MB`` (numactl's MB is 2^20 bytes: MiB), ``node N free:`` (ignored) and the distance table (rows
may be wrapped too; the table may be missing). Text before the output (a shell prompt) is skipped. It has no SMT
siblings: give ``threads_per_core`` or an ``lscpu -p`` file."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from planner.hostimport.captured import Capture, CaptureNode, cpu_layout_quirk, no_long_numbers, read_text
from planner.hostimport.errors import fail, ids_text
from planner.model.units import MAX_CPU_ID, MAX_MEMORY_KIB, MAX_NODE_ID, format_cpulist, parse_cpulist

_AVAILABLE = re.compile(r"^available:\s*([0-9]+)\s+nodes?\s*(?:\(([^)]*)\))?\s*$")
_NODE_CPUS = re.compile(r"^node\s+([0-9]+)\s+cpus:\s*(.*?)\s*$")
_NODE_SIZE = re.compile(r"^node\s+([0-9]+)\s+size:\s*([0-9]+)\s*([A-Za-z]*)\s*$")
_NODE_FREE = re.compile(r"^node\s+([0-9]+)\s+free:.*$")
_DIST_TITLE = re.compile(r"^node\s+distances:\s*$")
_DIST_HEAD = re.compile(r"^node((?:\s+[0-9]+)+)\s*$")
_DIST_ROW = re.compile(r"^([0-9]+):((?:\s+[0-9]+)*)\s*$")
_NUMBERS = re.compile(r"^[0-9]+(?:\s+[0-9]+)*$")
_NUMACTL_UNITS = {"MB": 1024, "kB": 1, "KB": 1, "GB": 1024**2}


@dataclass
class _Output:
    """What the lines said so far, and the list a wrapped continuation line extends (``target``)."""

    path: str
    available: list[int] | None = None
    cpus: dict[int, list[int]] = field(default_factory=dict)
    sizes_kib: dict[int, int] = field(default_factory=dict)
    head: list[int] | None = None
    rows: dict[int, list[int]] = field(default_factory=dict)
    target: list[int] | None = None
    started: bool = False
    section: str = "nodes"
    wrapped: bool = False


def parse_numactl(path: str, text: str | None = None) -> Capture:
    """Parse ``numactl --hardware`` output (wrapped lists joined, a missing distance table allowed)."""
    if text is None:
        text = read_text(path)
    no_long_numbers(path, text)
    out = _Output(path)
    for number, line in enumerate(text.splitlines(), 1):
        _read_line(out, number, line.strip())
    quirks: list[str] = ["line-wrapped lists (joined)"] if out.wrapped else []
    ids, nodes = _nodes(out, quirks)
    matrix = _distance_matrix(out, ids, quirks)
    return Capture(kind="numactl", path=path, nodes=nodes, distances=matrix, siblings=None, quirks=quirks)


def _node_id(path: str, line: int, text: str) -> int:
    if len(text) > 9 or int(text) > MAX_NODE_ID:
        raise fail(path, f"line {line}: node id {text[:20]} is out of range (at most {MAX_NODE_ID})")
    return int(text)


def _read_line(out: _Output, number: int, stripped: str) -> None:
    """One line of the output, into ``out``; a line that is none of numactl's is refused."""
    path = out.path
    if not stripped:
        out.target = None
        return
    if stripped.startswith("No NUMA available"):
        raise fail(path, "numactl says 'No NUMA available on this system': the kernel sees no NUMA; capture a "
                         "sysfs snapshot or `virsh capabilities` instead")
    m = _AVAILABLE.match(stripped)
    if m:
        _available_line(out, number, m)
        return
    if not out.started and not (_NODE_CPUS.match(stripped) or _NODE_SIZE.match(stripped)):
        return  # a shell prompt or text before the output
    out.started = True
    if _NUMBERS.match(stripped) and out.target is not None:
        out.target.extend(int(x) for x in stripped.split())
        out.wrapped = True
        return
    if _node_line(out, number, stripped) or _distance_line(out, stripped):
        return
    raise fail(path, f"line {number}: {stripped[:60]!r} is not numactl --hardware output (expected 'available:', "
                     "'node N cpus:', 'node N size:', 'node N free:' or the distance table)")


def _available_line(out: _Output, number: int, m: re.Match) -> None:
    """``available: N nodes (0-3)``: the node ids (0..N-1 when the list is not given)."""
    path = out.path
    out.started = True
    count = int(m.group(1)[:9])
    if count > MAX_NODE_ID + 1:
        raise fail(path, f"line {number}: {m.group(1)[:20]} nodes is out of range (at most {MAX_NODE_ID + 1})")
    if m.group(2) is not None:
        try:
            out.available = list(parse_cpulist(m.group(2), MAX_NODE_ID))
        except ValueError as exc:
            raise fail(path, f"line {number}: node list: {exc}") from None
        if len(out.available) != count:
            raise fail(path, f"line {number}: 'available: {count} nodes' lists {len(out.available)} ids")
    else:
        out.available = list(range(count))
    out.target = None


def _node_line(out: _Output, number: int, stripped: str) -> bool:
    """``node N cpus:``, ``node N size:``, ``node N free:`` or ``node distances:``; False for another line."""
    path = out.path
    m = _NODE_CPUS.match(stripped)
    if m:
        node = _node_id(path, number, m.group(1))
        if node in out.cpus:
            raise fail(path, f"line {number}: node {node} cpus are given twice")
        listed = m.group(2)
        if listed and not _NUMBERS.match(listed):
            raise fail(path, f"line {number}: node {node} cpus {listed!r} is not a list of CPU ids")
        out.cpus[node] = [int(x) for x in listed.split()]
        out.target = out.cpus[node]
        return True
    m = _NODE_SIZE.match(stripped)
    if m:
        node, value, unit = _node_id(path, number, m.group(1)), int(m.group(2)), m.group(3) or "MB"
        if unit not in _NUMACTL_UNITS:
            raise fail(path, f"line {number}: node {node} size unit {unit!r} is unknown (numactl writes MB)")
        out.sizes_kib[node] = value * _NUMACTL_UNITS[unit]
        if out.sizes_kib[node] > MAX_MEMORY_KIB:
            raise fail(path, f"line {number}: node {node} size {value} {unit} is more than 4 PiB")
        out.target = None
        return True
    if _NODE_FREE.match(stripped):
        out.target = None
        return True
    if _DIST_TITLE.match(stripped):
        out.section = "distances"
        out.target = None
        return True
    return False


def _distance_line(out: _Output, stripped: str) -> bool:
    """The distance table's header ``node 0 1 ...`` or a row ``0: 10 21 ...``; False for another line."""
    if out.section != "distances":
        return False
    m = _DIST_HEAD.match(stripped)
    if m and out.head is None:
        out.head = [int(x) for x in m.group(1).split()]
        out.target = out.head
        return True
    m = _DIST_ROW.match(stripped)
    if m and out.head is not None:
        node = int(m.group(1))
        out.rows[node] = [int(x) for x in m.group(2).split()]
        out.target = out.rows[node]
        return True
    return False


def _nodes(out: _Output, quirks: list[str]) -> tuple[list[int], list[CaptureNode]]:
    """The node ids (``available:``'s, else those listed) and the nodes, each with its CPUs (every node must
    have its ``cpus:`` line; a CPU is in one node) and its size if given."""
    path = out.path
    listed_nodes = sorted(set(out.cpus) | set(out.sizes_kib))
    if out.available is None and not listed_nodes:
        raise fail(path, "no 'available:' line and no 'node N cpus:' lines: not numactl --hardware output")
    ids = out.available if out.available is not None else listed_nodes
    extra = sorted(set(listed_nodes) - set(ids))
    if extra:
        raise fail(path, f"{ids_text('node', extra, 'has')} lines but 'available:' lists only "
                         f"{format_cpulist(ids)}")
    no_cpus = [n for n in ids if n not in out.cpus]
    no_size = [n for n in ids if n not in out.sizes_kib]
    if no_cpus:
        raise fail(path, f"{ids_text('node', no_cpus, 'has')} no 'node N cpus:' line (the output is cut short: "
                         "capture the whole `numactl --hardware` output)")
    nodes = []
    owner: dict[int, int] = {}
    for node in sorted(ids):
        for cpu in out.cpus[node]:
            if cpu in owner:
                raise fail(path, f"CPU {cpu} is listed in node {owner[cpu]} and in node {node}")
            if cpu > MAX_CPU_ID:
                raise fail(path, f"node {node}: CPU id {cpu} is out of range")
            owner[cpu] = node
        nodes.append(CaptureNode(node, tuple(sorted(out.cpus[node])), out.sizes_kib.get(node)))
    if no_size:
        quirks.append(f"no 'size:' line for {ids_text('node', no_size)}")
    if sorted(ids) != list(range(len(ids))):
        quirks.append(f"sparse node ids {format_cpulist(ids)}")
    if (layout := cpu_layout_quirk(nodes)) is not None:
        quirks.append(layout)
    return ids, nodes


def _distance_matrix(out: _Output, ids: list[int], quirks: list[str]) -> dict[int, dict[int, int]] | None:
    """The distance table (a header naming the output's nodes, one full row per node), or None without one."""
    path, head, rows = out.path, out.head, out.rows
    if head is None and rows:
        raise fail(path, "distance rows without the 'node 0 1 ...' header line")
    if head is None:
        quirks.append("no distance table")
        return None
    if sorted(head) != sorted(ids):
        raise fail(path, f"the distance table's header names nodes {format_cpulist(head)}, the output has "
                         f"nodes {format_cpulist(ids)}")
    missing = [n for n in head if n not in rows]
    if missing:
        raise fail(path, f"the distance table has no row for {ids_text('node', missing)} (cut short?)")
    matrix: dict[int, dict[int, int]] = {}
    for a in head:
        if len(rows[a]) != len(head):
            raise fail(path, f"distance row {a}: {len(rows[a])} values for {len(head)} nodes")
        matrix[a] = dict(zip(head, rows[a], strict=True))
    return matrix
