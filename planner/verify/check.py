"""The independent checker: every plan passes it before it is written.

It recomputes everything from the plan's concrete facts (guest NUMA cells, vCPU pins, emulator pins) and the
scenario, and shares no code with the solver (no ortools, no ``planner.engine.solver*``/``planner.engine.problem`` import): a bug
in the solver's counting cannot hide itself here.

Rules (``Violation.rule``), after the "Hard rules every plan obeys" of scenario format v1:

* ``coverage``   every guest is placed or unplaced (not both, not neither), unplaced reasons are non-empty,
  placements name known guests and hosts;
* ``status``     ``partial`` iff some guest is not placed;
* ``placement``  fixed hosts and anti-affinity tags (per host, rack or zone: ``anti_affinity_scope``);
* ``cells``      guest NUMA cells: ids, distinct usable nodes, contiguous balanced vCPU ranges, memory split (explicit
  ``numa:`` cells: exactly the listed vCPU counts and memory, in order);
* ``cpus``       vCPU pins: on the cell's node, never reserved, dedicated 1:1, shared within the node's pool;
* ``threads``    ``isolate`` (whole idle cores) and ``require`` (sibling pairs);
* ``emulator``   emulator pins by the guest's ``emulator`` policy, never on a dedicated pCPU;
* ``overcommit`` vCPUs per physical core, host-wide and per node shared pool;
* ``load``       Σ vCPUs × load per node shared pool against the load target;
* ``evacuation`` (``check_evacuations``) each failure of ``policy.survive``: the failed hosts' guests all moved or
  stranded (with a reason), nothing left on a failed host, survivors keep their host; the evacuated fleet obeys
  every rule above;
* ``memory``     4K memory per node (dedicated guests 1:1, shared guests' memory ÷ memory_overcommit, against the
  free 4K memory) and per cell (never above the node's free 4K memory); ``hugepages`` pool pages per node and size;
* ``tenancy``    ``policy.tenant_isolation``: no host (``host``), host node (``node``: cells) or physical core
  (``core``: the cores of the CPUs in vCPU pins) serves guests of two tenants (no ``tenant:``: the default tenant).

Everything is exact (integers and ``Fraction``), and the plan is indexed by host once so a fleet of thousands of
hosts checks in seconds.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Iterable, Mapping

from planner.model.plan import GuestPlacement, Plan
from planner.model.scenario import Guest, HostModel
from planner.model.units import format_cpulist, format_memory, format_page

RULES = (
    "coverage",
    "cells",
    "cpus",
    "threads",
    "emulator",
    "overcommit",
    "load",
    "memory",
    "hugepages",
    "placement",
    "status",
    "evacuation",
    "tenancy",
)
MIB_KIB = 1024


@dataclass(frozen=True)
class Violation:
    rule: str  # one of RULES
    guest: str | None
    host: str | None
    node: int | None
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.message}"


@dataclass(frozen=True)
class NodeUsage:
    """What the plan's guests take from one host node, recomputed from their cells and pins."""

    dedicated_cpus: tuple[int, ...]  # CPUs of the node pinned by dedicated vCPUs
    idle_cpus: tuple[int, ...]  # siblings left idle by ``threads: isolate`` vCPUs (reserved CPUs excluded)
    emulator_cpus: tuple[int, ...]  # CPUs of ``emulator: isolate`` guests
    pool_cpus: tuple[int, ...]  # the shared pool: CPUs − reserved − dedicated − idle − emulator
    pool_cores: Fraction  # physical cores of the pool
    shared_vcpus: int  # Σ vCPUs of shared cells on the node
    shared_load: Fraction  # Σ vCPUs × load of those cells
    dedicated_vcpus: int  # Σ vCPUs of dedicated cells on the node
    memory_4k_used_kib: int  # Σ memory of non-hugepage cells
    memory_4k_free_kib: int  # ⌊(free 4K − dedicated guests' 4K) × memory_overcommit⌋ − shared guests' 4K (negative when over)
    hugepages_used: Mapping[int, int] = field(default_factory=dict)  # page KiB -> pages used (> 0 only)
    hugepages_free: Mapping[int, int] = field(default_factory=dict)  # page KiB -> pool pages − used


# ----------------------------------------------------------------------------------------------- formatting
def _num(value: Fraction | int) -> str:
    """8.5, 68, 0.7; a value with no short decimal form as a fraction with its approximation."""
    value = Fraction(value)
    if value.denominator == 1:
        return str(value.numerator)
    den = value.denominator
    for p in (2, 5):
        while den % p == 0:
            den //= p
    if den == 1:
        text = f"{float(value):.10f}".rstrip("0").rstrip(".")
        if Fraction(text) == value:
            return text
    return f"{value.numerator}/{value.denominator} (~{float(value):.3f})"


def _vlist(vcpus: Iterable[int]) -> str:
    vcpus = sorted(set(vcpus))
    word = "vCPU" if len(vcpus) == 1 else "vCPUs"
    return f"{word} {format_cpulist(vcpus)}"


def _are(items) -> str:
    """'vCPU 1 is' / 'vCPUs 0-1 are' style agreement for a list of CPUs."""
    items = sorted(set(items))
    return f"CPU {items[0]} is" if len(items) == 1 else f"CPUs {_cpus(items)} are"


