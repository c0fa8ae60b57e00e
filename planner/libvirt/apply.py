"""Merge a plan into existing, full libvirt domain XMLs.

``vplan solve`` writes, per placed guest, a domain XML with only what vplan decides. Deployment already has full
domain XMLs (disks, interfaces, consoles, ...). :func:`apply_plan` replaces exactly the parts vplan owns and keeps
every other byte of the file as it was:

* ``<vcpu>`` (the whole element);
* in ``<cputune>``: every ``<vcpupin>`` and the ``<emulatorpin>`` (other children such as ``<shares>``,
  ``<period>``, ``<quota>``, ``<iothreadpin>``, ``<vcpusched>`` stay, in place);
* ``<numatune>`` (the whole element);
* in ``<cpu>``: ``<topology>`` and ``<numa>`` (``mode``, ``<model>``, ``<vendor>``, ``<feature>``, ``<cache>`` ...
  stay);
* in ``<memoryBacking>``: ``<hugepages>`` (``<nosharepages>``, ``<locked>``, ``<source>``, ... stay; a
  ``<memoryBacking>`` left without children is removed).

Missing parents are added at libvirt's usual place (``<cputune>``/``<numatune>`` after ``<vcpu>``, ``<cpu>`` after
``<features>``/``<os>``, ``<memoryBacking>`` after ``<currentMemory>``/``<memory>``) with the file's indentation.
The edit works on the text: the file is tokenised (elements, comments, CDATA, processing instructions), the owned
spans are replaced, and nothing else is rewritten (quotes, attribute order, comments, blank lines and element
order stay byte for byte). The result is re-parsed and every part vplan does not own is compared, canonicalised,
with the original: a difference is a bug and nothing is written.

A domain whose ``<vcpu>`` count or ``<memory>`` differs from the plan's is refused, naming the guest (the plan was
made for another size: re-plan, or fix the scenario). Nothing is written when any guest is refused.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from planner.files.atomic import write_directory_atomically
from planner.model.units import scaled_kib
from planner.libvirt.xmltext import serialize

__all__ = ["ApplyError", "ApplyResult", "apply_plan", "merge_domain", "owned_stripped", "OWNED"]

#: The parts vplan owns, as (parent path, child tags) — used to strip them for the comparison.
OWNED = {
    ".": ("vcpu", "numatune"),
    "cputune": ("vcpupin", "emulatorpin"),
    "cpu": ("topology", "numa"),
    "memoryBacking": ("hugepages",),
}


class ApplyError(Exception):
    """A plan that cannot be applied: one line per problem (each naming the guest or file)."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


# ---------------------------------------------------------------------------------------------------------------
# A tokeniser that keeps offsets


_NAME = r"[A-Za-z_][\w.:-]*"
_TOKEN = re.compile(
    r"(?P<comment><!--.*?-->)"
    r"|(?P<cdata><!\[CDATA\[.*?\]\]>)"
    r"|(?P<pi><\?.*?\?>)"
    r"|(?P<doctype><!DOCTYPE[^>]*>)"
    rf"|</(?P<close>{_NAME})\s*>"
    rf"|<(?P<open>{_NAME})(?P<attrs>(?:\s+[^\s=/>]+\s*=\s*(?:\"[^\"]*\"|'[^']*'))*)\s*(?P<selfclose>/?)>",
    re.S,
)


@dataclass
class _Span:
    tag: str
    start: int
    open_end: int  # just after the start tag's '>'
    attrs: str = ""
    self_closing: bool = False
    close_start: int = -1  # the '<' of the end tag (== end for a self-closing element)
    end: int = -1
    children: list["_Span"] = field(default_factory=list)

    def child(self, tag: str) -> "_Span | None":
        return next((c for c in self.children if c.tag == tag), None)

    def all(self, tag: str) -> list["_Span"]:
        return [c for c in self.children if c.tag == tag]


def _tokenise(text: str) -> _Span:
    stack: list[_Span] = []
    root: _Span | None = None
    for m in _TOKEN.finditer(text):
        if m.group("open"):
            span = _Span(m.group("open"), m.start(), m.end(), m.group("attrs"), bool(m.group("selfclose")))
            if stack:
                stack[-1].children.append(span)
            elif root is None:
                root = span
            if span.self_closing:
                span.close_start = span.end = m.end()
            else:
                stack.append(span)
        elif m.group("close"):
            if not stack or stack[-1].tag != m.group("close"):
                raise ValueError(f"unbalanced </{m.group('close')}> at offset {m.start()}")
            span = stack.pop()
            span.close_start, span.end = m.start(), m.end()
    if stack or root is None:
        raise ValueError("the document is not a single balanced element")
    return root


