"""What a plan takes from every host and node, computed once per plan from its concrete facts.

The checker's rules (``planner.verify.rules``) judge these figures, and ``planner.analysis.frames`` and plan.json
show them (``NodeUsage``). Everything is recomputed from the guests' cells and pins and the host models' raw
fields, with the checker's own arithmetic (it shares no code with the solver):

* free 4K memory of a node = memory − the host's reserved memory − Σ page size × pages of its hugepage pools
  (a memory-less node keeps 0);
* the shared pool of a node = its CPUs − reserved − dedicated − idle siblings of ``threads: isolate`` vCPUs − CPUs
  of ``emulator: isolate`` guests; its physical cores = Σ over cores of |core ∩ pool| / |core|;
* shared vCPUs and expected load (Σ vCPUs × load) per node, dedicated vCPUs per node;
* 4K memory used per node (cells without hugepages), and left: ⌊(free 4K − dedicated guests' 4K) ×
  memory_overcommit⌋ + dedicated guests' 4K − used; hugepages used per node and page size (⌈cell memory / page⌉).

Everything is exact (integers and ``Fraction``); the plan is indexed by host once.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import NamedTuple

from planner.model.plan import CellPlacement, GuestPlacement, Plan
from planner.model.scenario import Guest, HostModel, Node

MIB_KIB = 1024
Entries = list[tuple[Guest, GuestPlacement]]  # the guests placed on one host, in plan order
PinKey = tuple[tuple[int, ...], int | None]  # (pin set, host node of the vCPUs)


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
    memory_4k_free_kib: int  # ⌊(free 4K − dedicated 4K) × memory_overcommit⌋ + dedicated 4K − used (< 0 when over)
    hugepages_used: Mapping[int, int] = field(default_factory=dict)  # page KiB -> pages used (> 0 only)
    hugepages_free: Mapping[int, int] = field(default_factory=dict)  # page KiB -> pool pages − used


def free_4k_kib(model: HostModel, node: Node) -> int:
    """Node memory left for ordinary (4K) pages: memory − reserved − Σ size × pages of the hugepage pools
    (memory-less nodes keep 0). The checker's own formula, read from the host model's raw fields."""
    if node.memory_kib == 0:
        return 0
    pools_kib = sum(size * count for size, count in node.hugepages.items())
    return node.memory_kib - model.reserved_memory_kib - pools_kib


def cell_page_kib(guest: Guest, cell: CellPlacement) -> int | None:
    """The page size of a cell: the guest's, unless the cell says otherwise (audited domains: 0 is 4K pages)."""
    return guest.hugepage_kib if cell.hugepage_kib < 0 else (cell.hugepage_kib or None)


# ----------------------------------------------------------------------------------------------- host models
@dataclass(frozen=True)
class ModelFacts:
    """Per host model facts, computed once per model for the whole plan."""

    reserved: frozenset[int]
    node_of_cpu: Mapping[int, int]
    core_of_cpu: Mapping[int, tuple[int, ...]]
    physical_cores: int
    node_ids: tuple[int, ...]
    node_cpus: Mapping[int, frozenset[int]]
    node_base: Mapping[int, frozenset[int]]  # CPUs − reserved
    node_base_cores: Mapping[int, Fraction]
    holds_cells: Mapping[int, bool]  # node id -> has CPUs and memory (a node missing here does not exist)
    free_4k_kib: Mapping[int, int]
    pages: Mapping[int, Mapping[int, int]]  # node id -> page KiB -> pool pages

    def cores_of(self, cpus: Iterable[int]) -> Fraction:
        """Physical cores of a set of CPUs (``cores_of``)."""
        return cores_of(self.core_of_cpu, cpus)


def cores_of(core_of_cpu: Mapping[int, tuple[int, ...]], cpus: Iterable[int]) -> Fraction:
    """Physical cores of a set of CPUs: Σ over cores of |core ∩ set| / |core| (a CPU of no core: a core)."""
    by_size: dict[int, int] = defaultdict(int)
    for c in cpus:
        core = core_of_cpu.get(c)
        by_size[len(core) if core else 1] += 1
    return sum((Fraction(n, size) for size, n in by_size.items()), Fraction(0))


