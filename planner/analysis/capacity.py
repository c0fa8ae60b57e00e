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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import pandas as pd

from planner.analysis.variants import resolve_model, scale_demand, set_policy, with_hosts
from planner.engine.problem import ModelCap, compile_problem
from planner.engine.resources import PAGES_PREFIX, TOTALS, guest_totals, host_totals, parse_pages_key, total_label
from planner.model.errors import VplanError
from planner.model.plan import Plan
from planner.model.scenario import HostModel, Scenario
from planner.model.units import format_page

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


class CannotFit(VplanError, ValueError):
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
        return resolve_model(scenario, model)
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
    demand = demand_totals(scenario, max(len(core) for core in model.cores))
    per_host = capacity_totals(cap)

    def need(key: str) -> int:
        if not demand.get(key):
            return 0
        capacity = per_host.get(key, 0)
        if capacity <= 0:
            return 10**9  # cannot be met at all: fewest_hosts tells which guests
        return math.ceil(Fraction(demand[key]) / Fraction(capacity))

    bounds = {key: need(key) for key in ("cpus", "vcpu_cap", "memory_4k")}
    bounds["anti_affinity"] = int(demand["anti_affinity"])
    for key in sorted(k for k in demand if k.startswith(PAGES_PREFIX)):
        bounds[key] = need(key)
    return bounds


def demand_totals(scenario: Scenario, threads_per_core: int) -> dict[str, Fraction | int]:
    """What the guests need in all, per resource, in the units of ``capacity_totals``: ``cpus`` (dedicated CPUs —
    ``threads_per_core`` per ``isolate`` vCPU — emulator CPUs and shared vCPUs × load ÷ load target),
    ``vcpu_cap`` (vCPUs), ``memory_4k`` (KiB), ``hugepages_<size>`` (pages) and ``anti_affinity`` (the largest
    group sharing a tag). The totals and their keys are ``planner.engine.resources.TOTALS`` (as in the solver's
    bounds, which also bound the shared pool by its vCPU cap)."""
    needs = guest_totals(scenario.guests, threads_per_core).needs(scenario.policy, threads_per_core,
                                                                  with_vcpu_cap=False)
    tags: Counter[str] = Counter(t for g in scenario.guests for t in g.anti_affinity)
    out: dict[str, Fraction | int] = {"cpus": needs["cpus"], "vcpu_cap": int(needs["vcpu_cap"]),
                                      "memory_4k": int(needs["memory_4k"]),
                                      "anti_affinity": max(tags.values(), default=0)}
    for key in sorted((k for k in needs if k.startswith(PAGES_PREFIX)), key=parse_pages_key):
        out[key] = int(needs[key])
    return out


def capacity_totals(cap: ModelCap) -> dict[str, int]:
    """What one host of a model offers, per resource of ``demand_totals``: usable CPUs, the vCPU cap, 4K memory
    (KiB, × memory_overcommit) and pool pages per size, over the nodes that hold guest cells
    (``planner.engine.resources.host_totals``)."""
    return host_totals(cap, cells_only=True)


def _unfit(scenario: Scenario, model: HostModel) -> list[str]:
    """Guests that cannot go on an empty host of the model (no node choice fits)."""
    problem = compile_problem(with_hosts(scenario, model, 1))
    bad: list[str] = []
    for cls in problem.classes:
        if not cls.options.get(model.name):
            bad.extend(cls.members)
    return bad