# ---------------------------------------------------------------------------------------------------------------
# Text helpers


def _line_start(text: str, pos: int) -> int:
    """Start of pos's line if only whitespace precedes pos on it, else pos."""
    begin = text.rfind("\n", 0, pos) + 1
    return begin if text[begin:pos].strip() == "" else pos


def _line_end(text: str, pos: int) -> int:
    """Just after the newline ending pos's line if only whitespace follows pos on it, else pos."""
    newline = text.find("\n", pos)
    if newline == -1:
        return pos
    return newline + 1 if text[pos:newline].strip() == "" else pos


def _indent_of(text: str, span: _Span) -> str:
    begin = text.rfind("\n", 0, span.start) + 1
    prefix = text[begin:span.start]
    return prefix if prefix.strip() == "" else ""


def _removal(text: str, span: _Span) -> tuple[int, int]:
    """The range that removes an element with its own line (when it is alone on it)."""
    start = _line_start(text, span.start)
    end = _line_end(text, span.end) if start != span.start else span.end
    return start, end


class _Layout:
    def __init__(self, text: str, root: _Span):
        self.text = text
        first = root.children[0] if root.children else None
        self.unit = _indent_of(text, first) if first is not None and _indent_of(text, first) else "  "
        attrs = re.findall(r"=\s*([\"'])", text[root.start:])
        self.double = attrs.count('"') > attrs.count("'")  # the file quotes attributes with "..."

    def child_indent(self, parent: _Span) -> str:
        if parent.children:
            indent = _indent_of(self.text, parent.children[0])
            if indent or self.text[parent.open_end:parent.children[0].start].count("\n"):
                return indent
        return _indent_of(self.text, parent) + self.unit

    def block(self, element: etree._Element, indent: str) -> str:
        """The element serialised in libvirt style, each line indented by ``indent``, with the file's unit."""
        lines = serialize(element).splitlines()
        out = []
        for line in lines:
            stripped = line.lstrip(" ")
            depth = (len(line) - len(stripped)) // 2
            if self.double:
                stripped = re.sub(r"='([^'\"]*)'", r'="\1"', stripped)
            out.append(indent + self.unit * depth + stripped)
        return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# One domain


@dataclass
class _Edit:
    start: int
    end: int
    text: str
    order: int = 0  # for insertions at the same offset


def _memory_kib(root: etree._Element, where: str) -> int:
    memory = root.find("memory")
    if memory is None:
        raise ApplyError([f"{where}: no <memory>"])
    try:
        return scaled_kib(memory.text, memory.get("unit"), "<memory>")
    except ValueError as exc:
        raise ApplyError([f"{where}: {exc}"]) from None


