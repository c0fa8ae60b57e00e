"""Compiled problem: the scenario turned into integer counts a solver can reason about.

Stage 2 of scenario → problem → model → plan. Nothing here knows about CP-SAT: the greedy planner, the CP-SAT model,
the pinning step and the explanations of unplaced guests all count resources the same way, from these numbers.

Counting rules (per host node), all in integers:

* ``iso``   cores taken whole by ``threads: isolate`` vCPUs (one vCPU per core, the core's other threads idle);
* ``pairs`` pairs of sibling threads taken by ``threads: require`` vCPU pairs;
* ``singles`` logical CPUs taken one by one: ``threads: prefer`` vCPUs and ``emulator: isolate`` pCPUs;
* the shared pool is what is left: ``pool = usable − T·iso − 2·pairs − singles`` where ``usable`` excludes the
  host's reserved CPUs and ``T`` is the node's threads per core. Isolate takes only *full* cores (every thread in the
  node, none reserved), so that no reserved CPU (home of other guests' emulator threads) is a sibling of it.

Every (iso, pairs, singles) that satisfies ``iso ≤ full_cores``, ``pairs + iso·⌊T/2⌋ ≤ pair_slots`` and
``pool ≥ 0`` can be realised with concrete CPU ids (isolate first, then pairs, then singles); ``planner.engine.pinning``
does exactly that, so the pinned plan uses exactly what was counted.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Iterator, Mapping

from planner.model.scenario import Guest, HostModel, Policy, Scenario

LOAD_SCALE = 1000  # loads are counted in thousandths of a CPU, rounded up (never optimistic)
MIB_KIB = 1024


# ----------------------------------------------------------------------------------------------- capacities
@dataclass(frozen=True)
class NodeCap:
    """What one host node offers to guest cells, in the counting rules above."""

    node_id: int
    usable_cpus: int  # node CPUs − reserved
    full_cores: int  # sibling groups wholly in the node with no reserved CPU
    threads_per_core: int  # T: the largest sibling group touching the node
    pair_slots: int  # Σ over cores of ⌊free threads / 2⌋
    pairs_per_full_core: int  # ⌊T / 2⌋
    memory_4k_kib: int  # ⌊free 4K memory × memory_overcommit⌋: what shared guests' cells may take in all
    pages: Mapping[int, int]  # page size KiB -> pool pages
    holds_cells: bool
    free_4k_kib: int = 0  # free 4K memory (memory − reserved − pools): the most one cell takes, and dedicated 1:1

    def pool_cpus(self, iso: int, pairs: int, singles: int) -> int:
        return self.usable_cpus - self.threads_per_core * iso - 2 * pairs - singles


@dataclass(frozen=True)
class ModelCap:
    """A host model's capacity: its nodes plus the host-wide overcommit cap."""

    model: HostModel
    nodes: tuple[NodeCap, ...]
    host_cores: int
    vcpu_cap: int  # ⌊cpu_overcommit_max × physical cores⌋ (reserved cores included)
    usable_cpus: int
    has_reserved: bool

    def node(self, node_id: int) -> NodeCap:
        return self.nodes[self.model.node_index[node_id]]


