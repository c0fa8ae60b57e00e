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

The owned set is not kept here by hand: it is derived from the declarations of ``planner.libvirt.elements`` (the
parts marked ``REPLACED``, grouped by parent: ``OWNED``), as are the cell attributes vplan writes
(``CELL_OWNED_ATTRS``, from ``NumaCell.ATTRS``) and the ``<vcpu>`` attributes the domain keeps (``Vcpu.KEPT``).
Each owned element of the plan replaces the domain's first one of its tag in place (others of the tag are removed);
a missing one goes after its declared predecessors (``AFTER``). Missing parents are added at libvirt's usual
place, also declared (``<cputune>``/``<numatune>`` after ``<vcpu>``, ``<cpu>`` after ``<features>``/``<os>``,
``<memoryBacking>`` after ``<currentMemory>``/``<memory>``) with the file's indentation.
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

from planner.libvirt.elements import (
    Memory,
    NumaCell,
    Page,
    Part,
    Vcpu,
    container_of,
    declared_parts,
    owned_children,
)
from planner.libvirt.xmltext import serialize
from planner.model.errors import VplanError
from planner.model.units import scaled_kib

__all__ = ["ApplyError", "ApplyResult", "apply_plan", "merge_domain", "owned_stripped", "OWNED"]

#: The parts vplan owns, as {parent path: child tags}, derived from the declarations (planner.libvirt.elements):
#: ``{'memoryBacking': ('hugepages',), '.': ('vcpu', 'numatune'), 'cputune': ('vcpupin', 'emulatorpin'),
#: 'cpu': ('topology', 'numa')}``.
OWNED: dict[str, tuple[str, ...]] = {path: tuple(p.TAG for p in parts) for path, parts in owned_children().items()}


class ApplyError(VplanError):
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
    end: int = -1
    children: list[_Span] = field(default_factory=list)

    def child(self, tag: str) -> _Span | None:
        return next((c for c in self.children if c.tag == tag), None)

    def all(self, tag: str) -> list[_Span]:
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
                span.end = m.end()
            else:
                stack.append(span)
        elif m.group("close"):
            if not stack or stack[-1].tag != m.group("close"):
                raise ValueError(f"unbalanced </{m.group('close')}> at offset {m.start()}")
            span = stack.pop()
            span.end = m.end()
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
    memory = root.find(Memory.PATH)
    if memory is None:
        raise ApplyError([f"{where}: no <memory>"])
    try:
        return Memory.from_element(memory).kib
    except ValueError as exc:
        raise ApplyError([f"{where}: {exc}"]) from None


