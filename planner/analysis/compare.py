"""Compare two plans (or two scenarios, solved first): hosts, utilisation per resource, guests that moved.

``compare(a, b)`` returns a ``Comparison`` with DataFrames and a text rendering (``str(comparison)``, what
``vplan compare A B`` prints):

* ``summary``      one row per summary figure (``frames.SUMMARY_COLUMNS``): value in A, in B, B − A;
* ``utilisation``  one row per resource over the hosts each plan uses: capacity, used and fraction in A and B;
* ``hosts``        one row per host of either scenario: model, used, guests, CPU and 4K memory fractions in A, B;
* ``guests``       one row per guest of either scenario whose placement differs: ``change`` is ``moved host``
                   (placed in both, on another host), ``moved node`` (same host, another set of host nodes),
                   ``added``/``removed`` (the guest is only in B/A), ``newly placed``/``newly unplaced``;
* ``moved``        the ``moved host`` and ``moved node`` rows of ``guests``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from planner.model.plan import Plan
from planner.model.scenario import Scenario

PlanOrScenario = Plan | Scenario

GUEST_CHANGE_COLUMNS = ["guest", "change", "host_a", "nodes_a", "host_b", "nodes_b"]
UTILISATION_COLUMNS = ["resource", "unit", "capacity_a", "used_a", "fraction_a", "capacity_b", "used_b", "fraction_b"]
HOST_COMPARE_COLUMNS = ["host", "model_a", "model_b", "used_a", "used_b", "guests_a", "guests_b",
                        "cpu_used_fraction_a", "cpu_used_fraction_b", "memory_4k_used_fraction_a",
                        "memory_4k_used_fraction_b"]


@dataclass(frozen=True, eq=False)
class Comparison:
    plan_a: Plan
    plan_b: Plan
    labels: tuple[str, str]
    summary: pd.DataFrame
    utilisation: pd.DataFrame
    hosts: pd.DataFrame
    guests: pd.DataFrame

    @property
    def moved(self) -> pd.DataFrame:
        """Guests placed in both plans whose host or host nodes changed."""
        return self.guests[self.guests["change"].isin(["moved host", "moved node"])].reset_index(drop=True)

    def text(self, max_guests: int = 20) -> str:
        """For people: the headline of each plan first (guests placed, hosts used, bound, status), then the
        figures side by side (fractions in %, their changes in percentage points), utilisation per resource
        (memory in GiB), the hosts only one plan uses, and last the guests that changed, ``max_guests`` at most."""
        from planner.analysis.headline import headline

        a, b = self.labels
        ha, hb = headline(self.plan_a), headline(self.plan_b)
        lines = [f"A = {a}", f"B = {b}", ""]
        for label, h in (("A", ha), ("B", hb)):
            bound = f"lower bound {h['bound_hosts']}" if h["bound_hosts"] is not None else "no lower bound"
            gap = f", gap {h['gap_hosts']}" if h["gap_hosts"] is not None else ""
            lines.append(f"{label}: {h['placed']:,} of {h['guests']:,} guests placed on {h['hosts_used']:,} of "
                         f"{h['hosts']:,} hosts ({bound}{gap}); {h['status']}, plan by {h['method_text']}")
        change = hb["hosts_used"] - ha["hosts_used"]
        lines.append(f"B uses {abs(change)} host{'s' if abs(change) != 1 else ''} "
                     f"{'more' if change > 0 else 'fewer'} than A" if change else "A and B use as many hosts")
        rows = self.summary.set_index("figure")
        width = max(len(f) for f in rows.index)
        lines += ["", f"{'':<{width}}  {'A':>12}  {'B':>12}  {'B - A':>12}"]
        for figure in ("status", "guests", "placed", "unplaced", "hosts", "hosts_used", "vcpus_placed",
                       "cpu_used_fraction", "host_vcpu_per_core", "load_of_target", "memory_4k_used_fraction",
                       "hugepages_used_fraction", "numa_distance_cost", "spanning_guests"):
            if figure not in rows.index:
                continue
            r = rows.loc[figure]
            lines.append(f"{figure:<{width}}  {_fmt(r['a'], figure):>12}  {_fmt(r['b'], figure):>12}  "
                         f"{_fmt(r['change'], figure, signed=True):>12}")
        lines.append("(fractions in %, their changes in percentage points, pp)")
        lines += ["", "utilisation over the hosts used (used / capacity):"]
        for _, r in self.utilisation.iterrows():
            unit, ca, cb = r["unit"], r["capacity_a"], r["capacity_b"]
            if unit == "KiB":
                unit, ca, cb = "GiB", ca / 1024**2, cb / 1024**2
            lines.append(f"  {r['resource']:<18} A {_pct(r['fraction_a']):>5} of {_qty(ca):>9} {unit:<6}"
                         f"  B {_pct(r['fraction_b']):>5} of {_qty(cb):>9} {unit:<6}"
                         f"  {_pp(r['fraction_b'] - r['fraction_a']):>9}")
        used_a = set(self.hosts.loc[self.hosts["used_a"], "host"])
        used_b = set(self.hosts.loc[self.hosts["used_b"], "host"])
        lines += ["", f"hosts used: A {len(used_a)}, B {len(used_b)}"]
        if used_b - used_a:
            lines.append(f"  only in B: {_names(sorted(used_b - used_a))}")
        if used_a - used_b:
            lines.append(f"  only in A: {_names(sorted(used_a - used_b))}")
        moved = self.moved
        counts = self.guests["change"].value_counts()
        lines += ["", f"guests: {len(moved)} moved ({int(counts.get('moved host', 0))} to another host, "
                      f"{int(counts.get('moved node', 0))} to other nodes of the same host)"
                  + "".join(f", {int(counts[c])} {c}" for c in ("added", "removed", "newly placed", "newly unplaced")
                            if c in counts)]
        for _, r in self.guests.head(max_guests).iterrows():
            where_a = f"{r['host_a']} nodes {r['nodes_a']}" if r["host_a"] else "-"
            where_b = f"{r['host_b']} nodes {r['nodes_b']}" if r["host_b"] else "-"
            lines.append(f"  {r['guest']:<20} {r['change']:<15} {where_a:<28} -> {where_b}")
        if len(self.guests) > max_guests:
            lines.append(f"  ... {len(self.guests) - max_guests} more (all of them: comparison.guests, or "
                         "vplan compare --json)")
        return "\n".join(lines)

    def document(self) -> dict:
        """For machines (``vplan compare --json``): labels, each plan's headline, the figures, utilisation per
        resource (memory in KiB), hosts and every guest that changed. NaN is null."""
        from planner.analysis.headline import headline

        def records(frame: pd.DataFrame) -> list[dict]:
            return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]

        util = self.utilisation.copy()
        util["unit"] = util["unit"].map(lambda u: u.lower() if u == "KiB" else u)
        return {
            "labels": {"a": self.labels[0], "b": self.labels[1]},
            "headline": {"a": headline(self.plan_a), "b": headline(self.plan_b)},
            "summary": records(self.summary),
            "utilisation": records(util),
            "hosts": records(self.hosts),
            "guests": records(self.guests),
        }

    def __str__(self) -> str:
        return self.text()


def _names(names: list[str], limit: int = 12) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def scenario_difference(a: Scenario, b: Scenario, limit: int = 4) -> str:
    """What B changes against A, in a few words: policy values, host models, hosts, guests."""
    out: list[str] = []
    for f in ("cpu_overcommit_max", "cpu_load_target", "memory_overcommit", "node_memory_target", "objective"):
        va, vb = getattr(a.policy, f), getattr(b.policy, f)
        if va != vb:
            out.append(f"{f} {_num(va)} → {_num(vb)}")
    changed = sorted(m for m in set(a.host_models) & set(b.host_models) if a.host_models[m] != b.host_models[m])
    smt = [m for m in changed if all(len(c) == 1 for c in b.host_models[m].cores)
           and not all(len(c) == 1 for c in a.host_models[m].cores)]
    if smt:
        out.append(f"SMT off on {', '.join(smt)}")
    if [m for m in changed if m not in smt]:
        out.append(f"host model {', '.join(m for m in changed if m not in smt)} changed")
    models_a = sorted({h.model for h in a.hosts})
    models_b = sorted({h.model for h in b.hosts})
    if models_a != models_b:
        out.append(f"hosts of {', '.join(models_b)} instead of {', '.join(models_a)}")
    if len(a.hosts) != len(b.hosts):
        out.append(f"{len(a.hosts)} → {len(b.hosts)} hosts")
    ga, gb = {g.name: g for g in a.guests}, {g.name: g for g in b.guests}
    added, removed = len(set(gb) - set(ga)), len(set(ga) - set(gb))
    changed_guests = sum(1 for n in set(ga) & set(gb) if ga[n] != gb[n])
    if added:
        out.append(f"{added} guest{'s' if added != 1 else ''} added")
    if removed:
        out.append(f"{removed} guest{'s' if removed != 1 else ''} removed")
    if changed_guests:
        out.append(f"{changed_guests} guest{'s' if changed_guests != 1 else ''} changed")
    return ", ".join(out[:limit]) + (" …" if len(out) > limit else "")


def _num(value) -> str:
    return f"{float(value):g}" if not isinstance(value, str) else value


def _plain(value):
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _pp(value: float) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:+.1f} pp"


def _pct(value: float) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.0%}"


def _qty(value: float) -> str:
    return f"{value:,.0f}" if value == value else "-"


def _fmt(value, figure: str, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, str):
        return value
    if "fraction" in figure or figure == "load_of_target":
        return f"{100 * value:+.1f} pp" if signed else f"{value:.1%}"
    if isinstance(value, float) and not float(value).is_integer():
        return f"{value:+.2f}" if signed else f"{value:.2f}"
    return f"{int(value):+d}" if signed else f"{int(value)}"


def _as_plan(item: PlanOrScenario, time_limit_s: float | None, seed: int, workers: int | None) -> Plan:
    if isinstance(item, Plan):
        return item
    if isinstance(item, Scenario):
        from planner.engine.solver import solve

        return solve(item, time_limit_s=time_limit_s, seed=seed, workers=workers)
    raise TypeError(f"compare takes plans or scenarios, not {type(item).__name__}")


def _summary(a: Plan, b: Plan) -> pd.DataFrame:
    sa, sb = a.summary().iloc[0], b.summary().iloc[0]
    rows = []
    for figure in sa.index:
        va, vb = sa[figure], sb[figure]
        if hasattr(va, "item"):
            va = va.item()
        if hasattr(vb, "item"):
            vb = vb.item()
        numeric = isinstance(va, (int, float)) and not isinstance(va, bool) and isinstance(vb, (int, float))
        rows.append({"figure": figure, "a": va, "b": vb, "change": (vb - va) if numeric else None})
    return pd.DataFrame(rows, columns=["figure", "a", "b", "change"])


_RESOURCES = (
    # resource, unit, capacity column, used column
    ("cpus", "CPUs", "usable_cpus", "cpu_committed_cpus"),
    ("shared load", "CPUs", "load_capacity_cpus", "expected_load_cpus"),
    ("vcpus (host cap)", "vCPUs", "vcpu_cap", "vcpus"),
    ("memory 4K", "KiB", "memory_4k_capacity_kib", "memory_4k_used_kib"),
    ("hugepages", "KiB", "hugepages_capacity_kib", "hugepages_used_kib"),
)


def _utilisation(a: Plan, b: Plan) -> pd.DataFrame:
    ha, hb = a.host_usage(), b.host_usage()
    ua, ub = ha[ha["host_used"]], hb[hb["host_used"]]
    resources = list(_RESOURCES)
    sizes = sorted({c[len("hugepages_"):-len("_pages")] for c in list(ha.columns) + list(hb.columns)
                    if c.startswith("hugepages_") and c.endswith("_pages")})
    for label in sizes:
        resources.append((f"hugepages {label}", "pages", f"hugepages_{label}_pages", f"hugepages_{label}_used"))
    rows = []
    for resource, unit, cap_col, used_col in resources:
        def total(frame: pd.DataFrame, col: str) -> float:
            return float(frame[col].sum()) if col in frame.columns and len(frame) else 0.0

        ca, xa, cb, xb = total(ua, cap_col), total(ua, used_col), total(ub, cap_col), total(ub, used_col)
        rows.append({
            "resource": resource, "unit": unit,
            "capacity_a": ca, "used_a": xa, "fraction_a": xa / ca if ca else math.nan,
            "capacity_b": cb, "used_b": xb, "fraction_b": xb / cb if cb else math.nan,
        })
    return pd.DataFrame(rows, columns=UTILISATION_COLUMNS)


def _hosts(a: Plan, b: Plan) -> pd.DataFrame:
    ha = a.host_usage().set_index("host")
    hb = b.host_usage().set_index("host")
    names = list(ha.index) + [h for h in hb.index if h not in ha.index]
    rows = []
    for host in names:
        ra = ha.loc[host] if host in ha.index else None
        rb = hb.loc[host] if host in hb.index else None

        def get(r, col, default):
            return default if r is None else (r[col].item() if hasattr(r[col], "item") else r[col])

        rows.append({
            "host": host,
            "model_a": get(ra, "model", None), "model_b": get(rb, "model", None),
            "used_a": bool(get(ra, "host_used", False)), "used_b": bool(get(rb, "host_used", False)),
            "guests_a": int(get(ra, "guests", 0)), "guests_b": int(get(rb, "guests", 0)),
            "cpu_used_fraction_a": get(ra, "cpu_used_fraction", math.nan),
            "cpu_used_fraction_b": get(rb, "cpu_used_fraction", math.nan),
            "memory_4k_used_fraction_a": get(ra, "memory_4k_used_fraction", math.nan),
            "memory_4k_used_fraction_b": get(rb, "memory_4k_used_fraction", math.nan),
        })
    return pd.DataFrame(rows, columns=HOST_COMPARE_COLUMNS)


def _nodes_text(nodes: tuple[int, ...]) -> str:
    return ",".join(map(str, nodes))


def guest_changes(a: Plan, b: Plan) -> pd.DataFrame:
    """One row per guest whose placement differs between ``a`` and ``b`` (see the module docs), guests in the
    order of A's scenario, then the guests only B has."""
    names_a = [g.name for g in a.scenario.guests]
    names_b = [g.name for g in b.scenario.guests]
    in_a, in_b = set(names_a), set(names_b)
    rows = []
    for name in names_a + [n for n in names_b if n not in in_a]:
        pa, pb = a.placed.get(name), b.placed.get(name)
        if name not in in_b:
            change = "removed"
        elif name not in in_a:
            change = "added"
        elif pa is None and pb is None:
            continue
        elif pa is None:
            change = "newly placed"
        elif pb is None:
            change = "newly unplaced"
        elif pa.host != pb.host:
            change = "moved host"
        elif sorted(pa.nodes) != sorted(pb.nodes):
            change = "moved node"
        else:
            continue
        rows.append({
            "guest": name, "change": change,
            "host_a": pa.host if pa else None, "nodes_a": _nodes_text(pa.nodes) if pa else None,
            "host_b": pb.host if pb else None, "nodes_b": _nodes_text(pb.nodes) if pb else None,
        })
    return pd.DataFrame(rows, columns=GUEST_CHANGE_COLUMNS)