def _search(lb: int, limit: int, attempt_many, batch: int, used=None,
            trust_optimal: bool = True) -> tuple[int, Plan | None, dict[int, Plan], bool]:
    """The fewest n in [lb, limit] whose plan places every guest: n = lb, lb + 1, lb + 2, lb + 4, ... (``batch``
    of them solved side by side) until one fits, then a binary search below the hosts that plan uses.
    ``attempt_many(ns)`` solves the fleets of those sizes and returns their plans. Returns (fewest found, its
    plan, every plan by size, proven by CP-SAT). ``used(plan)``: the hosts that count (default: hosts used);
    ``trust_optimal``: an optimal plan (fewest hosts used in all) proves the answer."""
    plans: dict[int, Plan] = {}
    _used = used or (lambda plan: len(plan.hosts_used))

    def fits(plan: Plan) -> bool:
        return not plan.unplaced_reasons

    sizes, step, n = [], 1, lb
    while n <= limit:
        sizes.append(n)
        n, step = lb + step, step * 2
    if not sizes or sizes[-1] != limit:
        sizes.append(limit)
    lo, best = lb - 1, None
    for i in range(0, len(sizes), max(batch, 1)):
        chunk = sizes[i:i + max(batch, 1)]
        for size, plan in zip(chunk, attempt_many(chunk), strict=False):
            plans[size] = plan
        fitting = [size for size in chunk if fits(plans[size])]
        if fitting:
            best = plans[fitting[0]]
            lo = max([lo] + [size for size in chunk if size < fitting[0]])
            break
        lo = chunk[-1]
    if best is None:
        return limit + 1, None, plans, False
    hi = _used(best)
    proven = trust_optimal and best.status == "optimal"
    if not proven:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            plan = attempt_many([mid])[0]
            plans[mid] = plan
            if fits(plan):
                best, hi = plan, min(mid, _used(plan))
                if trust_optimal and plan.status == "optimal":
                    proven = True
                    break
            else:
                lo = mid
        if not proven:
            below = plans.get(hi - 1)
            proven = below is not None and not fits(below) and below.stats.solver_status == "OPTIMAL"
    return hi, best, plans, proven


def _solver(executor, **options):
    """attempt_many for a list of scenarios: on ``executor`` (side by side) or here, one after the other."""
    from planner.analysis.sweep import solve_many

    def run(scenarios: list[Scenario]) -> list[Plan]:
        if executor is None:
            return [solve_many([sc], **options)[0] for sc in scenarios]
        return solve_many(scenarios, executor=executor, **options)

    return run


def fewest_hosts(
    scenario: Scenario,
    model: HostModel | str | None = None,
    *,
    time_limit_s: float = 5.0,
    seed: int = 0,
    workers: int | None = None,
    max_hosts: int | None = None,
    executor=None,
    batch: int | None = None,
    deterministic: bool = False,
) -> Sizing:
    """The fewest hosts of ``model`` (a ``HostModel``, a model name of the scenario or of the catalogue; default:
    the scenario's only model) on which every guest is placed; see the module docs for the search. Guests fixed
    to a host are freed (the fleet is new). Raises ``CannotFit`` when some guest fits no empty host of the
    model. ``executor`` (any ``concurrent.futures.Executor``, see ``planner.analysis.sweep``): the first fleet sizes are
    solved ``batch`` (default 3 with an executor, else 1) at a time on it; ``deterministic``: see ``solve``."""
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
    run = _solver(executor, time_limit_s=time_limit_s, seed=seed, workers=workers, deterministic=deterministic)

    def attempt_many(ns: list[int]) -> list[Plan]:
        plans = run([with_hosts(base, model, n) for n in ns])
        for n, plan in zip(ns, plans, strict=False):
            attempts.append(Attempt(n, len(plan.placed), len(plan.unplaced_reasons), len(plan.hosts_used),
                                    plan.status, plan.stats.solver_status, plan.stats.wall_s))
        return plans

    hi, best, _plans, proven = _search(lb, limit, attempt_many, batch or (3 if executor is not None else 1))
    if best is None:
        raise CannotFit(f"no plan places every guest on {limit} hosts of model {model.name}")
    proven = proven or hi == lb
    return Sizing(model.name, hi, lb, proven, best, tuple(attempts), bounds, round(time.monotonic() - start, 3))


def hosts_needed(scenario: Scenario, model: HostModel | str | None = None, *, time_limit_s: float = 5.0,
                 seed: int = 0, workers: int | None = None, executor=None, deterministic: bool = False) -> int:
    """The fewest hosts of ``model`` that place every guest of the scenario (``fewest_hosts(...).hosts``)."""
    return fewest_hosts(scenario, model, time_limit_s=time_limit_s, seed=seed, workers=workers,
                        executor=executor, deterministic=deterministic).hosts


def add_hosts(scenario: Scenario, model: HostModel | str, count: int) -> Scenario:
    """A new scenario with ``count`` more hosts of ``model`` (named ``MODEL-new-01``, ..., skipping names in use);
    the existing hosts and fixed guests stay."""
    from dataclasses import replace

    from planner.model.scenario import Host

    new_model = resolve_model(scenario, model)
    taken = {h.name.lower() for h in scenario.hosts}
    hosts, i = list(scenario.hosts), 0
    while len(hosts) < len(scenario.hosts) + count:
        i += 1
        name = f"{new_model.name}-new-{i:02d}"
        if name.lower() not in taken:
            hosts.append(Host(name, new_model.name))
    models = dict(scenario.host_models)
    if new_model.name in models and models[new_model.name] is not new_model:
        new_model = models[new_model.name]
    models[new_model.name] = new_model
    return replace(scenario, host_models=models, hosts=tuple(hosts))


