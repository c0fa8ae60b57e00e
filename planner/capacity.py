"""Capacity questions: how many hosts of a model does the demand need, and how does that grow with the demand.

``hosts_needed(scenario, model)`` is the fewest hosts of one model on which the solver places every guest of the
scenario (``fewest_hosts`` gives the details: the plan, the lower bound, every solve tried, whether the answer is
proven). The search:

1. **Lower bound** from totals, each a necessary condition (``lower_bound``): CPUs (dedicated CPUs, isolate
   vCPUs' whole cores, emulator CPUs, and the shared load ÷ load target, against the usable CPUs of a host),
   vCPUs against the host-wide ``cpu_overcommit_max`` cap, 4K memory, pool pages per size, and the largest
   anti-affinity group (one host each).
2. **A fleet that fits**: N = the bound, then bound + 1, + 2, + 4, ... until a plan places every guest. The
   scenario is solved with ``objective: pack`` on N identical hosts (``variants.with_hosts``), so the plan uses
   as few of them as it can: the hosts it uses are the answer so far. If CP-SAT proved that plan optimal, the
   answer is exact.
3. **Binary search** between the last N that failed and the answer so far.

Each solve has a short time limit (``time_limit_s``, default 5 s). The answer is *proven* when it equals the
lower bound, when CP-SAT proved the fewest hosts, or when CP-SAT proved that one host fewer cannot place every
guest; otherwise it is the fewest the solver found within its time limits (an upper bound of the true minimum).

``growth_curve(scenario, model, factors)`` answers ``hosts_needed`` for the demand scaled by each factor
(``variants.scale_demand``, more guests by default) and returns a DataFrame.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Sequence

import pandas as pd

from planner.plan import Plan
from planner.problem import compile_problem
from planner.scenario import HostModel, Scenario
from planner.units import format_page
from planner.variants import _resolve_model, scale_demand, set_policy, with_hosts

GROWTH_COLUMNS: dict[str, str] = {
    "factor": "demand factor (1.0 = the scenario as it is)",
    "guests": "guests after scaling",
    "vcpus": "vCPUs of all guests",
    "memory_kib": "memory of all guests in KiB",
    "lower_bound_hosts": "hosts the totals alone need (see capacity.lower_bound)",
    "hosts_needed": "fewest hosts of the model found that place every guest",
    "proven": "True when hosts_needed is proven minimal (see capacity module docs)",
    "cpu_used_fraction": "CPU utilisation of the hosts used in the sizing plan (see frames.node_usage)",
    "memory_4k_used_fraction": "4K memory utilisation of the hosts used",
    "hugepages_used_fraction": "hugepage pool utilisation of the hosts used (NaN: no pools)",
    "load_of_target": "expected shared load against the load target on the hosts used",
    "solves": "solver runs the search took",
    "search_s": "wall time of the search in seconds",
}


class CannotFit(ValueError):
    """Some guest cannot be placed on even an empty host of the model: no number of hosts is enough."""


@dataclass(frozen=True)
class Attempt:
    hosts: int  # hosts in the fleet tried
    placed: int
    unplaced: int
    hosts_used: int
    status: str  # plan status
    solver_status: str  # CP-SAT's
    solve_s: float


@dataclass(frozen=True, eq=False)
class Sizing:
    """The answer of ``fewest_hosts``."""

    model: str
    hosts: int  # the fewest hosts found
    lower_bound: int
    proven: bool
    plan: Plan | None  # a plan placing every guest on ``hosts`` hosts (None when there are no guests)
    attempts: tuple[Attempt, ...] = ()
    bounds: dict[str, int] = field(default_factory=dict)  # lower bound per resource
    search_s: float = 0.0

    def attempts_frame(self) -> pd.DataFrame:
        return pd.DataFrame([a.__dict__ for a in self.attempts],
                            columns=["hosts", "placed", "unplaced", "hosts_used", "status", "solver_status", "solve_s"])


def _pick_model(scenario: Scenario, model: HostModel | str | None) -> HostModel:
    if model is not None:
        return _resolve_model(scenario, model)
    in_use = sorted({h.model for h in scenario.hosts})
    if len(in_use) == 1:
        return scenario.host_models[in_use[0]]
    raise ValueError(f"the scenario's hosts have {len(in_use)} host models ({', '.join(in_use) or 'none'}): "
                     "say which model to size with, e.g. model='suse-guide-4n'")


def lower_bound(scenario: Scenario, model: HostModel | str | None = None) -> dict[str, int]:
    """Hosts of ``model`` that the totals alone need, per resource (each a necessary condition):

    * ``cpus``: Σ dedicated CPUs (1 per vCPU, a whole core of T threads per ``isolate`` vCPU, +1 per
      ``emulator: isolate``) + Σ shared vCPUs × load ÷ load target, over a host's usable (non-reserved) CPUs;
    * ``vcpu_cap``: Σ vCPUs over ⌊cpu_overcommit_max × physical cores⌋;
    * ``memory_4k``: Σ 4K memory over a host's free 4K memory × memory_overcommit;
    * ``hugepages_<size>``: Σ pages over a host's pool pages of that size;
    * ``anti_affinity``: the largest group of guests sharing a tag.
    """
    model = _pick_model(scenario, model)
    cap = compile_problem(with_hosts(scenario, model, 1)).caps[model.name]
    policy = scenario.policy
    threads = max(len(core) for core in model.cores)
    cpus = Fraction(0)
    vcpus = 0
    mem = 0
    pages: Counter[int] = Counter()
    tags: Counter[str] = Counter()
    for g in scenario.guests:
        vcpus += g.vcpus
        if g.dedicated:
            cpus += g.vcpus * (threads if g.threads == "isolate" else 1)
        else:
            cpus += g.vcpus * g.load / policy.cpu_load_target
        if g.emulator == "isolate":
            cpus += 1
        if g.hugepage_kib:
            pages[g.hugepage_kib] += g.memory_kib // g.hugepage_kib
        else:
            mem += g.memory_kib
        tags.update(g.anti_affinity)

    def need(demand, capacity) -> int:
        if not demand:
            return 0
        if capacity <= 0:
            return 10**9  # cannot be met at all: fewest_hosts tells which guests
        return math.ceil(Fraction(demand) / Fraction(capacity))

    bounds = {
        "cpus": need(cpus, cap.usable_cpus),
        "vcpu_cap": need(vcpus, cap.vcpu_cap),
        "memory_4k": need(mem, sum(n.memory_4k_kib for n in cap.nodes if n.holds_cells)),
        "anti_affinity": max(tags.values(), default=0),
    }
    for size, n in sorted(pages.items()):
        bounds[f"hugepages_{format_page(size)}"] = need(n, sum(node.pages.get(size, 0) for node in cap.nodes if node.holds_cells))
    return bounds


def _unfit(scenario: Scenario, model: HostModel) -> list[str]:
    """Guests that cannot go on an empty host of the model (no node choice fits)."""
    problem = compile_problem(with_hosts(scenario, model, 1))
    bad: list[str] = []
    for cls in problem.classes:
        if not cls.options.get(model.name):
            bad.extend(cls.members)
    return bad


def fewest_hosts(
    scenario: Scenario,
    model: HostModel | str | None = None,
    *,
    time_limit_s: float = 5.0,
    seed: int = 0,
    workers: int | None = None,
    max_hosts: int | None = None,
) -> Sizing:
    """The fewest hosts of ``model`` (a ``HostModel``, a model name of the scenario or of the catalogue; default:
    the scenario's only model) on which every guest is placed; see the module docs for the search. Guests fixed
    to a host are freed (the fleet is new). Raises ``CannotFit`` when some guest fits no empty host of the
    model."""
    from planner.solver import solve

    start = time.monotonic()
    model = _pick_model(scenario, model)
    base = set_policy(scenario, objective="pack")
    if not base.guests:
        return Sizing(model.name, 0, 0, True, None, search_s=0.0)
    bad = _unfit(base, model)
    if bad:
        shown = ", ".join(bad[:8]) + (f" and {len(bad) - 8} more" if len(bad) > 8 else "")
        raise CannotFit(f"{len(bad)} guest(s) fit no empty host of model {model.name}: {shown}")
    bounds = lower_bound(base, model)
    lb = max(1, max(bounds.values()))
    limit = max_hosts if max_hosts is not None else len(base.guests)
    attempts: list[Attempt] = []
    plans: dict[int, Plan] = {}

    def attempt(n: int) -> Plan:
        plan = solve(with_hosts(base, model, n), time_limit_s=time_limit_s, seed=seed, workers=workers)
        plans[n] = plan
        attempts.append(Attempt(n, len(plan.placed), len(plan.unplaced_reasons), len(plan.hosts_used), plan.status,
                                plan.stats.solver_status, plan.stats.wall_s))
        return plan

    def fits(plan: Plan) -> bool:
        return not plan.unplaced_reasons

    lo = lb - 1  # the most hosts known (or taken) to be too few
    n, step = lb, 1
    best: Plan | None = None
    while n <= limit:
        plan = attempt(n)
        if fits(plan):
            best = plan
            break
        lo = n
        n = min(lb + step, limit) if n < limit else limit + 1
        step *= 2
    if best is None:
        raise CannotFit(f"no plan places every guest on {limit} hosts of model {model.name}")
    hi = len(best.hosts_used)
    proven = best.status == "optimal" or hi == lb
    if not proven:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            plan = attempt(mid)
            if fits(plan):
                best, hi = plan, min(mid, len(plan.hosts_used))
                if plan.status == "optimal":
                    proven = True
                    break
            else:
                lo = mid
        if not proven:
            below = plans.get(hi - 1)
            proven = hi == lb or (below is not None and not fits(below) and below.stats.solver_status == "OPTIMAL")
    return Sizing(model.name, hi, lb, proven, best, tuple(attempts), bounds, round(time.monotonic() - start, 3))


def hosts_needed(scenario: Scenario, model: HostModel | str | None = None, *, time_limit_s: float = 5.0,
                 seed: int = 0, workers: int | None = None) -> int:
    """The fewest hosts of ``model`` that place every guest of the scenario (``fewest_hosts(...).hosts``)."""
    return fewest_hosts(scenario, model, time_limit_s=time_limit_s, seed=seed, workers=workers).hosts


def growth_curve(
    scenario: Scenario,
    model: HostModel | str | None = None,
    factors: Sequence[float] = (1.0, 1.25, 1.5, 1.75, 2.0),
    *,
    by: str = "count",
    time_limit_s: float = 5.0,
    seed: int = 0,
    workers: int | None = None,
) -> pd.DataFrame:
    """Hosts of ``model`` needed as the demand grows: one row per factor (``variants.scale_demand(scenario,
    factor, by=by)``, then ``fewest_hosts``). ``attrs["model"]`` names the model. Columns:

    """
    model = _pick_model(scenario, model)
    rows = []
    for factor in factors:
        scaled = scale_demand(scenario, factor, by=by) if factor != 1 else scenario
        sizing = fewest_hosts(scaled, model, time_limit_s=time_limit_s, seed=seed, workers=workers)
        summary = sizing.plan.summary().iloc[0] if sizing.plan is not None else None
        rows.append({
            "factor": float(factor),
            "guests": len(scaled.guests),
            "vcpus": sum(g.vcpus for g in scaled.guests),
            "memory_kib": sum(g.memory_kib for g in scaled.guests),
            "lower_bound_hosts": sizing.lower_bound,
            "hosts_needed": sizing.hosts,
            "proven": sizing.proven,
            "cpu_used_fraction": float(summary["cpu_used_fraction"]) if summary is not None else math.nan,
            "memory_4k_used_fraction": float(summary["memory_4k_used_fraction"]) if summary is not None else math.nan,
            "hugepages_used_fraction": float(summary["hugepages_used_fraction"]) if summary is not None else math.nan,
            "load_of_target": float(summary["load_of_target"]) if summary is not None else math.nan,
            "solves": len(sizing.attempts),
            "search_s": sizing.search_s,
        })
    frame = pd.DataFrame(rows, columns=list(GROWTH_COLUMNS))
    frame.attrs["model"] = model.name
    frame.attrs["by"] = by
    return frame


growth_curve.__doc__ += "\n".join(f"    {k:<24} {v}" for k, v in GROWTH_COLUMNS.items()) + "\n"
