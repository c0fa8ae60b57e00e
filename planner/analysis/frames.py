"""A plan as pandas DataFrames: what was placed where, and what each host and node has left.

The ``Plan`` methods ``placements()``, ``node_usage()``, ``host_usage()``, ``unplaced()`` and ``summary()`` call
the functions of the same name here. Every column is listed in ``COLUMNS`` (name -> meaning) and in
``docs/api.md``; units are in the names (``_kib``, ``_kib``, ``_cpus``, ``_fraction``, ``_s``).

Usage figures are recomputed by the independent checker (``planner.verify.check.node_usage``), so they are the
numbers the checker verified, not the solver's own counting. Fractions are plain floats (0.5 = 50 %); a fraction
of a capacity that is 0 is NaN (a CPU-less or memory-less node, a node without hugepage pools).

How full a node is for CPUs (``cpu_committed_cpus``) counts the CPUs taken whole (dedicated vCPUs, the idle
siblings of ``threads: isolate`` vCPUs, ``emulator: isolate`` CPUs) plus the share of the shared pool that its
guests use up, whichever of the two shared-pool limits binds more: the expected load against the load target
(``load_of_target``) or the shared vCPUs against the vCPU-per-core cap (``vcpu_per_core / vcpu_per_core_max``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pandas as pd

from planner.model.units import format_cpulist, format_page

if TYPE_CHECKING:  # pragma: no cover
    from planner.model.plan import Plan
    from planner.verify.check import NodeUsage

SMALL_PAGE_KIB = 4  # ordinary memory pages

# --------------------------------------------------------------------------------------------------- columns
PLACEMENT_COLUMNS: dict[str, str] = {
    "guest": "guest name",
    "host": "host name",
    "model": "host model of the host",
    "cell": "guest NUMA cell id (0..cells-1)",
    "cells": "number of guest NUMA cells of the guest",
    "node": "host NUMA node id the cell's vCPUs and memory are bound to",
    "cpu": "shared or dedicated",
    "threads": "dedicated guests: prefer, isolate or require; empty for shared guests",
    "vcpus": "vCPUs in the cell (count)",
    "vcpu_ids": "the cell's guest vCPU ids (CPU list string, e.g. '0-3')",
    "pcpus": "host CPUs the cell's vCPUs are pinned to (CPU list string, e.g. '36-39,108-111')",
    "emulator_pcpus": "host CPUs of the guest's emulator threads (CPU list string; the same on every cell row)",
    "memory_kib": "memory of the cell in KiB",
    "page_size": "page size backing the cell's memory: '4K' (ordinary pages), '2M' or '1G'",
    "load": "shared guests: expected average load of each vCPU (0..1); NaN for dedicated guests",
    "expected_load_cpus": "expected busy CPUs of the cell: vcpus x load (shared), vcpus (dedicated)",
    "distance": "NUMA distance from the cell's node to the node of cell 0 (10 = local)",
    "priority": "the guest's priority",
}

UNPLACED_COLUMNS: dict[str, str] = {
    "guest": "guest name",
    "vcpus": "vCPUs of the guest",
    "memory_kib": "memory of the guest in KiB",
    "cpu": "shared or dedicated",
    "threads": "dedicated guests: prefer, isolate or require; empty for shared guests",
    "page_size": "page size of the guest's memory: '4K' (ordinary pages), '2M', '1G'",
    "numa": "guest NUMA cells asked for (<NA>: auto)",
    "priority": "the guest's priority",
    "anti_affinity": "anti-affinity tags, comma-separated",
    "reason": "why the guest is not placed: what is missing, where, by how much",
}

_NODE_CPU_COLUMNS: dict[str, str] = {
    "cpus": "logical CPUs",
    "reserved_cpus": "CPUs reserved for the host (they serve no guest vCPU)",
    "usable_cpus": "cpus - reserved_cpus",
    "dedicated_cpus": "CPUs pinned 1:1 by dedicated vCPUs",
    "idle_cpus": "sibling CPUs left idle by threads: isolate vCPUs",
    "emulator_cpus": "CPUs of emulator: isolate guests (one per guest)",
    "pool_cpus": "the shared pool: usable CPUs - dedicated - idle - emulator CPUs",
    "pool_cores": "physical cores of the shared pool (a core counts 1/T per thread in the pool)",
    "shared_vcpus": "vCPUs of shared guest cells (floating on the shared pool)",
    "dedicated_vcpus": "vCPUs of dedicated guest cells",
    "vcpu_per_core": "shared_vcpus / pool_cores: the vCPU:core overcommit ratio of the pool (NaN: empty pool)",
    "vcpu_per_core_max": "policy.cpu_overcommit_max, the cap on vcpu_per_core",
    "expected_load_cpus": "expected busy CPUs of the shared pool: sum of vCPUs x load of its shared cells",
    "load_capacity_cpus": "policy.cpu_load_target x pool_cpus: the most expected load the pool may carry",
    "load_fraction": "expected_load_cpus / pool_cpus: the pool's expected average load (NaN: empty pool)",
    "load_target": "policy.cpu_load_target, the limit on load_fraction",
    "load_of_target": "expected_load_cpus / load_capacity_cpus: 1.0 = at the load target (NaN: empty pool)",
    "cpu_committed_cpus": "CPUs taken: dedicated + idle + emulator CPUs + the pool share the binding shared limit "
                          "uses up (pool_cpus x max(load_of_target, vcpu_per_core / vcpu_per_core_max))",
    "cpu_used_fraction": "cpu_committed_cpus / usable_cpus (NaN: no usable CPU)",
    "memory_kib": "memory of the node in KiB (all of it: reserved memory and hugepage pools included)",
    "memory_4k_capacity_kib": "ordinary (4K) memory guests may use in KiB: (memory - reserved - hugepage pools) "
                              "x policy.memory_overcommit",
    "memory_4k_used_kib": "4K memory of the guest cells in KiB",
    "memory_4k_free_kib": "memory_4k_capacity_kib - memory_4k_used_kib (negative: over)",
    "memory_4k_used_fraction": "memory_4k_used_kib / memory_4k_capacity_kib (NaN: no 4K memory)",
    "hugepages_capacity_kib": "memory in hugepage pools, all page sizes, in KiB",
    "hugepages_used_kib": "hugepage memory of the guest cells, all page sizes, in KiB",
    "hugepages_free_kib": "hugepages_capacity_kib - hugepages_used_kib",
    "hugepages_used_fraction": "hugepages_used_kib / hugepages_capacity_kib (NaN: no pools)",
}
HUGEPAGE_SIZE_COLUMNS: dict[str, str] = {
    "hugepages_<size>_pages": "pages of that size in the pools (count), one column triple per page size in the "
                              "scenario, e.g. hugepages_2M_pages, hugepages_1G_pages",
    "hugepages_<size>_used": "pages of that size used by guest cells (count)",
    "hugepages_<size>_free": "pages of that size left (count)",
}

NODE_COLUMNS: dict[str, str] = {
    "host": "host name",
    "model": "host model of the host",
    "node": "host NUMA node id",
    "host_used": "True when the plan places a guest on the host",
    "cells": "guest NUMA cells on the node (count)",
    **_NODE_CPU_COLUMNS,
    "pool_cpulist": "the shared pool's CPUs (CPU list string)",
    "dedicated_cpulist": "the dedicated CPUs (CPU list string)",
    **HUGEPAGE_SIZE_COLUMNS,
}

_HOST_RATIOS: dict[str, str] = {
    "vcpu_per_core": "shared_vcpus / pool_cores over the host (NaN: no pool)",
    "load_fraction": "expected_load_cpus / pool_cpus over the host (NaN: no pool)",
    "load_of_target": "expected_load_cpus / load_capacity_cpus over the host (NaN: no pool)",
    "cpu_used_fraction": "cpu_committed_cpus / usable_cpus",
    "memory_4k_used_fraction": "memory_4k_used_kib / memory_4k_capacity_kib",
    "hugepages_used_fraction": "hugepages_used_kib / hugepages_capacity_kib (NaN: no pools)",
}
HOST_COLUMNS: dict[str, str] = {
    "host": "host name",
    "model": "host model of the host",
    "host_used": "True when the plan places a guest on the host",
    "guests": "guests placed on the host (count)",
    "nodes": "NUMA nodes of the host (count)",
    "vcpus": "vCPUs of the guests on the host (shared and dedicated)",
    "physical_cores": "physical cores of the host (reserved ones included)",
    "vcpu_cap": "floor(policy.cpu_overcommit_max x physical_cores): the most vCPUs the host may carry",
    "host_vcpu_per_core": "vcpus / physical_cores: the host-wide vCPU:core ratio",
    **{k: _HOST_RATIOS.get(k, v + " (sum over the host's nodes)") for k, v in _NODE_CPU_COLUMNS.items()
       if k not in ("vcpu_per_core_max", "load_target")},
    **HUGEPAGE_SIZE_COLUMNS,
}

SUMMARY_COLUMNS: dict[str, str] = {
    "scenario": "scenario name",
    "status": "optimal, feasible or partial",
    "solver": "cp-sat or greedy: whose plan it is",
    "solver_status": "CP-SAT's status (OPTIMAL, FEASIBLE, ...) or GREEDY",
    "solve_s": "solve time in seconds (as plan.json's headline.solve_s)",
    "guests": "guests in the scenario",
    "placed": "guests placed",
    "unplaced": "guests not placed",
    "priority_placed": "sum of the priorities of the placed guests",
    "hosts": "hosts in the scenario",
    "hosts_used": "hosts with at least one guest",
    "vcpus_placed": "vCPUs of the placed guests",
    "dedicated_vcpus": "vCPUs of placed dedicated guests",
    "shared_vcpus": "vCPUs of placed shared guests",
    "memory_placed_kib": "memory of the placed guests in KiB",
    "spanning_guests": "placed guests with more than one NUMA cell",
    "numa_distance_cost": "sum over placed guests and their cell pairs of the host NUMA distance between the "
                          "cells' nodes (the solver's third objective)",
    "usable_cpus": "usable CPUs of the hosts used",
    "cpu_committed_cpus": "CPUs taken on the hosts used (see node_usage)",
    "cpu_used_fraction": "cpu_committed_cpus / usable_cpus over the hosts used",
    "host_vcpu_per_core": "vCPUs / physical cores over the hosts used",
    "load_of_target": "expected shared load / (load target x pool CPUs) over the hosts used",
    "memory_4k_used_fraction": "4K memory used / 4K capacity over the hosts used",
    "hugepages_used_fraction": "hugepage memory used / pool memory over the hosts used (NaN: no pools)",
}

COLUMNS: dict[str, dict[str, str]] = {
    "placements": PLACEMENT_COLUMNS,
    "node_usage": NODE_COLUMNS,
    "host_usage": HOST_COLUMNS,
    "unplaced": UNPLACED_COLUMNS,
    "summary": SUMMARY_COLUMNS,
}


def _column_doc(columns: dict[str, str]) -> str:
    width = max(len(c) for c in columns)
    return "\n".join(f"    {name:<{width}}  {text}" for name, text in columns.items())


# --------------------------------------------------------------------------------------------------- helpers
def usage_by_host(plan: Plan) -> dict[str, dict[int, NodeUsage]]:
    """``planner.verify.check.node_usage(plan)``: the checker's usage, which it computes once per plan."""
    from planner.verify.check import node_usage

    return node_usage(plan)