def merge_domain(text: str, plan_root: etree._Element, guest: str, where: str) -> str:
    """``text`` (a full domain XML) with the owned parts of ``plan_root`` (the plan's domain XML) merged in."""
    try:
        parsed = etree.fromstring(text.encode("utf-8"), etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as exc:
        raise ApplyError([f"{where}: not well-formed XML ({exc.msg})"]) from None
    problems = []
    plan_vcpus = int(plan_root.findtext("vcpu"))
    dom_vcpu = (parsed.findtext("vcpu") or "").strip()
    if not (dom_vcpu.isascii() and dom_vcpu.isdigit() and len(dom_vcpu) < 10):  # ASCII digits only
        problems.append(f"{guest}: {where} has no <vcpu> count")
    elif int(dom_vcpu) != plan_vcpus:
        problems.append(f"{guest}: the domain has {dom_vcpu} vCPUs ({where}), the plan {plan_vcpus}: re-plan with "
                        "the domain's size, or resize the domain first")
    plan_mem = _memory_kib(plan_root, f"{guest} (plan)")
    dom_mem = _memory_kib(parsed, where)
    if dom_mem != plan_mem:
        hint = ""
        try:
            if memory_devices_kib(parsed, where):
                hint = " (libvirt counts the domain's memory devices in <memory>: plan the guest with that total)"
        except ApplyError:
            pass
        problems.append(f"{guest}: the domain has {dom_mem} KiB of memory ({where}), the plan {plan_mem} KiB: "
                        f"re-plan with the domain's size, or resize the domain first{hint}")
    if problems:
        raise ApplyError(problems)
    plan_root = _expected_owned(parsed, plan_root, guest, where)
    try:
        root = _tokenise(text)
    except ValueError as exc:
        raise ApplyError([f"{where}: cannot edit this file's text ({exc})"]) from None
    layout = _Layout(text, root)
    edits: list[_Edit] = []
    child_indent = layout.child_indent(root)

    def insert_after(span: _Span, block: str, order: int) -> None:
        pos = _line_end(text, span.end)
        if pos == span.end:  # something follows on the line: start a new one
            block = "\n" + block.rstrip("\n")
        edits.append(_Edit(pos, pos, block, order))

    def insert_before(span: _Span, block: str, order: int) -> None:
        pos = _line_start(text, span.start)
        if pos == span.start:  # something precedes it on the line
            block = block.strip() + " "
        edits.append(_Edit(pos, pos, block, order))

    def inline(block: str, indent: str) -> str:
        """A block to put where an element started (its first line's indent is already in the text)."""
        return block[len(indent):].rstrip("\n")

    def insert_in(parent: _Span, block: str, order: int, first: bool = False) -> None:
        """``block`` (lines already indented) as the first or last child of ``parent``."""
        if first or not parent.children:
            pos = _line_end(text, parent.open_end)
            if pos == parent.open_end:
                block = "\n" + block
            edits.append(_Edit(pos, pos, block, order))
        else:
            insert_after(parent.children[-1], block, order)

    # <vcpu>
    vcpu_span = root.child("vcpu")
    plan_vcpu = plan_root.find("vcpu")
    edits.append(_Edit(vcpu_span.start, vcpu_span.end, inline(layout.block(plan_vcpu, ""), "")))

    # <cputune>: the pins
    plan_pins = [c for c in plan_root.find("cputune") if c.tag in ("vcpupin", "emulatorpin")]
    cputune = root.child("cputune")
    if cputune is not None and not cputune.self_closing:
        indent = layout.child_indent(cputune)
        block = "".join(layout.block(p, indent) for p in plan_pins)
        old = [c for c in cputune.children if c.tag in ("vcpupin", "emulatorpin")]
        for i, span in enumerate(old):
            start, end = _removal(text, span)
            edits.append(_Edit(start, end, block if i == 0 else ""))
        if not old:
            insert_in(cputune, block, 0, first=True)
    else:
        element = etree.Element("cputune")
        for p in plan_pins:
            element.append(_copy(p))
        indent = child_indent if cputune is None else _indent_of(text, cputune)
        block = layout.block(element, indent)
        if cputune is not None:
            edits.append(_Edit(cputune.start, cputune.end, inline(block, indent)))
        else:
            insert_after(vcpu_span, block, 1)

    # <numatune>
    plan_numatune = plan_root.find("numatune")
    numatune = root.child("numatune")
    if numatune is not None:
        indent = _indent_of(text, numatune)
        edits.append(_Edit(numatune.start, numatune.end, inline(layout.block(plan_numatune, indent), indent)))
    else:
        anchor = cputune if cputune is not None else vcpu_span
        insert_after(anchor, layout.block(plan_numatune, child_indent), 2)

    # <cpu>: topology and numa
    plan_cpu = plan_root.find("cpu")
    plan_topology, plan_numa = plan_cpu.find("topology"), plan_cpu.find("numa")
    cpu = root.child("cpu")
    if cpu is not None and not cpu.self_closing:
        indent = layout.child_indent(cpu)
        topology = cpu.child("topology")
        if topology is not None:
            edits.append(_Edit(topology.start, topology.end, inline(layout.block(plan_topology, indent), indent)))
        else:
            heads = [c for c in cpu.children if c.tag in ("model", "vendor")]
            if heads:
                insert_after(heads[-1], layout.block(plan_topology, indent), 3)
            else:
                insert_in(cpu, layout.block(plan_topology, indent), 3, first=True)
        numa = cpu.child("numa")
        if plan_numa is not None:
            if numa is not None:
                edits.append(_Edit(numa.start, numa.end, inline(layout.block(plan_numa, indent), indent)))
            else:
                insert_in(cpu, layout.block(plan_numa, indent), 4)
        elif numa is not None:
            start, end = _removal(text, numa)
            edits.append(_Edit(start, end, ""))
    else:
        indent = child_indent if cpu is None else _indent_of(text, cpu)
        inner = "".join(layout.block(x, indent + layout.unit) for x in (plan_topology, plan_numa) if x is not None)
        if cpu is not None:  # <cpu .../>: keep its attributes
            block = f"<cpu{cpu.attrs}>\n{inner}{indent}</cpu>"
            edits.append(_Edit(cpu.start, cpu.end, block))
        else:
            block = f"{indent}<cpu>\n{inner}{indent}</cpu>\n"
            anchor = root.child("features") or root.child("os")
            if anchor is not None:
                insert_after(anchor, block, 5)
            else:
                devices = root.child("devices")
                if devices is not None:
                    insert_before(devices, block, 5)
                else:
                    insert_in(root, block, 5)

    # <memoryBacking><hugepages>
    plan_huge = plan_root.find("memoryBacking/hugepages")
    backing = root.child("memoryBacking")
    if backing is not None and not backing.self_closing:
        indent = layout.child_indent(backing)
        huge = backing.child("hugepages")
        others = [c for c in backing.children if c.tag != "hugepages"]
        if plan_huge is not None:
            if huge is not None:
                edits.append(_Edit(huge.start, huge.end, inline(layout.block(plan_huge, indent), indent)))
            else:
                insert_in(backing, layout.block(plan_huge, indent), 6, first=True)
        elif huge is not None:
            if others:
                start, end = _removal(text, huge)
                edits.append(_Edit(start, end, ""))
            else:
                start, end = _removal(text, backing)
                edits.append(_Edit(start, end, ""))
    elif plan_huge is not None:
        indent = child_indent if backing is None else _indent_of(text, backing)
        if backing is not None:
            block = f"<memoryBacking{backing.attrs}>\n{layout.block(plan_huge, indent + layout.unit)}{indent}" \
                    "</memoryBacking>"
            edits.append(_Edit(backing.start, backing.end, block))
        else:
            element = etree.Element("memoryBacking")
            element.append(_copy(plan_huge))
            anchor = root.child("currentMemory") or root.child("memory")
            insert_after(anchor, layout.block(element, indent), 0)

    merged = _splice(text, edits)
    _verify(text, merged, plan_root, guest, where)
    return merged


#: attributes of ``<cell>`` vplan writes; any other (memAccess, discard, ...) is the domain's and kept
CELL_OWNED_ATTRS = frozenset({"id", "cpus", "memory", "unit"})
#: memory device models libvirt does not count in ``<memory>``
_NOT_GUEST_RAM = frozenset({"sgx-epc"})


def memory_devices_kib(root: etree._Element, where: str) -> dict[int, int]:
    """KiB of ``<devices><memory>`` (DIMM, NVDIMM, virtio-mem, virtio-pmem) per guest cell (``<target><node>``,
    0 when absent): libvirt counts them in ``<memory>`` besides the cells."""
    per_cell: dict[int, int] = {}
    problems = []
    for i, device in enumerate(root.findall("devices/memory")):
        model = device.get("model", "?")
        if model in _NOT_GUEST_RAM:
            continue
        label = f"{where}: <memory model='{model}'> (memory device {i + 1})"
        size = device.find("target/size")
        try:
            kib = scaled_kib(size.text if size is not None else None, size.get("unit") if size is not None else None,
                             f"{label} <target><size>")
        except ValueError as exc:
            problems.append(str(exc))
            continue
        node_text = (device.findtext("target/node") or "0").strip()
        if not (node_text.isascii() and node_text.isdigit()):
            problems.append(f"{label}: <target><node> {node_text!r} is not a cell id")
            continue
        per_cell[int(node_text)] = per_cell.get(int(node_text), 0) + kib
    if problems:
        raise ApplyError(problems)
    return per_cell


def _expected_owned(parsed: etree._Element, plan_root: etree._Element, guest: str, where: str) -> etree._Element:
    """The plan's domain with what the existing domain keeps inside the owned parts: ``<vcpu current>``, the cells'
    other attributes (memAccess, discard) and HMAT children (``<cell><cache>``, ``<numa><interconnects>``), and
    cell memory less the memory devices on each cell. Refused (ApplyError, with the reason) where that cannot be
    kept consistent with the plan."""
    plan_root = _copy(plan_root)
    problems: list[str] = []
    vcpus = int(plan_root.findtext("vcpu"))
    old_vcpu = parsed.find("vcpu")
    current = old_vcpu.get("current") if old_vcpu is not None else None
    if current is not None:
        if not (current.isascii() and current.isdigit()) or not 1 <= int(current) <= vcpus:
            problems.append(f"{guest}: {where}: <vcpu current='{current}'> is not a count from 1 to {vcpus}")
        else:
            plan_root.find("vcpu").set("current", current)
    new_numa = plan_root.find("cpu/numa")
    old_numa = parsed.find("cpu/numa")
    new_cells = new_numa.findall("cell") if new_numa is not None else []
    if old_numa is not None and new_numa is not None:
        old_cells = old_numa.findall("cell")
        same_ids = sorted(c.get("id", str(i)) for i, c in enumerate(old_cells)) == \
            sorted(c.get("id") for c in new_cells)
        extras = [tuple(sorted((k, v) for k, v in c.attrib.items() if k not in CELL_OWNED_ATTRS)) for c in old_cells]
        if len(set(extras)) == 1:
            for cell in new_cells:
                for k, v in extras[0]:
                    cell.set(k, v)
        elif same_ids:
            by_id = {c.get("id", str(i)): e for i, (c, e) in enumerate(zip(old_cells, extras))}
            for cell in new_cells:
                for k, v in by_id[cell.get("id")]:
                    cell.set(k, v)
        else:
            shown = "; ".join(f"cell {c.get('id', i)}: {' '.join(f'{k}={v}' for k, v in e) or 'none'}"
                              for i, (c, e) in enumerate(zip(old_cells, extras)))
            problems.append(f"{guest}: {where}: its {len(old_cells)} cells differ in attributes vplan does not own "
                            f"({shown}) and the plan has {len(new_cells)} cells: give every cell the same, or "
                            f"plan the guest with numa: {len(old_cells)}")
        hmat_cells = {c.get("id", str(i)): [x for x in c if x.tag != "distances" and isinstance(x.tag, str)]
                      for i, c in enumerate(old_cells)}
        hmat_numa = [x for x in old_numa if x.tag != "cell" and isinstance(x.tag, str)]
        if any(hmat_cells.values()) or hmat_numa:
            if not same_ids:
                tags = sorted({f"<{x.tag}>" for x in [*hmat_numa, *(y for v in hmat_cells.values() for y in v)]})
                problems.append(f"{guest}: {where}: {', '.join(tags)} (HMAT) describe {len(old_cells)} cells, the "
                                f"plan has {len(new_cells)}: plan the guest with numa: {len(old_cells)}, or remove "
                                "them")
            else:
                for cell in new_cells:
                    for child in hmat_cells[cell.get("id")]:
                        cell.append(_strip_blank_text(_copy(child)))
                for child in hmat_numa:
                    new_numa.append(_strip_blank_text(_copy(child)))
    elif old_numa is not None and new_numa is None:
        kept = [x.tag for x in old_numa.iter() if isinstance(x.tag, str) and x.tag not in ("numa", "cell",
                                                                                          "distances", "sibling")]
        if kept:
            problems.append(f"{guest}: {where}: <{'>, <'.join(sorted(set(kept)))}> in <numa> would be lost (the "
                            "plan gives the guest no cells)")
    devices = memory_devices_kib(parsed, where)
    if devices:
        if not new_cells:
            problems.append(f"{guest}: {where}: memory devices need guest NUMA cells, and the plan has none")
        page = plan_root.find("memoryBacking/hugepages/page")
        page_kib = scaled_kib(page.get("size"), page.get("unit"), "page size") if page is not None else None
        ids = {int(c.get("id")): c for c in new_cells}
        for node, kib in sorted(devices.items()):
            if node not in ids:
                problems.append(f"{guest}: {where}: memory devices ({kib} KiB) target guest cell {node}, the plan "
                                f"has cells {', '.join(map(str, sorted(ids)))}: retarget them (<target><node>) or "
                                f"plan the guest with numa: {node + 1}")
                continue
            cell = ids[node]
            memory = scaled_kib(cell.get("memory"), cell.get("unit"), "cell memory") - kib
            if memory <= 0 or (page_kib and memory % page_kib):
                why = "nothing" if memory <= 0 else f"{memory} KiB, not a whole number of {page_kib} KiB pages"
                problems.append(f"{guest}: {where}: guest cell {node} would keep {why} after its memory devices "
                                f"({kib} KiB; libvirt counts them in <memory> beside the cells): re-plan or move "
                                "the devices")
                continue
            cell.set("memory", str(memory))
            cell.set("unit", "KiB")
    if problems:
        raise ApplyError(problems)
    return plan_root


def _copy(element: etree._Element) -> etree._Element:
    return etree.fromstring(etree.tostring(element))


def _splice(text: str, edits: list[_Edit]) -> str:
    ordered = sorted(edits, key=lambda e: (e.start, e.end, e.order))
    for a, b in zip(ordered, ordered[1:]):
        if b.start < a.end:
            raise ApplyError([f"internal error: overlapping edits at {a.start}-{a.end} and {b.start}-{b.end}"])
    out, pos = [], 0
    for e in ordered:
        out.append(text[pos:e.start])
        out.append(e.text)
        pos = max(pos, e.end)
    out.append(text[pos:])
    return "".join(out)


def owned_stripped(root: etree._Element) -> etree._Element:
    """A copy of a domain without the parts vplan owns (and without a memoryBacking left empty), whitespace-only
    text removed: what must be identical before and after ``apply``."""
    copy = etree.fromstring(etree.tostring(root))
    for parent_path, tags in OWNED.items():
        parent = copy if parent_path == "." else copy.find(parent_path)
        if parent is None:
            continue
        for child in list(parent):
            if child.tag in tags:
                parent.remove(child)
    for path in ("memoryBacking", "cputune", "cpu"):
        element = copy.find(path)
        if element is not None and len(element) == 0 and not element.attrib and not (element.text or "").strip():
            copy.remove(element)
    return _strip_blank_text(copy)


def canonical(element: etree._Element) -> bytes:
    return etree.tostring(element, method="c14n", with_comments=True)


def _verify(before: str, after: str, plan_root: etree._Element, guest: str, where: str) -> None:
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    try:
        old = etree.fromstring(before.encode("utf-8"), parser)
        new = etree.fromstring(after.encode("utf-8"), parser)
    except etree.XMLSyntaxError as exc:
        raise ApplyError([f"internal error: merging {guest} ({where}) made invalid XML ({exc.msg})"]) from None
    if canonical(owned_stripped(old)) != canonical(owned_stripped(new)):
        raise ApplyError([f"internal error: merging {guest} ({where}) changed a part vplan does not own"])
    for path in ("vcpu", "numatune", "cpu/topology", "cpu/numa", "memoryBacking/hugepages"):
        want, got = plan_root.find(path), new.find(path)
        if (want is None) != (got is None) or (want is not None and canonical(_clean(want)) != canonical(_clean(got))):
            raise ApplyError([f"internal error: merging {guest} ({where}): <{path}> is not the plan's"])
    want = [canonical(_clean(c)) for c in plan_root.find("cputune") if c.tag in ("vcpupin", "emulatorpin")]
    got = [canonical(_clean(c)) for c in new.find("cputune") if c.tag in ("vcpupin", "emulatorpin")]
    if want != got:
        raise ApplyError([f"internal error: merging {guest} ({where}): the pins are not the plan's"])


def _clean(element: etree._Element) -> etree._Element:
    copy = etree.fromstring(etree.tostring(element))
    etree.cleanup_namespaces(copy)
    copy.tail = None
    return _strip_blank_text(copy)


def _strip_blank_text(root: etree._Element) -> etree._Element:
    """Drop whitespace-only text and tails (indentation), so comparisons see structure and values only."""
    for e in root.iter():
        if e.text is not None and not e.text.strip():
            e.text = None
        if e.tail is not None and not e.tail.strip():
            e.tail = None
    return root


# ---------------------------------------------------------------------------------------------------------------
# A whole plan


@dataclass
class ApplyResult:
    written: dict[str, str]  # guest -> file written
    backups: dict[str, str]  # guest -> backup file (in place only)
    missing: list[str]  # plan guests without a domain XML
    not_in_plan: list[str]  # domain files whose guest the plan does not place
    unchanged: list[str] = field(default_factory=list)  # in place: already as planned (not rewritten, no backup)
    moved_aside: str | None = None  # -o with force: where a foreign OUT was renamed


def _plan_domains(plan_dir: Path) -> dict[str, etree._Element]:
    from planner.files.planfile import PlanFileError, plan_json_path, read_plan_document

    plan_json = plan_json_path(plan_dir)

    try:
        document = read_plan_document(plan_dir)
    except PlanFileError as exc:
        raise ApplyError([str(exc)]) from None
    guests = document["guests"]
    result = {}
    problems = []
    parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=True)
    for name, entry in guests.items():
        xml = entry.get("xml") if isinstance(entry, dict) else None
        if not xml:
            continue
        path = plan_dir / xml if isinstance(xml, str) else None
        if path is None or not os.path.realpath(path).startswith(os.path.realpath(plan_dir) + os.sep):
            problems.append(f"{plan_json}: guests.{name}.xml: {xml!r} is not a file inside {plan_dir}")
            continue
        try:
            root = etree.parse(str(path), parser).getroot()
        except (OSError, etree.XMLSyntaxError) as exc:
            problems.append(f"{path}: cannot read the plan's domain of {name} ({exc})")
            continue
        missing = [p for p in ("vcpu", "memory", "cputune", "numatune", "cpu") if root.find(p) is None]
        if missing:
            problems.append(f"{path}: the plan's domain of {name} has no <{'>, <'.join(missing)}>")
            continue
        vcpus = (root.findtext("vcpu") or "").strip()
        if not (vcpus.isascii() and vcpus.isdigit()):
            problems.append(f"{path}: the plan's domain of {name}: <vcpu> {vcpus!r} is not a count")
            continue
        result[name] = root
    if problems:
        raise ApplyError(problems)
    return result


