"""``cells``: a guest's NUMA cells, as the libvirt domain lays them out."""

from __future__ import annotations

from planner.model.plan import Plan
from planner.model.scenario import Guest
from planner.model.units import format_cpulist, format_memory, format_page
from planner.verify.rules.text import vlist
from planner.verify.usage import MIB_KIB, GuestOnHost, HostUsage, PlanUsage, cell_page_kib
from planner.verify.violation import Violation


def cells(plan: Plan, usage: PlanUsage) -> list[Violation]:
    """Per placed guest: one pin set per vCPU; at least one cell, ``numa: N`` cells when asked; cell ids 0..k-1 in
    order; each cell on a distinct node of the host that has CPUs and memory; cells hold contiguous vCPU ranges in
    order (cell 0 from vCPU 0; ``threads: require``: whole pairs) and together exactly vCPUs 0..n-1; cell memory
    positive, whole pages of the cell's page size, summing to the guest's memory; cells even (vCPU counts within 1,
    2 for ``threads: require``; memories within one unit: the page size or 1 MiB) unless listed explicitly
    (``numa: [{vcpus, memory}, ...]``: exactly the listed sizes, in order)."""
    out: list[Violation] = []
    for hu in usage.hosts.values():
        for g in hu.guests:
            out += guest_cells(hu, g)
    return out


def guest_cells(hu: HostUsage, g: GuestOnHost) -> list[Violation]:
    guest, p, host, name = g.guest, g.placement, hu.host, g.name
    out: list[Violation] = []

    def add(node: int | None, message: str) -> None:
        out.append(Violation("cells", name, host, node, message))

    if len(p.vcpu_pins) != guest.vcpus:
        add(None, f"{name} on {host} has {len(p.vcpu_pins)} vCPU pin sets for {guest.vcpus} vCPUs")
    if not p.cells:
        add(None, f"{name} on {host} has no guest NUMA cell")
        return out
    if guest.numa is not None and len(p.cells) != guest.numa:
        add(None, f"{name} on {host} has {len(p.cells)} cells, but numa: {guest.numa} asks for {guest.numa}")
    out += _each_cell(hu, g)
    counts = [len(c.vcpus) for c in p.cells]
    memories = [c.memory_kib for c in p.cells]
    all_vcpus = [v for cell in p.cells for v in cell.vcpus]
    if sorted(all_vcpus) != list(range(guest.vcpus)):  # (a wrong order is told per cell)
        add(None, f"{name} on {host}: its cells hold {len(all_vcpus)} vCPU ids "
                  f"({format_cpulist(all_vcpus) or 'none'}), "
                  f"not exactly vCPUs 0-{guest.vcpus - 1}")
    total = sum(memories)
    if total != guest.memory_kib:
        add(None, f"{name} on {host}: cell memory sums to {total} KiB ({format_memory(total)}), "
                  f"not the guest's {guest.memory_kib} KiB ({format_memory(guest.memory_kib)})")
    if guest.numa_cells:
        out += _explicit_cells(host, guest, counts, memories)
    else:
        out += _even_cells(host, guest, counts, memories)
    return out


def _each_cell(hu: HostUsage, g: GuestOnHost) -> list[Violation]:
    """Ids, nodes, vCPU ranges and memory of each cell."""
    guest, host, name = g.guest, hu.host, g.name
    holds = hu.facts.holds_cells
    require = guest.dedicated and guest.threads == "require"
    out: list[Violation] = []
    seen_nodes: set[int] = set()
    start = 0
    for i, cell in enumerate(g.placement.cells):
        node = cell.node_id

        def add(message: str, node: int = node) -> None:
            out.append(Violation("cells", name, host, node, message))

        if cell.cell_id != i:
            add(f"{name} on {host} node {node}: cell #{i} has id {cell.cell_id}, expected {i} (ids 0..k-1 in order)")
        if node not in holds:
            add(f"{name} cell {i} is on node {node}, which {host} does not have")
        elif not holds[node]:
            add(f"{name} cell {i} is on {host} node {node}, which has no CPUs or no memory and holds no guest cell")
        if node in seen_nodes:
            add(f"{name} has two cells on {host} node {node}; the cells of a guest go to distinct nodes")
        seen_nodes.add(node)
        vs = cell.vcpus
        n = len(vs)
        if n == 0:
            add(f"{name} cell {i} on {host} node {node} holds no vCPU")
        elif vs != tuple(range(start, start + n)):
            add(f"{name} cell {i} on {host} node {node} holds vCPUs {list(vs)}, expected the contiguous range "
                f"{start}-{start + n - 1} (cells hold contiguous vCPU ranges in order, cell 0 from vCPU 0)")
        elif require and (n % 2 or start % 2):
            add(f"{name} (threads: require) cell {i} on {host} node {node} holds {vlist(vs)}, not whole pairs")
        page = cell_page_kib(guest, cell)
        if cell.memory_kib <= 0:
            add(f"{name} cell {i} on {host} node {node} has memory {cell.memory_kib} KiB")
        elif page and cell.memory_kib % page:
            add(f"{name} cell {i} on {host} node {node} has {format_memory(cell.memory_kib)}, not a whole number of "
                f"{format_page(page)} pages")
        start += n
    return out


def _even_cells(host: str, guest: Guest, counts: list[int], memories: list[int]) -> list[Violation]:
    """Cells not listed explicitly are even: vCPU counts within 1 (2 for ``threads: require``), memories within one
    unit (the guest's page size, else 1 MiB)."""
    name = guest.name
    out: list[Violation] = []
    spread = 2 if guest.dedicated and guest.threads == "require" else 1
    unit = guest.hugepage_kib or MIB_KIB
    if max(counts) - min(counts) > spread:
        out.append(Violation("cells", name, host, None,
                             f"{name} on {host}: cells hold {counts} vCPUs, which differ by "
                             f"{max(counts) - min(counts)} "
                             f"(at most {spread}; uneven cells must be listed: numa: [{{vcpus: N, memory: SIZE}}, "
                             "...])"))
    if max(memories) - min(memories) > unit:
        out.append(Violation("cells", name, host, None,
                             f"{name} on {host}: cell memories {memories} KiB differ by "
                             f"{max(memories) - min(memories)} "
                             f"KiB, more than one unit ({unit} KiB)"))
    return out


def _explicit_cells(host: str, guest: Guest, counts: list[int], memories: list[int]) -> list[Violation]:
    """A guest with ``numa: [{vcpus, memory}, ...]``: cell i holds exactly the listed vCPUs and memory (a cell count
    other than the list's is told by ``numa`` above)."""
    name = guest.name
    want_vcpus = [c.vcpus for c in guest.numa_cells]
    want_kib = [c.memory_kib for c in guest.numa_cells]
    if len(counts) != len(want_vcpus):
        return []
    out: list[Violation] = []
    for i, (n, want) in enumerate(zip(counts, want_vcpus, strict=False)):
        if n != want:
            out.append(Violation("cells", name, host, None,
                                 f"{name} on {host}: cell {i} holds {n} vCPUs, but its numa cell {i} lists {want}"))
    for i, (kib, want) in enumerate(zip(memories, want_kib, strict=False)):
        if kib != want:
            out.append(Violation("cells", name, host, None,
                                 f"{name} on {host}: cell {i} has {kib} KiB ({format_memory(kib)}), but its numa cell "
                                 f"{i} lists {want} KiB ({format_memory(want)})"))
    return out