def page_sizes(plan: Plan) -> list[int]:
    """Hugepage sizes (KiB) of the scenario: in a node's pools or asked for by a guest, ascending."""
    sc = plan.scenario
    sizes = {size for model in sc.host_models.values() for node in model.nodes for size in node.hugepages}
    sizes |= {g.hugepage_kib for g in sc.guests if g.hugepage_kib}
    return sorted(sizes)


def page_label(size_kib: int) -> str:
    """2048 -> '2M', 1048576 -> '1G' (as in hugepages_2M_used)."""
    return format_page(size_kib)


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else math.nan


def _committed(dedicated: float, idle: float, emulator: float, pool: float, load_of_target: float,
               vcpu_share: float) -> float:
    share = max(0.0 if math.isnan(load_of_target) else load_of_target, 0.0 if math.isnan(vcpu_share) else vcpu_share)
    return dedicated + idle + emulator + pool * share


# --------------------------------------------------------------------------------------------------- tables
def placements(plan: Plan) -> pd.DataFrame:
    rows = []
    sc = plan.scenario
    for guest in sc.guests:
        p = plan.placed.get(guest.name)
        if p is None:
            continue
        model = sc.model_of(p.host)
        node0 = p.cells[0].node_id
        emulator = format_cpulist(p.emulator_pins)
        for cell in p.cells:
            n = len(cell.vcpus)
            rows.append({
                "guest": guest.name,
                "host": p.host,
                "model": model.name,
                "cell": cell.cell_id,
                "cells": len(p.cells),
                "node": cell.node_id,
                "cpu": guest.cpu,
                "threads": guest.threads or "",
                "vcpus": n,
                "vcpu_ids": format_cpulist(cell.vcpus),
                "pcpus": format_cpulist({c for v in cell.vcpus for c in p.vcpu_pins[v]}),
                "emulator_pcpus": emulator,
                "memory_kib": cell.memory_kib,
                "page_size": format_page(guest.hugepage_kib or SMALL_PAGE_KIB),
                "load": math.nan if guest.dedicated else float(guest.load),
                "expected_load_cpus": float(n if guest.dedicated else n * guest.load),
                "distance": model.distance(cell.node_id, node0),
                "priority": guest.priority,
            })
    return pd.DataFrame(rows, columns=list(PLACEMENT_COLUMNS))


