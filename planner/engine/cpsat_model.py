"""The CP-SAT model of a compiled problem: one function per constraint family, listed once in ``FAMILIES``.

Variables: ``x[c, h, o]`` = how many guests of class c go to host h by option o (the host node of each cell).
Every family adds its constraints, named after the host, node or guest class they protect, and returns its
objective term (or None). Objective terms are combined in strict priority (``LEVELS``) by weights computed from
their bounds, so a lower level can never outweigh one unit of a higher level:

    maximise  W₀·Σ priority·placed  −  W₁·(hosts used | max host load ‰)  [− W₂·moves]  −  Σ NUMA distance cost

(the ``moves`` level only in a re-plan from a previous plan, ``define_moves``)

Node-level counting follows ``planner.engine.problem`` (isolate cores, require pairs, single CPUs, the shared pool is the
rest), so a solution can always be pinned to concrete CPU ids with exactly the counted numbers.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable

from ortools.sat.python import cp_model

from planner.engine.problem import LOAD_SCALE, Assignment, Problem, busy_units, option_capacity

LEVELS = ("placed", "hosts", "moves", "distance")  # strict priority order of the objective


@dataclass(frozen=True)
class Term:
    """An objective term of one level: ``sense`` +1 maximise / −1 minimise, ``bound`` ≥ its largest absolute value."""

    level: str
    expr: cp_model.LinearExprT
    bound: int
    sense: int


@dataclass
class NodeTerms:
    """Per host node, the linear terms of each counted resource (var, coefficient)."""

    iso: list = field(default_factory=list)
    pairs: list = field(default_factory=list)
    singles: list = field(default_factory=list)
    shared_vcpus: list = field(default_factory=list)
    shared_load: list = field(default_factory=list)
    memory_4k_kib: list = field(default_factory=list)
    memory_4k_dedicated_kib: list = field(default_factory=list)
    pages: dict = field(default_factory=lambda: defaultdict(list))
    needs_pool: list = field(default_factory=list)


def _sum(terms: list) -> cp_model.LinearExprT:
    if not terms:
        return 0
    return cp_model.LinearExpr.weighted_sum([v for v, _ in terms], [c for _, c in terms])


@dataclass
class ModelBuild:
    """The CP-SAT model under construction and the indices every family shares."""

    problem: Problem
    model: cp_model.CpModel
    x: dict[tuple[int, str, int], cp_model.IntVar] = field(default_factory=dict)
    by_host: dict[str, list[tuple[int, int, cp_model.IntVar]]] = field(default_factory=lambda: defaultdict(list))
    nodes: dict[tuple[str, int], NodeTerms] = field(default_factory=lambda: defaultdict(NodeTerms))
    pool: dict[tuple[str, int], cp_model.LinearExprT] = field(default_factory=dict)
    used: dict[str, cp_model.IntVar] = field(default_factory=dict)
    upper: dict[int, int] = field(default_factory=dict)  # variable index -> upper bound
    max_load: cp_model.IntVar | None = None
    weights: dict[str, int] = field(default_factory=dict)  # objective weight per level (build_model)
    terms: list[Term] = field(default_factory=list)
    # re-plans (``define_moves``): (class, host, option) -> guests of the class there in the previous plan that may
    # stay, and the budget of moves among them (None: no budget)
    previous: dict[tuple[int, str, int], int] = field(default_factory=dict)
    max_moves: int | None = None
    moves: cp_model.LinearExprT | None = None


# ----------------------------------------------------------------------------------------------- families
def define_assignment(b: ModelBuild) -> Term:
    """Guests of each class are placed at most once: ∀c  Σ_{h,o} x[c,h,o] ≤ |c|.

    Variables exist only for hosts the class may use (its fixed host, if any) and options that fit an empty host,
    so fixed placement is honoured by construction. Objective (level ``placed``): maximise Σ priority_c · x."""
    p = b.problem
    placed = []
    bound = 0
    for cls in p.classes:
        own = []
        for host in cls.allowed_hosts:
            options = cls.options.get(p.host_model[host], ())
            upper_class = 1 if cls.guest.anti_affinity else cls.size
            cap = p.cap_of(host)
            for o, option in enumerate(options):
                upper = min(upper_class, option_capacity(cap, option, p.policy))
                var = b.model.new_int_var(0, upper, f"x[{cls.members[0]}+{cls.size - 1}|{host}|{o}]")
                b.x[(cls.index, host, o)] = var
                b.upper[var.index] = upper
                b.by_host[host].append((cls.index, o, var))
                own.append(var)
                for node_id, cell in zip(option.nodes, option.cells):
                    t = b.nodes[(host, node_id)]
                    for name in ("iso", "pairs", "singles", "shared_vcpus", "shared_load", "memory_4k_kib",
                                 "memory_4k_dedicated_kib"):
                        coef = getattr(cell, name)
                        if coef:
                            getattr(t, name).append((var, coef))
                    if cell.page_kib:
                        t.pages[cell.page_kib].append((var, cell.pages))
                    if cell.needs_pool:
                        t.needs_pool.append((var, 1))
        if own:
            b.model.add(sum(own) <= cls.size).with_name(f"assign[{cls.members[0]}..x{cls.size}]")
            placed.append((cp_model.LinearExpr.sum(own), cls.guest.priority))
        bound += cls.size * cls.guest.priority
    expr = cp_model.LinearExpr.weighted_sum([e for e, _ in placed], [w for _, w in placed]) if placed else 0
    return Term("placed", expr, bound, +1)


def define_host_overcommit(b: ModelBuild) -> None:
    """Host-wide vCPU cap: ∀h  Σ vcpus_c · x[c,h,o] ≤ ⌊cpu_overcommit_max × physical cores(h)⌋."""
    p = b.problem
    for host, entries in b.by_host.items():
        cap = p.cap_of(host)
        total = cp_model.LinearExpr.weighted_sum([v for _, _, v in entries], [p.classes[c].guest.vcpus for c, _, _ in entries])
        b.model.add(total <= cap.vcpu_cap).with_name(f"overcommit[{host}]")


def define_smt_policies(b: ModelBuild) -> None:
    """SMT policies per node: isolate takes whole full cores, require takes sibling pairs.

    iso(h,n) ≤ full_cores(n);  pairs(h,n) + ⌊T/2⌋·iso(h,n) ≤ pair_slots(n)."""
    p = b.problem
    for (host, node_id), t in b.nodes.items():
        cap = p.cap_of(host).node(node_id)
        iso, pairs = _sum(t.iso), _sum(t.pairs)
        if t.iso:
            b.model.add(iso <= cap.full_cores).with_name(f"isolate_cores[{host}/{node_id}]")
        if t.pairs or t.iso:
            b.model.add(pairs + cap.pairs_per_full_core * iso <= cap.pair_slots).with_name(
                f"require_pairs[{host}/{node_id}]"
            )


def define_cpu_split(b: ModelBuild) -> None:
    """Split of each node's usable CPUs into dedicated and shared, decided by the model:

    pool(h,n) = usable(n) − T·iso − 2·pairs − singles ≥ 0."""
    p = b.problem
    for (host, node_id), t in b.nodes.items():
        cap = p.cap_of(host).node(node_id)
        pool = cap.usable_cpus - cap.threads_per_core * _sum(t.iso) - 2 * _sum(t.pairs) - _sum(t.singles)
        b.pool[(host, node_id)] = pool
        if t.iso or t.pairs or t.singles:
            b.model.add(pool >= 0).with_name(f"dedicated_cpus[{host}/{node_id}]")


def define_shared_overcommit(b: ModelBuild) -> None:
    """Shared pool vCPU cap: Σ shared vCPUs ≤ cap × pool cores, with pool cores ≥ |pool| / T:

    b·T·shared(h,n) ≤ a·pool(h,n)  where cap = a/b."""
    p = b.problem
    ratio = p.policy.cpu_overcommit_max
    for (host, node_id), t in b.nodes.items():
        if t.shared_vcpus:
            cap = p.cap_of(host).node(node_id)
            b.model.add(
                ratio.denominator * cap.threads_per_core * _sum(t.shared_vcpus) <= ratio.numerator * b.pool[(host, node_id)]
            ).with_name(f"pool_overcommit[{host}/{node_id}]")


def define_load_target(b: ModelBuild) -> None:
    """Expected load of each shared pool at or under the target: Σ vCPU·load ≤ target·|pool|,

    in LOAD_SCALE units (loads rounded up): b·Σ load_units ≤ a·LOAD_SCALE·pool(h,n) where target = a/b."""
    target = b.problem.policy.cpu_load_target
    for (host, node_id), t in b.nodes.items():
        if t.shared_load:
            b.model.add(
                target.denominator * _sum(t.shared_load) <= target.numerator * LOAD_SCALE * b.pool[(host, node_id)]
            ).with_name(f"load_target[{host}/{node_id}]")


def define_emulator_pool(b: ModelBuild) -> None:
    """Emulator threads that float (emulator=shared, or host on a host without reserved CPUs) need a shared CPU on
    the node of the guest's cell 0:  e(h,n) ∈ {0,1},  Σ x ≤ M·e,  pool(h,n) ≥ e."""
    for (host, node_id), t in b.nodes.items():
        if t.needs_pool:
            flag = b.model.new_bool_var(f"emulator_pool[{host}/{node_id}]")
            bound = sum(b.upper[var.index] for var, _ in t.needs_pool)
            b.model.add(_sum(t.needs_pool) <= bound * flag).with_name(f"emulator_users[{host}/{node_id}]")
            b.model.add(b.pool[(host, node_id)] >= flag).with_name(f"emulator_pool[{host}/{node_id}]")