def _domain_files(domains_dir: Path) -> dict[str, tuple[Path, str]]:
    if not domains_dir.is_dir():
        raise ApplyError([f"{domains_dir}: not a directory of domain XML files"])
    found: dict[str, tuple[Path, str]] = {}
    problems = []
    for path in sorted(domains_dir.rglob("*.xml")):
        if not path.is_file():
            continue
        try:
            text = path.read_bytes().decode("utf-8")  # line endings as they are (CRLF stays CRLF)
            root = etree.fromstring(text.encode("utf-8"), etree.XMLParser(resolve_entities=False, no_network=True))
        except (OSError, UnicodeDecodeError, etree.XMLSyntaxError) as exc:
            problems.append(f"{path}: cannot read ({exc})")
            continue
        if root.tag != "domain":
            continue
        if root.getroottree().docinfo.internalDTD is not None:  # entity declarations: never expanded, refused
            problems.append(f"{path}: the document has a <!DOCTYPE> (entity declarations): libvirt domain XML has "
                            "none; remove it")
            continue
        name = (root.findtext("name") or "").strip()
        if not name:
            problems.append(f"{path}: the domain has no <name>")
        elif name in found:
            problems.append(f"{path}: domain {name} is also in {found[name][0]}")
        else:
            found[name] = (path, text)
    if problems:
        raise ApplyError(problems)
    return found