placements.__doc__ = f"""One row per placed guest NUMA cell, guests in scenario order. Columns:

{_column_doc(PLACEMENT_COLUMNS)}
"""


def node_usage(plan: Plan) -> pd.DataFrame:
    sc = plan.scenario
    policy = sc.policy
    usage = usage_by_host(plan)
    sizes = page_sizes(plan)
    used_hosts = set(plan.hosts_used)
    cells: dict[tuple[str, int], int] = {}
    for p in plan.placed.values():
        for c in p.cells:
            cells[(p.host, c.node_id)] = cells.get((p.host, c.node_id), 0) + 1
    cap = float(policy.cpu_overcommit_max)
    target = float(policy.cpu_load_target)
    rows = []
    for host in sc.hosts:
        model = sc.host_models[host.model]
        for node in model.nodes:
            u = usage[host.name][node.id]
            cpus = len(node.cpus)
            reserved = len(set(node.cpus) & model.reserved_cpus)
            pool = len(u.pool_cpus)
            pool_cores = float(u.pool_cores)
            load = float(u.shared_load)
            vpc = _ratio(u.shared_vcpus, pool_cores)
            load_of_target = _ratio(load, target * pool)
            committed = _committed(len(u.dedicated_cpus), len(u.idle_cpus), len(u.emulator_cpus), pool,
                                   load_of_target, vpc / cap if not math.isnan(vpc) else math.nan)
            mem_used = u.memory_4k_used_kib
            mem_cap = u.memory_4k_used_kib + u.memory_4k_free_kib
            row = {
                "host": host.name,
                "model": host.model,
                "node": node.id,
                "host_used": host.name in used_hosts,
                "cells": cells.get((host.name, node.id), 0),
                "cpus": cpus,
                "reserved_cpus": reserved,
                "usable_cpus": cpus - reserved,
                "dedicated_cpus": len(u.dedicated_cpus),
                "idle_cpus": len(u.idle_cpus),
                "emulator_cpus": len(u.emulator_cpus),
                "pool_cpus": pool,
                "pool_cores": pool_cores,
                "shared_vcpus": u.shared_vcpus,
                "dedicated_vcpus": u.dedicated_vcpus,
                "vcpu_per_core": vpc,
                "vcpu_per_core_max": cap,
                "expected_load_cpus": load,
                "load_capacity_cpus": target * pool,
                "load_fraction": _ratio(load, pool),
                "load_target": target,
                "load_of_target": load_of_target,
                "cpu_committed_cpus": committed,
                "cpu_used_fraction": _ratio(committed, cpus - reserved),
                "memory_kib": node.memory_kib,
                "memory_4k_capacity_kib": mem_cap,
                "memory_4k_used_kib": mem_used,
                "memory_4k_free_kib": u.memory_4k_free_kib,
                "memory_4k_used_fraction": _ratio(mem_used, mem_cap),
            }
            cap_kib = used_kib = 0
            for size in sizes:
                pages = node.hugepages.get(size, 0)
                used = u.hugepages_used.get(size, 0)
                label = page_label(size)
                row[f"hugepages_{label}_pages"] = pages
                row[f"hugepages_{label}_used"] = used
                row[f"hugepages_{label}_free"] = pages - used
                cap_kib += pages * size
                used_kib += used * size
            row["hugepages_capacity_kib"] = cap_kib
            row["hugepages_used_kib"] = used_kib
            row["hugepages_free_kib"] = cap_kib - used_kib
            row["hugepages_used_fraction"] = _ratio(used_kib, cap_kib)
            row["pool_cpulist"] = format_cpulist(u.pool_cpus)
            row["dedicated_cpulist"] = format_cpulist(u.dedicated_cpus)
            rows.append(row)
    return pd.DataFrame(rows, columns=node_columns(plan))