def define_node_memory(b: ModelBuild) -> None:
    """4K memory per node, free = memory − reserved − pools, memory_overcommit = a/b:

    dedicated guests count 1:1, shared guests' memory is overcommitted:  D + S/(a/b) ≤ free, i.e.
    b·(D + S) + (a − b)·D ≤ a·free  with D, S the dedicated and shared guests' non-hugepage cell memory;
    and no cell takes more than free (overcommit is shared among guests, never inside one): x = 0 for such options
    (they are not enumerated either, ``planner.engine.problem.guest_options``)."""
    p = b.problem
    ratio = p.policy.memory_overcommit
    a, d = ratio.numerator, ratio.denominator
    for (host, node_id), t in b.nodes.items():
        if t.memory_4k_kib:
            cap = p.cap_of(host).node(node_id)
            total = d * _sum(t.memory_4k_kib)
            if t.memory_4k_dedicated_kib and a != d:
                total = total + (a - d) * _sum(t.memory_4k_dedicated_kib)
            b.model.add(total <= a * cap.free_4k_kib).with_name(f"memory[{host}/{node_id}]")
            for var, kib in t.memory_4k_kib:
                if kib > cap.free_4k_kib:
                    b.model.add(var == 0).with_name(f"cell_memory[{var.name}/{node_id}]")


