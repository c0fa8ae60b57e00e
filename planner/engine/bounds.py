"""Lower bounds on the number of hosts a plan needs, computed before solving.

Every bound assumes every guest is placed (a plan that leaves guests out can use fewer hosts), and each is valid
on its own; the reported bound is the largest, and ``binding`` names it.

* resource sums at host granularity: dedicated CPUs, shared-pool CPUs (Σ load ÷ target and Σ vCPUs ÷ cap), host
  vCPU cap, 4K memory, hugepages of each size — each against the largest hosts first;
* node granularity: cells larger than half of every node cannot share a node;
* the largest anti-affinity tag (one host per guest), and the hosts of fixed guests;
* the LP relaxation of the node-shaped packing (``lp``): classes × options on each host model with every node
  constraint of the model, hosts of a model as a continuous count. It dominates the sums when they hold per node.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from planner.engine.problem import ModelCap, Problem
from planner.engine.resources import (
    HOST_RESOURCES,
    HOST_RULES,
    NODE_RESOURCES,
    NODE_RULES,
    Row,
    Sums,
    guest_demand,
    guest_totals,
    host_total,
    is_total,
    total_words,
)


@dataclass(frozen=True)
class Bounds:
    hosts: int  # the best lower bound on hosts used
    binding: str  # which bound gives it
    all_bounds: dict[str, float] = field(default_factory=dict)
    text: str = ""  # what binds, in words (``describe``)

    def clamped(self, limit: int) -> Bounds:
        """The bounds capped at ``limit``: the fleet size, or the hosts of a plan found (a bound is never above
        either: a plan that exists uses that many hosts; a bound above it would only say "not every guest fits")."""
        capped = {k: (min(v, limit) if k != "lp_value" else v) for k, v in self.all_bounds.items()}
        if self.hosts <= limit:
            return Bounds(self.hosts, self.binding, capped, self.text)
        head = self.text.split(" (placing every guest would take")[0]
        raw = max(self.all_bounds.get(self.binding, self.hosts), self.hosts)
        text = head.replace(_at_least(self.hosts), _at_least(limit))
        if text:
            text += f" (placing every guest would take at least {int(raw)}: more than the fleet or a plan found)"
        return Bounds(limit, self.binding, capped, text)


def _hosts_for(demand: float, capacities: list[float]) -> int:
    """Fewest hosts whose capacities, largest first, add up to ``demand``."""
    if demand <= 0:
        return 0
    total = 0.0
    for k, cap in enumerate(sorted(capacities, reverse=True), start=1):
        total += cap
        if total >= demand - 1e-9:
            return k
    return len(capacities) + 1  # more than the fleet has: the bound says "does not fit"


def resource_bounds(problem: Problem) -> dict[str, float]:
    """Hosts each fleet total alone needs (``planner.engine.resources.TOTALS``), largest hosts first; isolate vCPUs
    take the fleet's fewest threads per core, and the shared pool is at least both its load ÷ load target and its
    vCPUs × T ÷ cpu_overcommit_max."""
    scenario = problem.scenario
    caps = [problem.cap_of(h.name) for h in scenario.hosts]
    if not caps:
        return {}
    min_t = min((n.threads_per_core for c in caps for n in c.nodes if n.holds_cells), default=1)
    needs = guest_totals(scenario.guests, min_t).needs(problem.policy, min_t, with_vcpu_cap=True)
    return {key: _hosts_for(float(need), [host_total(c, key, cells_only=False) for c in caps])
            for key, need in needs.items()}


def node_bounds(problem: Problem) -> dict[str, float]:
    """Cells that exceed half of every node of every model (by CPUs or memory) need a node each."""
    caps = [problem.cap_of(h.name) for h in problem.scenario.hosts]
    if not caps:
        return {}
    nodes_per_host = max(sum(1 for n in c.nodes if n.holds_cells) for c in caps)
    big = 0
    for cls in problem.classes:
        options = [o for opts in cls.options.values() for o in opts]
        if not options:
            continue
        cells = min(len(o.cells) for o in options)
        cell = min(options, key=lambda o: len(o.cells)).cells[0]
        cpus = cell.iso + 2 * cell.pairs + cell.singles
        half_everywhere = all(
            2 * cpus > n.usable_cpus or 2 * cell.memory_4k_kib > n.memory_4k_kib
            for c in caps
            for n in c.nodes
            if n.holds_cells
        )
        if half_everywhere:
            big += cls.size * cells
    return {"big_cells": math.ceil(big / nodes_per_host)} if big else {}


def placement_bounds(problem: Problem) -> dict[str, float]:
    tags: Counter[str] = Counter()
    for g in problem.scenario.guests:
        tags.update(set(g.anti_affinity))
    # hosts of fixed guests that fit there at all (a fixed guest that never fits its host is unplaced, not a host)
    fixed = {cls.guest.host for cls in problem.classes
             if cls.guest.host and cls.options.get(problem.host_model[cls.guest.host])}
    out: dict[str, float] = {}
    if tags:
        out["anti_affinity"] = max(tags.values())
    if fixed:
        out["fixed_hosts"] = len(fixed)
    return out


# Resources the LP relaxation leaves out (as if absent): the emulator indicator (not linear), and the 1:1 part of
# dedicated guests' 4K memory, so that the memory row stays the weaker D + S ≤ overcommit × free it has always been.
# Counting it (the model's exact row) is valid and tighter but moves bounds, e.g. fleet-50x1500 at
# memory_overcommit 3/2: 20 -> 22 hosts: a decision of its own, not part of declaring the rules once.
LP_RELAXED = frozenset({"needs_pool", "memory_4k_dedicated_kib"})


class _LpSums(Sums):
    """A node's (host's) resource totals as GLOP expressions, without the ``LP_RELAXED`` resources."""

    def __init__(self, solver, terms: dict[str, list], keyed: dict[str, dict[int, list]] | None = None):
        self.solver, self.terms, self.keys = solver, terms, keyed or {}

    def _total(self, terms: list):
        return self.solver.Sum([v * c for v, c in terms]) if terms else 0

    def has(self, name: str) -> bool:
        return name not in LP_RELAXED and (bool(self.terms.get(name)) or any(self.keys.get(name, {}).values()))

    def __getitem__(self, name: str):
        return 0 if name in LP_RELAXED else self._total(self.terms.get(name, []))

    def keyed(self, name: str) -> dict:
        return {key: self._total(terms) for key, terms in self.keys.get(name, {}).items()}

    def indicator(self, name: str, var_tag: str = "", link_tag: str = "") -> int:
        return 0


def _add_lp_rows(solver, rows: list[Row]) -> None:
    for row in rows:
        solver.Add(row.lhs * row.lp_scale <= row.rhs * row.lp_scale)


def lp_bound(problem: Problem, mix: dict[str, float] | None = None) -> float | None:
    """LP relaxation of the node-shaped packing; None when even the relaxation cannot place every guest.
    Its rows are the node and host rules of ``planner.engine.resources`` with the capacities scaled by the hosts
    of the model (continuous). ``mix``, when given, receives the LP's hosts per model (a model mix for the
    heuristics)."""
    from ortools.linear_solver import pywraplp

    solver = pywraplp.Solver.CreateSolver("GLOP")
    if solver is None:  # pragma: no cover - GLOP ships with ortools
        return None
    hosts_of: Counter[str] = Counter(h.model for h in problem.scenario.hosts)
    y = {m: solver.NumVar(0, n, f"y[{m}]") for m, n in hosts_of.items()}
    per_class = defaultdict(list)
    node_terms: dict[tuple[str, int], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    node_keyed: dict[tuple[str, int], dict[str, dict[int, list]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list)))
    host_terms: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for cls in problem.classes:
        for m, options in cls.options.items():
            if m not in y:
                continue
            for o, option in enumerate(options):
                var = solver.NumVar(0, cls.size, f"x[{cls.index},{m},{o}]")
                per_class[cls.index].append(var)
                for r in HOST_RESOURCES:
                    host_terms[m][r.name].append((var, guest_demand(r, cls.guest)))
                for node_id, cell in zip(option.nodes, option.cells, strict=False):
                    for r in NODE_RESOURCES:
                        if not (amount := r.value(cell)):
                            continue
                        if r.keyed_by:
                            node_keyed[(m, node_id)][r.name][getattr(cell, r.keyed_by)].append((var, amount))
                        else:
                            node_terms[(m, node_id)][r.name].append((var, amount))
    for cls in problem.classes:
        if not per_class[cls.index]:
            return None
        solver.Add(solver.Sum(per_class[cls.index]) == cls.size)
    for m, terms in host_terms.items():
        for rule in HOST_RULES:
            _add_lp_rows(solver, rule.rows(problem.caps[m], _LpSums(solver, terms), problem.policy, y[m]))
    for m, node_id in dict.fromkeys([*node_terms, *node_keyed]):
        sums = _LpSums(solver, node_terms[(m, node_id)], node_keyed[(m, node_id)])
        for node_rule in NODE_RULES:
            _add_lp_rows(solver, node_rule.rows(problem.caps[m].node(node_id), sums, problem.policy, y[m]))
    solver.Minimize(solver.Sum(list(y.values())))
    status = solver.Solve()
    if status != pywraplp.Solver.OPTIMAL:
        return None
    if mix is not None:
        mix.update({m: var.solution_value() for m, var in y.items()})
    return solver.Objective().Value()


def _at_least(hosts: int) -> str:
    return f"at least {hosts} host{'s' if hosts != 1 else ''}"


def _largest_models(problem: Problem, key: str, count: int) -> str:
    """The host models of the ``count`` hosts a resource bound counts (largest capacity first)."""
    def capacity(cap: ModelCap) -> float:
        return host_total(cap, key, cells_only=False)

    hosts = sorted(problem.scenario.hosts, key=lambda h: -capacity(problem.cap_of(h.name)))[:count]
    models = list(dict.fromkeys(h.model for h in hosts))
    return " and ".join(models)


def _tightest_resource(problem: Problem, found: dict[str, float]) -> str:
    """' (tightest resource alone: 4K memory of amd-nps4 hosts, at least 27 hosts)' from the resource sums."""
    sums = {k: v for k, v in found.items() if is_total(k) and v > 0}
    if not sums:
        return ""
    kind = max(sums, key=lambda k: (sums[k], k == "memory_4k"))
    n = int(sums[kind])
    what = total_words(kind)
    return f" (tightest resource alone: {what} of {_largest_models(problem, kind, n)} hosts, {_at_least(n)})"


def describe(problem: Problem, kind: str, hosts: int, found: dict[str, float] | None = None) -> str:
    """What a bound says, in words: '4K memory of amd-nps4 hosts binds: at least 28 hosts'."""
    at_least = _at_least(hosts)
    if is_total(kind):
        what = total_words(kind)
        return f"{what} of {_largest_models(problem, kind, hosts)} hosts binds: {at_least}"
    if kind == "big_cells":
        return f"cells larger than half of every node (one node each) bind: {at_least}"
    if kind == "anti_affinity":
        tags: Counter[str] = Counter(t for g in problem.scenario.guests for t in set(g.anti_affinity))
        tag, n = tags.most_common(1)[0]
        return f"anti-affinity tag '{tag}' ({n} guests, one per host) binds: {at_least}"
    if kind == "fixed_hosts":
        return f"the hosts of fixed (running) guests bind: {at_least}"
    tightest = _tightest_resource(problem, found or {})
    if kind == "lp":
        return f"the LP relaxation of the node-shaped packing binds: {at_least}{tightest}"
    if kind == "cp_sat":
        return f"the whole-fleet model, solved to optimality, binds: {at_least}{tightest}"
    if kind == "pattern_lp":
        return f"the pattern LP (column generation, converged) binds: {at_least}{tightest}"
    if kind in ("lagrangian", "farley"):
        return (f"the {kind.capitalize()} bound of the pattern LP (column generation stopped early) binds: "
                f"{at_least}{tightest}")
    return f"{kind} binds: {at_least}"


def lower_bounds(problem: Problem, with_lp: bool = True, mix: dict[str, float] | None = None) -> Bounds:
    found: dict[str, float] = {}
    found.update(resource_bounds(problem))
    found.update(node_bounds(problem))
    found.update(placement_bounds(problem))
    if with_lp:
        lp = lp_bound(problem, mix)
        if lp is not None:
            found["lp"] = math.ceil(lp - 1e-6)
            found["lp_value"] = round(lp, 3)
    ranked = {k: v for k, v in found.items() if k != "lp_value"}
    if not ranked:
        return Bounds(0, "none", found)
    # on a tie a concrete reason (a resource, cells, a tag) is named rather than the LP, which implies it
    binding = max(ranked, key=lambda k: (ranked[k], k != "lp"))
    hosts = int(ranked[binding])
    return Bounds(hosts, binding, found, describe(problem, binding, hosts, found)).clamped(len(problem.scenario.hosts))