def _isare(vcpus) -> str:
    return "is" if len(set(vcpus)) == 1 else "are"


def _tenant(tenant: str) -> str:
    return f"'{tenant}'" if tenant else "(none)"


def _where(host: str, node: int | None) -> str:
    return host if node is None else f"{host} node {node}"


def _cpus(cpus: Iterable[int]) -> str:
    text = format_cpulist(cpus)
    return text if text else "(none)"


# ----------------------------------------------------------------------------------------------- host models
class _ModelInfo:
    """Per host model facts, computed once per model for the whole plan."""

    def __init__(self, model: HostModel):
        self.model = model
        self.reserved = frozenset(model.reserved_cpus)
        self.node_of_cpu = model.node_of_cpu
        self.core_of_cpu = model.core_of_cpu
        self.physical_cores = len(model.cores)
        self.node_ids = tuple(n.id for n in model.nodes)
        self.node_cpus: dict[int, frozenset[int]] = {}
        self.node_base: dict[int, frozenset[int]] = {}
        self.node_base_cores: dict[int, Fraction] = {}
        self.holds_cells: dict[int, bool] = {}
        self.free_4k: dict[int, int] = {}
        self.pages: dict[int, dict[int, int]] = {}
        for node in model.nodes:
            cpus = frozenset(node.cpus)
            base = cpus - self.reserved
            self.node_cpus[node.id] = cpus
            self.node_base[node.id] = base
            self.node_base_cores[node.id] = self.cores_of(base)
            self.holds_cells[node.id] = bool(node.cpus) and node.memory_kib > 0
            self.free_4k[node.id] = model.free_4k_kib(node)
            self.pages[node.id] = dict(node.hugepages)

    def cores_of(self, cpus: Iterable[int]) -> Fraction:
        """Physical cores of a set of CPUs: Σ over cores of |core ∩ set| / |core|."""
        by_size: dict[int, int] = defaultdict(int)
        core_of = self.core_of_cpu
        for c in cpus:
            core = core_of.get(c)
            by_size[len(core) if core else 1] += 1
        return sum((Fraction(n, size) for size, n in by_size.items()), Fraction(0))