def define_hugepage_pools(b: ModelBuild) -> None:
    """Hugepages per node and size: Σ cell pages ≤ pool pages (never overcommitted)."""
    p = b.problem
    for (host, node_id), t in b.nodes.items():
        cap = p.cap_of(host).node(node_id)
        for page_kib, terms in t.pages.items():
            b.model.add(_sum(terms) <= cap.pages.get(page_kib, 0)).with_name(f"hugepages[{host}/{node_id}/{page_kib}KiB]")


def define_anti_affinity(b: ModelBuild) -> None:
    """Guests sharing a tag go to different failure domains of the tag's scope (``anti_affinity_scope``: host,
    rack or zone; one scope per tag, the loader sees to it): ∀ tag, domain D  Σ_{c ∋ tag, h ∈ D, o} x[c,h,o] ≤ 1.
    A host without a rack (zone) label is a rack (zone) of its own. Named ``anti_affinity[TAG|host H]``,
    ``anti_affinity[TAG|rack R]``, ``anti_affinity[TAG|zone Z]``."""
    p = b.problem
    scenario = p.scenario
    tagged: dict[tuple[str, str], list] = defaultdict(list)
    for (c, host, _o), var in b.x.items():
        guest = p.classes[c].guest
        if guest.anti_affinity:
            domain = scenario.host_by_name[host].domain(scenario.scope_of(guest))
            for tag in guest.anti_affinity:
                tagged[(tag, domain)].append(var)
    for (tag, domain), vars_ in tagged.items():
        if len(vars_) > 1:
            b.model.add(sum(vars_) <= 1).with_name(f"anti_affinity[{tag}|{domain}]")