def model_facts(model: HostModel) -> ModelFacts:
    """The facts of ``model`` the rules read (free 4K memory by ``free_4k_kib``)."""
    reserved = frozenset(model.reserved_cpus)
    core_of_cpu = model.core_of_cpu
    node_cpus = {n.id: frozenset(n.cpus) for n in model.nodes}
    node_base = {nid: cpus - reserved for nid, cpus in node_cpus.items()}
    return ModelFacts(
        reserved=reserved, node_of_cpu=model.node_of_cpu, core_of_cpu=core_of_cpu, physical_cores=len(model.cores),
        node_ids=tuple(n.id for n in model.nodes), node_cpus=node_cpus, node_base=node_base,
        node_base_cores={nid: cores_of(core_of_cpu, base) for nid, base in node_base.items()},
        holds_cells={n.id: bool(n.cpus) and n.memory_kib > 0 for n in model.nodes},
        free_4k_kib={n.id: free_4k_kib(model, n) for n in model.nodes},
        pages={n.id: dict(n.hugepages) for n in model.nodes},
    )


# ----------------------------------------------------------------------------------------------- guests
class GuestOnHost(NamedTuple):
    """A placed guest with what its cells and pins say (a named tuple: made once per guest, fast)."""

    name: str
    guest: Guest
    placement: GuestPlacement
    vcpu_nodes: tuple[int | None, ...]  # host node of each vCPU (None where no usable cell holds it)
    nodes: tuple[int, ...]  # the existing nodes of its cells, in cell order
    singles: tuple[tuple[int, int], ...]  # ``threads: isolate`` guests: (vCPU, CPU) for vCPUs pinned to one CPU


def vcpu_nodes(facts: ModelFacts, guest: Guest, p: GuestPlacement) -> tuple[int | None, ...]:
    """The host node of each vCPU: the node of the cell holding it, if that node exists (a later cell wins)."""
    vnode: list[int | None] = [None] * max(guest.vcpus, len(p.vcpu_pins))
    for cell in p.cells:
        if cell.node_id in facts.holds_cells:
            for v in cell.vcpus:
                if 0 <= v < len(vnode):
                    vnode[v] = cell.node_id
    return tuple(vnode)


def guest_on_host(facts: ModelFacts, guest: Guest, p: GuestPlacement) -> GuestOnHost:
    singles: tuple[tuple[int, int], ...] = ()
    if guest.dedicated and guest.threads == "isolate":
        singles = tuple((v, pins[0]) for v, pins in enumerate(p.vcpu_pins)
                        if len(pins) == 1 and pins[0] in facts.node_of_cpu)
    nodes = tuple(c.node_id for c in p.cells if c.node_id in facts.holds_cells)
    return GuestOnHost(guest.name, guest, p, vcpu_nodes(facts, guest, p), nodes, singles)


def placed_by_host(plan: Plan) -> dict[str, Entries]:
    """Every host of the scenario (in order) -> its placed guests; placements naming an unknown guest or host are
    left out (the ``coverage`` rule tells them)."""
    scenario = plan.scenario
    guests = scenario.guest_by_name
    by_host: dict[str, Entries] = {h.name: [] for h in scenario.hosts}
    for name, p in plan.placed.items():
        guest = guests.get(name)
        if guest is not None and p.host in by_host:
            by_host[p.host].append((guest, p))
    return by_host


# ----------------------------------------------------------------------------------------------- one host
@dataclass(frozen=True)
class CpuUse:
    """Who holds which CPU of one host."""

    dedicated: Mapping[int, list[tuple[str, int]]]  # CPU -> dedicated (guest, vCPU), every pinned CPU of the host
    shared_groups: Mapping[PinKey, list[tuple[str, list[int]]]]  # (pins, node) -> shared (guest, vCPUs)
    emulator_groups: Mapping[tuple[int, ...], list[str]]  # emulator pins -> guests
    emulator_isolate: Mapping[int, str]  # CPU -> ``emulator: isolate`` guest (first one)
    idle: Mapping[int, tuple[str, int, int]]  # sibling CPU -> (isolate guest, vCPU, its CPU)