# ----------------------------------------------------------------------------------------------- the checker
class _Checker:
    def __init__(self, plan: Plan):
        self.plan = plan
        self.scenario = plan.scenario
        self.policy = plan.scenario.policy
        self.violations: list[Violation] = []
        self.usage: dict[str, dict[int, NodeUsage]] = {}
        self._models: dict[int, _ModelInfo] = {}

    def add(self, rule: str, guest: str | None, host: str | None, node: int | None, message: str) -> None:
        self.violations.append(Violation(rule, guest, host, node, message))

    def model_info(self, model: HostModel) -> _ModelInfo:
        info = self._models.get(id(model))
        if info is None:
            info = self._models[id(model)] = _ModelInfo(model)
        return info

    # ------------------------------------------------------------------------------------------- whole plan
    def run(self) -> None:
        scenario = self.scenario
        guests = scenario.guest_by_name
        hosts = scenario.host_by_name
        placements = self.plan.placed
        unplaced = self.plan.unplaced_reasons

        by_host: dict[str, list[tuple[Guest, GuestPlacement]]] = {h.name: [] for h in scenario.hosts}
        for name, p in placements.items():
            guest = guests.get(name)
            if guest is None:
                self.add("coverage", name, p.host, None, f"{name} is placed on {p.host} but is not a guest of the scenario")
                continue
            if p.guest != name:
                self.add(
                    "coverage", name, p.host, None,
                    f"the placement filed under {name} names guest {p.guest!r}",
                )
            if p.host not in hosts:
                self.add("coverage", name, p.host, None, f"{name} is placed on {p.host}, which is not a host of the scenario")
                continue
            if name in unplaced:
                self.add("coverage", name, p.host, None, f"{name} is both placed on {p.host} and listed unplaced")
            by_host[p.host].append((guest, p))
        for name, reason in unplaced.items():
            if name not in guests:
                self.add("coverage", name, None, None, f"{name} is listed unplaced but is not a guest of the scenario")
            elif not isinstance(reason, str) or not reason.strip():
                self.add("coverage", name, None, None, f"{name} is unplaced without a reason")
        missing = 0
        for g in scenario.guests:
            if g.name not in placements:
                missing += 1
                if g.name not in unplaced:
                    self.add("coverage", g.name, None, None, f"{g.name} is neither placed nor listed unplaced")

        status = self.plan.status
        if status not in ("optimal", "feasible", "partial"):
            self.add("status", None, None, None, f"plan status {status!r} is not one of optimal, feasible, partial")
        elif missing and status != "partial":
            self.add("status", None, None, None, f"plan status is {status!r} but {missing} guest(s) are not placed: it must be 'partial'")
        elif not missing and status == "partial":
            self.add("status", None, None, None, "plan status is 'partial' but every guest is placed: it must be 'optimal' or 'feasible'")

        self.check_placement(by_host)
        self.check_tenancy(by_host)
        for h in scenario.hosts:
            self.check_host(h.name, by_host[h.name])

    def check_placement(self, by_host: dict[str, list[tuple[Guest, GuestPlacement]]]) -> None:
        order = {g.name: i for i, g in enumerate(self.scenario.guests)}
        tags: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
        for host, entries in by_host.items():
            for guest, _p in entries:
                if guest.host is not None and guest.host != host:
                    self.add("placement", guest.name, host, None, f"{guest.name} is fixed to host {guest.host} but is placed on {host}")
                if guest.anti_affinity and host in self.scenario.host_by_name:
                    # the tag's failure domain: the host, or its rack / zone (anti_affinity_scope)
                    domain = self.scenario.host_by_name[host].domain(self.scenario.scope_of(guest))
                    for tag in guest.anti_affinity:
                        tags[(tag, domain)].append((guest.name, host))
        for (tag, domain), entries in tags.items():
            if len(entries) > 1:
                entries.sort(key=lambda e: order[e[0]])
                for name, host in entries[1:]:
                    where = host if domain == f"host {host}" else f"{host} ({domain})"
                    others = ", ".join(f"{n}" if domain == f"host {host}" else f"{n} on {h}"
                                       for n, h in entries if n != name)
                    self.add("placement", name, host, None,
                             f"anti-affinity tag '{tag}': {name} is on {where} with {others}")

    def check_tenancy(self, by_host: dict[str, list[tuple[Guest, GuestPlacement]]]) -> None:
        """No host / node / physical core serves two tenants, per ``policy.tenant_isolation``."""
        level = self.policy.tenant_isolation
        if level == "none":
            return
        for host, entries in by_host.items():
            model = self.scenario.model_of(host)
            seen: dict[object, tuple[str, str]] = {}  # unit -> (tenant, first guest)
            for guest, p in entries:
                tenant = guest.tenant if guest.tenant is not None else ""
                if level == "host":
                    units: list[tuple[object, str]] = [(None, host)]
                elif level == "node":
                    units = [(c.node_id, f"node {c.node_id} of {host}") for c in p.cells]
                else:
                    cores = {model.core_of_cpu.get(cpu, (cpu,)) for pins in p.vcpu_pins for cpu in pins}
                    units = [(core, f"core {_cpus(core)} of {host}") for core in sorted(cores)]
                for unit, label in units:
                    first = seen.setdefault(unit, (tenant, guest.name))
                    if first[0] != tenant:
                        node = unit if level == "node" else None
                        self.add("tenancy", guest.name, host, node,
                                 f"tenant isolation ({level}): {label} serves {first[1]} of tenant "
                                 f"{_tenant(first[0])} and {guest.name} of tenant {_tenant(tenant)}")
                        break

    # ------------------------------------------------------------------------------------------- cells
    def check_cells(self, host: str, info: _ModelInfo, guest: Guest, p: GuestPlacement) -> list[int | None]:
        """Checks the guest's cells; returns the host node of each vCPU (None where no usable cell holds it)."""
        name = guest.name
        vcpus = guest.vcpus
        vnode: list[int | None] = [None] * max(vcpus, len(p.vcpu_pins))
        cells = p.cells
        if len(p.vcpu_pins) != vcpus:
            self.add("cells", name, host, None, f"{name} on {host} has {len(p.vcpu_pins)} vCPU pin sets for {vcpus} vCPUs")
        if not cells:
            self.add("cells", name, host, None, f"{name} on {host} has no guest NUMA cell")
            return vnode
        if guest.numa is not None and len(cells) != guest.numa:
            self.add("cells", name, host, None, f"{name} on {host} has {len(cells)} cells, but numa: {guest.numa} asks for {guest.numa}")
        require = guest.dedicated and guest.threads == "require"
        page = guest.hugepage_kib
        unit = page or MIB_KIB
        seen_nodes: set[int] = set()
        start = 0
        counts: list[int] = []
        memories: list[int] = []
        for i, cell in enumerate(cells):
            node = cell.node_id
            page = guest.hugepage_kib if cell.hugepage_kib < 0 else (cell.hugepage_kib or None)  # audited domains
            if cell.cell_id != i:
                self.add("cells", name, host, node, f"{name} on {host} node {node}: cell #{i} has id {cell.cell_id}, expected {i} (ids 0..k-1 in order)")
            usable = True
            if node not in info.holds_cells:
                self.add("cells", name, host, node, f"{name} cell {i} is on node {node}, which {host} does not have")
                usable = False
            elif not info.holds_cells[node]:
                self.add("cells", name, host, node, f"{name} cell {i} is on {host} node {node}, which has no CPUs or no memory and holds no guest cell")
            if node in seen_nodes:
                self.add("cells", name, host, node, f"{name} has two cells on {host} node {node}; the cells of a guest go to distinct nodes")
            seen_nodes.add(node)
            vs = cell.vcpus
            n = len(vs)
            counts.append(n)
            memories.append(cell.memory_kib)
            if n == 0:
                self.add("cells", name, host, node, f"{name} cell {i} on {host} node {node} holds no vCPU")
            elif vs != tuple(range(start, start + n)):
                self.add(
                    "cells", name, host, node,
                    f"{name} cell {i} on {host} node {node} holds vCPUs {list(vs)}, expected the contiguous range "
                    f"{start}-{start + n - 1} (cells hold contiguous vCPU ranges in order, cell 0 from vCPU 0)",
                )
            elif require and (n % 2 or start % 2):
                self.add("cells", name, host, node, f"{name} (threads: require) cell {i} on {host} node {node} holds {_vlist(vs)}, not whole pairs")
            if cell.memory_kib <= 0:
                self.add("cells", name, host, node, f"{name} cell {i} on {host} node {node} has memory {cell.memory_kib} KiB")
            elif page and cell.memory_kib % page:
                self.add(
                    "cells", name, host, node,
                    f"{name} cell {i} on {host} node {node} has {format_memory(cell.memory_kib)}, not a whole number of {format_page(page)} pages",
                )
            if usable:
                for v in vs:
                    if 0 <= v < len(vnode):
                        vnode[v] = node
            start += n
        all_vcpus = [v for cell in cells for v in cell.vcpus]
        if sorted(all_vcpus) != list(range(vcpus)):  # (a wrong order is told per cell above)
            self.add(
                "cells", name, host, None,
                f"{name} on {host}: its cells hold {len(all_vcpus)} vCPU ids ({format_cpulist(all_vcpus) or 'none'}), "
                f"not exactly vCPUs 0-{vcpus - 1}",
            )
        total = sum(memories)
        if total != guest.memory_kib:
            self.add(
                "cells", name, host, None,
                f"{name} on {host}: cell memory sums to {total} KiB ({format_memory(total)}), "
                f"not the guest's {guest.memory_kib} KiB ({format_memory(guest.memory_kib)})",
            )
        if guest.numa_cells:  # explicit cells: exactly the listed sizes, in order (no evenness rule)
            self._check_explicit_cells(host, guest, counts, memories)
            return vnode
        spread = 2 if require else 1
        if max(counts) - min(counts) > spread:
            self.add(
                "cells", name, host, None,
                f"{name} on {host}: cells hold {counts} vCPUs, which differ by {max(counts) - min(counts)} (at most {spread}; "
                "uneven cells must be listed: numa: [{vcpus: N, memory: SIZE}, ...])",
            )
        if max(memories) - min(memories) > unit:
            self.add(
                "cells", name, host, None,
                f"{name} on {host}: cell memories {memories} KiB differ by {max(memories) - min(memories)} KiB, "
                f"more than one unit ({unit} KiB)",
            )
        return vnode

    def _check_explicit_cells(self, host: str, guest: Guest, counts: list[int], memories: list[int]) -> None:
        """A guest with ``numa: [{vcpus, memory}, ...]``: cell i holds exactly the listed vCPUs and memory."""
        name = guest.name
        want_vcpus = [c.vcpus for c in guest.numa_cells]
        want_kib = [c.memory_kib for c in guest.numa_cells]
        if len(counts) != len(want_vcpus):
            return  # told above (numa asks for another cell count)
        for i, (n, want) in enumerate(zip(counts, want_vcpus)):
            if n != want:
                self.add("cells", name, host, None,
                         f"{name} on {host}: cell {i} holds {n} vCPUs, but its numa cell {i} lists {want}")
        for i, (kib, want) in enumerate(zip(memories, want_kib)):
            if kib != want:
                self.add("cells", name, host, None,
                         f"{name} on {host}: cell {i} has {kib} KiB ({format_memory(kib)}), but its numa cell {i} "
                         f"lists {want} KiB ({format_memory(want)})")

    # ------------------------------------------------------------------------------------------- one host
    def check_host(self, host: str, entries: list[tuple[Guest, GuestPlacement]]) -> None:
        model = self.scenario.model_of(host)
        info = self.model_info(model)
        reserved = info.reserved
        node_of_cpu = info.node_of_cpu
        core_of_cpu = info.core_of_cpu
        add = self.add

        ded_users: dict[int, list[tuple[str, int]]] = defaultdict(list)  # CPU -> dedicated (guest, vCPU)
        shared_groups: dict[tuple[tuple[int, ...], int | None], list[tuple[str, list[int]]]] = defaultdict(list)
        emu_groups: dict[tuple[int, ...], list[str]] = defaultdict(list)
        isolate_guests: list[tuple[Guest, list[tuple[int, int]]]] = []  # guest, [(vCPU, CPU)]
        require_guests: list[tuple[Guest, GuestPlacement]] = []
        emu_iso_owner: dict[int, str] = {}
        cell0_node: dict[str, int] = {}
        guest_nodes: dict[str, tuple[int, ...]] = {}

        shared_vcpus: dict[int, int] = defaultdict(int)
        shared_load_by: dict[int, dict[Fraction, int]] = defaultdict(lambda: defaultdict(int))
        dedicated_vcpus: dict[int, int] = defaultdict(int)
        mem_4k: dict[int, int] = defaultdict(int)
        mem_4k_dedicated: dict[int, int] = defaultdict(int)
        pages_used: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        mem_users: dict[int, list[str]] = defaultdict(list)
        host_vcpus = 0

        # pass 1: cells, per-vCPU facts, resource totals
        for guest, p in entries:
            name = guest.name
            host_vcpus += guest.vcpus
            vnode = self.check_cells(host, info, guest, p)
            nodes = tuple(c.node_id for c in p.cells if c.node_id in info.holds_cells)
            guest_nodes[name] = nodes
            if p.cells:
                cell0_node[name] = p.cells[0].node_id
            page = guest.hugepage_kib
            for cell in p.cells:
                node = cell.node_id
                if node not in info.holds_cells:
                    continue
                page = guest.hugepage_kib if cell.hugepage_kib < 0 else (cell.hugepage_kib or None)  # audited domains
                n = len(cell.vcpus)
                if guest.dedicated:
                    dedicated_vcpus[node] += n
                else:
                    shared_vcpus[node] += n
                    shared_load_by[node][guest.load] += n
                if page:
                    pages_used[node][page] += -(-cell.memory_kib // page)
                else:
                    mem_4k[node] += cell.memory_kib
                    if guest.dedicated:
                        mem_4k_dedicated[node] += cell.memory_kib
                    if cell.memory_kib > info.free_4k[node]:
                        self.add(
                            "memory", name, host, node,
                            f"{name} cell {cell.cell_id} on {host} node {node} has {format_memory(cell.memory_kib)} of 4K "
                            f"memory, above the node's free {format_memory(info.free_4k[node])} (memory_overcommit never "
                            "applies inside one guest)",
                        )
                mem_users[node].append(name)

            pins_all = p.vcpu_pins
            if guest.dedicated:
                singles: list[tuple[int, int]] = []
                for v, pins in enumerate(pins_all):
                    node = vnode[v] if v < len(vnode) else None
                    if len(pins) != 1:
                        add(
                            "cpus", name, host, node,
                            f"{_where(host, node)}: dedicated {name} vCPU {v} is pinned to {_cpus(pins)}, "
                            "not to exactly one CPU",
                        )
                    for c in pins:
                        if c in reserved:
                            add("cpus", name, host, node, f"{_where(host, node)}: {name} vCPU {v} is pinned to reserved CPU {c}")
                            continue
                        if node is not None and c not in info.node_cpus[node]:
                            add(
                                "cpus", name, host, node,
                                f"{_where(host, node)}: {name} vCPU {v} is pinned to CPU {c}, which is not a CPU of node {node}"
                                + ("" if c in node_of_cpu else f" (nor of {host})"),
                            )
                        if c in node_of_cpu:
                            ded_users[c].append((name, v))
                    if len(pins) == 1 and pins[0] in node_of_cpu:
                        singles.append((v, pins[0]))
                if guest.threads == "isolate":
                    isolate_guests.append((guest, singles))
                elif guest.threads == "require":
                    require_guests.append((guest, p))
            else:
                local: dict[tuple[tuple[int, ...], int | None], list[int]] = {}
                for v, pins in enumerate(pins_all):
                    key = (pins, vnode[v] if v < len(vnode) else None)
                    got = local.get(key)
                    if got is None:
                        local[key] = [v]
                    else:
                        got.append(v)
                for key, vs in local.items():
                    shared_groups[key].append((name, vs))

            emu = p.emulator_pins
            emu_groups[emu].append(name)
            if guest.emulator == "isolate":
                for c in emu:
                    if c in node_of_cpu and c not in reserved:
                        emu_iso_owner.setdefault(c, name)

        # the exclusive CPUs and the shared pools
        idle_owner: dict[int, tuple[str, int, int]] = {}  # sibling CPU -> (isolate guest, vCPU, its CPU)
        for guest, singles in isolate_guests:
            for v, c in singles:
                for s in core_of_cpu.get(c, (c,)):
                    if s != c:
                        idle_owner.setdefault(s, (guest.name, v, c))
        removed: dict[int, set[int]] = defaultdict(set)
        for source in (ded_users, idle_owner, emu_iso_owner):
            for c in source:
                node = node_of_cpu.get(c)
                if node is not None:
                    removed[node].add(c)
        pools: dict[int, frozenset[int]] = {}
        pool_cores: dict[int, Fraction] = {}
        for node in info.node_ids:
            base = info.node_base[node]
            gone = removed.get(node)
            if gone:
                gone_in_base = gone & base
                pools[node] = base - gone_in_base
                pool_cores[node] = info.node_base_cores[node] - info.cores_of(gone_in_base)
            else:
                pools[node] = base
                pool_cores[node] = info.node_base_cores[node]

        def owner_text(c: int) -> str:
            if c in reserved:
                return f"CPU {c} is reserved"
            if c in ded_users:
                g, v = ded_users[c][0]
                return f"CPU {c} is dedicated to {g} vCPU {v}"
            if c in idle_owner:
                g, v, core_cpu = idle_owner[c]
                return f"CPU {c} is the idle sibling of {g} vCPU {v} (threads: isolate, on CPU {core_cpu})"
            if c in emu_iso_owner:
                return f"CPU {c} is the emulator CPU of {emu_iso_owner[c]} (emulator: isolate)"
            if c not in node_of_cpu:
                return f"CPU {c} is not a CPU of {host}"
            return f"CPU {c} is on node {node_of_cpu[c]}"

        # pass 2a: dedicated pCPUs serve one vCPU of one guest
        for c, users in ded_users.items():
            if len(users) > 1:
                node = node_of_cpu.get(c)
                text = ", ".join(f"{g} vCPU {v}" for g, v in users)
                for g in dict.fromkeys(g for g, _ in users):
                    add("cpus", g, host, node, f"{_where(host, node)}: CPU {c} is a dedicated pCPU of {g} but serves {len(users)} vCPUs: {text}")

        # pass 2b: shared vCPUs within their node's pool
        for (pins, node), users in shared_groups.items():
            if not pins:
                for g, vs in users:
                    add("cpus", g, host, node, f"{_where(host, node)}: {g} {_vlist(vs)} {_isare(vs)} pinned to no CPU")
                continue
            pinset = frozenset(pins)
            if node is not None and pinset <= pools[node]:
                continue
            if node is not None:
                outside = sorted(pinset - pools[node])
                reasons = "; ".join(owner_text(c) for c in outside[:4]) + ("; ..." if len(outside) > 4 else "")
                for g, vs in users:
                    add(
                        "cpus", g, host, node,
                        f"{_where(host, node)}: shared {g} {_vlist(vs)} {_isare(vs)} pinned to {_cpus(pins)}, but "
                        f"{_are(outside)} outside the node's shared pool {_cpus(pools[node])} ({reasons})",
                    )
            # the owners of exclusive CPUs are told too
            who = "; ".join(f"{g} {_vlist(vs)}" for g, vs in users)
            for c in sorted(pinset):
                if c in ded_users:
                    for g, v in ded_users[c]:
                        add("cpus", g, host, node_of_cpu.get(c), f"{_where(host, node_of_cpu.get(c))}: CPU {c}, dedicated to {g} vCPU {v}, also serves shared {who}")
                if c in idle_owner:
                    g, v, core_cpu = idle_owner[c]
                    add(
                        "threads", g, host, node_of_cpu.get(c),
                        f"{_where(host, node_of_cpu.get(c))}: CPU {c}, the idle sibling of {g} vCPU {v} (threads: isolate, on CPU {core_cpu}), serves shared {who}",
                    )
                if c in emu_iso_owner:
                    g = emu_iso_owner[c]
                    add("emulator", g, host, node_of_cpu.get(c), f"{_where(host, node_of_cpu.get(c))}: CPU {c}, the emulator CPU of {g} (emulator: isolate), serves shared {who}")

        # pass 2c: threads
        for guest, singles in isolate_guests:
            g = guest.name
            cores_seen: dict[tuple[int, ...], int] = {}
            for v, c in singles:
                core = core_of_cpu.get(c, (c,))
                node = node_of_cpu.get(c)
                if core in cores_seen:
                    add(
                        "threads", g, host, node,
                        f"{_where(host, node)}: {g} (threads: isolate) has vCPUs {cores_seen[core]} and {v} on one core {_cpus(core)}",
                    )
                    continue
                cores_seen[core] = v
                for s in core:
                    if s == c:
                        continue
                    for og, ov in ded_users.get(s, ()):
                        if og == g and core_of_cpu.get(s, (s,)) in cores_seen:
                            continue  # reported as two vCPUs on one core
                        add(
                            "threads", g, host, node,
                            f"{_where(host, node)}: {g} vCPU {v} (threads: isolate) is on CPU {c}, whose sibling {s} serves {og} vCPU {ov}",
                        )
        for guest, p in require_guests:
            g = guest.name
            pins_all = p.vcpu_pins
            if guest.vcpus % 2:
                add("threads", g, host, None, f"{g} on {host} (threads: require) has {guest.vcpus} vCPUs, not an even number")
            for v in range(0, len(pins_all) - 1, 2):
                a, b = pins_all[v], pins_all[v + 1]
                if len(a) != 1 or len(b) != 1:
                    continue  # reported by 'cpus'
                ca, cb = a[0], b[0]
                node = node_of_cpu.get(ca)
                core = core_of_cpu.get(ca)
                if ca == cb or core is None or cb not in core:
                    add(
                        "threads", g, host, node,
                        f"{_where(host, node)}: {g} (threads: require) vCPUs {v} and {v + 1} are on CPUs {ca} and {cb}, "
                        "not two threads of one core",
                    )

        # pass 2d: emulators
        shared_pool_cache: dict[tuple[tuple[int, ...], tuple[int, ...]], list[int]] = {}
        emu_users_of_iso: dict[int, list[str]] = defaultdict(list)
        guest_by_name = self.scenario.guest_by_name
        for pins, names in emu_groups.items():
            for c in pins:
                if c in ded_users:
                    dg, dv = ded_users[c][0]
                    for g in names:
                        add(
                            "emulator", g, host, node_of_cpu.get(c),
                            f"{_where(host, node_of_cpu.get(c))}: the emulator of {g} is pinned to CPU {c}, a dedicated pCPU of {dg} vCPU {dv}",
                        )
                if c in idle_owner:
                    ig, iv, core_cpu = idle_owner[c]
                    add(
                        "threads", ig, host, node_of_cpu.get(c),
                        f"{_where(host, node_of_cpu.get(c))}: CPU {c}, the idle sibling of {ig} vCPU {iv} (threads: isolate, on CPU {core_cpu}), "
                        f"serves the emulator of {', '.join(names)}",
                    )
                if c in emu_iso_owner:
                    emu_users_of_iso[c].extend(names)
            for g in names:
                guest = guest_by_name[g]
                emu_policy = guest.emulator
                nodes = guest_nodes[g]
                if not pins:
                    add("emulator", g, host, None, f"{g} on {host} has no emulator pins")
                    continue
                if emu_policy == "host" and reserved:
                    if frozenset(pins) != reserved:
                        add(
                            "emulator", g, host, None,
                            f"{host}: {g} (emulator: host) has its emulator on {_cpus(pins)}, not on the host's reserved CPUs {_cpus(reserved)}",
                        )
                elif emu_policy == "isolate":
                    node0 = cell0_node.get(g)
                    if len(pins) != 1:
                        add("emulator", g, host, node0, f"{_where(host, node0)}: {g} (emulator: isolate) has its emulator on {_cpus(pins)}, not on exactly one CPU")
                        continue
                    c = pins[0]
                    node = node_of_cpu.get(c)
                    if c in reserved:
                        add("emulator", g, host, node, f"{_where(host, node)}: {g} (emulator: isolate) has its emulator on reserved CPU {c}")
                    if node != node0:
                        where = f"node {node}" if node is not None else f"no node of {host}"
                        add(
                            "emulator", g, host, node0,
                            f"{_where(host, node0)}: {g} (emulator: isolate) has its emulator on CPU {c}, on {where}, not on node {node0} of its cell 0",
                        )
                    if c in idle_owner:
                        ig, iv, core_cpu = idle_owner[c]
                        add(
                            "emulator", g, host, node,
                            f"{_where(host, node)}: {g} (emulator: isolate) has its emulator on CPU {c}, the idle sibling of {ig} vCPU {iv} (threads: isolate)",
                        )
                else:  # shared, or host on a host without reserved CPUs
                    key = (pins, nodes)
                    outside = shared_pool_cache.get(key)
                    if outside is None:
                        allowed = frozenset().union(*(pools[n] for n in nodes)) if nodes else frozenset()
                        outside = shared_pool_cache[key] = sorted(frozenset(pins) - allowed)
                    if outside:
                        reasons = "; ".join(owner_text(c) for c in outside[:4]) + ("; ..." if len(outside) > 4 else "")
                        add(
                            "emulator", g, host, None,
                            f"{host}: {g} (emulator: {emu_policy}) has its emulator on {_cpus(pins)}, but {_are(outside)} outside "
                            f"the shared pools of its nodes {', '.join(map(str, nodes)) or '(none)'} ({reasons})",
                        )
        # an isolate emulator CPU serves no vCPU (dedicated ones: told above as an emulator on a dedicated pCPU;
        # shared ones: in pass 2b) and no other guest's emulator
        for c, owner in emu_iso_owner.items():
            node = node_of_cpu.get(c)
            others = [g for g in emu_users_of_iso.get(c, ()) if g != owner]
            if others:
                add(
                    "emulator", owner, host, node,
                    f"{_where(host, node)}: CPU {c}, the emulator CPU of {owner} (emulator: isolate), also serves the emulator of {', '.join(others)}",
                )

        # pass 3: overcommit, load, memory, hugepages
        policy = self.policy
        cap = policy.cpu_overcommit_max
        if host_vcpus > cap * info.physical_cores:
            add(
                "overcommit", None, host, None,
                f"{host}: {host_vcpus} vCPUs on {info.physical_cores} physical cores, above "
                f"{_num(cap)} x {info.physical_cores} = {_num(cap * info.physical_cores)}",
            )
        usage: dict[int, NodeUsage] = {}
        target = policy.cpu_load_target
        ded_by_node: dict[int, list[int]] = defaultdict(list)
        idle_by_node: dict[int, list[int]] = defaultdict(list)
        emu_by_node: dict[int, list[int]] = defaultdict(list)
        for c in ded_users:
            ded_by_node[node_of_cpu[c]].append(c)
        for c in idle_owner:
            if c in node_of_cpu and c not in reserved and c not in ded_users:
                idle_by_node[node_of_cpu[c]].append(c)
        for c in emu_iso_owner:
            emu_by_node[node_of_cpu[c]].append(c)
        for node in info.node_ids:
            pool = pools[node]
            cores = pool_cores[node]
            svc = shared_vcpus.get(node, 0)
            load = sum((ld * n for ld, n in shared_load_by[node].items()), Fraction(0)) if node in shared_load_by else Fraction(0)
            if svc > cap * cores:
                add(
                    "overcommit", None, host, node,
                    f"{host} node {node}: shared pool {_cpus(pool)} ({_num(cores)} cores) carries {svc} shared vCPUs, "
                    f"above {_num(cap)} x {_num(cores)} = {_num(cap * cores)}",
                )
            if load > target * len(pool):
                add(
                    "load", None, host, node,
                    f"{host} node {node}: shared pool {_cpus(pool)} ({len(pool)} CPUs) carries a load of {_num(load)} "
                    f"(Σ vCPUs × load), above {_num(target)} x {len(pool)} = {_num(target * len(pool))}",
                )
            used = mem_4k.get(node, 0)
            ded_mem = mem_4k_dedicated.get(node, 0)
            ratio = policy.memory_overcommit
            free_4k = info.free_4k[node]
            # dedicated guests' memory counts 1:1, shared guests' is overcommitted: D + S / ratio <= free
            if Fraction(ded_mem) + Fraction(used - ded_mem) / ratio > free_4k:
                if ratio == 1:
                    text = (f"{host} node {node}: guest cells take {used} KiB ({format_memory(used)}) of 4K memory, above the "
                            f"free {free_4k} KiB ({format_memory(free_4k)})")
                else:
                    text = (
                        f"{host} node {node}: guest cells take {format_memory(ded_mem)} of 4K memory for dedicated guests "
                        f"(1:1) and {format_memory(used - ded_mem)} for shared guests (÷ {_num(ratio)} = "
                        f"{format_memory(math.ceil((used - ded_mem) / ratio))}), above the free {free_4k} KiB "
                        f"({format_memory(free_4k)})"
                    )
                add("memory", None, host, node, text)
            capacity = math.floor((free_4k - ded_mem) * ratio) + ded_mem
            pool_pages = info.pages[node]
            used_pages = {size: n for size, n in pages_used.get(node, {}).items() if n > 0}
            free_pages = {size: count for size, count in pool_pages.items()}
            for size, n in sorted(used_pages.items()):
                have = pool_pages.get(size, 0)
                free_pages[size] = have - n
                if n > have:
                    add(
                        "hugepages", None, host, node,
                        f"{host} node {node}: guest cells take {n} {format_page(size)} pages, above the node's pool of {have}",
                    )
            usage[node] = NodeUsage(
                dedicated_cpus=tuple(sorted(ded_by_node.get(node, ()))),
                idle_cpus=tuple(sorted(idle_by_node.get(node, ()))),
                emulator_cpus=tuple(sorted(emu_by_node.get(node, ()))),
                pool_cpus=tuple(sorted(pool)),
                pool_cores=cores,
                shared_vcpus=svc,
                shared_load=load,
                dedicated_vcpus=dedicated_vcpus.get(node, 0),
                memory_4k_used_kib=used,
                memory_4k_free_kib=capacity - used,
                hugepages_used=dict(sorted(used_pages.items())),
                hugepages_free=dict(sorted(free_pages.items())),
            )
        self.usage[host] = usage


def _run(plan: Plan) -> _Checker:
    checker = _Checker(plan)
    checker.run()
    return checker


def check_plan(plan: Plan) -> list[Violation]:
    """Every breach of a hard rule in ``plan``; ``[]`` for a plan that may be written."""
    return _run(plan).violations


def node_usage(plan: Plan) -> dict[str, dict[int, NodeUsage]]:
    """Per host (every host of the scenario, in scenario order), per node id: what the plan takes from the node."""
    return _run(plan).usage


def analyse(plan: Plan) -> tuple[list[Violation], dict[str, dict[int, NodeUsage]]]:
    """``check_plan`` and ``node_usage`` in one pass (for writers that need both)."""
    checker = _run(plan)
    return checker.violations, checker.usage


def explain(violations: list[Violation]) -> str:
    """The violations as lines of text (for error messages and logs)."""
    return "\n".join(str(v) for v in violations)


def check_evacuations(plan: Plan) -> list[Violation]:
    """Every breach in the plan's evacuations (``policy.survive``): per failure, the bookkeeping (every guest of a
    failed host moved or stranded, none moved onto a failed host, re-pinned guests keep their host) and every hard
    rule of the evacuated fleet (``Plan.evacuated``), each message prefixed with the failure."""
    out: list[Violation] = []
    for e in plan.evacuations:
        failed = set(e.failed_hosts)
        what = f"after {e.kind} {e.name} fails"
        unknown = sorted(failed - set(plan.scenario.host_by_name))
        for host in unknown:
            out.append(Violation("evacuation", None, host, None, f"{what}: {host} is not a host of the scenario"))
        on_failed = {n for n, p in plan.placed.items() if p.host in failed}
        for name in sorted(on_failed - set(e.moved) - set(e.stranded)):
            out.append(Violation("evacuation", name, plan.placed[name].host, None,
                                 f"{what}: {name} was on {plan.placed[name].host} but is neither moved nor stranded"))
        for name in sorted((set(e.moved) | set(e.stranded)) - on_failed):
            out.append(Violation("evacuation", name, None, None,
                                 f"{what}: {name} is moved or stranded but was not on a failed host"))
        for name in sorted(set(e.moved) & set(e.stranded)):
            out.append(Violation("evacuation", name, None, None, f"{what}: {name} is both moved and stranded"))
        for name, reason in e.stranded.items():
            if not str(reason).strip():
                out.append(Violation("evacuation", name, None, None, f"{what}: {name} is stranded without a reason"))
        for name, p in e.moved.items():
            if p.host in failed:
                out.append(Violation("evacuation", name, p.host, None, f"{what}: {name} is moved onto the failed host {p.host}"))
        for name, p in e.repinned.items():
            before = plan.placed.get(name)
            if before is None or before.host != p.host or before.host in failed:
                out.append(Violation("evacuation", name, p.host, None,
                                     f"{what}: {name} is re-pinned on {p.host} but was not a surviving guest there"))
        for v in check_plan(plan.evacuated(e)):
            out.append(Violation(v.rule, v.guest, v.host, v.node, f"{what}: {v.message}"))
    return out