def fleet_totals(scenario: Scenario) -> dict[str, int]:
    """``capacity_totals`` summed over the scenario's hosts."""
    caps = compile_problem(scenario).caps
    out: Counter[str] = Counter()
    for h in scenario.hosts:
        out.update(capacity_totals(caps[h.model]))
    return dict(out)


def _min_threads(scenario: Scenario, models: Sequence[HostModel]) -> int:
    return min((max(len(core) for core in m.cores) for m in models), default=1)


def fewest_to_add(
    scenario: Scenario,
    model: HostModel | str,
    *,
    time_limit_s: float = 5.0,
    seed: int = 0,
    workers: int | None = None,
    max_hosts: int | None = None,
    executor=None,
    batch: int | None = None,
    deterministic: bool = False,
) -> Sizing:
    """The fewest hosts of ``model`` to add to the scenario's own (possibly mixed) fleet so that every guest is
    placed; running guests keep their hosts. ``Sizing.hosts`` is the number to add (0: the fleet suffices),
    ``lower_bound`` the totals' bound on it (per resource in ``bounds``: what the guests need beyond the fleet's
    totals, over one new host's), ``plan`` the plan on the fleet plus that many. Same search as ``fewest_hosts``."""
    start = time.monotonic()
    new_model = resolve_model(scenario, model)
    base = set_policy(scenario, objective="pack")
    bad = _unfit(base, new_model)
    fleet_models = [base.host_models[m] for m in sorted({h.model for h in base.hosts})]
    if bad:
        still = [g for g in bad if all(g in _unfit(base, m) for m in fleet_models)]
        if still:
            shown = ", ".join(still[:8]) + (f" and {len(still) - 8} more" if len(still) > 8 else "")
            raise CannotFit(f"{len(still)} guest(s) fit no empty host of model {new_model.name} nor of the fleet: "
                            f"{shown}")
    demand = demand_totals(base, _min_threads(base, [*fleet_models, new_model]))
    have = fleet_totals(base)
    one = capacity_totals(compile_problem(with_hosts(base, new_model, 1)).caps[new_model.name])
    bounds: dict[str, int] = {}
    for key, need in demand.items():
        if key == "anti_affinity":
            bounds[key] = max(0, int(need) - len(base.hosts))
            continue
        missing = Fraction(need) - have.get(key, 0)
        if missing <= 0:
            bounds[key] = 0
        elif one.get(key, 0) <= 0:
            bounds[key] = 10**9
        else:
            bounds[key] = math.ceil(missing / one[key])
    lb = max(bounds.values(), default=0)
    limit = max_hosts if max_hosts is not None else max(len(base.guests), lb)
    attempts: list[Attempt] = []
    run = _solver(executor, time_limit_s=time_limit_s, seed=seed, workers=workers, deterministic=deterministic)
    fleet = len(base.hosts)

    old = {h.name for h in base.hosts}

    def added(plan: Plan) -> int:
        return sum(1 for h in plan.hosts_used if h not in old)

    def attempt_many(ns: list[int]) -> list[Plan]:
        plans = run([add_hosts(base, new_model, n) for n in ns])
        for n, plan in zip(ns, plans, strict=False):
            attempts.append(Attempt(n, len(plan.placed), len(plan.unplaced_reasons), added(plan), plan.status,
                                    plan.stats.solver_status, plan.stats.wall_s))
        return plans

    if lb >= 10**9:
        raise CannotFit(f"hosts of model {new_model.name} offer none of a resource the guests need "
                        f"({', '.join(k for k, v in bounds.items() if v >= 10**9)})")
    hi, best, _plans, proven = _search(lb, limit, attempt_many, batch or (3 if executor is not None else 1),
                                       used=added, trust_optimal=False)
    if best is None:
        raise CannotFit(f"no plan places every guest with {limit} more hosts of model {new_model.name} "
                        f"beside the fleet of {fleet}")
    proven = proven or hi == lb
    return Sizing(new_model.name, hi, lb, proven, best, tuple(attempts), bounds, round(time.monotonic() - start, 3))