def cpu_use(facts: ModelFacts, guests: list[GuestOnHost]) -> CpuUse:
    dedicated: dict[int, list[tuple[str, int]]] = defaultdict(list)
    shared_groups: dict[PinKey, list[tuple[str, list[int]]]] = defaultdict(list)
    emulator_groups: dict[tuple[int, ...], list[str]] = defaultdict(list)
    emulator_isolate: dict[int, str] = {}
    idle: dict[int, tuple[str, int, int]] = {}
    reserved, node_of_cpu = facts.reserved, facts.node_of_cpu
    for g in guests:
        name, placement = g.name, g.placement
        if g.guest.dedicated:
            for v, pins in enumerate(placement.vcpu_pins):
                for c in pins:
                    if c not in reserved and c in node_of_cpu:
                        dedicated[c].append((name, v))
        else:
            local: dict[PinKey, list[int]] = {}
            for v, key in enumerate(zip(placement.vcpu_pins, g.vcpu_nodes, strict=False)):
                got = local.get(key)
                if got is None:
                    local[key] = [v]
                else:
                    got.append(v)
            for key, vs in local.items():
                shared_groups[key].append((name, vs))
        emulator_groups[placement.emulator_pins].append(name)
        if g.guest.emulator == "isolate":
            for c in placement.emulator_pins:
                if c in node_of_cpu and c not in reserved:
                    emulator_isolate.setdefault(c, name)
    for g in guests:
        if g.guest.dedicated and g.guest.threads == "isolate":
            for v, c in g.singles:
                for s in facts.core_of_cpu.get(c, (c,)):
                    if s != c:
                        idle.setdefault(s, (g.name, v, c))
    return CpuUse(dict(dedicated), dict(shared_groups), dict(emulator_groups), emulator_isolate, idle)


def shared_pools(facts: ModelFacts, use: CpuUse) -> tuple[dict[int, frozenset[int]], dict[int, Fraction]]:
    """Per node: the shared pool (CPUs − reserved − exclusive CPUs) and its physical cores."""
    removed: dict[int, set[int]] = defaultdict(set)
    for source in (use.dedicated, use.idle, use.emulator_isolate):
        for c in source:
            node = facts.node_of_cpu.get(c)
            if node is not None:
                removed[node].add(c)
    pools: dict[int, frozenset[int]] = {}
    cores: dict[int, Fraction] = {}
    for node in facts.node_ids:
        base = facts.node_base[node]
        gone = removed.get(node, set()) & base
        pools[node] = base - gone
        cores[node] = facts.node_base_cores[node] - facts.cores_of(gone) if gone else facts.node_base_cores[node]
    return pools, cores


