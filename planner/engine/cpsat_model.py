"""The CP-SAT model of a compiled problem: one function per constraint family, listed once in ``FAMILIES``.

Variables: ``x[c, h, o]`` = how many guests of class c go to host h by option o (the host node of each cell).
Every family adds its constraints, named after the host, node or guest class they protect, and returns its
objective term (or None). Objective terms are combined in strict priority (``LEVELS``) by weights computed from
their bounds, so a lower level can never outweigh one unit of a higher level:

    maximise  W₀·Σ priority·placed  −  W₁·(hosts used | max host load ‰)  [− W₂·moves]  −  Σ NUMA distance cost

(the ``moves`` level only in a re-plan from a previous plan, ``define_moves``)

Node-level counting follows ``planner.engine.problem`` (isolate cores, require pairs, single CPUs, the shared pool is
the rest), so a solution can always be pinned to concrete CPU ids with exactly the counted numbers. The node and host
families add the rows of the rules declared once in ``planner.engine.resources`` (``add_node_rule``,
``add_host_rule``): the greedy fit test, the explanations, the option bounds and the LP bound evaluate the same rows.
``FAMILY_SCOPE`` classifies every family; the decomposition prices a host with every one-host family.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from ortools.sat.python import cp_model

from planner.engine.problem import LOAD_SCALE, Assignment, Problem, busy_units, option_capacity
from planner.engine.resources import (
    HOST_RESOURCES,
    HOST_RULE_OF,
    NODE_RESOURCES,
    NODE_RULE_OF,
    Row,
    Sums,
    guest_demand,
)

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
    """Per host node (or host), the linear terms (var, coefficient) of each counted resource, by resource name
    (``planner.engine.resources``); keyed resources (hugepages) per key (page size)."""

    terms: dict[str, list] = field(default_factory=lambda: defaultdict(list))
    keyed: dict[str, dict[int, list]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    # each resource's sum, built once for every rule that reads it (terms are all added before the rules run)
    sums: dict[str, cp_model.LinearExprT] = field(default_factory=dict, repr=False)

    def add(self, var: cp_model.IntVar, cell) -> None:
        """The cell's amount of every node resource, times ``var``."""
        for r in NODE_RESOURCES:
            amount = r.value(cell)
            if not amount:
                continue
            if r.keyed_by:
                self.keyed[r.name][getattr(cell, r.keyed_by)].append((var, amount))
            else:
                self.terms[r.name].append((var, amount))


def _sum(terms: list) -> cp_model.LinearExprT:
    if not terms:
        return 0
    return cp_model.LinearExpr.weighted_sum([v for v, _ in terms], [c for _, c in terms])


class TermSums(Sums):
    """The resource totals of one node (host) as CP-SAT sums, for a rule's rows."""

    def __init__(self, b: ModelBuild, terms: NodeTerms, where: str):
        self.b, self.t, self.where = b, terms, where

    def has(self, name: str) -> bool:
        return bool(self.t.terms.get(name)) or any(self.t.keyed.get(name, {}).values())

    def __getitem__(self, name: str) -> cp_model.LinearExprT:
        if name not in self.t.sums:
            self.t.sums[name] = _sum(self.t.terms.get(name, []))
        return self.t.sums[name]

    def keyed(self, name: str) -> dict[int, cp_model.LinearExprT]:
        return {key: _sum(terms) for key, terms in self.t.keyed.get(name, {}).items()}

    def indicator(self, name: str, var_tag: str, link_tag: str) -> cp_model.IntVar:
        """flag ∈ {0,1} with Σ terms ≤ M·flag (M: the terms' upper bounds): flag is 1 when any term is."""
        terms = self.t.terms[name]
        flag = self.b.model.new_bool_var(f"{var_tag}[{self.where}]")
        bound = sum(self.b.upper[var.index] for var, _ in terms)
        self.b.model.add(_sum(terms) <= bound * flag).with_name(f"{link_tag}[{self.where}]")
        return flag


def _add_rows(b: ModelBuild, rows: list[Row], where: str) -> None:
    for row in rows:
        b.model.add(row.lhs <= row.rhs).with_name(f"{row.tag}[{where}{row.suffix}]")