def node_columns(plan: Plan) -> list[str]:
    """The node_usage columns of this plan, in order (the hugepage columns depend on the page sizes)."""
    return _expand(NODE_COLUMNS, page_sizes(plan))


def host_columns(plan: Plan) -> list[str]:
    """The host_usage columns of this plan, in order."""
    return _expand(HOST_COLUMNS, page_sizes(plan))


def _expand(columns: dict[str, str], sizes: list[int]) -> list[str]:
    out: list[str] = []
    for name in columns:
        if name == "hugepages_<size>_pages":
            for size in sizes:
                label = page_label(size)
                out += [f"hugepages_{label}_pages", f"hugepages_{label}_used", f"hugepages_{label}_free"]
        elif name.startswith("hugepages_<size>"):
            continue
        else:
            out.append(name)
    return out


node_usage.__doc__ = f"""One row per host and NUMA node (every host of the scenario, in scenario order, nodes in
model order), what the plan takes from the node and what it leaves. Columns:

{_column_doc(NODE_COLUMNS)}
"""

_HOST_SUMS = (
    "cpus", "reserved_cpus", "usable_cpus", "dedicated_cpus", "idle_cpus", "emulator_cpus", "pool_cpus",
    "pool_cores", "shared_vcpus", "dedicated_vcpus", "expected_load_cpus", "load_capacity_cpus",
    "cpu_committed_cpus", "memory_kib", "memory_4k_capacity_kib", "memory_4k_used_kib", "memory_4k_free_kib",
    "hugepages_capacity_kib", "hugepages_used_kib", "hugepages_free_kib",
)