def _crlf(text: str) -> bool:
    """Every line ends with CRLF (then the merge works on LF and the result gets CRLF back)."""
    return "\r\n" in text and text.count("\r\n") == text.count("\n")


def merge_file_text(text: str, plan_root: etree._Element, guest: str, where: str) -> str:
    """:func:`merge_domain` keeping the file's line endings (CRLF files stay CRLF)."""
    if _crlf(text):
        return merge_domain(text.replace("\r\n", "\n"), plan_root, guest, where).replace("\n", "\r\n")
    return merge_domain(text, plan_root, guest, where)


def backup_path(path: Path) -> Path:
    """``FILE.bak``, else ``FILE.bak.1``, ``FILE.bak.2``, ...: the first name not taken (a backup is never
    overwritten)."""
    from planner.files.atomic import first_free_name

    return first_free_name(path, "bak")


def _write_in_place(merged: dict[str, tuple[Path, str]], result: "ApplyResult") -> None:
    """Each changed file: a backup (new name, never overwriting one), then the merged text renamed over it with its
    mode kept. All merged texts are written to temporary files first; the renames run with signals blocked."""
    from planner.files.atomic import signals_blocked

    links = [str(path) for path, _ in merged.values() if path.is_symlink()]
    if links:
        raise ApplyError([f"{link}: is a symbolic link; --in-place would replace the link, not its target: edit "
                          "the target's directory, or write merged copies with -o OUT" for link in links])
    temps: dict[str, Path] = {}
    try:
        for guest, (path, text) in merged.items():
            if path.read_bytes() == text.encode("utf-8"):
                result.unchanged.append(guest)
                continue
            tmp = path.with_name(f".{path.name}.vplan-new")
            with open(tmp, "xb") as f:
                f.write(text.encode("utf-8"))
            shutil.copymode(path, tmp)
            temps[guest] = tmp
        with signals_blocked():
            for guest, tmp in temps.items():
                path = merged[guest][0]
                backup = backup_path(path)
                with open(path, "rb") as src, open(backup, "xb") as dst:
                    shutil.copyfileobj(src, dst)
                shutil.copystat(path, backup)
                os.replace(tmp, path)
                result.written[guest], result.backups[guest] = str(path), str(backup)
    except FileExistsError as exc:
        raise ApplyError([f"{exc.filename}: exists (left by an earlier run?); remove it and run again"]) from None
    except OSError as exc:
        raise ApplyError([f"{exc.filename or path}: cannot write ({exc.strerror or exc}); files already merged "
                          f"have their backups: {', '.join(result.backups.values()) or 'none'}"]) from None
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)