def add_node_rule(b: ModelBuild, family: str) -> None:
    """The rows of the node rule of ``family`` (``planner.engine.resources.NODE_RULES``) on every host node, and
    its per-cell limits (x = 0 for an option whose cell alone exceeds one)."""
    rule = NODE_RULE_OF[family]
    p = b.problem
    for (host, node_id), t in b.nodes.items():
        cap = p.cap_of(host).node(node_id)
        where = f"{host}/{node_id}"
        _add_rows(b, rule.rows(cap, TermSums(b, t, where), p.policy, 1), where)
        for limit in rule.cell_limits:
            for var, amount in t.terms.get(limit.resource, []):
                if amount > limit.most(cap):
                    b.model.add(var == 0).with_name(f"{limit.tag}[{var.name}/{node_id}]")


def add_host_rule(b: ModelBuild, family: str) -> None:
    """The rows of the host rule of ``family`` (``planner.engine.resources.HOST_RULES``) on every host."""
    rule = HOST_RULE_OF[family]
    p = b.problem
    for host, entries in b.by_host.items():
        t = NodeTerms()
        for c, _o, var in entries:
            for r in HOST_RESOURCES:
                if amount := guest_demand(r, p.classes[c].guest):
                    t.terms[r.name].append((var, amount))
        _add_rows(b, rule.rows(p.cap_of(host), TermSums(b, t, host), p.policy, 1), host)


@dataclass
class ModelBuild:
    """The CP-SAT model under construction and the indices every family shares."""

    problem: Problem
    model: cp_model.CpModel
    x: dict[tuple[int, str, int], cp_model.IntVar] = field(default_factory=dict)
    by_host: dict[str, list[tuple[int, int, cp_model.IntVar]]] = field(default_factory=lambda: defaultdict(list))
    nodes: dict[tuple[str, int], NodeTerms] = field(default_factory=lambda: defaultdict(NodeTerms))
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
    capacity: dict[tuple[str, int, int], int] = {}  # (host model, class, option) -> its upper bound: once per model
    for cls in p.classes:
        own = []
        for host in cls.allowed_hosts:
            options = cls.options.get(p.host_model[host], ())
            upper_class = 1 if cls.guest.anti_affinity else cls.size
            cap = p.cap_of(host)
            for o, option in enumerate(options):
                key = (p.host_model[host], cls.index, o)
                if key not in capacity:
                    capacity[key] = option_capacity(cap, option, p.policy)
                upper = min(upper_class, capacity[key])
                var = b.model.new_int_var(0, upper, f"x[{cls.members[0]}+{cls.size - 1}|{host}|{o}]")
                b.x[(cls.index, host, o)] = var
                b.upper[var.index] = upper
                b.by_host[host].append((cls.index, o, var))
                own.append(var)
                for node_id, cell in zip(option.nodes, option.cells, strict=False):
                    b.nodes[(host, node_id)].add(var, cell)
        if own:
            b.model.add(sum(own) <= cls.size).with_name(f"assign[{cls.members[0]}..x{cls.size}]")
            placed.append((cp_model.LinearExpr.sum(own), cls.guest.priority))
        bound += cls.size * cls.guest.priority
    expr = cp_model.LinearExpr.weighted_sum([e for e, _ in placed], [w for _, w in placed]) if placed else 0
    return Term("placed", expr, bound, +1)


def define_host_overcommit(b: ModelBuild) -> None:
    """Host-wide vCPU cap: ∀h  Σ vcpus_c · x[c,h,o] ≤ ⌊cpu_overcommit_max × physical cores(h)⌋.
    Named ``overcommit[HOST]``."""
    add_host_rule(b, "define_host_overcommit")


def define_smt_policies(b: ModelBuild) -> None:
    """SMT policies per node: isolate takes whole full cores, require takes sibling pairs.

    iso(h,n) ≤ full_cores(n);  pairs(h,n) + ⌊T/2⌋·iso(h,n) ≤ pair_slots(n).
    Named ``isolate_cores[HOST/NODE]``, ``require_pairs[HOST/NODE]``."""
    add_node_rule(b, "define_smt_policies")


def define_cpu_split(b: ModelBuild) -> None:
    """Split of each node's usable CPUs into dedicated and shared, decided by the model:

    pool(h,n) = usable(n) − T·iso − 2·pairs − singles ≥ 0. Named ``dedicated_cpus[HOST/NODE]``."""
    add_node_rule(b, "define_cpu_split")


def define_shared_overcommit(b: ModelBuild) -> None:
    """Shared pool vCPU cap: Σ shared vCPUs ≤ cap × pool cores, with pool cores ≥ |pool| / T:

    b·T·shared(h,n) ≤ a·pool(h,n)  where cap = a/b. Named ``pool_overcommit[HOST/NODE]``."""
    add_node_rule(b, "define_shared_overcommit")


