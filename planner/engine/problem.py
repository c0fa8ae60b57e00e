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

The resources and the rules over them (per node and per host) are declared once in ``planner.engine.resources``;
the cell demands, node totals, shortfalls and option capacities here derive from those declarations.

Every (iso, pairs, singles) that satisfies ``iso ≤ full_cores``, ``pairs + iso·⌊T/2⌋ ≤ pair_slots`` and
``pool ≥ 0`` can be realised with concrete CPU ids (isolate first, then pairs, then singles); ``planner.engine.pinning``
does exactly that, so the pinned plan uses exactly what was counted.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from planner.engine.resources import (  # noqa: F401 - CellDemand, NodeCap, NodeTotals: re-exported
    LOAD_SCALE,
    NODE_RESOURCES,
    CellContext,
    CellDemand,
    NodeCap,
    NodeTotals,
    Shortfall,
    add_amounts,
    cell_amounts,
    host_amounts,
    host_explain,
    host_limit,
    load_units,
    memory_4k_room_kib,
    node_explain,
    node_limit,
)
from planner.engine.resources import (
    node_fits as rules_fit,
)
from planner.model.scenario import Guest, HostModel, Policy, Scenario

__all__ = ["LOAD_SCALE", "Shortfall", "load_units", "memory_4k_room_kib"]  # re-exported from resources
MIB_KIB = 1024


# ----------------------------------------------------------------------------------------------- capacities
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
    for size, memory in zip(sizes, memories, strict=False):
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
            key = tuple(sorted((size, node.node_id) for size, node in zip(sizes, order, strict=False)))
            if key not in seen:
                seen.add(key)
                yield order


def cell_demands(guest: Guest, split: list[tuple[tuple[int, ...], int]], cap: ModelCap) -> tuple[CellDemand, ...]:
    """Each cell's demand, resource by resource as ``planner.engine.resources.NODE_RESOURCES`` declares it."""
    out = []
    emulator_floats = guest.emulator == "shared" or (guest.emulator == "host" and not cap.has_reserved)
    for index, (vcpus, memory) in enumerate(split):
        ctx = CellContext(guest, index, len(vcpus), memory, emulator_floats)
        demand: dict = {r.name: r.demand(ctx) for r in NODE_RESOURCES}
        demand["needs_pool"] = bool(demand["needs_pool"])
        if guest.hugepage_kib:
            demand["page_kib"] = guest.hugepage_kib
        out.append(CellDemand(vcpus=vcpus, memory_kib=memory, **demand))
    return tuple(out)


# ----------------------------------------------------------------------------------------------- node totals
def node_shortfalls(cap: NodeCap, totals: NodeTotals, cell: CellDemand, policy: Policy) -> list[Shortfall]:
    """What is missing on the node for ``cell`` on top of ``totals`` (empty list: it fits).

    The rows of the CP-SAT model's node rules (``planner.engine.resources.NODE_RULES``) evaluated on numbers, each
    rule wording what fails."""
    return node_explain(cap, totals, cell, policy)


def node_fits(cap: NodeCap, totals: NodeTotals, cell: CellDemand, policy: Policy) -> bool:
    """True when ``cell`` fits on top of ``totals`` (no node rule's row fails): ``not node_shortfalls(...)``."""
    return rules_fit(cap, totals, cell, policy)


def option_capacity(cap: ModelCap, option: Option, policy: Policy) -> int:
    """How many guests could take this option on an empty host, rule by rule (an upper bound): the most k for
    which every node rule's rows hold with k × each cell on its node, and the host rules with k × the vCPUs."""
    vcpus = max(sum(len(c.vcpus) for c in option.cells), 1)
    limits = [k for k in [host_limit(cap, vcpus, policy)] if k is not None]
    for node_id, cell in zip(option.nodes, option.cells, strict=False):
        k = node_limit(cap.node(node_id), cell, policy)
        if k is not None:
            limits.append(k)
    return max(min(limits, default=0), 0)


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


def guest_shape(guest: Guest, priority: bool = False) -> tuple:
    """What makes guests alike for packing: every field their demands and options come from, and the tenant (a host
    or node closed to one tenant may be open to another). ``priority``: the priority too (the decomposition's
    shapes, weighed by it in the master LP). The one shape key of greedy, heuristics, decompose and evacuate."""
    g = guest
    key = (g.vcpus, g.memory_kib, g.cpu, g.threads, g.load, g.hugepage_kib, g.numa, g.emulator, g.numa_cells,
           g.tenant_name)
    return (*key, g.priority) if priority else key


def shape_key(cls: GuestClass, priority: bool = False) -> tuple:
    """``guest_shape`` of a class's guests."""
    return guest_shape(cls.guest, priority)


def _signature(guest: Guest) -> tuple:
    """Guests of one class: the same shape and priority, and the same placement rules (tags, fixed host)."""
    return (*guest_shape(guest, priority=True), guest.anti_affinity, guest.host, guest.anti_affinity_scope)


def _cell_fits_empty(cap: NodeCap, cell: CellDemand, policy: Policy) -> bool:
    return cap.holds_cells and node_fits(cap, NodeTotals(), cell, policy)


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
            if all(_cell_fits_empty(node, cell, policy) for node, cell in zip(combo, demands, strict=False)):
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
    classes: list[GuestClass] = []
    all_hosts = tuple(h.name for h in scenario.hosts)
    host_model = {h.name: h.model for h in scenario.hosts}
    for _key, guests in sorted(groups.items(), key=lambda kv: min(g.name for g in kv[1])):
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
        self.host_amounts: dict[int, tuple[Guest, dict[str, int]]] = {}  # id(guest) -> its host-scope amounts

    @classmethod
    def from_assignment(cls, problem: Problem, assignment: Assignment) -> FleetState:
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
        for node_id, cell in zip(option.nodes, option.cells, strict=False):
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

    def option_fits(self, cls: GuestClass, host: str, option: Option) -> bool:
        """``not option_shortfalls(...)``, without wording the shortfalls (the fit test of greedy and patterns)."""
        cap, policy = self.problem.cap_of(host), self.problem.policy
        nodes = self.nodes[host]
        pairs = zip(option.nodes, option.cells, strict=False)
        if not all(rules_fit(cap.node(n), nodes[n], cell, policy) for n, cell in pairs):
            return False
        if isolation_scope(policy) == "node":
            tenant = cls.guest.tenant_name
            return not any(self.node_tenants[(host, n)] - {tenant} for n in option.nodes)
        return True

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
        entry = self.host_amounts.get(id(guest))
        if entry is None or entry[0] is not guest:  # the entry keeps its guest alive: its id is not reused
            entry = self.host_amounts[id(guest)] = (guest, host_amounts(guest))
        amounts = entry[1]
        return host_explain(host, self.problem.cap_of(host), {"vcpus": self.host_vcpus[host]}, amounts,
                            self.problem.policy)

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
        return self.host_blocker(cls, host) is None and self.option_fits(cls, host, option)

    def place(self, cls: GuestClass, host: str, option_index: int) -> None:
        option = self.problem.classes[cls.index].options[self.problem.host_model[host]][option_index]
        for node_id, cell in zip(option.nodes, option.cells, strict=False):
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