def host_usage(plan: Plan) -> pd.DataFrame:
    sc = plan.scenario
    nodes = node_usage(plan)
    sizes = page_sizes(plan)
    page_cols = [f"hugepages_{page_label(s)}_{kind}" for s in sizes for kind in ("pages", "used", "free")]
    by_host: dict[str, list] = {}
    for p in plan.placed.values():
        by_host.setdefault(p.host, []).append(p)
    rows = []
    for host in sc.hosts:
        model = sc.host_models[host.model]
        sub = nodes[nodes["host"] == host.name]
        placed = by_host.get(host.name, [])
        vcpus = sum(sc.guest_by_name[p.guest].vcpus for p in placed)
        cores = len(model.cores)
        row: dict[str, Any] = {
            "host": host.name,
            "model": host.model,
            "host_used": bool(placed),
            "guests": len(placed),
            "nodes": len(model.nodes),
            "vcpus": vcpus,
            "physical_cores": cores,
            "vcpu_cap": math.floor(sc.policy.cpu_overcommit_max * cores),
            "host_vcpu_per_core": _ratio(vcpus, cores),
        }
        for col in _HOST_SUMS:
            row[col] = sub[col].sum().item() if len(sub) else 0
        row["vcpu_per_core"] = _ratio(row["shared_vcpus"], row["pool_cores"])
        row["load_fraction"] = _ratio(row["expected_load_cpus"], row["pool_cpus"])
        row["load_of_target"] = _ratio(row["expected_load_cpus"], row["load_capacity_cpus"])
        row["cpu_used_fraction"] = _ratio(row["cpu_committed_cpus"], row["usable_cpus"])
        row["memory_4k_used_fraction"] = _ratio(row["memory_4k_used_kib"], row["memory_4k_capacity_kib"])
        row["hugepages_used_fraction"] = _ratio(row["hugepages_used_kib"], row["hugepages_capacity_kib"])
        for col in page_cols:
            row[col] = int(sub[col].sum()) if len(sub) else 0
        rows.append(row)
    return pd.DataFrame(rows, columns=host_columns(plan))