def growth_curve(
    scenario: Scenario,
    model: HostModel | str | None = None,
    factors: Sequence[float] = (1.0, 1.25, 1.5, 1.75, 2.0),
    *,
    by: str = "count",
    time_limit_s: float = 5.0,
    seed: int = 0,
    workers: int | None = None,
    executor=None,
    deterministic: bool = False,
) -> pd.DataFrame:
    """Hosts of ``model`` needed as the demand grows: one row per factor (``variants.scale_demand(scenario,
    factor, by=by)``, then ``fewest_hosts``). With ``executor`` (any ``concurrent.futures.Executor``: a process
    pool, a Dask cluster's, see ``planner.analysis.sweep``) the factors are sized side by side, one task each.
    ``attrs["model"]`` names the model. Columns:

    """
    model = _pick_model(scenario, model)
    scaled_all = [scale_demand(scenario, factor, by=by) if factor != 1 else scenario for factor in factors]
    options = dict(time_limit_s=time_limit_s, seed=seed, workers=workers, deterministic=deterministic)
    if executor is None:
        rows = [_growth_row(float(f), sc, model, options) for f, sc in zip(factors, scaled_all, strict=False)]
    else:
        futures = [executor.submit(_growth_row, float(f), sc, model, options)
                   for f, sc in zip(factors, scaled_all, strict=False)]
        rows = [f.result() for f in futures]
    frame = pd.DataFrame(rows, columns=list(GROWTH_COLUMNS))
    frame.attrs["model"] = model.name
    frame.attrs["by"] = by
    return frame


def _growth_row(factor: float, scaled: Scenario, model: HostModel, options: dict) -> dict:
    """One row of ``growth_curve`` (a module-level function: executors pickle it)."""
    sizing = fewest_hosts(scaled, model, **options)
    summary = sizing.plan.summary().iloc[0] if sizing.plan is not None else None
    return {
        "factor": factor,
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
    }


growth_curve.__doc__ = ((growth_curve.__doc__ or "")
                        + "\n".join(f"    {k:<24} {v}" for k, v in GROWTH_COLUMNS.items()) + "\n")


# ----------------------------------------------------------------------------------------------- runway
RESOURCE_NAMES = {**{t.key: t.label for t in TOTALS}, "anti_affinity": "hosts for anti-affinity"}


def parse_rate(text: str | float) -> Fraction:
    """A monthly growth rate: ``5%/month``, ``5%``, ``0.05`` (a fraction), exactly; ``ValueError`` otherwise."""
    value = str(text).strip()
    for suffix in ("/month", "/mo", " per month"):
        if value.endswith(suffix):
            value = value[: -len(suffix)].strip()
    try:
        rate = Fraction(value[:-1].strip()) / 100 if value.endswith("%") else Fraction(value)
    except (ValueError, ZeroDivisionError):
        raise ValueError("expected a monthly growth rate such as 5%/month, 5% or 0.05") from None
    if rate <= 0 or rate > 10:
        raise ValueError("the growth rate must be above 0 and at most 1000%/month")
    return rate


def grow(scenario: Scenario, factor: Fraction | float) -> Scenario:
    """The scenario with its guests grown by ``factor`` (≥ 1), *nested*: guest i gets ⌊f + u_i⌋ instances, with
    u_i = (i·s mod n) ÷ n spread evenly over [0, 1) (s coprime to n, about 0.618·n), so every tier grows by about
    the factor, the total is about f·n, and a larger factor only adds guests (month m's guests are all in month
    m + 1's: a growth study never sees demand shrink). Copies are named, untied and tagged as in
    ``variants.scale_demand`` (``NAME-s2``, ...; anti-affinity kept; not fixed to a host)."""
    from dataclasses import replace

    f = Fraction(factor)
    if f < 1:
        raise ValueError("grow takes a factor of at least 1")
    n = len(scenario.guests)
    step = max(1, round(n * 0.618))
    while math.gcd(step, n) != 1:
        step += 1
    taken = {g.name.lower() for g in scenario.guests}
    out = []
    for i, g in enumerate(scenario.guests):
        out.append(g)
        copies = math.floor(f + Fraction((i * step) % n, n)) - 1
        k = 2
        for _ in range(copies):
            while (g.name + f"-s{k}").lower() in taken:
                k += 1
            taken.add((g.name + f"-s{k}").lower())
            out.append(replace(g, name=g.name + f"-s{k}", host=None))
            k += 1
    return replace(scenario, guests=tuple(out))