def define_load_target(b: ModelBuild) -> None:
    """Expected load of each shared pool at or under the target: Σ vCPU·load ≤ target·|pool|,

    in LOAD_SCALE units (loads rounded up): b·Σ load_units ≤ a·LOAD_SCALE·pool(h,n) where target = a/b.
    Named ``load_target[HOST/NODE]``."""
    add_node_rule(b, "define_load_target")


def define_emulator_pool(b: ModelBuild) -> None:
    """Emulator threads that float (emulator=shared, or host on a host without reserved CPUs) need a shared CPU on
    the node of the guest's cell 0:  e(h,n) ∈ {0,1},  Σ x ≤ M·e,  pool(h,n) ≥ e.
    Named ``emulator_users[HOST/NODE]`` (Σ x ≤ M·e) and ``emulator_pool[HOST/NODE]`` (pool ≥ e)."""
    add_node_rule(b, "define_emulator_pool")


def define_node_memory_target(b: ModelBuild) -> None:
    """Headroom on each node's 4K memory (policy.node_memory_target t = p/q < 1; none at t = 1): the physical 4K
    memory committed to guests stays at or under t × free, with memory_overcommit r = a/b:

        D + S / r ≤ t · free   ⇔   q·(a·D + b·S) ≤ p·a·free(h,n)

    (D: dedicated guests' 4K memory, 1:1; S: shared guests'). Named ``memory_target[HOST/NODE]``."""
    add_node_rule(b, "define_node_memory_target")


def define_node_memory(b: ModelBuild) -> None:
    """4K memory per node, free = memory − reserved − pools, memory_overcommit = a/b:

    dedicated guests count 1:1, shared guests' memory is overcommitted:  D + S/(a/b) ≤ free, i.e.
    b·(D + S) + (a − b)·D ≤ a·free  with D, S the dedicated and shared guests' non-hugepage cell memory;
    and no cell takes more than free (overcommit is shared among guests, never inside one): x = 0 for such options
    (they are not enumerated either, ``planner.engine.problem.guest_options``).
    Named ``memory[HOST/NODE]`` and ``cell_memory[X/NODE]``."""
    add_node_rule(b, "define_node_memory")


def define_hugepage_pools(b: ModelBuild) -> None:
    """Hugepages per node and size: Σ cell pages ≤ pool pages (never overcommitted).
    Named ``hugepages[HOST/NODE/SIZEKiB]``."""
    add_node_rule(b, "define_hugepage_pools")


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
            for n in p.classes[c].options[p.host_model[host]][o].nodes:
                groups[(host, n)][tenant].append(var)
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
    define_node_memory_target,
    define_hugepage_pools,
    define_anti_affinity,
    define_tenant_isolation,
    define_host_usage,
    define_spread,
    define_moves,
    define_distance_cost,
)

# What each family constrains: "node" / "host" (one host node / one host: the rules of planner.engine.resources),
# "class" (a guest class's own guests), "fleet" (across hosts: failure domains, hosts used, load spread, moves)
# and "objective" (a term only). A one-host model (the decomposition's pricing) takes every family whose scope is
# class, host or node, so a new rule family is priced as soon as it is listed here.
FAMILY_SCOPE: dict[Callable[[ModelBuild], Term | None], str] = {
    define_assignment: "class",
    define_host_overcommit: "host",
    define_smt_policies: "node",
    define_cpu_split: "node",
    define_shared_overcommit: "node",
    define_load_target: "node",
    define_emulator_pool: "node",
    define_node_memory: "node",
    define_node_memory_target: "node",
    define_hugepage_pools: "node",
    define_anti_affinity: "fleet",  # pricing shapes carry no tags: a pattern is one host
    define_tenant_isolation: "host",
    define_host_usage: "fleet",
    define_spread: "fleet",
    define_moves: "fleet",
    define_distance_cost: "objective",
}
ONE_HOST_FAMILIES = tuple(f for f in FAMILIES if FAMILY_SCOPE[f] in ("class", "host", "node"))


def _check_families() -> None:
    """Every family is classified, and every declared rule has its family listed with the right scope."""
    assert set(FAMILY_SCOPE) == set(FAMILIES), "classify every family in FAMILY_SCOPE"
    names = {f.__name__: FAMILY_SCOPE[f] for f in FAMILIES}
    for family in NODE_RULE_OF:
        assert names.get(family) == "node", f"node rule {family} is not a node family of FAMILIES"
    for family in HOST_RULE_OF:
        assert names.get(family) == "host", f"host rule {family} is not a host family of FAMILIES"


_check_families()


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