host_usage.__doc__ = f"""One row per host of the scenario (in scenario order): the node_usage figures summed over
the host's nodes, ratios recomputed from the sums, and the host-wide vCPU cap. Columns:

{_column_doc(HOST_COLUMNS)}
"""


def unplaced(plan: Plan) -> pd.DataFrame:
    rows = []
    for guest in plan.scenario.guests:
        if guest.name in plan.placed:
            continue
        rows.append({
            "guest": guest.name,
            "vcpus": guest.vcpus,
            "memory_kib": guest.memory_kib,
            "cpu": guest.cpu,
            "threads": guest.threads or "",
            "page_size": format_page(guest.hugepage_kib or SMALL_PAGE_KIB),
            "numa": guest.numa if guest.numa is not None else pd.NA,
            "priority": guest.priority,
            "anti_affinity": ",".join(guest.anti_affinity),
            "reason": plan.unplaced_reasons.get(guest.name, ""),
        })
    frame = pd.DataFrame(rows, columns=list(UNPLACED_COLUMNS))
    frame["numa"] = frame["numa"].astype("Int64")
    return frame


unplaced.__doc__ = f"""One row per guest the plan does not place, in scenario order. Columns:

{_column_doc(UNPLACED_COLUMNS)}
"""


def summary(plan: Plan) -> pd.DataFrame:
    sc = plan.scenario
    hosts = host_usage(plan)
    used = hosts[hosts["host_used"]]
    placed = [sc.guest_by_name[name] for name in plan.placed]
    cost = 0
    for p in plan.placed.values():
        model = sc.model_of(p.host)
        nodes = p.nodes
        for i in range(len(nodes)):
            for j in range(i + 1, len(nodes)):
                cost += (model.distance(nodes[i], nodes[j]) + model.distance(nodes[j], nodes[i])) // 2

    def total(col: str) -> float:
        return float(used[col].sum()) if len(used) else 0.0

    row = {
        "scenario": sc.name,
        "status": plan.status,
        "solver": plan.stats.solver,
        "solver_status": plan.stats.solver_status,
        "solve_s": plan.stats.wall_s,
        "guests": len(sc.guests),
        "placed": len(plan.placed),
        "unplaced": len(plan.unplaced_reasons),
        "priority_placed": sum(g.priority for g in placed),
        "hosts": len(sc.hosts),
        "hosts_used": len(plan.hosts_used),
        "vcpus_placed": sum(g.vcpus for g in placed),
        "dedicated_vcpus": sum(g.vcpus for g in placed if g.dedicated),
        "shared_vcpus": sum(g.vcpus for g in placed if not g.dedicated),
        "memory_placed_kib": sum(g.memory_kib for g in placed),
        "spanning_guests": sum(1 for p in plan.placed.values() if len(p.cells) > 1),
        "numa_distance_cost": cost,
        "usable_cpus": total("usable_cpus"),
        "cpu_committed_cpus": total("cpu_committed_cpus"),
        "cpu_used_fraction": _ratio(total("cpu_committed_cpus"), total("usable_cpus")),
        "host_vcpu_per_core": _ratio(total("vcpus"), total("physical_cores")),
        "load_of_target": _ratio(total("expected_load_cpus"), total("load_capacity_cpus")),
        "memory_4k_used_fraction": _ratio(total("memory_4k_used_kib"), total("memory_4k_capacity_kib")),
        "hugepages_used_fraction": _ratio(total("hugepages_used_kib"), total("hugepages_capacity_kib")),
    }
    return pd.DataFrame([row], columns=list(SUMMARY_COLUMNS))


summary.__doc__ = f"""One row for the whole plan (so that plans of several variants concatenate into one table);
utilisation figures are over the hosts used. Columns:

{_column_doc(SUMMARY_COLUMNS)}
"""


def write(plan: Plan, out_dir) -> object:
    """``planner.analysis.output.write_plan``: OUT/plan.json and one libvirt domain XML per placed guest, atomically."""
    from planner.analysis.output import write_plan

    return write_plan(plan, out_dir)