@dataclass(frozen=True, eq=False)
class Runway:
    """The answer of ``runway``: when the fleet runs out as the demand grows by ``rate`` a month."""

    rate: Fraction
    months: int
    fleet_hosts: int
    frame: pd.DataFrame  # one row per month (RUNWAY_COLUMNS)
    resource_months: dict[str, int | None]  # resource -> first month its total exceeds the fleet's (None: never)
    fleet_month: int | None  # first month a solve on the fleet leaves guests unplaced (None: not within months)
    solved: dict[int, bool]  # month -> every guest placed (the months solved)
    model: str | None = None
    add_at_horizon: Sizing | None = None  # hosts of ``model`` to add for the last month's demand
    search_s: float = 0.0

    def document(self) -> dict:
        """For ``vplan growth --json`` (units in the keys)."""
        add = self.add_at_horizon
        return {
            "rate_fraction": float(self.rate), "months": self.months, "fleet_hosts": self.fleet_hosts,
            "runs_out_month": self.fleet_month,
            "resource_runs_out_month": dict(self.resource_months),
            "months_solved": {str(m): ok for m, ok in sorted(self.solved.items())},
            "model": self.model,
            "add_at_horizon": None if add is None else {"model": add.model, "hosts": add.hosts,
                                                        "lower_bound_hosts": add.lower_bound, "proven": add.proven},
            "table": [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
                      for row in self.frame.to_dict(orient="records")],
            "search_s": self.search_s,
        }


