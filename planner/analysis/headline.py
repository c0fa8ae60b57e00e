"""The planner's answer in a few figures, the same in the terminal, the HTML report and plan.json.

``headline(plan)`` gives guests placed of total, hosts used of total, the lower bound and what binds it (in
words), the gap, the status in one word with the method beside it, and the solve time. ``fleet_use(plan)`` gives
the use of each resource over the hosts used. Both are plain dicts in machine units (README "Units and names");
``headline_lines`` renders the headline for people.
"""

from __future__ import annotations

import math
from typing import Any

from planner.model.plan import Plan

# how each plan source is called for people (SolveStats.solver)
METHODS = {
    "greedy": "first-fit decreasing",
    "patterns": "pattern decomposition",
    "improve": "improvement rounds (LNS)",
    "cp-sat": "whole-fleet CP-SAT model",
    "replan": "re-plan from the previous plan",
}

# what each lower bound counts (planner.engine.bounds names them); unknown names are shown as they are
BOUND_WORDS = {
    "cpus": "CPU demand (dedicated CPUs plus shared load at the load target) over the hosts' usable CPUs",
    "vcpu_cap": "vCPUs over the vCPU:core cap of the hosts",
    "vcpus": "vCPUs over the vCPU:core cap of the hosts",
    "memory_4k": "4K memory demand over the hosts' free 4K memory",
    "big_cells": "guest cells larger than half of any node, one node each",
    "anti_affinity": "the largest anti-affinity group, one host per guest",
    "fixed_hosts": "the hosts that fixed guests are placed on",
    "lp": "the node-level LP relaxation (CPUs, memory and pages per node together)",
    "pattern_lp": "the pattern LP (what whole hosts can carry, every resource together)",
    "none": "nothing (no guest)",
}


def bound_words(kind: str | None, text: str | None = None) -> str:
    """What binds the lower bound, in words. A text the solver gives (``LowerBound.text``) wins."""
    if text:
        return text
    if not kind:
        return "no lower bound computed"
    if kind.startswith("hugepages_"):
        size = kind[len("hugepages_"):]
        if size.endswith("KiB") and size[:-3].isdigit():
            from planner.model.units import format_page

            size = format_page(int(size[:-3]))
        return f"{size} hugepages demanded over the hosts' {size} pools"
    return BOUND_WORDS.get(kind, kind.replace("_", " "))


def headline(plan: Plan) -> dict[str, Any]:
    """The answer first, as plan.json's ``headline``: every key is documented in plan.schema.json."""
    sc = plan.scenario
    stats = plan.stats
    lower = stats.bound
    used = len(plan.hosts_used)
    bound = int(lower.hosts) if lower is not None and lower.hosts else None
    all_placed = not plan.unplaced_reasons
    gap_hosts = used - bound if bound is not None and all_placed else None
    gap_pct = round(100.0 * gap_hosts / bound, 2) if gap_hosts is not None and bound is not None else None
    return {
        "status": plan.status,
        "method": stats.solver,
        "method_text": METHODS.get(stats.solver, stats.solver),
        "guests": len(sc.guests),
        "placed": len(plan.placed),
        "unplaced": len(plan.unplaced_reasons),
        "hosts": len(sc.hosts),
        "hosts_used": used,
        "bound_hosts": bound,
        "bound_kind": lower.binding if lower is not None and bound is not None else None,
        "bound_text": bound_words(lower.binding, lower.text) if lower is not None and bound is not None else None,
        "gap_hosts": gap_hosts,
        "gap_pct": gap_pct,
        "objective": sc.policy.objective,
        "solve_s": round(float(stats.wall_s), 3),
    }


def status_text(h: dict[str, Any]) -> str:
    """'optimal', 'feasible (not proven optimal)' or 'partial (3 guests unplaced)', then the method."""
    status = h["status"]
    if status == "feasible":
        status = "feasible (not proven optimal)"
    elif status == "partial":
        status = f"partial ({h['unplaced']} guest{'s' if h['unplaced'] != 1 else ''} unplaced)"
    return f"{status}, plan by {h['method_text']}"


def bound_text(h: dict[str, Any]) -> str:
    """'lower bound 28 hosts (…what binds…); gap 2 hosts, 7.1 %' for people."""
    if h["bound_hosts"] is None:
        return "no lower bound"
    text = f"lower bound {h['bound_hosts']} host{'s' if h['bound_hosts'] != 1 else ''}: {h['bound_text']}"
    if h["bound_hosts"] > h["hosts"]:
        text += f" (more than the {h['hosts']:,} of the fleet)"
    if h["gap_hosts"] is None:
        return text + "; no gap (not every guest is placed)"
    if h["gap_hosts"] == 0:
        return text + "; gap 0: no plan can use fewer hosts"
    return text + f"; gap {h['gap_hosts']} host{'s' if h['gap_hosts'] != 1 else ''} ({h['gap_pct']:g} %)"


def headline_lines(h: dict[str, Any], total_s: float | None = None,
                   write_s: float | None = None) -> list[tuple[str, str]]:
    """(label, text) pairs: status, guests, hosts, bound, time."""
    guests = f"{h['placed']:,} of {h['guests']:,} placed"
    if h["unplaced"]:
        guests += f", {h['unplaced']:,} unplaced (listed below)"
    hosts = f"{h['hosts_used']:,} of {h['hosts']:,} used"
    time_text = f"{h['solve_s']:.1f} s solving"
    if total_s is not None:
        time_text = f"{total_s:.1f} s in all ({h['solve_s']:.1f} s solving" + (
            f", {write_s:.1f} s writing)" if write_s is not None else ")")
    return [("status", status_text(h)), ("guests", guests), ("hosts", hosts), ("bound", bound_text(h)),
            ("time", time_text)]


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else round(float(value), 3)


def fleet_use(plan: Plan) -> dict[str, dict[str, Any]]:
    """Use of each resource over the hosts used: ``{resource: {used_<unit>, capacity_<unit>, used_fraction}}``.

    Resources: ``cpus`` (CPUs committed of usable CPUs), ``shared_load`` (expected load of the shared pools against
    the load target), ``vcpus`` (vCPUs against the vCPU:core cap), ``memory_4k`` (KiB), ``hugepages_<size>``
    (pages of each size)."""
    hosts = plan.host_usage()
    used = hosts[hosts["host_used"]]

    def total(col: str) -> float:
        return float(used[col].sum()) if col in used.columns and len(used) else 0.0

    rows = [("cpus", "cpus", "cpu_committed_cpus", "usable_cpus"),
            ("shared_load", "cpus", "expected_load_cpus", "load_capacity_cpus"),
            ("vcpus", "vcpus", "vcpus", "vcpu_cap"),
            ("memory_4k", "kib", "memory_4k_used_kib", "memory_4k_capacity_kib")]
    sizes = [c[len("hugepages_"):-len("_pages")] for c in hosts.columns
             if c.startswith("hugepages_") and c.endswith("_pages")]
    rows += [(f"hugepages_{s}", "pages", f"hugepages_{s}_used", f"hugepages_{s}_pages") for s in sizes]
    out: dict[str, dict[str, Any]] = {}
    for name, unit, used_col, cap_col in rows:
        u, c = total(used_col), total(cap_col)
        out[name] = {f"used_{unit}": _number(u), f"capacity_{unit}": _number(c),
                     "used_fraction": round(u / c, 4) if c else None}
    return out


def pct(fraction: float | None) -> str:
    """0.934 → '93 %'; None/NaN → '–'."""
    if fraction is None or (isinstance(fraction, float) and math.isnan(fraction)):
        return "–"
    return f"{100 * fraction:.0f} %"