def apply_plan(plan_dir: str | os.PathLike, domains_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None,
               in_place: bool = False, force: bool = False) -> ApplyResult:
    """Merge the plan in ``plan_dir`` (``vplan solve``'s output) into the domain XMLs under ``domains_dir``;
    write the merged files under ``out_dir`` with the same relative paths (atomically: a temporary directory
    renamed into place; OUT must be missing, empty or an earlier ``apply`` output, see ``planner.files.atomic``; ``force``
    renames a foreign OUT aside), or, with ``in_place``, over the originals with a backup of each changed file
    (``FILE.xml.bak``, or ``FILE.xml.bak.N`` when that exists: a backup is never overwritten)."""
    from planner.files.atomic import OutputError, check_output_dir, write_directory_atomically

    if in_place == (out_dir is not None):
        raise ApplyError(["give either an output directory (-o OUT) or --in-place"])
    plan_dir, domains_dir = Path(plan_dir), Path(domains_dir)
    if out_dir is not None:
        out = Path(out_dir)
        if out.exists() and out.resolve() == domains_dir.resolve():
            raise ApplyError([f"{out}: is the domains directory; use --in-place to edit it"])
        try:
            check_output_dir(out, inputs=[plan_dir, domains_dir], force=force)
        except OutputError as exc:
            raise ApplyError(exc.problems) from None
    plan = _plan_domains(plan_dir)
    files = _domain_files(domains_dir)
    merged: dict[str, tuple[Path, str]] = {}
    problems: list[str] = []
    for guest, plan_root in sorted(plan.items()):
        if guest not in files:
            continue
        path, text = files[guest]
        try:
            merged[guest] = (path, merge_file_text(text, plan_root, guest, str(path)))
        except ApplyError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ApplyError(problems)
    result = ApplyResult(written={}, backups={}, missing=sorted(set(plan) - set(files)),
                         not_in_plan=sorted(str(files[g][0]) for g in set(files) - set(plan)))
    if in_place:
        _write_in_place(merged, result)
        return result

    def fill(tmp: Path) -> None:
        for guest, (path, text) in merged.items():
            target = tmp / path.relative_to(domains_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(text.encode("utf-8"))
            result.written[guest] = str(out / path.relative_to(domains_dir))

    try:
        written = write_directory_atomically(out, fill, inputs=[plan_dir, domains_dir], force=force, kind="apply")
    except OutputError as exc:
        raise ApplyError(exc.problems) from None
    result.moved_aside = str(written.moved_aside) if written.moved_aside else None
    return result