def model_capacity(model: HostModel, policy: Policy) -> ModelCap:
    reserved = model.reserved_cpus
    nodes = []
    for node in model.nodes:
        cpus = set(node.cpus)
        usable = len(cpus - reserved)
        groups = [core for core in model.cores if cpus.intersection(core)]
        full = [core for core in groups if set(core) <= cpus and not reserved.intersection(core)]
        threads = max((len(core) for core in groups), default=1)
        pair_slots = sum(len(set(core) & cpus - reserved) // 2 for core in groups)
        free_4k = model.free_4k_kib(node)
        mem_cap = math.floor(free_4k * policy.memory_overcommit)
        nodes.append(
            NodeCap(
                node_id=node.id,
                usable_cpus=usable,
                full_cores=len(full),
                threads_per_core=threads,
                pair_slots=pair_slots,
                pairs_per_full_core=max((len(core) // 2 for core in full), default=0),
                memory_4k_kib=max(mem_cap, 0),
                pages=dict(node.hugepages),
                holds_cells=usable > 0 and node.memory_kib > 0,
                free_4k_kib=max(free_4k, 0),
            )
        )
    host_cores = len(model.cores)
    return ModelCap(
        model=model,
        nodes=tuple(nodes),
        host_cores=host_cores,
        vcpu_cap=math.floor(policy.cpu_overcommit_max * host_cores),
        usable_cpus=sum(n.usable_cpus for n in nodes),
        has_reserved=bool(reserved),
    )


# ----------------------------------------------------------------------------------------------- demands
@dataclass(frozen=True)
class CellDemand:
    """What one guest cell takes from the node it lands on."""

    vcpus: tuple[int, ...]  # guest vCPU ids of the cell
    memory_kib: int
    iso: int = 0
    pairs: int = 0
    singles: int = 0
    shared_vcpus: int = 0
    shared_load: int = 0  # Σ vCPU × load, in LOAD_SCALE units, rounded up
    memory_4k_kib: int = 0
    page_kib: int | None = None
    pages: int = 0
    needs_pool: bool = False  # the guest's emulator floats on this node's shared pool
    memory_4k_dedicated_kib: int = 0  # the part of memory_4k_kib that counts 1:1 (cpu: dedicated guests)


@dataclass(frozen=True)
class Option:
    """One way to put a guest on a host model: the host node of each cell, in cell order."""

    nodes: tuple[int, ...]
    cells: tuple[CellDemand, ...]
    distance_cost: int  # Σ over cell pairs of the host distance between their nodes (0 for one cell)


def split_cells(guest: Guest, cells: int) -> list[tuple[tuple[int, ...], int]] | None:
    """The vCPU ids and memory (KiB) of each of ``cells`` guest cells; None if the guest cannot have that many.

    vCPUs: contiguous ranges, larger cells first, sizes differing by at most one (``require``: whole pairs, by at most
    two). Memory: whole units (the hugepage size, else 1 MiB), larger first, differing by at most one unit; a
    remainder smaller than a MiB goes to the last cell. Explicit cells (``numa: [{vcpus, memory}, ...]``) keep their
    sizes in order: cell i the next ``vcpus`` vCPU ids and its own memory (only ``cells == len(numa_cells)``)."""
    if guest.numa_cells:
        if cells != len(guest.numa_cells):
            return None
        out, start = [], 0
        for cell in guest.numa_cells:
            out.append((tuple(range(start, start + cell.vcpus)), cell.memory_kib))
            start += cell.vcpus
        return out
    pair = 2 if guest.threads == "require" else 1
    blocks = guest.vcpus // pair
    if cells < 1 or blocks < cells:
        return None
    unit = guest.hugepage_kib or MIB_KIB
    units, rest = divmod(guest.memory_kib, unit)
    if units < cells:
        return None
    sizes = [(blocks // cells + (i < blocks % cells)) * pair for i in range(cells)]
    memories = [(units // cells + (i < units % cells)) * unit for i in range(cells)]
    memories[-1] += rest
    out, start = [], 0
    for size, memory in zip(sizes, memories):
        out.append((tuple(range(start, start + size)), memory))
        start += size
    return out


def node_orders(nodes: list[NodeCap], guest: Guest, cells: int) -> Iterator[tuple[NodeCap, ...]]:
    """The ways to give ``cells`` cells of the guest distinct nodes, as node tuples in cell order. Cells the
    scenario split evenly are alike enough that the node subsets (in order) do; explicit cells of different sizes
    make the order matter: every arrangement, once per distinct (cell size -> node) mapping."""
    if not guest.numa_cells or len({(c.vcpus, c.memory_kib) for c in guest.numa_cells}) == 1:
        yield from itertools.combinations(nodes, cells)
        return
    sizes = [(c.vcpus, c.memory_kib) for c in guest.numa_cells]
    for combo in itertools.combinations(nodes, cells):
        seen: set[tuple] = set()
        for order in itertools.permutations(combo):
            key = tuple(sorted((size, node.node_id) for size, node in zip(sizes, order)))
            if key not in seen:
                seen.add(key)
                yield order


def load_units(vcpus: int, load: Fraction) -> int:
    return math.ceil(vcpus * load * LOAD_SCALE)


def cell_demands(guest: Guest, split: list[tuple[tuple[int, ...], int]], cap: ModelCap) -> tuple[CellDemand, ...]:
    out = []
    emulator_floats = guest.emulator == "shared" or (guest.emulator == "host" and not cap.has_reserved)
    for index, (vcpus, memory) in enumerate(split):
        n = len(vcpus)
        demand = dict(vcpus=vcpus, memory_kib=memory)
        if guest.dedicated:
            if guest.threads == "isolate":
                demand["iso"] = n
            elif guest.threads == "require":
                demand["pairs"] = n // 2
            else:
                demand["singles"] = n
            if index == 0 and guest.emulator == "isolate":
                demand["singles"] = demand.get("singles", 0) + 1
            if index == 0 and emulator_floats:
                demand["needs_pool"] = True
        else:
            demand["shared_vcpus"] = n
            demand["shared_load"] = load_units(n, guest.load)
            if index == 0 and guest.emulator == "isolate":
                demand["singles"] = 1
        if guest.hugepage_kib:
            demand["page_kib"] = guest.hugepage_kib
            demand["pages"] = memory // guest.hugepage_kib
        else:
            demand["memory_4k_kib"] = memory
            if guest.dedicated:
                demand["memory_4k_dedicated_kib"] = memory
        out.append(CellDemand(**demand))
    return tuple(out)


# ----------------------------------------------------------------------------------------------- node totals
@dataclass
class NodeTotals:
    """Running totals of the cells on one node (used by the greedy planner and the explanations)."""

    iso: int = 0
    pairs: int = 0
    singles: int = 0
    shared_vcpus: int = 0
    shared_load: int = 0
    memory_4k_kib: int = 0
    pages: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    needs_pool: bool = False
    memory_4k_dedicated_kib: int = 0

    def add(self, cell: CellDemand, sign: int = 1) -> None:
        self.iso += sign * cell.iso
        self.pairs += sign * cell.pairs
        self.singles += sign * cell.singles
        self.shared_vcpus += sign * cell.shared_vcpus
        self.shared_load += sign * cell.shared_load
        self.memory_4k_kib += sign * cell.memory_4k_kib
        self.memory_4k_dedicated_kib += sign * cell.memory_4k_dedicated_kib
        if cell.page_kib:
            self.pages[cell.page_kib] += sign * cell.pages
        if sign > 0 and cell.needs_pool:
            self.needs_pool = True


@dataclass(frozen=True)
class Shortfall:
    """One resource a node lacks for a cell: what, how much is needed, how much is free."""

    resource: str
    needed: float
    free: float
    unit: str

    @property
    def missing(self) -> float:
        return self.needed - self.free


def node_shortfalls(cap: NodeCap, totals: NodeTotals, cell: CellDemand, policy: Policy) -> list[Shortfall]:
    """What is missing on the node for ``cell`` on top of ``totals`` (empty list: it fits).

    The same inequalities as the CP-SAT model's node constraints, evaluated on numbers."""
    out: list[Shortfall] = []
    iso = totals.iso + cell.iso
    pairs = totals.pairs + cell.pairs
    singles = totals.singles + cell.singles
    if cell.iso and iso > cap.full_cores:
        out.append(Shortfall("whole free cores (threads=isolate)", cell.iso, cap.full_cores - totals.iso, "cores"))
    if cell.pairs and pairs + iso * cap.pairs_per_full_core > cap.pair_slots:
        free = cap.pair_slots - totals.pairs - iso * cap.pairs_per_full_core
        out.append(Shortfall("free sibling pairs (threads=require)", cell.pairs, free, "pairs"))
    pool = cap.pool_cpus(iso, pairs, singles)
    dedicated_cpus = cap.threads_per_core * cell.iso + 2 * cell.pairs + cell.singles
    if pool < 0 and dedicated_cpus:
        free = cap.pool_cpus(totals.iso, totals.pairs, totals.singles)
        out.append(Shortfall("free CPUs for dedicated vCPUs", dedicated_cpus, free, "CPUs"))
    pool = max(pool, 0)
    shared = totals.shared_vcpus + cell.shared_vcpus
    cap_ratio = policy.cpu_overcommit_max
    ratio_num, ratio_den = cap_ratio.as_integer_ratio()  # exact integer comparisons, fast
    if shared and shared * cap.threads_per_core * ratio_den > ratio_num * pool:
        free = math.floor(cap_ratio * pool / cap.threads_per_core) - totals.shared_vcpus
        out.append(Shortfall(f"shared vCPU slots ({cap_ratio}x cap)", cell.shared_vcpus, max(free, 0), "vCPUs"))
    load = totals.shared_load + cell.shared_load
    target_num, target_den = policy.cpu_load_target.as_integer_ratio()
    if load and load * target_den > target_num * pool * LOAD_SCALE:
        free = policy.cpu_load_target * pool - Fraction(totals.shared_load, LOAD_SCALE)
        out.append(
            Shortfall(
                f"shared-pool CPU load headroom (target {float(policy.cpu_load_target):.0%})",
                cell.shared_load / LOAD_SCALE,
                max(float(free), 0.0),
                "CPUs",
            )
        )
    if (totals.needs_pool or cell.needs_pool) and pool < 1:
        out.append(Shortfall("a shared-pool CPU for emulator threads", 1, pool, "CPUs"))
    if cell.memory_4k_kib:
        out.extend(memory_shortfalls(cap, totals, cell, policy.memory_overcommit))
    if cell.page_kib:
        pool_pages = cap.pages.get(cell.page_kib, 0)
        if totals.pages.get(cell.page_kib, 0) + cell.pages > pool_pages:
            free = pool_pages - totals.pages.get(cell.page_kib, 0)
            out.append(Shortfall(f"{cell.page_kib}KiB hugepages", cell.pages, free, "pages"))
    return out


def memory_4k_room_kib(cap: NodeCap, totals: NodeTotals, dedicated: bool, overcommit: Fraction) -> int:
    """4K memory a cell of a dedicated (1:1) or shared (overcommitted) guest may still take on the node.

    Rule: dedicated 4K memory + shared 4K memory ÷ memory_overcommit ≤ free 4K memory, and no cell above the free
    4K memory (overcommit is shared among guests, never inside one). In integers, with overcommit = a/b:
    a·D + b·S ≤ a·free."""
    a, b = overcommit.numerator, overcommit.denominator
    dedicated_kib = totals.memory_4k_dedicated_kib
    shared_kib = totals.memory_4k_kib - dedicated_kib
    slack = a * (cap.free_4k_kib - dedicated_kib) - b * shared_kib  # in units of 1/a KiB of physical memory
    room = slack // a if dedicated else slack // b
    return min(room, cap.free_4k_kib)


def memory_shortfalls(cap: NodeCap, totals: NodeTotals, cell: CellDemand, overcommit: Fraction) -> list[Shortfall]:
    """The two 4K memory rules for one more cell on the node (empty: it fits)."""
    if cell.memory_4k_kib > cap.free_4k_kib:
        note = "" if overcommit == 1 else "; memory_overcommit never applies inside one guest"
        return [Shortfall(f"4K memory for one cell (at most the node's free 4K memory{note})",
                          cell.memory_4k_kib, cap.free_4k_kib, "KiB")]
    dedicated = bool(cell.memory_4k_dedicated_kib)
    room = memory_4k_room_kib(cap, totals, dedicated, overcommit)
    if cell.memory_4k_kib > room:
        name = "4K memory" if overcommit == 1 or not dedicated else "4K memory (cpu: dedicated counts 1:1, no overcommit)"
        return [Shortfall(name, cell.memory_4k_kib, room, "KiB")]
    return []


def option_capacity(cap: ModelCap, option: "Option", policy: Policy) -> int:
    """How many guests could take this option on an empty host, resource by resource (an upper bound)."""
    best = cap.vcpu_cap // max(sum(len(c.vcpus) for c in option.cells), 1)
    for node_id, cell in zip(option.nodes, option.cells):
        node = cap.node(node_id)
        cpus = node.threads_per_core * cell.iso + 2 * cell.pairs + cell.singles
        limits = [node.usable_cpus // cpus] if cpus else []
        if cell.shared_vcpus:
            limits.append(math.floor(policy.cpu_overcommit_max * node.usable_cpus / node.threads_per_core) // cell.shared_vcpus)
        if cell.shared_load:
            limits.append(math.floor(policy.cpu_load_target * node.usable_cpus * LOAD_SCALE) // cell.shared_load)
        if cell.memory_4k_kib:
            room = node.free_4k_kib if cell.memory_4k_dedicated_kib else node.memory_4k_kib
            limits.append(room // cell.memory_4k_kib)
        if cell.page_kib:
            limits.append(node.pages.get(cell.page_kib, 0) // max(cell.pages, 1))
        if limits:
            best = min(best, *limits)
    return max(best, 0)


# ----------------------------------------------------------------------------------------------- classes
@dataclass(frozen=True)
class GuestClass:
    """Guests with identical demands, placed as counts and named afterwards (aggregation)."""

    index: int
    members: tuple[str, ...]  # guest names, sorted
    guest: Guest  # a representative (the first member)
    options: Mapping[str, tuple[Option, ...]]  # host model name -> options (empty: cannot go there)
    allowed_hosts: tuple[str, ...]  # hosts the class may use (fixed guests: their host)

    @property
    def size(self) -> int:
        return len(self.members)


def _signature(guest: Guest) -> tuple:
    return (
        guest.vcpus,
        guest.memory_kib,
        guest.cpu,
        guest.threads,
        guest.load,
        guest.hugepage_kib,
        guest.numa,
        guest.emulator,
        guest.priority,
        guest.anti_affinity,
        guest.host,
        guest.numa_cells,
        guest.anti_affinity_scope,
        guest.tenant_name,
    )


def _cell_fits_empty(cap: NodeCap, cell: CellDemand, policy: Policy) -> bool:
    return cap.holds_cells and not node_shortfalls(cap, NodeTotals(), cell, policy)


def guest_options(guest: Guest, cap: ModelCap, policy: Policy) -> tuple[Option, ...]:
    """Every node choice for the guest on an empty host of this model, fewest cells first.

    ``numa: N`` gives the N-subsets; ``numa: auto`` the subsets of the smallest cell count that fits at all."""
    if guest.vcpus > cap.vcpu_cap:
        return ()
    eligible = [n for n in cap.nodes if n.holds_cells]
    counts = [guest.numa] if guest.numa else range(1, len(eligible) + 1)
    for k in counts:
        split = split_cells(guest, k)
        if split is None or k > len(eligible):
            continue
        demands = cell_demands(guest, split, cap)
        options = []
        for combo in node_orders(eligible, guest, k):
            if all(_cell_fits_empty(node, cell, policy) for node, cell in zip(combo, demands)):
                ids = tuple(node.node_id for node in combo)
                cost = sum(
                    (cap.model.distance(a, b) + cap.model.distance(b, a)) // 2
                    for a, b in itertools.combinations(ids, 2)
                )
                options.append(Option(nodes=ids, cells=demands, distance_cost=cost))
        if options:
            options.sort(key=lambda o: (o.distance_cost, o.nodes))
            return tuple(options)
    return ()


@dataclass(frozen=True, eq=False)
class Problem:
    """Everything a solver needs, derived once from the scenario."""

    scenario: Scenario
    caps: Mapping[str, ModelCap]  # host model name -> capacity
    classes: tuple[GuestClass, ...]
    host_model: Mapping[str, str]  # host name -> model name

    @property
    def policy(self) -> Policy:
        return self.scenario.policy

    def cap_of(self, host: str) -> ModelCap:
        return self.caps[self.host_model[host]]


def compile_problem(scenario: Scenario) -> Problem:
    policy = scenario.policy
    caps = {name: model_capacity(model, policy) for name, model in scenario.host_models.items()}
    used_models = {h.model for h in scenario.hosts}
    groups: dict[tuple, list[Guest]] = defaultdict(list)
    for guest in scenario.guests:
        groups[_signature(guest)].append(guest)
    classes = []
    all_hosts = tuple(h.name for h in scenario.hosts)
    host_model = {h.name: h.model for h in scenario.hosts}
    for signature, guests in sorted(groups.items(), key=lambda kv: min(g.name for g in kv[1])):
        guests.sort(key=lambda g: g.name)
        rep = guests[0]
        models = {host_model[rep.host]} if rep.host else used_models
        options = {m: guest_options(rep, caps[m], policy) for m in sorted(models)}
        classes.append(
            GuestClass(
                index=len(classes),
                members=tuple(g.name for g in guests),
                guest=rep,
                options=options,
                allowed_hosts=(rep.host,) if rep.host else all_hosts,
            )
        )
    return Problem(scenario=scenario, caps=caps, classes=tuple(classes), host_model=host_model)



# ----------------------------------------------------------------------------------------------- assignments
Assignment = dict[tuple[int, str, int], int]
"""(class index, host name, option index) -> number of the class's guests placed that way."""


class FleetState:
    """Node totals of a partial assignment, with the same fit test as the model (greedy, explanations)."""

    def __init__(self, problem: Problem):
        self.problem = problem
        self.nodes: dict[str, dict[int, NodeTotals]] = {
            h.name: {n.node_id: NodeTotals() for n in problem.cap_of(h.name).nodes} for h in problem.scenario.hosts
        }
        self.host_vcpus: dict[str, int] = defaultdict(int)
        self.host_load: dict[str, int] = defaultdict(int)  # busy CPUs in LOAD_SCALE units
        self.host_guests: dict[str, int] = defaultdict(int)
        self.host_tags: dict[str, set[str]] = defaultdict(set)
        self.domain_tags: dict[str, set[str]] = defaultdict(set)  # failure domain (Host.domain) -> tags there
        self.host_tenants: dict[str, set[str]] = defaultdict(set)  # tenants with a guest on the host
        self.node_tenants: dict[tuple[str, int], set[str]] = defaultdict(set)  # tenants with a cell on the node
        self.assignment: Assignment = defaultdict(int)

    @classmethod
    def from_assignment(cls, problem: Problem, assignment: Assignment) -> "FleetState":
        """The state of an assignment, placed in a fixed order (host, class, option)."""
        state = cls(problem)
        for (c, host, o), n in sorted(assignment.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2])):
            for _ in range(n):
                state.place(problem.classes[c], host, o)
        return state

    def option_shortfalls(self, cls: GuestClass, host: str, option: Option) -> list[tuple[int, Shortfall]]:
        """(node id, shortfall) pairs that stop one more guest of ``cls`` going to ``host`` by ``option``."""
        out: list[tuple[int, Shortfall]] = []
        cap = self.problem.cap_of(host)
        for node_id, cell in zip(option.nodes, option.cells):
            for s in node_shortfalls(cap.node(node_id), self.nodes[host][node_id], cell, self.problem.policy):
                out.append((node_id, s))
        if isolation_scope(self.problem.policy) == "node":
            tenant = cls.guest.tenant_name
            for node_id in option.nodes:
                others = self.node_tenants[(host, node_id)] - {tenant}
                if others:
                    out.append((node_id, Shortfall(
                        f"a node free of other tenants (tenant_isolation: {self.problem.policy.tenant_isolation}; "
                        f"node {node_id} of {host} serves tenant {show_tenant(sorted(others)[0])}, "
                        f"this guest is tenant {show_tenant(tenant)})", 1, 0, "nodes")))
        return out

    def host_blocker(self, cls: GuestClass, host: str) -> str | None:
        """A host-wide reason the class cannot go to ``host`` now (anti-affinity, overcommit cap), else None."""
        guest = cls.guest
        clash = self.tag_clash(guest, host)
        if clash:
            return clash
        if self.problem.policy.tenant_isolation == "host":
            others = self.host_tenants[host] - {guest.tenant_name}
            if others:
                return (f"tenant isolation (host): {host} serves tenant {show_tenant(sorted(others)[0])}, "
                        f"{guest.name} is tenant {show_tenant(guest.tenant_name)}")
        cap = self.problem.cap_of(host)
        if self.host_vcpus[host] + guest.vcpus > cap.vcpu_cap:
            free = cap.vcpu_cap - self.host_vcpus[host]
            return (
                f"{host} has room for {free} more vCPUs under the {self.problem.policy.cpu_overcommit_max}x cap "
                f"({cap.host_cores} cores), needs {guest.vcpus}"
            )
        return None

    def tag_clash(self, guest: Guest, host: str) -> str | None:
        """Why an anti-affinity tag keeps ``guest`` off ``host`` (its scope: host, rack or zone), else None."""
        if not guest.anti_affinity:
            return None
        scenario = self.problem.scenario
        scope = scenario.scope_of(guest)
        if scope == "host":
            clash = self.host_tags[host].intersection(guest.anti_affinity)
            return f"anti-affinity tag '{sorted(clash)[0]}' already on {host}" if clash else None
        domain = scenario.host_by_name[host].domain(scope)
        clash = self.domain_tags[domain].intersection(guest.anti_affinity)
        return f"anti-affinity tag '{sorted(clash)[0]}' already in {domain} (of {host})" if clash else None

    def fits(self, cls: GuestClass, host: str, option: Option) -> bool:
        return self.host_blocker(cls, host) is None and not self.option_shortfalls(cls, host, option)

    def place(self, cls: GuestClass, host: str, option_index: int) -> None:
        option = self.problem.classes[cls.index].options[self.problem.host_model[host]][option_index]
        for node_id, cell in zip(option.nodes, option.cells):
            self.nodes[host][node_id].add(cell)
        self.host_vcpus[host] += cls.guest.vcpus
        self.host_load[host] += busy_units(cls.guest)
        self.host_guests[host] += 1
        self.host_tags[host].update(cls.guest.anti_affinity)
        if cls.guest.anti_affinity:
            scope = self.problem.scenario.scope_of(cls.guest)
            if scope != "host":
                self.domain_tags[self.problem.scenario.host_by_name[host].domain(scope)].update(cls.guest.anti_affinity)
        self.note_tenant(cls, host, option)
        self.assignment[(cls.index, host, option_index)] += 1

    def note_tenant(self, cls: GuestClass, host: str, option: Option) -> None:
        """Record that the class's tenant now uses ``host`` and the option's nodes."""
        tenant = cls.guest.tenant_name
        self.host_tenants[host].add(tenant)
        for node_id in option.nodes:
            self.node_tenants[(host, node_id)].add(tenant)


def isolation_scope(policy: Policy) -> str:
    """The scope the solver enforces tenant isolation at: ``none``, ``node`` or ``host``. ``core`` is enforced at
    node granularity (a node serves one tenant, so no core runs vCPUs of two tenants): sufficient, not tight."""
    level = policy.tenant_isolation
    return "node" if level == "core" else level


def show_tenant(tenant: str) -> str:
    """A tenant for messages: its name quoted, or 'the default tenant (no tenant:)'."""
    return f"'{tenant}'" if tenant else "(none: guests without tenant:)"


def busy_units(guest: Guest) -> int:
    """Expected busy CPUs of a guest in LOAD_SCALE units: shared vCPUs × load, dedicated pCPUs × 1."""
    if guest.dedicated:
        extra = 1 if guest.emulator == "isolate" else 0
        return (guest.vcpus + extra) * LOAD_SCALE
    return load_units(guest.vcpus, guest.load)


def score(problem: Problem, assignment: Assignment) -> tuple[int, int, int]:
    """Lexicographic quality of an assignment, larger is better: (Σ priority placed, −hosts used or −max host
    load ‰, −NUMA distance cost) — the objective's levels without weights, for comparing plans of any solver."""
    placed = sum(n * problem.classes[c].guest.priority for (c, _h, _o), n in assignment.items())
    dist = sum(
        n * problem.classes[c].options[problem.host_model[h]][o].distance_cost for (c, h, o), n in assignment.items()
    )
    if problem.policy.objective == "pack":
        second = len({h for (_c, h, _o), n in assignment.items() if n})
    else:
        busy: dict[str, int] = defaultdict(int)
        for (c, h, _o), n in assignment.items():
            busy[h] += n * busy_units(problem.classes[c].guest)
        second = max((math.ceil(v / problem.cap_of(h).usable_cpus) for h, v in busy.items()), default=0)
    return placed, -second, -dist


def model_size(problem: Problem) -> int:
    """Number of x variables the full CP-SAT model would have."""
    return sum(len(cls.options.get(problem.host_model[h], ())) for cls in problem.classes for h in cls.allowed_hosts)