def define_tenant_isolation(b: ModelBuild) -> None:
    """Tenant isolation (``policy.tenant_isolation``); tenants t (guests without one: the default tenant ""):

    ``host``: ∀h  serves(t,h) ∈ {0,1},  Σ_{c∈t,o} x[c,h,o] ≤ M·serves(t,h),  Σ_t serves(t,h) ≤ 1;
    ``node`` and ``core``: the same per host node n, over the options with a cell on n:
    Σ_{c∈t, o∋n} x[c,h,o] ≤ M·serves(t,h,n),  Σ_t serves(t,h,n) ≤ 1. ``core`` is enforced at node granularity
    (a node serving one tenant has no core running vCPUs of two tenants): sufficient, not tight.
    No constraint when the policy is ``none`` or only one tenant has guests. No objective term."""
    p = b.problem
    level = p.policy.tenant_isolation
    if level == "none" or len({cls.guest.tenant_name for cls in p.classes}) < 2:
        return None
    groups: dict[tuple[str, int | None], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for (c, host, o), var in b.x.items():
        tenant = p.classes[c].guest.tenant_name
        if level == "host":
            groups[(host, None)][tenant].append(var)
        else:
            for node_id in p.classes[c].options[p.host_model[host]][o].nodes:
                groups[(host, node_id)][tenant].append(var)
    for (host, node_id), by_tenant in groups.items():
        if len(by_tenant) < 2:
            continue
        where = host if node_id is None else f"{host}/{node_id}"
        flags = []
        for tenant, vars_ in sorted(by_tenant.items()):
            flag = b.model.new_bool_var(f"tenant[{tenant}|{where}]")
            bound = sum(b.upper[v.index] for v in vars_)
            b.model.add(sum(vars_) <= bound * flag).with_name(f"tenant_serves[{tenant}|{where}]")
            flags.append(flag)
        b.model.add(sum(flags) <= 1).with_name(f"tenant_isolation[{level}|{where}]")
    return None


def define_host_usage(b: ModelBuild) -> Term | None:
    """used(h) = 1 iff a guest is on h:  Σ x[·,h,·] ≤ M_h · used(h). Identical empty hosts are interchangeable, so
    used(h_i) ≥ used(h_{i+1}) along each run of same-model hosts without fixed guests (symmetry breaking).
    Objective (level ``hosts``, objective ``pack``): minimise Σ used(h)."""
    p = b.problem
    fixed_hosts = {cls.guest.host for cls in p.classes if cls.guest.host}
    fixed_hosts |= {h for (_c, h, _o), n in b.previous.items() if n}  # a re-plan's hosts are not interchangeable
    previous: dict[str, cp_model.IntVar] = {}
    for h in p.scenario.hosts:
        entries = b.by_host.get(h.name, [])
        used = b.model.new_bool_var(f"used[{h.name}]")
        b.used[h.name] = used
        if entries:
            bound = sum(b.upper[var.index] for _, _, var in entries)
            b.model.add(sum(v for _, _, v in entries) <= bound * used).with_name(f"host_used[{h.name}]")
        else:
            b.model.add(used == 0)
        if h.name not in fixed_hosts:
            if h.model in previous:
                b.model.add(previous[h.model] >= used).with_name(f"symmetry[{h.name}]")
            previous[h.model] = used
    if p.policy.objective != "pack":
        return None
    return Term("hosts", sum(b.used.values()), len(b.used), -1)


def define_spread(b: ModelBuild) -> Term | None:
    """Objective ``spread``: minimise z, the largest host load in ‰, with ∀h  busy(h) ≤ z · usable(h)
    (busy = Σ shared vCPU·load + dedicated pCPUs, in LOAD_SCALE units; usable = non-reserved CPUs)."""
    p = b.problem
    if p.policy.objective != "spread":
        return None
    z = b.model.new_int_var(0, LOAD_SCALE, "max_host_load_permille")
    b.max_load = z
    for host, entries in b.by_host.items():
        busy = cp_model.LinearExpr.weighted_sum(
            [v for _, _, v in entries], [busy_units(p.classes[c].guest) for c, _, _ in entries]
        )
        usable = p.cap_of(host).usable_cpus
        b.model.add(busy <= z * usable).with_name(f"spread[{host}]")
    return Term("hosts", z, LOAD_SCALE, -1)


def define_distance_cost(b: ModelBuild) -> Term:
    """NUMA distance cost (level ``distance``): minimise Σ x[c,h,o] · Σ_{cell pairs} distance(node_i, node_j)."""
    p = b.problem
    terms = []
    bound = 0
    for (c, host, o), var in b.x.items():
        cost = p.classes[c].options[p.host_model[host]][o].distance_cost
        if cost:
            terms.append((var, cost))
    for cls in p.classes:
        costs = [opt.distance_cost for opts in cls.options.values() for opt in opts]
        bound += cls.size * max(costs, default=0)
    return Term("distance", _sum(terms), bound, -1)


def define_moves(b: ModelBuild) -> Term | None:
    """Moves of a re-plan (only with ``b.previous``): K[c,h,o] guests of class c were on host h by option o (the
    same host nodes) in the previous plan and may stay there. With stay[c,h,o] ∈ [0, K[c,h,o]]:

    stay[c,h,o] ≤ x[c,h,o];   moves = Σ K − Σ stay;   moves ≤ max_moves (with a budget).

    A guest that stays keeps its host and nodes (``planner.engine.pinning`` hands its slot back to it by name).
    Objective (level ``moves``, below hosts, above distance): minimise moves."""
    if not b.previous:
        return None
    stays = []
    total = 0
    for (c, host, o), k in sorted(b.previous.items()):
        var = b.x.get((c, host, o))
        total += k
        if var is None or k <= 0:
            continue
        stay = b.model.new_int_var(0, k, f"stay[{b.problem.classes[c].members[0]}+{k - 1}|{host}|{o}]")
        b.model.add(stay <= var).with_name(f"stay[{b.problem.classes[c].members[0]}|{host}|{o}]")
        stays.append(stay)
    moves = total - cp_model.LinearExpr.sum(stays) if stays else b.model.new_constant(total)
    b.moves = moves
    if b.max_moves is not None:
        b.model.add(moves <= b.max_moves).with_name("max_moves")
    return Term("moves", moves, total, -1)


FAMILIES: tuple[Callable[[ModelBuild], Term | None], ...] = (
    define_assignment,
    define_host_overcommit,
    define_smt_policies,
    define_cpu_split,
    define_shared_overcommit,
    define_load_target,
    define_emulator_pool,
    define_node_memory,
    define_hugepage_pools,
    define_anti_affinity,
    define_tenant_isolation,
    define_host_usage,
    define_spread,
    define_moves,
    define_distance_cost,
)


def objective_weights(terms: list[Term]) -> dict[str, int]:
    """Weights that make the levels strict: each level's weight exceeds the largest swing of all lower levels."""
    weights: dict[str, int] = {}
    below = 0
    for level in reversed(LEVELS):
        weights[level] = below + 1
        span = sum(t.bound for t in terms if t.level == level)
        below += weights[level] * span
    return weights


def build_constraints(problem: Problem, families=FAMILIES, previous=None,
                      max_moves: int | None = None) -> tuple[ModelBuild, list[Term]]:
    """Run every family on a fresh model; the objective is left to the caller (``build_model``, pricing).
    ``previous``/``max_moves``: a re-plan's previous positions and move budget (``define_moves``)."""
    b = ModelBuild(problem=problem, model=cp_model.CpModel(), previous=dict(previous or {}), max_moves=max_moves)
    return b, [t for family in families if (t := family(b)) is not None]


def build_model(problem: Problem, families=FAMILIES, previous=None, max_moves: int | None = None) -> ModelBuild:
    b, terms = build_constraints(problem, families, previous, max_moves)
    weights = objective_weights(terms)
    b.model.maximize(
        sum(t.sense * weights[t.level] * t.expr for t in terms if not isinstance(t.expr, int) or t.expr)
    )
    b.weights, b.terms = weights, terms
    return b


def add_hint(b: ModelBuild, assignment: Assignment) -> None:
    """Warm start from a (greedy) assignment: every variable gets a value, so CP-SAT starts from a full plan."""
    for key, var in b.x.items():
        b.model.add_hint(var, assignment.get(key, 0))
    hosts = {h for (_, h, _), n in assignment.items() if n}
    for host, var in b.used.items():
        b.model.add_hint(var, 1 if host in hosts else 0)
    if b.max_load is not None:
        busy: dict[str, int] = defaultdict(int)
        for (c, h, _), n in assignment.items():
            busy[h] += n * busy_units(b.problem.classes[c].guest)
        z = max((math.ceil(v / b.problem.cap_of(h).usable_cpus) for h, v in busy.items()), default=0)
        b.model.add_hint(b.max_load, min(z, LOAD_SCALE))


def read_assignment(b: ModelBuild, solver: cp_model.CpSolver) -> Assignment:
    return {key: value for key, var in b.x.items() if (value := solver.value(var))}