def runway(
    scenario: Scenario,
    rate: Fraction | float | str,
    months: int,
    model: HostModel | str | None = None,
    *,
    time_limit_s: float = 5.0,
    seed: int = 0,
    workers: int | None = None,
    executor=None,
    width: int = 3,
    deterministic: bool = False,
) -> Runway:
    """When does the scenario's own fleet run out if the demand grows by ``rate`` a month (compounded: month m
    has about (1 + rate)^m · n guests, grown by ``grow``: every month's guests are all in the next month's)?

    * per resource, from the totals alone: the first month the guests' total (``demand_totals``, isolate cores
      counted with the fleet's fewest threads per core) exceeds the fleet's (``fleet_totals``): columns
      ``<resource>_used_fraction`` (> 1: cannot fit);
    * for the fleet: the first month a solve (``time_limit_s`` each) leaves guests unplaced, found by a search
      over the months below the first resource month, ``width`` months solved side by side on ``executor``;
    * with ``model``: ``fewest_to_add`` hosts of that model for the last month's demand (``add_at_horizon``)."""
    start = time.monotonic()
    rate = parse_rate(rate) if not isinstance(rate, Fraction) else rate
    if months < 0 or months > 600:
        raise ValueError("months must be between 0 and 600")
    fleet_models = [scenario.host_models[m] for m in sorted({h.model for h in scenario.hosts})]
    threads = _min_threads(scenario, fleet_models)
    have = fleet_totals(scenario)
    hosts = len(scenario.hosts)
    scaled: dict[int, Scenario] = {}
    rows = []
    resource_months: dict[str, int | None] = {}
    for m in range(months + 1):
        factor = (1 + rate) ** m
        sc = grow(scenario, factor) if m else scenario
        scaled[m] = sc
        demand = demand_totals(sc, threads)
        row = {"month": m, "factor": float(factor), "guests": len(sc.guests),
               "vcpus": sum(g.vcpus for g in sc.guests), "memory_kib": sum(g.memory_kib for g in sc.guests)}
        for key, need in demand.items():
            capacity = hosts if key == "anti_affinity" else have.get(key, 0)
            fraction = float(Fraction(need) / capacity) if capacity else (math.inf if need else 0.0)
            row[f"{key}_used_fraction"] = round(fraction, 6)
            resource_months.setdefault(key, None)
            if fraction > 1 and resource_months[key] is None:
                resource_months[key] = m
        rows.append(row)
    frame = pd.DataFrame(rows)
    for col in frame.columns:
        if col.endswith("_used_fraction"):
            frame[col] = frame[col].fillna(0.0)
    first_resource = min((m for m in resource_months.values() if m is not None), default=None)
    run = _solver(executor, time_limit_s=time_limit_s, seed=seed, workers=workers, deterministic=deterministic)
    solved: dict[int, bool] = {}
    lo, hi = -1, (first_resource if first_resource is not None else months + 1)
    while hi - lo > 1:
        span = hi - lo - 1
        k = min(width, span)
        probe = sorted({lo + 1 + (i * span) // k + (span // k) // 2 for i in range(k)} - set(solved))
        probe = [p for p in probe if lo < p < hi] or [lo + 1]
        plans = run([scaled[p] for p in probe])
        for p, plan in zip(probe, plans, strict=False):
            solved[p] = not plan.unplaced_reasons
        failing = [p for p in probe if not solved[p]]
        if failing:
            hi = failing[0]
        fitting = [p for p in probe if solved[p] and p < hi]
        if fitting:
            lo = max(lo, max(fitting))
    fleet_month = hi if hi <= months else None
    # months not solved: fit when below the last month that fits, not from the month the fleet runs out
    frame["fits"] = [solved[m] if m in solved else (m <= lo or m < hi) for m in frame["month"]]
    add = None
    model_name = None
    if model is not None:
        target = resolve_model(scenario, model)
        model_name = target.name
        add = fewest_to_add(scaled[months], target, time_limit_s=time_limit_s, seed=seed, workers=workers,
                            executor=executor, deterministic=deterministic)
    return Runway(rate, months, hosts, frame, resource_months, fleet_month, solved, model_name, add,
                  round(time.monotonic() - start, 3))


def runway_plot(result: Runway, ax=None):
    """Each resource's total as a fraction of the fleet's against the month, the 100 % line, and the month the
    fleet runs out (a solve leaves guests unplaced) as a vertical line. Returns the Axes."""
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(8, 4.5))
    frame = result.frame
    for col in [c for c in frame.columns if c.endswith("_used_fraction")]:
        key = col[: -len("_used_fraction")]
        label = RESOURCE_NAMES.get(key) or total_label(key)
        month = result.resource_months.get(key)
        ax.plot(frame["month"], 100 * frame[col], marker=".", label=f"{label}" + (f" (month {month})" if month
                                                                                   is not None else ""))
    ax.axhline(100, color="black", linewidth=1)
    if result.fleet_month is not None:
        ax.axvline(result.fleet_month, color="grey", linestyle="--",
                   label=f"fleet runs out (month {result.fleet_month})")
    ax.set_xlabel("month")
    ax.set_ylabel("% of the fleet's capacity")
    ax.set_title(f"{result.fleet_hosts} hosts, demand +{float(result.rate):.1%}/month")
    ax.legend(fontsize="small")
    return ax


# ----------------------------------------------------------------------------------------------- headroom
HEADROOM_COLUMNS: dict[str, str] = {
    "host": "host name",
    "model": "host model of the host",
    "guests": "guests the plan already places on the host",
    "fits": "more guests of the flavour that fit on the host, beside those (count)",
    "exact": "True when fits is the most (one-cell flavour: the fill is exact); False: a greedy fill, at least",
    "binding": "what stops one more: the resource short (its node) or the host-wide limit",
    "binding_node": "host NUMA node of the binding resource (None: host-wide)",
}


@dataclass(frozen=True, eq=False)
class Headroom:
    """The answer of ``headroom``: how many more guests of one flavour the plan's hosts take."""

    flavour: str
    frame: pd.DataFrame  # one row per host (HEADROOM_COLUMNS)

    @property
    def total(self) -> int:
        return int(self.frame["fits"].sum())

    @property
    def exact(self) -> bool:
        return bool(self.frame["exact"].all()) if len(self.frame) else True

    def binding_counts(self) -> dict[str, int]:
        """Binding resource → hosts where it binds, most hosts first."""
        return dict(Counter(self.frame["binding"]).most_common())

    def document(self) -> dict:
        return {"flavour": self.flavour, "total": self.total, "exact": self.exact,
                "binding_hosts": self.binding_counts(),
                "hosts": [{**{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()},
                           "binding_node": _node_or_none(row["binding_node"])}
                          for row in self.frame.to_dict(orient="records")]}


def _node_or_none(value) -> int | None:
    return None if value is None or value != value else int(value)


def headroom(
    scenario: Scenario,
    placements: Mapping[str, tuple[str, Sequence[int]]],
    flavour: str | Mapping,
    *,
    hosts: Sequence[str] | None = None,
) -> Headroom:
    """How many more guests of ``flavour`` (a catalogue flavour name or a mapping of guest keys) fit on each
    host, beside the guests already placed (``placements``: guest → (host, host nodes of its cells), as
    ``Plan.placed`` or plan.json give), and what binds then.

    Counting is the compiled problem's (``FleetState``: the same node rules as the solver, the checker's maths):
    the placed guests' cells are put on their nodes, then each host is filled with the flavour, one guest at a
    time, by the first node choice that still fits, until none does. For a one-cell flavour that is the most
    that fit (identical cells on a node fit up to a count; the host's vCPU cap bounds their sum), ``exact``;
    for a flavour spanning nodes it is a greedy count (at least that many). Raises ``ValueError`` for a guest
    or host the scenario does not have."""
    from dataclasses import replace

    from planner.analysis.variants import flavour_guest, read_flavours
    from planner.engine.problem import FleetState, cell_demands, split_cells

    if isinstance(flavour, str):
        catalogue = read_flavours()
        if flavour not in catalogue:
            raise ValueError(f"unknown flavour '{flavour}' (catalogue models/flavours.yaml: {', '.join(catalogue)})")
        label = flavour
    else:
        label = str(dict(flavour).get("name", "custom"))
    taken = {g.name for g in scenario.guests}
    probe_name = next(f"headroom-probe-{i}" for i in range(len(taken) + 1) if f"headroom-probe-{i}" not in taken)
    probe = flavour_guest(flavour, probe_name, scenario.policy)
    sc = replace(scenario, guests=(*scenario.guests, probe))
    problem = compile_problem(sc)
    state = FleetState(problem)
    host_names = {h.name for h in sc.hosts}
    for name, (host, nodes) in placements.items():
        guest = sc.guest_by_name.get(name)
        if guest is None:
            raise ValueError(f"guest {name}: placed by the plan but not in scenario {scenario.name}")
        if host not in host_names:
            raise ValueError(f"guest {name}: on host {host}, which scenario {scenario.name} does not have")
        cap = problem.cap_of(host)
        split = split_cells(guest, len(nodes))
        if split is None or any(n not in cap.model.node_index for n in nodes):
            raise ValueError(f"guest {name}: nodes {list(nodes)} do not fit host {host} of model {cap.model.name}")
        for node_id, cell in zip(nodes, cell_demands(guest, split, cap), strict=False):
            state.nodes[host][node_id].add(cell)
        state.host_vcpus[host] += guest.vcpus
        state.host_guests[host] += 1
        state.host_tags[host].update(guest.anti_affinity)
    cls = next(c for c in problem.classes if probe_name in c.members)
    rows = []
    wanted = list(hosts) if hosts is not None else [h.name for h in sc.hosts]
    for host in wanted:
        if host not in host_names:
            raise ValueError(f"host {host}: not in scenario {scenario.name}")
        model = problem.host_model[host]
        options = cls.options.get(model, ())
        already = state.host_guests[host]
        count, binding, node = 0, "", None
        limit = problem.cap_of(host).vcpu_cap // max(probe.vcpus, 1) + 1
        while options and count <= limit:
            choice = next((o for o in options if state.fits(cls, host, o)), None)
            if choice is None:
                break
            for node_id, cell in zip(choice.nodes, choice.cells, strict=False):
                state.nodes[host][node_id].add(cell)
            state.host_vcpus[host] += probe.vcpus
            state.host_guests[host] += 1
            count += 1
        if not options:
            binding = f"fits no empty {model} host"
        else:
            blocker = state.host_blocker(cls, host)
            if blocker is not None:
                binding = "anti-affinity" if blocker.startswith("anti-affinity") else "vCPU cap (host-wide)"
            else:
                best = min(options, key=lambda o: len(state.option_shortfalls(cls, host, o)))
                short = state.option_shortfalls(cls, host, best)
                if short:
                    node, first = short[0]
                    binding = first.resource
                    if binding.endswith("KiB hugepages"):
                        binding = f"{format_page(int(binding.split('KiB')[0]))} hugepages"
        rows.append({"host": host, "model": model, "guests": already, "fits": count,
                     "exact": all(len(o.nodes) == 1 for o in options), "binding": binding, "binding_node": node})
    return Headroom(label, pd.DataFrame(rows, columns=list(HEADROOM_COLUMNS)))


def plan_headroom(plan: Plan, flavour: str | Mapping, *, hosts: Sequence[str] | None = None) -> Headroom:
    """``headroom`` of a ``Plan``: its scenario and placements."""
    return headroom(plan.scenario, {g: (p.host, p.nodes) for g, p in plan.placed.items()}, flavour, hosts=hosts)
