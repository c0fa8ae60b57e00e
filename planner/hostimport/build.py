"""Capture + overrides → host model (:func:`build_model`), phase by phase: architecture, node memory, hugepage
pools, reserved CPUs and memory (and whether each node holds them), SMT sibling groups, distances. The rules are
those of the package docstring (:mod:`planner.hostimport.capture`); each phase raises :class:`CaptureError` naming
the file and the override to give."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from planner.hostimport.captured import Capture, mem_text
from planner.hostimport.errors import CaptureError, Style, cpus_are, fail, hint, ids_text, pools_text
from planner.hostimport.lscpu import LscpuRows, lscpu_beside, parse_lscpu
from planner.hostimport.read import read_capture
from planner.hostimport.siblings import derived_groups
from planner.hostimport.spec import Imported, model_spec
from planner.model.scenario import HostModel, Node
from planner.model.units import format_cpulist, format_memory, format_page

ARCHES = ("x86_64", "aarch64", "ppc64le", "s390x")

#: node id -> page KiB -> pages
Pools = dict[int, dict[int, int]]
Groups = list[tuple[int, ...]]


@dataclass
class _Log:
    """The header lines gathered while building: notes (what the model says), choices (the overrides), warnings."""

    notes: list[str] = field(default_factory=list)
    choices: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


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
    log = _Log()
    ids = [n.id for n in capture.nodes]
    by_id = {n.id: n for n in capture.nodes}
    final_arch = _arch(capture, arch, style, log)
    memories = _memories(capture, memory, style, log)
    pools = _pools(capture, hugepages, log)
    reserved = _reserved(capture, frozenset(reserved_cpus), reserved_memory_kib, log)
    _check_nodes_hold(capture, memories, pools, reserved_memory_kib, hugepages, style)
    groups, siblings_from = _sibling_groups(capture, threads_per_core, lscpu, style)
    distances = _distances(capture, log)
    nodes = tuple(Node(id=n, cpus=by_id[n].cpus, memory_kib=memories[n] or 0,
                       hugepages=dict(sorted(pools[n].items(), key=lambda kv: -kv[0]))) for n in ids)
    cores = tuple(sorted(tuple(sorted(g)) for g in groups))
    model = HostModel(name=name, nodes=nodes, distances=distances, cores=cores, reserved_cpus=reserved,
                      reserved_memory_kib=reserved_memory_kib, arch=final_arch, source=capture.path)
    log.notes[:0] = _capture_notes(capture, model, siblings_from, capture.base_page_kib)
    return Imported(model=model, spec=model_spec(model, distances=capture.distances is not None), capture=capture,
                    notes=log.notes, choices=log.choices, warnings=log.warnings)


def _arch(capture: Capture, arch: str | None, style: Style, log: _Log) -> str:
    """The override if given (it must agree with the capture's), else the capture's, else x86_64 (noted)."""
    path = capture.path
    if arch is not None:
        if arch not in ARCHES:
            raise CaptureError(f"arch {arch!r} is not one of {', '.join(ARCHES)}", "arch")
        if capture.arch and capture.arch != arch:
            raise fail(path, f"the capture says arch {capture.arch}, not {arch}; remove the arch override", "arch")
        return arch
    if capture.arch:
        if capture.arch not in ARCHES:
            raise fail(path, f"arch {capture.arch[:20]!r} is not one vplan plans for ({', '.join(ARCHES)})")
        return capture.arch
    log.notes.append("arch: not in the capture, x86_64 assumed" + hint(style, " (give --arch)", " (give arch:)"))
    return "x86_64"


def _memories(capture: Capture, memory: int | Mapping[int, int] | None, style: Style,
              log: _Log) -> dict[int, int | None]:
    """Node id → memory KiB: the capture's, replaced per node or filled where missing by the override. A node
    still without memory is refused with the override to give."""
    path = capture.path
    ids = [n.id for n in capture.nodes]
    memories: dict[int, int | None] = {n.id: n.memory_kib for n in capture.nodes}
    if isinstance(memory, Mapping):
        unknown = sorted(set(memory) - set(ids))
        if unknown:
            raise fail(path, f"memory override for {ids_text('node', unknown)}, which the capture does not have "
                             f"(nodes {format_cpulist(ids)})", "memory")
        for node, kib in sorted(memory.items()):
            was = memories[node]
            memories[node] = kib
            log.choices.append(f"node {node} memory {format_memory(kib) if kib else '0'}"
                               + (f" (the capture says {format_memory(was)})" if was is not None else
                                  " (not in the capture)"))
    elif memory is not None:
        filled = [n for n in ids if memories[n] is None]
        if not filled:
            log.warnings.append("the memory override changes nothing: the capture gives every node's memory")
        for node in filled:
            memories[node] = memory
        if filled:
            log.choices.append(f"memory {format_memory(memory)} on {ids_text('node', filled)} (not in the capture)")
    missing_memory = [n for n in ids if memories[n] is None]
    if missing_memory:
        what = {"capabilities": "<memory> in cells", "numactl": "'node N size:' lines",
                "sysfs": "nodeN/meminfo files"}[capture.kind]
        example_node = missing_memory[0]
        raise fail(path, f"no memory for {ids_text('node', missing_memory)} (the capture has no {what}"
                         + ("; older libvirt wrote none" if capture.kind == "capabilities" else "")
                         + "): give the node memory, "
                         + hint(style, f"--memory 64GiB (every node without one) or --memory {example_node}=64GiB "
                                       "(per node)",
                                f"memory: 64GiB (every node without one) or memory: {{{example_node}: 64GiB}} "
                                "(per node) in this host model"),
                   "memory")
    return memories


def _pools(capture: Capture, hugepages: Mapping[int, Mapping[int, int]] | None, log: _Log) -> Pools:
    """The capture's pools of every size above the base page, with the per-node, per-size overrides. A size the
    capture does not list is allowed with a warning; a size at or below the base page is refused."""
    path = capture.path
    ids = [n.id for n in capture.nodes]
    base = capture.base_page_kib
    huge = capture.huge_sizes
    pools: Pools = {n.id: {s: c for s, c in n.pages.items() if s != base} for n in capture.nodes}
    if not hugepages:
        return pools
    unknown = sorted(set(hugepages) - set(ids))
    if unknown:
        raise fail(path, f"hugepages override for {ids_text('node', unknown)}, which the capture does not "
                         f"have (nodes {format_cpulist(ids)})", "hugepages")
    for node, sizes in sorted(hugepages.items()):
        for size, count in sorted(sizes.items(), key=lambda kv: -kv[0]):
            if base is not None and size <= base:
                raise fail(path, f"hugepages override on node {node}: {format_page(size)} is not above the "
                                 f"base page {format_page(base)}", "hugepages")
            if huge and size not in huge:
                log.warnings.append(f"{format_page(size)} pages are not listed by the capture (it lists "
                                    f"{', '.join(format_page(s) for s in huge)}): the host kernel must enable them "
                                    f"(hugepagesz={format_page(size)})")
            was = pools[node].get(size)
            pools[node][size] = count
            log.choices.append(f"node {node} hugepages {format_page(size)} x {count}"
                               + (f" (the capture: {was})" if was is not None else " (the capture: none)"))
    return pools


def _reserved(capture: Capture, reserved: frozenset[int], reserved_memory_kib: int, log: _Log) -> frozenset[int]:
    """The reserved CPUs (each a CPU of the capture), said first among the choices."""
    present = {c for n in capture.nodes for c in n.cpus}
    unknown = sorted(reserved - present)
    if unknown:
        raise fail(capture.path, f"reserved {cpus_are(unknown)} not {'a CPU' if len(unknown) == 1 else 'CPUs'} of "
                                 f"this host ({format_cpulist(sorted(present)) or 'none'})", "reserved")
    if reserved or reserved_memory_kib:
        log.choices.insert(0, f"reserved CPUs {format_cpulist(reserved) or 'none'} and "
                              f"{format_memory(reserved_memory_kib) if reserved_memory_kib else 'no'} memory per node "
                              "with memory (for the host)")
    return reserved


def _check_nodes_hold(capture: Capture, memories: Mapping[int, int | None], pools: Pools, reserved_memory_kib: int,
                      hugepages: Mapping[int, Mapping[int, int]] | None, style: Style) -> None:
    """Per node: sum(page KiB x pages) + reserved memory (on a node with memory) <= node memory, and a node without
    memory has no pages. A capture whose own pools exceed its memory is refused with the overrides that empty them."""
    path = capture.path
    base = capture.base_page_kib
    by_id = {n.id: n for n in capture.nodes}
    for node in by_id:
        kib = memories[node] or 0
        pool = sum(s * c for s, c in pools[node].items())
        reserve = reserved_memory_kib if kib else 0
        if kib == 0 and any(pools[node].values()):
            raise fail(path, f"node {node} has no memory but hugepage pools "
                             f"{pools_text(pools[node])}", "hugepages" if hugepages else None)
        if pool + reserve <= kib:
            continue
        in_capture = sum(s * c for s, c in by_id[node].pages.items() if s != base)
        if in_capture > kib and not (hugepages and node in hugepages):
            sizes = " ".join(f"{node}:{format_page(s)}=0" for s, c in sorted(pools[node].items()) if c)
            yaml_sizes = ", ".join(f"{format_page(s)}: 0" for s, c in sorted(pools[node].items()) if c)
            raise fail(path, f"node {node}: the capture's hugepage pools ({pools_text(pools[node])} = "
                             f"{format_memory(pool)}) exceed its memory {format_memory(kib)}: the capture is "
                             "inconsistent (a test mock?); override the pools: "
                             + hint(style, " ".join(f"--hugepages {x}" for x in sizes.split()),
                                    f"hugepages: {{{node}: {{{yaml_sizes}}}}}"), "hugepages")
        raise fail(path, f"node {node}: hugepage pools {format_memory(pool)} + reserved memory "
                         f"{format_memory(reserve)} exceed its memory {format_memory(kib)}",
                   "hugepages" if hugepages else "reserved")


def _sibling_groups(capture: Capture, threads_per_core: int | None,
                    lscpu: str | Mapping[int, Mapping[str, int | None]] | None,
                    style: Style) -> tuple[Groups, str]:
    """The SMT groups and where they came from: the capture's, else an lscpu -p file (given, or found beside a
    numactl capture), else the ``threads_per_core`` rule; they cover every CPU exactly once."""
    path = capture.path
    cpus_all = sorted(c for n in capture.nodes for c in n.cpus)
    groups = capture.siblings
    siblings_from = capture.siblings_from
    if groups is None and lscpu is None and capture.kind == "numactl" and threads_per_core is None:
        lscpu = lscpu_beside(path)
    if lscpu is not None:
        if groups is not None and capture.siblings_from:
            raise fail(path, f"the capture has sibling information ({capture.siblings_from}); the lscpu file is not "
                             "needed", "lscpu")
        groups, siblings_from = _lscpu_groups(capture, lscpu)
    if threads_per_core is not None:
        groups, siblings_from = _threads_groups(capture, threads_per_core, groups, siblings_from)
    if groups is None:
        if cpus_all:
            raise fail(path, "has no SMT sibling information (" + {"numactl": "numactl --hardware never has",
                                                                    "capabilities": "no siblings or core ids",
                                                                    "sysfs": "no cpu*/topology files"}[capture.kind]
                       + "): give "
                       + hint(style, "--threads-per-core T", "threads_per_core: T")
                       + " (1 without SMT; siblings of c are c + k*N/T) or an `lscpu -p` file "
                       + hint(style, f"(--lscpu FILE, or {Path(path).name}.lscpu beside it)",
                              f"(lscpu: FILE, or {Path(path).name}.lscpu beside it)"), "threads_per_core")
        groups = []
    if sorted(c for g in groups for c in g) != cpus_all:
        raise fail(path, "the sibling groups do not cover every CPU exactly once")
    return groups, siblings_from


def _lscpu_groups(capture: Capture, lscpu: str | Mapping[int, Mapping[str, int | None]]) -> tuple[Groups, str]:
    """Groups of the CPUs with the same (socket, core) in ``lscpu -p``, which must list every CPU on the node the
    capture puts it on; a group sits in one node."""
    path = capture.path
    node_of = {c: n.id for n in capture.nodes for c in n.cpus}
    lscpu_path = lscpu if isinstance(lscpu, str) else None
    parsed: LscpuRows | Mapping[int, Mapping[str, int | None]] = parse_lscpu(lscpu) if isinstance(lscpu, str) \
        else dict(lscpu)
    shown = lscpu_path or "lscpu -p"
    missing = sorted(set(node_of) - set(parsed))
    if missing:
        raise fail(shown, f"has no line for {ids_text('CPU', missing)} of {path}", "lscpu")
    by_core: dict[tuple, list[int]] = {}
    for cpu in sorted(node_of):
        row = parsed[cpu]
        if row.get("node") is not None and row["node"] != node_of[cpu]:
            raise fail(shown, f"CPU {cpu} is on node {row['node']} but {path} puts it on node {node_of[cpu]} "
                              "(captures of two different hosts?)", "lscpu")
        by_core.setdefault((row.get("socket"), row["core"]), []).append(cpu)
    groups = sorted(tuple(g) for g in by_core.values())
    for group in groups:
        if len({node_of[c] for c in group}) > 1:
            raise fail(shown, f"core {format_cpulist(group)} spans nodes "
                              f"{', '.join(str(x) for x in sorted({node_of[c] for c in group}))}", "lscpu")
    return groups, f"lscpu -p ({shown})"


def _threads_groups(capture: Capture, threads_per_core: int, groups: Groups | None,
                    siblings_from: str) -> tuple[Groups | None, str]:
    """With known groups, ``threads_per_core`` must match their size; without, the groups the rule derives (CPU
    ids 0..N-1, N divisible by T, each group inside one node)."""
    path = capture.path
    cpus_all = sorted(c for n in capture.nodes for c in n.cpus)
    node_of = {c: n.id for n in capture.nodes for c in n.cpus}
    if threads_per_core < 1:
        raise CaptureError(f"threads_per_core {threads_per_core} must be at least 1", "threads_per_core")
    if groups is not None and cpus_all:
        sizes = sorted({len(g) for g in groups})
        if sizes != [threads_per_core]:
            raise fail(path, f"threads_per_core {threads_per_core} disagrees with the capture's sibling groups "
                             f"({'/'.join(map(str, sizes))} threads per core, from {siblings_from}); remove it",
                       "threads_per_core")
        return groups, siblings_from
    derived = derived_groups(cpus_all, threads_per_core)
    if derived is None:
        raise fail(path, f"threads_per_core {threads_per_core} needs CPU ids 0..N-1 with N divisible by "
                         f"{threads_per_core} (Linux's usual numbering; this host has "
                         f"{format_cpulist(cpus_all)}): give an lscpu -p file instead", "threads_per_core")
    split = [g for g in derived if len({node_of[c] for c in g}) > 1]
    if split:
        raise fail(path, f"with threads_per_core {threads_per_core} the siblings of CPU {split[0][0]} "
                         f"({format_cpulist(split[0])}) would span nodes: give an lscpu -p file instead",
                   "threads_per_core")
    return derived, f"threads_per_core {threads_per_core} (siblings of c are c + k*N/T; not in the capture)"


def _distances(capture: Capture, log: _Log) -> tuple[tuple[int, ...], ...]:
    """The capture's table (10 on the diagonal, 11..254 elsewhere), or 10/20 when it has none (noted)."""
    ids = [n.id for n in capture.nodes]
    if capture.distances is None:
        log.notes.append("distances: not in the capture, the default 10 (same node) / 20 (other node)")
        return tuple(tuple(10 if i == j else 20 for j in range(len(ids))) for i in range(len(ids)))
    rows = []
    for a in ids:
        row = []
        for b in ids:
            value = capture.distances[a][b]
            if a == b and value != 10:
                raise fail(capture.path, f"distance from node {a} to itself is {value}, not 10")
            if a != b and not 11 <= value <= 254:
                raise fail(capture.path, f"distance from node {a} to node {b} is {value} (between two nodes it is "
                                         "11..254): not a real topology")
            row.append(value)
        rows.append(tuple(row))
    return tuple(rows)


def _capture_notes(capture: Capture, model: HostModel, siblings_from: str, base: int | None) -> list[str]:
    """The header lines saying what the capture gave: kind, nodes, siblings, distances, page sizes, quirks."""
    kind = {"capabilities": "virsh capabilities", "numactl": "numactl --hardware",
            "sysfs": "sysfs snapshot"}[capture.kind]
    lines = []
    what = ", ".join(x for x in (capture.vendor, capture.cpu_model) if x)
    lines.append(f"capture: {kind}" + (f" ({what})" if what else ""))
    for node in model.nodes:
        pools = ", ".join(f"{format_page(s)} x {c}" for s, c in node.hugepages.items())
        exact = mem_text(node.memory_kib)
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