@dataclass
class _Totals:
    """Per node running totals of the cells on one host."""

    shared_vcpus: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    shared_load: dict[int, dict[Fraction, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    dedicated_vcpus: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    memory_4k_kib: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    memory_4k_dedicated_kib: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    pages: dict[int, dict[int, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))

    def add(self, guest: Guest, cell: CellPlacement) -> None:
        node, n = cell.node_id, len(cell.vcpus)
        if guest.dedicated:
            self.dedicated_vcpus[node] += n
        else:
            self.shared_vcpus[node] += n
            self.shared_load[node][guest.load] += n
        page = cell_page_kib(guest, cell)
        if page:
            self.pages[node][page] += -(-cell.memory_kib // page)
        else:
            self.memory_4k_kib[node] += cell.memory_kib
            if guest.dedicated:
                self.memory_4k_dedicated_kib[node] += cell.memory_kib

    def load(self, node: int) -> Fraction:
        if node not in self.shared_load:
            return Fraction(0)
        return sum((load * n for load, n in self.shared_load[node].items()), Fraction(0))


@dataclass(frozen=True)
class HostUsage:
    """One host: its model's facts, its guests, who holds which CPU, and per node what is taken."""

    host: str
    facts: ModelFacts
    guests: tuple[GuestOnHost, ...]
    vcpus: int  # Σ vCPUs of the host's guests
    cpus: CpuUse
    pools: Mapping[int, frozenset[int]]
    nodes: Mapping[int, NodeUsage]  # every node of the model
    memory_4k_dedicated_kib: Mapping[int, int]  # node -> 4K memory of dedicated guests' cells

    def owner_text(self, c: int) -> str:
        """Why CPU ``c`` is not in a shared pool."""
        use = self.cpus
        if c in self.facts.reserved:
            return f"CPU {c} is reserved"
        if c in use.dedicated:
            g, v = use.dedicated[c][0]
            return f"CPU {c} is dedicated to {g} vCPU {v}"
        if c in use.idle:
            g, v, core_cpu = use.idle[c]
            return f"CPU {c} is the idle sibling of {g} vCPU {v} (threads: isolate, on CPU {core_cpu})"
        if c in use.emulator_isolate:
            return f"CPU {c} is the emulator CPU of {use.emulator_isolate[c]} (emulator: isolate)"
        if c not in self.facts.node_of_cpu:
            return f"CPU {c} is not a CPU of {self.host}"
        return f"CPU {c} is on node {self.facts.node_of_cpu[c]}"


def _by_node(cpus: Iterable[int], facts: ModelFacts) -> dict[int, list[int]]:
    out: dict[int, list[int]] = defaultdict(list)
    for c in cpus:
        out[facts.node_of_cpu[c]].append(c)
    return out


def node_usages(facts: ModelFacts, use: CpuUse, totals: _Totals, pools: Mapping[int, frozenset[int]],
                pool_cores: Mapping[int, Fraction], memory_overcommit: Fraction) -> dict[int, NodeUsage]:
    """The ``NodeUsage`` of every node of the host (see the module docstring for the sums)."""
    ded_by_node = _by_node(use.dedicated, facts)
    idle_by_node = _by_node((c for c in use.idle if c in facts.node_of_cpu and c not in facts.reserved
                             and c not in use.dedicated), facts)
    emu_by_node = _by_node(use.emulator_isolate, facts)
    out: dict[int, NodeUsage] = {}
    for node in facts.node_ids:
        used = totals.memory_4k_kib.get(node, 0)
        ded_kib = totals.memory_4k_dedicated_kib.get(node, 0)
        capacity = math.floor((facts.free_4k_kib[node] - ded_kib) * memory_overcommit) + ded_kib
        pool_pages = facts.pages[node]
        used_pages = {size: n for size, n in totals.pages.get(node, {}).items() if n > 0}
        free_pages = dict(pool_pages)
        for size, n in used_pages.items():
            free_pages[size] = pool_pages.get(size, 0) - n
        out[node] = NodeUsage(
            dedicated_cpus=tuple(sorted(ded_by_node.get(node, ()))),
            idle_cpus=tuple(sorted(idle_by_node.get(node, ()))),
            emulator_cpus=tuple(sorted(emu_by_node.get(node, ()))),
            pool_cpus=tuple(sorted(pools[node])),
            pool_cores=pool_cores[node],
            shared_vcpus=totals.shared_vcpus.get(node, 0),
            shared_load=totals.load(node),
            dedicated_vcpus=totals.dedicated_vcpus.get(node, 0),
            memory_4k_used_kib=used,
            memory_4k_free_kib=capacity - used,
            hugepages_used=dict(sorted(used_pages.items())),
            hugepages_free=dict(sorted(free_pages.items())),
        )
    return out


def host_usage(host: str, facts: ModelFacts, entries: Entries, memory_overcommit: Fraction) -> HostUsage:
    """Everything the plan takes from ``host``: the cells of existing nodes count, every pinned CPU of the host
    counts (reserved ones excepted)."""
    guests = [guest_on_host(facts, guest, p) for guest, p in entries]
    totals = _Totals()
    for g in guests:
        for cell in g.placement.cells:
            if cell.node_id in facts.holds_cells:
                totals.add(g.guest, cell)
    use = cpu_use(facts, guests)
    pools, pool_cores = shared_pools(facts, use)
    nodes = node_usages(facts, use, totals, pools, pool_cores, memory_overcommit)
    return HostUsage(host=host, facts=facts, guests=tuple(guests), vcpus=sum(g.guest.vcpus for g in guests),
                     cpus=use, pools=pools, nodes=nodes, memory_4k_dedicated_kib=dict(totals.memory_4k_dedicated_kib))


# ----------------------------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class PlanUsage:
    """Per host (every host of the scenario, in scenario order) what the plan takes from it."""

    hosts: Mapping[str, HostUsage]

    def node_usage(self) -> dict[str, dict[int, NodeUsage]]:
        """Host -> node id -> ``NodeUsage`` (the shape of ``planner.verify.check.node_usage``)."""
        return {host: dict(u.nodes) for host, u in self.hosts.items()}


def plan_usage(plan: Plan) -> PlanUsage:
    """The usage of every host of the plan's scenario; each host model's facts computed once."""
    scenario = plan.scenario
    facts_by_model: dict[int, ModelFacts] = {}
    hosts: dict[str, HostUsage] = {}
    for host, entries in placed_by_host(plan).items():
        model = scenario.model_of(host)
        facts = facts_by_model.get(id(model))
        if facts is None:
            facts = facts_by_model[id(model)] = model_facts(model)
        hosts[host] = host_usage(host, facts, entries, scenario.policy.memory_overcommit)
    return PlanUsage(hosts)


def stray_shared_groups(hu: HostUsage) -> list[tuple[PinKey, list[tuple[str, list[int]]]]]:
    """The shared vCPU groups of ``hu`` pinned to no CPU or not inside their node's shared pool (a group whose node
    is unknown is always stray)."""
    out = []
    for (pins, node), users in hu.cpus.shared_groups.items():
        if pins and node is not None and frozenset(pins) <= hu.pools[node]:
            continue
        out.append(((pins, node), users))
    return out