def _parse(text: str, where: str) -> etree._Element:
    try:
        return etree.fromstring(text.encode("utf-8"), etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as exc:
        raise ApplyError([f"{where}: not well-formed XML ({exc.msg})"]) from None


def _check_size(parsed: etree._Element, plan_root: etree._Element, guest: str, where: str) -> None:
    """Refuse a domain whose ``<vcpu>`` count or ``<memory>`` is not the plan's (the plan was made for another
    size)."""
    problems = []
    plan_vcpus = int(plan_root.findtext(Vcpu.PATH))
    dom_vcpu = (parsed.findtext(Vcpu.PATH) or "").strip()
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


def merge_domain(text: str, plan_root: etree._Element, guest: str, where: str) -> str:
    """``text`` (a full domain XML) with the owned parts of ``plan_root`` (the plan's domain XML) merged in: for
    each parent of owned parts (``planner.libvirt.elements.owned_children``, in libvirt's order) the plan's
    elements replace the domain's, the parent is made when missing; then the result is verified."""
    parsed = _parse(text, where)
    _check_size(parsed, plan_root, guest, where)
    plan_root = _expected_owned(parsed, plan_root, guest, where)
    try:
        root = _tokenise(text)
    except ValueError as exc:
        raise ApplyError([f"{where}: cannot edit this file's text ({exc})"]) from None
    merger = _Merger(text, root)
    for path, parts in owned_children().items():
        merger.merge_parent(path, parts, plan_root)
    merged = _splice(text, merger.edits)
    _verify(text, merged, plan_root, guest, where)
    return merged


#: the order of insertions at one offset: libvirt's order of the declarations
_ORDER = {part: index for index, part in enumerate(declared_parts())}


class _Merger:
    """The text edits that put the plan's owned elements into one domain file (``edits``, spliced at the end)."""

    def __init__(self, text: str, root: _Span):
        self.text, self.root = text, root
        self.layout = _Layout(text, root)
        self.edits: list[_Edit] = []

    def insert_after(self, span: _Span, block: str, order: int) -> None:
        pos = _line_end(self.text, span.end)
        if pos == span.end:  # something follows on the line: start a new one
            block = "\n" + block.rstrip("\n")
        self.edits.append(_Edit(pos, pos, block, order))

    def insert_before(self, span: _Span, block: str, order: int) -> None:
        pos = _line_start(self.text, span.start)
        if pos == span.start:  # something precedes it on the line
            block = block.strip() + " "
        self.edits.append(_Edit(pos, pos, block, order))

    def insert_in(self, parent: _Span, block: str, order: int, first: bool) -> None:
        """``block`` (lines already indented) as the first or last child of ``parent``."""
        if first or not parent.children:
            pos = _line_end(self.text, parent.open_end)
            if pos == parent.open_end:
                block = "\n" + block
            self.edits.append(_Edit(pos, pos, block, order))
        else:
            self.insert_after(parent.children[-1], block, order)

    def insert_missing(self, parent: _Span, part: type[Part], block: str) -> None:
        """A part the domain lacks: after the last of its declared predecessors (``AFTER``) present, else before
        the first of ``BEFORE``, else first or last in the parent (``FALLBACK``)."""
        order = _ORDER[part]
        anchors = [c for c in parent.children if c.tag in part.AFTER]
        befores = [c for c in parent.children if c.tag in part.BEFORE]
        if anchors:
            self.insert_after(anchors[-1], block, order)
        elif befores:
            self.insert_before(befores[0], block, order)
        else:
            self.insert_in(parent, block, order, first=part.FALLBACK == "first")

    def remove(self, span: _Span) -> None:
        start, end = _removal(self.text, span)
        self.edits.append(_Edit(start, end, ""))

    def merge_parent(self, path: str, parts: tuple[type[Part], ...], plan_root: etree._Element) -> None:
        """The plan's ``parts`` under ``path`` ('.' the domain, else a container such as ``cputune``)."""
        plan_parent = plan_root if path == "." else plan_root.find(path)
        wanted = {part: plan_parent.findall(part.TAG) if plan_parent is not None else [] for part in parts}
        if path == ".":
            self.merge_into(self.root, wanted, top=True)
            return
        container = container_of(path)
        span = self.root.child(container.TAG)
        if span is not None and not span.self_closing:
            self.merge_into(span, wanted, top=False)
            return
        elements = [e for part in parts for e in wanted[part]]
        if not elements:
            return
        indent = self.layout.child_indent(self.root) if span is None else _indent_of(self.text, span)
        inner = "".join(self.layout.block(e, indent + self.layout.unit) for e in elements)
        tag = container.TAG
        if span is not None:  # <cpu .../>: keep its attributes
            self.edits.append(_Edit(span.start, span.end, f"<{tag}{span.attrs}>\n{inner}{indent}</{tag}>"))
        else:
            self.insert_missing(self.root, container, f"{indent}<{tag}>\n{inner}{indent}</{tag}>\n")

    def merge_into(self, parent: _Span, wanted: dict[type[Part], list[etree._Element]], top: bool) -> None:
        """Each owned part: the plan's elements replace the first of the domain's (in place), the others are
        removed; missing ones are inserted; a container left with nothing (and no attributes) is removed."""
        tags = {part.TAG for part in wanted}
        old_owned = [c for c in parent.children if c.tag in tags]
        if not top and old_owned and len(old_owned) == len(parent.children) and not any(wanted.values()) \
                and not parent.attrs.strip():
            self.remove(parent)
            return
        for part, elements in wanted.items():
            old = parent.all(part.TAG)
            indent = _indent_of(self.text, old[0]) if top and old else self.layout.child_indent(parent)
            block = "".join(self.layout.block(e, indent) for e in elements)
            if old and elements:
                self.edits.append(_Edit(old[0].start, old[0].end, block[len(indent):].rstrip("\n")))
            elif elements:
                self.insert_missing(parent, part, block)
            for span in old[1:] if elements else old:
                self.remove(span)


#: attributes of ``<cell>`` vplan writes; any other (memAccess, discard, ...) is the domain's and kept
CELL_OWNED_ATTRS = frozenset(attr.name for attr in NumaCell.ATTRS)
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
    """The plan's domain with what the existing domain keeps inside the owned parts: ``<vcpu current>`` (the
    declared ``Vcpu.KEPT``), the cells' attributes not declared by ``NumaCell`` (memAccess, discard) and HMAT
    children (``<cell><cache>``, ``<numa><interconnects>``), and cell memory less the memory devices on each cell.
    Refused (ApplyError, with the reason) where that cannot be kept consistent with the plan."""
    plan_root = _copy(plan_root)
    problems: list[str] = []
    _keep_vcpu_attrs(parsed, plan_root, guest, where, problems)
    new_numa = plan_root.find("cpu/numa")
    old_numa = parsed.find("cpu/numa")
    new_cells = new_numa.findall(NumaCell.TAG) if new_numa is not None else []
    if old_numa is not None and new_numa is not None:
        old_cells = old_numa.findall(NumaCell.TAG)
        same_ids = sorted(c.get("id", str(i)) for i, c in enumerate(old_cells)) == \
            sorted(c.get("id") for c in new_cells)
        _keep_cell_attrs(old_cells, new_cells, same_ids, guest, where, problems)
        _keep_hmat(old_numa, new_numa, same_ids, guest, where, problems)
    elif old_numa is not None and new_numa is None:
        kept = [x.tag for x in old_numa.iter() if isinstance(x.tag, str) and x.tag not in ("numa", "cell",
                                                                                          "distances", "sibling")]
        if kept:
            problems.append(f"{guest}: {where}: <{'>, <'.join(sorted(set(kept)))}> in <numa> would be lost (the "
                            "plan gives the guest no cells)")
    _cells_less_devices(parsed, plan_root, new_cells, guest, where, problems)
    if problems:
        raise ApplyError(problems)
    return plan_root


def _keep_vcpu_attrs(parsed: etree._Element, plan_root: etree._Element, guest: str, where: str,
                     problems: list[str]) -> None:
    """``<vcpu current>`` (vCPUs online at boot, 1..count) stays the domain's."""
    vcpus = int(plan_root.findtext(Vcpu.PATH))
    old_vcpu = parsed.find(Vcpu.PATH)
    for name in Vcpu.KEPT:
        current = old_vcpu.get(name) if old_vcpu is not None else None
        if current is None:
            continue
        if not (current.isascii() and current.isdigit()) or not 1 <= int(current) <= vcpus:
            problems.append(f"{guest}: {where}: <vcpu {name}='{current}'> is not a count from 1 to {vcpus}")
        else:
            plan_root.find(Vcpu.PATH).set(name, current)


def _keep_cell_attrs(old_cells: list, new_cells: list, same_ids: bool, guest: str, where: str,
                     problems: list[str]) -> None:
    """The domain's cell attributes (not declared by NumaCell) onto the plan's cells: the same on every cell, or
    by cell id when the ids are the same."""
    extras = [tuple(sorted((k, v) for k, v in c.attrib.items() if k not in CELL_OWNED_ATTRS)) for c in old_cells]
    if len(set(extras)) == 1:
        for cell in new_cells:
            for k, v in extras[0]:
                cell.set(k, v)
    elif same_ids:
        by_id = {c.get("id", str(i)): e for i, (c, e) in enumerate(zip(old_cells, extras, strict=False))}
        for cell in new_cells:
            for k, v in by_id[cell.get("id")]:
                cell.set(k, v)
    else:
        shown = "; ".join(f"cell {c.get('id', i)}: {' '.join(f'{k}={v}' for k, v in e) or 'none'}"
                          for i, (c, e) in enumerate(zip(old_cells, extras, strict=False)))
        problems.append(f"{guest}: {where}: its {len(old_cells)} cells differ in attributes vplan does not own "
                        f"({shown}) and the plan has {len(new_cells)} cells: give every cell the same, or "
                        f"plan the guest with numa: {len(old_cells)}")


def _keep_hmat(old_numa: etree._Element, new_numa: etree._Element, same_ids: bool, guest: str, where: str,
               problems: list[str]) -> None:
    """HMAT (``<cell><cache>``, ``<numa><interconnects>``) stays, when the plan has the same cell ids."""
    old_cells = old_numa.findall(NumaCell.TAG)
    new_cells = new_numa.findall(NumaCell.TAG)
    hmat_cells = {c.get("id", str(i)): [x for x in c if x.tag != "distances" and isinstance(x.tag, str)]
                  for i, c in enumerate(old_cells)}
    hmat_numa = [x for x in old_numa if x.tag != NumaCell.TAG and isinstance(x.tag, str)]
    if not (any(hmat_cells.values()) or hmat_numa):
        return
    if not same_ids:
        tags = sorted({f"<{x.tag}>" for x in [*hmat_numa, *(y for v in hmat_cells.values() for y in v)]})
        problems.append(f"{guest}: {where}: {', '.join(tags)} (HMAT) describe {len(old_cells)} cells, the "
                        f"plan has {len(new_cells)}: plan the guest with numa: {len(old_cells)}, or remove them")
        return
    for cell in new_cells:
        for child in hmat_cells[cell.get("id")]:
            cell.append(_strip_blank_text(_copy(child)))
    for child in hmat_numa:
        new_numa.append(_strip_blank_text(_copy(child)))


def _cells_less_devices(parsed: etree._Element, plan_root: etree._Element, new_cells: list, guest: str, where: str,
                        problems: list[str]) -> None:
    """libvirt counts memory devices in ``<memory>`` beside the cells: each plan cell gives up the devices' KiB
    (refused when the cell would keep nothing, or not whole hugepages)."""
    devices = memory_devices_kib(parsed, where)
    if not devices:
        return
    if not new_cells:
        problems.append(f"{guest}: {where}: memory devices need guest NUMA cells, and the plan has none")
    page = plan_root.find(Page.PATH)
    page_kib = Page.from_element(page).size_kib if page is not None else None
    ids = {int(c.get("id")): c for c in new_cells}
    for node, kib in sorted(devices.items()):
        if node not in ids:
            problems.append(f"{guest}: {where}: memory devices ({kib} KiB) target guest cell {node}, the plan "
                            f"has cells {', '.join(map(str, sorted(ids)))}: retarget them (<target><node>) or "
                            f"plan the guest with numa: {node + 1}")
            continue
        cell = ids[node]
        memory = NumaCell.from_element(cell).memory_kib - kib
        if memory <= 0 or (page_kib and memory % page_kib):
            why = "nothing" if memory <= 0 else f"{memory} KiB, not a whole number of {page_kib} KiB pages"
            problems.append(f"{guest}: {where}: guest cell {node} would keep {why} after its memory devices "
                            f"({kib} KiB; libvirt counts them in <memory> beside the cells): re-plan or move "
                            "the devices")
            continue
        cell.set("memory", str(memory))
        cell.set("unit", "KiB")


def _copy(element: etree._Element) -> etree._Element:
    return etree.fromstring(etree.tostring(element))


def _splice(text: str, edits: list[_Edit]) -> str:
    ordered = sorted(edits, key=lambda e: (e.start, e.end, e.order))
    for a, b in zip(ordered, ordered[1:], strict=False):
        if b.start < a.end:
            raise ApplyError([f"internal error: overlapping edits at {a.start}-{a.end} and {b.start}-{b.end}"])
    out, pos = [], 0
    for e in ordered:
        out.append(text[pos:e.start])
        out.append(e.text)
        pos = max(pos, e.end)
    out.append(text[pos:])
    return "".join(out)


def _owned_in(root: etree._Element, path: str, part: type[Part]) -> list[etree._Element]:
    parent = root if path == "." else root.find(path)
    return parent.findall(part.TAG) if parent is not None else []


def owned_stripped(root: etree._Element) -> etree._Element:
    """A copy of a domain without the parts vplan owns (``OWNED``) and without a container of them left empty,
    whitespace-only text removed: what must be identical before and after ``apply``."""
    copy = etree.fromstring(etree.tostring(root))
    for path, parts in owned_children().items():
        for part in parts:
            for element in _owned_in(copy, path, part):
                element.getparent().remove(element)
    for path in OWNED:
        element = copy.find(path) if path != "." else None
        if element is not None and len(element) == 0 and not element.attrib and not (element.text or "").strip():
            copy.remove(element)
    return _strip_blank_text(copy)


def canonical(element: etree._Element) -> bytes:
    return etree.tostring(element, method="c14n", with_comments=True)


def _verify(before: str, after: str, plan_root: etree._Element, guest: str, where: str) -> None:
    """The merged text parses, keeps every part vplan does not own, and has each owned part as the plan's."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    try:
        old = etree.fromstring(before.encode("utf-8"), parser)
        new = etree.fromstring(after.encode("utf-8"), parser)
    except etree.XMLSyntaxError as exc:
        raise ApplyError([f"internal error: merging {guest} ({where}) made invalid XML ({exc.msg})"]) from None
    if canonical(owned_stripped(old)) != canonical(owned_stripped(new)):
        raise ApplyError([f"internal error: merging {guest} ({where}) changed a part vplan does not own"])
    for path, parts in owned_children().items():
        for part in parts:
            want = [canonical(_clean(e)) for e in _owned_in(plan_root, path, part)]
            if want != [canonical(_clean(e)) for e in _owned_in(new, path, part)]:
                raise ApplyError([f"internal error: merging {guest} ({where}): <{part.PATH}> is not the plan's"])


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


def plan_domains(plan_dir: Path) -> dict[str, etree._Element]:
    """The domain XML of every placed guest of a plan directory (format version checked; each file inside the
    directory and with vplan's parts), by guest name. Raises ``ApplyError`` naming the file."""
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


def _write_in_place(merged: dict[str, tuple[Path, str]], result: ApplyResult) -> None:
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
    renamed into place; OUT must be missing, empty or an earlier ``apply`` output, see ``planner.files.atomic``;
    ``force`` renames a foreign OUT aside), or, with ``in_place``, over the originals with a backup of each changed file
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
    plan = plan_domains(plan_dir)
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