def compare(
    a: PlanOrScenario,
    b: PlanOrScenario,
    *,
    labels: tuple[str, str] | None = None,
    time_limit_s: float | None = None,
    seed: int = 0,
    workers: int | None = None,
    executor=None,
    deterministic: bool = False,
) -> Comparison:
    """Compare two plans; a scenario is solved first (``time_limit_s``, default its policy's, ``seed``,
    ``workers``, ``deterministic``). ``labels`` name A and B in the text (default: the scenario names).
    ``executor`` (any ``concurrent.futures.Executor``, see ``planner.analysis.sweep``): two scenarios are solved side by
    side on it."""
    if executor is not None and isinstance(a, Scenario) and isinstance(b, Scenario):
        from planner.analysis.sweep import solve_many

        plan_a, plan_b = solve_many([a, b], executor=executor, time_limit_s=time_limit_s, seed=seed,
                                    workers=workers, deterministic=deterministic)
    elif deterministic:
        from planner.analysis.sweep import solve_one

        options = dict(time_limit_s=time_limit_s, seed=seed, workers=workers, deterministic=True)
        plan_a = a if isinstance(a, Plan) else solve_one(a, options)
        plan_b = b if isinstance(b, Plan) else solve_one(b, options)
    else:
        plan_a = _as_plan(a, time_limit_s, seed, workers)
        plan_b = _as_plan(b, time_limit_s, seed, workers)
    if labels is None:
        na, nb = plan_a.scenario.name, plan_b.scenario.name
        if na != nb:
            labels = (na, nb)
        else:  # two variants of one scenario: say what B changes
            diff = scenario_difference(plan_a.scenario, plan_b.scenario)
            labels = (f"{na} (A)", f"{nb} (B: {diff})" if diff else f"{nb} (B)")
    return Comparison(
        plan_a=plan_a,
        plan_b=plan_b,
        labels=labels,
        summary=_summary(plan_a, plan_b),
        utilisation=_utilisation(plan_a, plan_b),
        hosts=_hosts(plan_a, plan_b),
        guests=guest_changes(plan_a, plan_b),
    )
