"""Fleet-scale solving by patterns (Dantzig–Wolfe decomposition with column generation).

A *pattern* is what one host of a model carries: how many guests of each shape, by which option (nodes per cell).
Hosts of one model are interchangeable, so a fleet plan is a number of hosts per pattern, and the problem's size no
longer grows with the number of hosts or guests — only with the number of distinct guest shapes.

1. Shapes: the guest classes without their anti-affinity tags (fixed guests stay with their hosts and are placed
   by the greedy plan beforehand; their hosts are left out of the patterns).
2. Columns: the greedy plan's hosts, then columns priced by a one-host CP-SAT model built from exactly the same
   constraint families as the full model (``planner.engine.cpsat_model``), with the master LP's duals as the objective.
3. Master LP (GLOP): min Σ z_p + Σ W·priority·u_s  s.t.  Σ_p a_ps z_p + u_s ≥ |s|,  Σ_{p∈m} z_p ≤ hosts(m).
   Its value is a lower bound on hosts (when every guest fits).
4. Integer master (CP-SAT) over the generated columns, hinted with the greedy plan so it is never worse.
5. Guests are dealt to the pattern slots host by host in turn (anti-affinity tags never share a host); any guest
   left over is placed first-fit into what remains.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from ortools.linear_solver import pywraplp
from ortools.sat.python import cp_model

from planner.engine import cpsat_model as fam
from planner.engine.clock import clock, stop_requested
from planner.engine.problem import Assignment, FleetState, GuestClass, Problem, score, shape_key
from planner.engine.resources import host_total
from planner.model.scenario import Host

PRICE_SCALE = 10**5  # dual prices as integers: the pricing objective's resolution
TIE_SCALE = 10**3  # one dual unit outweighs any distance difference by this factor
PRICING_FAMILIES = fam.ONE_HOST_FAMILIES  # every family of one host (cpsat_model.FAMILY_SCOPE): none forgotten


@dataclass(frozen=True)
class Pattern:
    model: str
    counts: tuple[tuple[int, int, int], ...]  # (shape, option index, guests), sorted
    distance_cost: int

    def of_shape(self, shape: int) -> int:
        return sum(n for s, _o, n in self.counts if s == shape)


@dataclass
class DecomposeResult:
    assignment: Assignment
    lp_hosts: float | None  # the master LP's value
    lp_bound: int | None  # hosts of the decomposed part no plan placing every guest can go below (None: not proven)
    columns: int
    rounds: int
    status: str
    bound_kind: str | None = None  # pattern_lp (converged), lagrangian or farley (from the last master's duals)


class _Pricer:
    """A one-host CP-SAT model per host model; only its objective changes between rounds."""

    def __init__(self, problem: Problem, shapes: list[GuestClass], model_name: str, seed: int, workers: int = 2):
        host = Host(f"pricing-{model_name}", model_name)
        sub_classes = tuple(
            dataclasses.replace(s, options={model_name: s.options.get(model_name, ())}, allowed_hosts=(host.name,))
            for s in shapes
        )
        sub = Problem(
            scenario=dataclasses.replace(problem.scenario, hosts=(host,)),
            caps=problem.caps,
            classes=sub_classes,
            host_model={host.name: model_name},
        )
        self.model_name = model_name
        self.problem = sub
        self.build, _ = fam.build_constraints(sub, PRICING_FAMILIES)
        self.seed, self.workers = seed, workers

    def price(self, duals: dict[int, float], time_limit: float) -> list[tuple[float, Pattern]]:
        b = self.build
        b.model.clear_objective()
        terms, coefs = [], []
        for (s, _h, o), var in b.x.items():
            weight = round(duals.get(s, 0.0) * PRICE_SCALE)
            cost = self.problem.classes[s].options[self.model_name][o].distance_cost
            value = weight * TIE_SCALE - cost  # distance only breaks ties
            if value > 0:
                terms.append(var)
                coefs.append(value)
        if not terms:
            self.proven = True
            return []
        b.model.maximize(cp_model.LinearExpr.weighted_sum(terms, coefs))
        solver = cp_model.CpSolver()
        clock().limit(solver.parameters, max(time_limit, 0.05), self.workers)
        solver.parameters.random_seed = self.seed
        collector = _Collector(b.x)
        status = clock().solve(solver, b.model, collector)
        clock().charge(solver)
        self.proven = status == cp_model.OPTIMAL
        out: list[tuple[float, Pattern]] = []
        for counts in collector.solutions[-5:]:
            value = sum(duals.get(s, 0.0) * n for s, _o, n in counts)
            dist = sum(self.problem.classes[s].options[self.model_name][o].distance_cost * n for s, o, n in counts)
            out.append((value, Pattern(self.model_name, counts, dist)))
        return out


    def upper_bound(self, weights: dict[int, int], time_limit: float) -> int | None:
        """An upper bound on max Σ weights[s]·(guests of shape s) over one host of the model (CP-SAT's proven
        objective bound, valid even when the search stops early); None when it proved nothing."""
        b = self.build
        b.model.clear_objective()
        terms = [(var, weights[s]) for (s, _h, _o), var in b.x.items() if weights.get(s, 0) > 0]
        if not terms:
            return 0
        b.model.maximize(cp_model.LinearExpr.weighted_sum([v for v, _ in terms], [w for _, w in terms]))
        solver = cp_model.CpSolver()
        clock().limit(solver.parameters, max(time_limit, 0.05), self.workers)
        solver.parameters.random_seed = self.seed
        status = solver.solve(b.model)
        clock().charge(solver)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return None
        return math.floor(solver.best_objective_bound + 1e-6)


def lagrangian_bound(duals: dict[int, float], sizes: list[int], hosts_of: Counter, pricers: dict,
                     time_limit: float) -> tuple[float, str] | None:
    """A lower bound on hosts from any dual prices π ≥ 0 of the cover rows (every guest placed).

    With π rounded down to multiples of 1/PRICE_SCALE and U_m ≥ max over one host of model m of Σ_s π_s·a_s (the
    pricing problem's proven bound): Lagrangian  L = Σ_s π_s·|s| + Σ_m hosts(m)·min(0, 1 − U_m), and Farley
    F = Σ_s π_s·|s| / max(1, max_m U_m) (π / max U is a feasible dual). Both are valid whatever the master's state,
    so a column generation stopped early still bounds. Returns (value, kind) of the larger, or None."""
    weights = {s: math.floor(max(v, 0.0) * PRICE_SCALE) for s, v in duals.items()}
    if not any(weights.values()):
        return None
    per_model = max(time_limit / max(len(pricers), 1), 0.05)
    upper = {}
    for m, pricer in pricers.items():
        u = pricer.upper_bound(weights, per_model)
        if u is None:
            return None
        upper[m] = u / PRICE_SCALE
    demand = sum(weights[s] * sizes[s] for s in weights) / PRICE_SCALE
    lagrangian = demand + sum(n * min(0.0, 1.0 - upper[m]) for m, n in hosts_of.items())
    farley = demand / max(1.0, max(upper.values()))
    return (lagrangian, "lagrangian") if lagrangian >= farley else (farley, "farley")


class _Collector(cp_model.CpSolverSolutionCallback):
    def __init__(self, x):
        super().__init__()
        self.x = x
        self.solutions: list[tuple] = []

    def on_solution_callback(self) -> None:
        self.solutions.append(tuple(sorted((s, o, v) for (s, _h, o), var in self.x.items() if (v := self.value(var)))))


def _greedy_columns(problem: Problem, shapes: list[GuestClass], model_name: str, duals: dict[int, float],
                    residual: list[int]) -> list[tuple[float, Pattern]]:
    """Cheap pricing: fill an empty host of the model with the shapes of highest dual value per unit of its
    scarcest resource, in a few orders; every fill is a candidate column."""
    host = next(h.name for h in problem.scenario.hosts if h.model == model_name)
    cap = problem.caps[model_name]
    cpus = max(host_total(cap, "cpus", cells_only=False), 1)
    memory = max(host_total(cap, "memory_4k", cells_only=False), 1)
    out = []
    live = [
        s for s in range(len(shapes))
        if duals.get(s, 0) > 1e-9 and residual[s] > 0 and shapes[s].options.get(model_name)
    ]
    keys = {
        "value": lambda s: -duals[s],
        "per_cpu": lambda s: -duals[s] / max(
            shapes[s].guest.vcpus * (1 if shapes[s].guest.dedicated else float(shapes[s].guest.load)) / cpus, 1e-9
        ),
        "per_memory": lambda s: -duals[s] / max(shapes[s].guest.memory_kib / memory, 1e-9),
    }
    for key in keys.values():
        state = FleetState(problem)
        counts: Counter[tuple[int, int]] = Counter()
        for s in sorted(live, key=key):
            cls = dataclasses.replace(shapes[s], allowed_hosts=(host,))
            options = cls.options[model_name]
            for _ in range(residual[s]):
                o = next((i for i, opt in enumerate(options) if state.fits(cls, host, opt)), None)
                if o is None:
                    break
                _place_shape(state, cls, host, o, options[o])
                counts[(s, o)] += 1
        if counts:
            pattern_counts = tuple(sorted((s, o, n) for (s, o), n in counts.items()))
            dist = sum(shapes[s].options[model_name][o].distance_cost * n for (s, o), n in counts.items())
            value = sum(duals[s] * n for (s, _o), n in counts.items())
            out.append((value, Pattern(model_name, pattern_counts, dist)))
    return out


def _fill_pattern(problem: Problem, shapes: list[GuestClass], model_name: str, shape: int) -> Pattern | None:
    """As many guests of one shape as an empty host of the model takes (first-fit over options)."""
    host = next(h.name for h in problem.scenario.hosts if h.model == model_name)
    state = FleetState(problem)
    cls = dataclasses.replace(shapes[shape], allowed_hosts=(host,))
    options = cls.options.get(model_name, ())
    counts: Counter[int] = Counter()
    for _ in range(shapes[shape].size):
        for o, option in enumerate(options):
            if state.fits(cls, host, option):
                _place_shape(state, cls, host, o, option)
                counts[o] += 1
                break
        else:
            break
    if not counts:
        return None
    dist = sum(options[o].distance_cost * n for o, n in counts.items())
    return Pattern(model_name, tuple(sorted((shape, o, n) for o, n in counts.items())), dist)


def _place_shape(state: FleetState, cls: GuestClass, host: str, o: int, option) -> None:
    for node_id, cell in zip(option.nodes, option.cells, strict=False):
        state.nodes[host][node_id].add(cell)
    state.host_vcpus[host] += cls.guest.vcpus
    state.note_tenant(cls, host, option)


def _shapes(problem: Problem, on_fixed: Counter) -> tuple[list[GuestClass], dict[int, int]]:
    """The shapes of the free guests (``shape_key`` with priority; no anti-affinity tags: a pattern is one host)
    and the shape of each class."""
    shape_of: dict[int, int] = {}
    shapes: list[GuestClass] = []
    by_key: dict[tuple, int] = {}
    for cls in problem.classes:
        left = cls.size - on_fixed[cls.index]
        if cls.guest.host or left <= 0:
            continue
        key = shape_key(cls, priority=True)
        if key not in by_key:
            by_key[key] = len(shapes)
            rep = dataclasses.replace(cls.guest, anti_affinity=())
            shapes.append(GuestClass(len(shapes), (), rep, cls.options, ()))
        s = by_key[key]
        shape_of[cls.index] = s
        shapes[s] = dataclasses.replace(shapes[s], members=shapes[s].members + cls.members[:left])
    return shapes, shape_of


def decompose(
    problem: Problem,
    incumbent: Assignment,
    deadline: float,
    seed: int = 0,
    workers: int = 2,
    more_columns: Sequence[Assignment] = (),
    stall_s: float | None = None,
) -> DecomposeResult | None:
    """Pack the non-fixed guests by patterns; returns a full assignment (fixed guests as in ``incumbent``).

    Hosts with fixed guests count as used whatever the plan does, so they are filled first: the incumbent's guests
    on them stay, then more guests go there first-fit (largest first). The patterns cover the rest on the other
    hosts."""
    scenario = problem.scenario
    fixed_hosts = {cls.guest.host for cls in problem.classes if cls.guest.host}
    free_hosts = [h for h in scenario.hosts if h.name not in fixed_hosts]
    hosts_of: Counter[str] = Counter(h.model for h in free_hosts)
    if not free_hosts:
        return None
    base = _fill_fixed_hosts(problem, incumbent, fixed_hosts)
    on_fixed: Counter[int] = Counter()
    for (c, _h, _o), n in base.assignment.items():
        on_fixed[c] += n
    shapes, shape_of = _shapes(problem, on_fixed)  # 1. shapes (of the guests not yet on a fixed host)
    if not shapes:
        return DecomposeResult(dict(base.assignment), None, None, 0, 0, "fixed hosts")
    sizes = [s.size for s in shapes]
    # 2. initial columns: the incumbent's hosts and one single-shape column per (shape, model)
    columns: dict[Pattern, int] = {}  # pattern -> hint (hosts using it in the incumbent)
    for k, plan in enumerate([incumbent, *more_columns]):  # the hosts of every start plan (hints: the incumbent)
        per_host: dict[str, Counter] = defaultdict(Counter)
        for (c, host, o), n in plan.items():
            if host not in fixed_hosts and c in shape_of and not problem.classes[c].guest.host:
                per_host[host][(shape_of[c], o)] += n
        for host, counts in per_host.items():
            model = problem.host_model[host]
            dist = sum(shapes[s].options[model][o].distance_cost * n for (s, o), n in counts.items())
            pattern = Pattern(model, tuple(sorted((s, o, n) for (s, o), n in counts.items())), dist)
            columns[pattern] = columns.get(pattern, 0) + (1 if k == 0 else 0)
    for s in range(len(shapes)):
        for model in hosts_of:
            if shapes[s].options.get(model):
                p = _fill_pattern(problem, shapes, model, s)
                if p is not None:
                    columns.setdefault(p, 0)
    penalty = [(len(free_hosts) + 1) * shapes[s].guest.priority for s in range(len(shapes))]
    pricers = {m: _Pricer(problem, shapes, m, seed, workers) for m in hosts_of}
    budget = max(deadline - clock().now(), 0.0)
    # 3. column generation on the whole problem: the LP bound
    lp_value, lp_z, converged, rounds, last_duals = _column_generation(
        problem, shapes, columns, sizes, hosts_of, penalty, pricers, clock().now() + 0.3 * budget, stall_s
    )
    lp_bound, bound_kind = None, None
    if lp_value is not None:
        # the objective adds a penalty per unplaced guest: only the hosts part is a number of hosts, and it bounds
        # the hosts only when the LP places every guest (no penalty term left)
        hosts_part = sum(lp_z.values())
        if lp_value - hosts_part > 1e-6:
            converged = False
        lp_value = hosts_part
    if last_duals and not converged and not fixed_hosts:  # with fixed hosts the solver cannot use it
        found = lagrangian_bound(last_duals, sizes, hosts_of, pricers, min(0.1 * budget, 6.0))
        if found is not None:
            lp_bound, bound_kind = math.ceil(found[0] - 1e-6), found[1]
    if converged and lp_value is not None:
        # pricing works on rounded duals with a distance tie-break: allow for the error it can make per host
        host_cap = max(problem.caps[m].vcpu_cap for m in hosts_of)
        max_cost = max((o.distance_cost for s in shapes for opts in s.options.values() for o in opts), default=0)
        slack = sum(hosts_of.values()) * host_cap * (0.5 / PRICE_SCALE + max_cost / (PRICE_SCALE * TIE_SCALE))
        lp_bound, bound_kind = math.ceil(lp_value - slack - 1e-9), "pattern_lp"
    candidates: list[tuple[tuple, Assignment]] = []
    # 4a. integer master over the columns found
    chosen = _integer_master(columns, sizes, hosts_of, penalty, clock().now() + 0.1 * budget, seed, workers)
    if chosen is not None:
        a = _deal(problem, shapes, shape_of, chosen, free_hosts, base, on_fixed)
        candidates.append((score(problem, a), a))
    # 4b. diving: fix the columns the LP uses whole, re-price the rest, repeat
    dived = _dive(problem, shapes, columns, sizes, hosts_of, penalty, pricers, deadline)
    rounds += dived[1]
    if dived[0] or not stop_requested():  # stopped before the dive fixed a pattern: nothing to deal (Ctrl-C)
        a = _deal(problem, shapes, shape_of, dived[0], free_hosts, base, on_fixed)
        candidates.append((score(problem, a), a))
    if not candidates:  # stopped (Ctrl-C) before a pattern plan existed
        return None
    best = max(candidates, key=lambda c: c[0])[1]
    return DecomposeResult(best, lp_value, lp_bound, len(columns), rounds, "converged" if converged else "stopped",
                           bound_kind)


def _column_generation(problem, shapes, columns, sizes, hosts_of, penalty, pricers, until, stall_s=None):
    """Master LP ⇄ pricing until no column improves (converged), time runs out, or the LP value did not fall by
    0.1 % for ``stall_s``. Adds to ``columns``."""
    lp_value, z, rounds, converged = None, {}, 0, False
    best, since, last_duals = None, clock().now(), None
    while clock().now() < until:
        rounds += 1
        lp_value, duals, model_duals, z = _master_lp(columns, sizes, hosts_of, penalty)
        if lp_value is not None and (best is None or lp_value < best - 1e-3 * max(best, 1.0)):
            best, since = lp_value, clock().now()
        elif stall_s is not None and clock().now() - since >= stall_s:
            break
        clock().tick(0.01 + 1e-4 * len(columns))
        if duals is None:
            break
        last_duals = duals
        added, proven = 0, True
        for m, pricer in pricers.items():
            found = _greedy_columns(problem, shapes, m, duals, sizes)
            clock().tick(0.01 + 1e-5 * sum(sizes))
            new = [p for v, p in found if v > 1 - model_duals[m] + 1e-9 and p not in columns]
            if not new:
                left = until - clock().now()
                if left <= 0:
                    proven = False
                    break
                found = pricer.price(duals, min(1.0, left))
                proven = proven and pricer.proven
                new = [p for v, p in found if v > 1 - model_duals[m] + 1e-9 and p not in columns]
            else:
                proven = False  # greedy columns prove nothing about optimality
            for p in new:
                columns[p] = 0
            added += len(new)
        if not added:
            converged = proven
            break
    return lp_value, z, converged, rounds, last_duals


def _dive(problem, shapes, columns, sizes, hosts_of, penalty, pricers, deadline):
    """Price-and-dive: repeatedly take ⌊z_p⌋ hosts of every pattern the LP uses at least once (or one host of the
    largest), shrink the demand and the hosts left, and re-price the residual problem."""
    residual = list(sizes)
    hosts_left = Counter(hosts_of)
    fixed: Counter[Pattern] = Counter()
    rounds = 0
    while any(residual) and sum(hosts_left.values()) > 0 and clock().now() < deadline:
        rounds += 1
        slice_end = clock().now() + min(max((deadline - clock().now()) / 4, 0.2), 2.0)
        lp, z, _conv, _r, _d = _column_generation(
            problem, shapes, columns, residual, hosts_left, penalty, pricers, slice_end
        )
        if not z or (lp is not None and lp < 0.999 and fixed):
            break  # less than a host's worth left: the slack of the hosts already taken absorbs it (see _deal)
        useful = {p: v for p, v in z.items() if v > 1e-6 and any(residual[s] for s, _o, _n in p.counts)}
        if not useful:
            break
        picks = [(p, math.floor(v + 0.5)) for p, v in useful.items() if v >= 0.5]
        if not picks:
            best = max(useful, key=lambda p: useful[p])
            picks = [(best, 1)]
        for p, k in picks:
            k = min(k, hosts_left[p.model])
            if k <= 0:
                continue
            fixed[p] += k
            hosts_left[p.model] -= k
            for s, _o, n in p.counts:
                residual[s] = max(0, residual[s] - k * n)
    return dict(fixed), rounds


def _master_lp(columns, sizes, hosts_of, penalty):
    solver = pywraplp.Solver.CreateSolver("GLOP")
    z = {p: solver.NumVar(0, hosts_of.get(p.model, 0), "") for p in columns}
    u = [solver.NumVar(0, size, "") for size in sizes]
    cover = []
    for s, size in enumerate(sizes):
        cover.append(solver.Add(solver.Sum([z[p] * p.of_shape(s) for p in columns if p.of_shape(s)]) + u[s] >= size))
    avail = {
        m: solver.Add(solver.Sum([z[p] for p in columns if p.model == m]) <= hosts_of.get(m, 0))
        for m in {p.model for p in columns} | set(hosts_of)
    }
    solver.Minimize(solver.Sum(list(z.values())) + solver.Sum([u[s] * penalty[s] for s in range(len(sizes))]))
    if solver.Solve() != pywraplp.Solver.OPTIMAL:
        return None, None, None, None
    duals = {s: c.dual_value() for s, c in enumerate(cover)}
    values = {p: var.solution_value() for p, var in z.items()}
    return solver.Objective().Value(), duals, {m: c.dual_value() for m, c in avail.items()}, values


def _integer_master(columns, sizes, hosts_of, penalty, deadline, seed, workers):
    """Phase 1: fewest unplaced (by priority), then fewest hosts. Phase 2: with that fixed, least distance cost."""
    model = cp_model.CpModel()
    z = {p: model.new_int_var(0, hosts_of[p.model], f"z{i}") for i, p in enumerate(columns)}
    u = [model.new_int_var(0, size, f"u{s}") for s, size in enumerate(sizes)]
    for s, size in enumerate(sizes):
        model.add(sum(z[p] * p.of_shape(s) for p in columns if p.of_shape(s)) + u[s] >= size)
    for m, n in hosts_of.items():
        model.add(sum(z[p] for p in columns if p.model == m) <= n)
    hosts = sum(z.values())
    unplaced = sum(u[s] * penalty[s] for s in range(len(sizes)))
    model.minimize(unplaced + hosts)  # penalty[s] > total hosts: placing a guest always comes first
    for p, var in z.items():
        model.add_hint(var, columns[p])

    def run(time_limit):
        solver = cp_model.CpSolver()
        clock().limit(solver.parameters, max(time_limit, 0.2), workers)
        solver.parameters.random_seed = seed
        status = clock().solve(solver, model)
        clock().charge(solver)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return None
        return solver, {p: v for p, var in z.items() if (v := solver.value(var))}

    left = deadline - clock().now()
    first = run(0.7 * left)
    if first is None:
        return None
    solver, chosen = first
    best_unplaced = round(sum(solver.value(u[s]) * penalty[s] for s in range(len(sizes))))
    best_hosts = round(sum(chosen.values()))
    # phase 2: keep placement and hosts, spend what is left on the NUMA distance cost
    model.add(unplaced <= best_unplaced)
    model.add(hosts <= best_hosts)
    model.minimize(sum(z[p] * p.distance_cost for p in columns if p.distance_cost))
    model.clear_hints()
    for p, var in z.items():
        model.add_hint(var, chosen.get(p, 0))
    second = run(deadline - clock().now())
    return second[1] if second is not None else chosen


def _fill_fixed_hosts(problem: Problem, incumbent: Assignment, fixed_hosts: set[str]) -> FleetState:
    """The hosts of fixed guests as the incumbent has them, then filled first-fit with more guests (largest first):
    they are used in every plan, so what they can still carry is free."""
    state = FleetState(problem)
    for (c, host, o), n in sorted(incumbent.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2])):
        if host in fixed_hosts:
            cls = problem.classes[c]
            option = cls.options[problem.host_model[host]][o]
            for _ in range(n):
                if state.fits(cls, host, option):
                    state.place(cls, host, o)
    placed: Counter[int] = Counter()
    for (c, _h, _o), n in state.assignment.items():
        placed[c] += n
    order = sorted(problem.classes, key=lambda c: (-c.guest.priority, -c.guest.vcpus, -c.guest.memory_kib, c.index))
    hosts = [h.name for h in problem.scenario.hosts if h.name in fixed_hosts]
    for cls in order:
        if cls.guest.host:
            continue
        for host in hosts:
            options = cls.options.get(problem.host_model[host], ())
            while placed[cls.index] < cls.size:
                index = next((i for i, o in enumerate(options) if state.fits(cls, host, o)), None)
                if index is None:
                    break
                state.place(cls, host, index)
                placed[cls.index] += 1
    return state


def _deal(problem, shapes, shape_of, chosen, free_hosts, base: FleetState, on_fixed) -> Assignment:
    # patterns onto concrete hosts of their model, in host order
    hosts_by_model: dict[str, list[str]] = defaultdict(list)
    for h in free_hosts:
        hosts_by_model[h.model].append(h.name)
    slots: dict[int, list[tuple[str, int]]] = defaultdict(list)  # shape -> (host, option) per guest slot
    for p in sorted(chosen, key=lambda p: (p.model, p.counts)):
        for _ in range(chosen[p]):
            host = hosts_by_model[p.model].pop(0)
            for s, o, n in p.counts:
                slots[s].extend([(host, o)] * n)
    # the fixed hosts as filled beforehand (fixed guests and what went with them)
    state = FleetState.from_assignment(problem, base.assignment)
    leftovers: list = []
    classes_of_shape: dict[int, list[GuestClass]] = defaultdict(list)
    for cls in problem.classes:
        if cls.index in shape_of:
            classes_of_shape[shape_of[cls.index]].append(cls)
    for s, classes in classes_of_shape.items():
        # interleave the slots host by host so that guests of one tag land on different hosts
        per_host: dict[str, list[int]] = defaultdict(list)
        order: list[str] = []
        for host, o in slots.get(s, []):
            if host not in per_host:
                order.append(host)
            per_host[host].append(o)
        free: list[tuple[str, int]] = []
        depth = max((len(v) for v in per_host.values()), default=0)
        for i in range(depth):
            free.extend((h, per_host[h][i]) for h in order if i < len(per_host[h]))
        members = [(cls, name) for cls in sorted(classes, key=lambda c: (not c.guest.anti_affinity, c.index))
                   for name in cls.members[on_fixed[cls.index]:]]
        taken = [False] * len(free)
        start = 0
        for cls, _name in members:
            tags = set(cls.guest.anti_affinity)
            placed = False
            for i in range(start, len(free)):
                if taken[i]:
                    continue
                host, o = free[i]
                if tags and state.tag_clash(cls.guest, host):
                    continue
                option = cls.options[problem.host_model[host]][o]
                if not state.fits(cls, host, option):
                    continue
                state.place(cls, host, o)
                taken[i] = True
                placed = True
                break
            while start < len(free) and taken[start]:
                start += 1
            if not placed:
                leftovers.append(cls)
    # anything left: first fit into what remains, hosts already in use first. Hosts only fill up, so a host that
    # does not take a shape now never will: each shape keeps a pointer past such hosts (not past a host passed over
    # only for an anti-affinity tag), which keeps this linear in guests + hosts x shapes.
    order = [h.name for h in problem.scenario.hosts if state.host_guests[h.name]]
    order += [h.name for h in problem.scenario.hosts if not state.host_guests[h.name]]
    pointer: dict[tuple, int] = {}
    for cls in leftovers:
        allowed = set(cls.allowed_hosts)
        key = shape_key(cls, priority=True)
        i, advancing = pointer.get(key, 0), True
        tags = set(cls.guest.anti_affinity)
        while i < len(order):
            host = order[i]
            if host in allowed and not (tags and state.host_tags[host] & tags):
                options = cls.options.get(problem.host_model[host], ())
                index = next((k for k, o in enumerate(options) if state.fits(cls, host, o)), None)
                if index is not None:
                    state.place(cls, host, index)
                    break
            elif host in allowed:
                advancing = False
            i += 1
            if advancing:
                pointer[key] = i
    return dict(state.assignment)
