"""Plots of a plan (matplotlib). Every function takes an optional ``ax=`` and returns the Axes it drew on.

Without ``ax`` a new figure is made with ``matplotlib.pyplot`` (so it shows in a notebook); the functions work with
any backend, Agg included (``planner.analysis.report`` draws on ``matplotlib.figure.Figure`` objects, no pyplot at all).

* ``utilisation_heatmap(plan, resource)``  hosts × NUMA nodes, colour = how full the node is for one resource;
* ``node_bars(plan)``                      per node three stacked bars: CPUs, 4K memory, hugepages (fractions);
* ``pin_map(plan, host)``                  every pCPU of one host in a grid by node and core, SMT siblings side by
                                           side, coloured by the dedicated guest pinned there; reserved CPUs,
                                           idle siblings, emulator CPUs and the shared pool marked;
* ``growth_plot(curve)``                   hosts needed against the demand factor (``capacity.growth_curve``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from planner.model.plan import Plan

RESOURCES = {
    "cpu": ("cpu_used_fraction", "CPUs committed"),
    "load": ("load_of_target", "shared load / load target"),
    "vcpu": (None, "shared vCPUs / (cap x pool cores)"),
    "memory_4k": ("memory_4k_used_fraction", "4K memory used"),
    "hugepages": ("hugepages_used_fraction", "hugepage pools used"),
    "max": (None, "fullest of CPUs, 4K memory, hugepages"),
}

COLOURS = {
    "dedicated": "#d62728",
    "isolated": "#ff9896",
    "shared": "#1f77b4",
    "free": "#e8e8e8",
    "memory_used": "#2ca02c",
    "hugepages_used": "#9467bd",
    "reserved": "#4d4d4d",
    "pool": "#deebf7",
}
# guest colours for pin maps: strong, distinct, none close to the pale pool / free / reserved colours
GUEST_PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#393b79",
    "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354", "#756bb1", "#636363", "#fd8d3c",
)


def _axes(ax, figsize: tuple[float, float]):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _fig, ax = plt.subplots(figsize=figsize)
    return ax


def _nodes_frame(plan_or_frame: Plan | pd.DataFrame) -> pd.DataFrame:
    return plan_or_frame.node_usage() if isinstance(plan_or_frame, Plan) else plan_or_frame


def _select_hosts(frame: pd.DataFrame, hosts: str | Iterable[str] | None) -> pd.DataFrame:
    if hosts is None or hosts == "all":
        return frame
    if hosts == "used":
        used = frame[frame["host_used"]]
        return used if len(used) else frame
    wanted = [hosts] if isinstance(hosts, str) else list(hosts)
    return frame[frame["host"].isin(wanted)]


def resource_values(frame: pd.DataFrame, resource: str) -> pd.Series:
    """The fraction plotted for ``resource`` (see ``RESOURCES``), per node_usage row."""
    if resource not in RESOURCES:
        raise ValueError(f"resource is one of {', '.join(RESOURCES)}")
    column, _label = RESOURCES[resource]
    if column is not None:
        return frame[column].astype(float)
    if resource == "vcpu":
        return (frame["vcpu_per_core"] / frame["vcpu_per_core_max"]).astype(float)
    parts = frame[["cpu_used_fraction", "memory_4k_used_fraction", "hugepages_used_fraction"]].astype(float)
    return parts.max(axis=1, skipna=True)


def utilisation_heatmap(plan: Plan | pd.DataFrame, resource: str = "cpu", *, ax=None, hosts="used",
                        annotate: bool = True, cmap: str = "Blues"):
    """Hosts (rows) × NUMA node ids (columns); colour and label = the fraction of the node's capacity used for
    ``resource``: ``cpu`` (cpu_used_fraction), ``load`` (load_of_target), ``vcpu`` (vCPU:core ratio over the cap),
    ``memory_4k``, ``hugepages``, or ``max`` (the fullest of CPUs, 4K memory and hugepages). Blank cells: the
    host has no such node or the node has none of the resource. ``hosts``: ``"used"`` (default), ``"all"`` or
    names. The Axes holds one image; with ``annotate`` one text per non-blank cell. The default colour scale is
    sequential (darker = fuller, no alarm colour: a full host is what packing aims for) and labelled."""
    frame = _select_hosts(_nodes_frame(plan), hosts)
    values = resource_values(frame, resource)
    host_names = list(dict.fromkeys(frame["host"]))
    node_ids = sorted(set(int(n) for n in frame["node"]))
    grid = np.full((len(host_names), len(node_ids)), np.nan)
    row_of = {h: i for i, h in enumerate(host_names)}
    col_of = {n: j for j, n in enumerate(node_ids)}
    for (host, node), value in zip(zip(frame["host"], frame["node"], strict=False), values, strict=False):
        grid[row_of[host], col_of[int(node)]] = value
    ax = _axes(ax, (1.6 + 0.7 * max(len(node_ids), 2), 1.2 + 0.35 * max(len(host_names), 2)))
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto",
                      interpolation="nearest")
    ax.set_xticks(range(len(node_ids)), [str(n) for n in node_ids])
    ax.set_yticks(range(len(host_names)), host_names)
    ax.set_xlabel("NUMA node")
    ax.set_ylabel("host")
    ax.set_title(f"{RESOURCES[resource][1]} per node")
    if annotate:
        for i in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                v = grid[i, j]
                if not math.isnan(v):
                    ax.text(j, i, f"{v:.0%}", ha="center", va="center", fontsize=7,
                            color="white" if v > 0.6 else "black")
    bar = ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.02, format=lambda x, _pos: f"{x:.0%}")
    bar.set_label(f"{RESOURCES[resource][1]}, % of the node's capacity (darker = fuller)", fontsize=8)
    return ax


def node_bars(plan: Plan | pd.DataFrame, *, ax=None, hosts="used"):
    """Per host NUMA node three stacked bars, as fractions of the node's capacity: CPUs (dedicated, isolated =
    idle isolate siblings + emulator CPUs, shared = the pool share the shared guests use up, free), 4K memory
    (used, free) and hugepages (used, free; empty when the node has no pools). Each node adds 8 bar patches."""
    frame = _select_hosts(_nodes_frame(plan), hosts).reset_index(drop=True)
    n = len(frame)
    x = np.arange(n, dtype=float)
    usable = frame["usable_cpus"].astype(float).replace(0, np.nan)
    dedicated = (frame["dedicated_cpus"] / usable).fillna(0).to_numpy()
    isolated = ((frame["idle_cpus"] + frame["emulator_cpus"]) / usable).fillna(0).to_numpy()
    shared = ((frame["cpu_committed_cpus"] - frame["dedicated_cpus"] - frame["idle_cpus"] - frame["emulator_cpus"])
              / usable).fillna(0).clip(lower=0).to_numpy()
    cpu_free = np.clip(1 - dedicated - isolated - shared, 0, None) * usable.notna().to_numpy()
    memory = frame["memory_4k_used_fraction"].astype(float).fillna(0).to_numpy()
    memory_free = np.clip(1 - memory, 0, None) * frame["memory_4k_capacity_kib"].gt(0).to_numpy()
    pages = frame["hugepages_used_fraction"].astype(float).fillna(0).to_numpy()
    pages_free = np.clip(1 - pages, 0, None) * frame["hugepages_capacity_kib"].gt(0).to_numpy()
    ax = _axes(ax, (max(6.0, 0.55 * n + 2), 4.0))
    w = 0.26
    xc, xm, xh = x - w, x, x + w
    ax.bar(xc, dedicated, w, color=COLOURS["dedicated"], label="CPU: dedicated")
    ax.bar(xc, isolated, w, bottom=dedicated, color=COLOURS["isolated"], label="CPU: isolate siblings, emulator")
    ax.bar(xc, shared, w, bottom=dedicated + isolated, color=COLOURS["shared"],
           label="CPU: shared pool (binding limit)")
    ax.bar(xc, cpu_free, w, bottom=dedicated + isolated + shared, color=COLOURS["free"], edgecolor="#bbbbbb",
           linewidth=0.4, label="free")
    ax.bar(xm, memory, w, color=COLOURS["memory_used"], label="4K memory used")
    ax.bar(xm, memory_free, w, bottom=memory, color=COLOURS["free"], edgecolor="#bbbbbb", linewidth=0.4)
    ax.bar(xh, pages, w, color=COLOURS["hugepages_used"], label="hugepages used")
    ax.bar(xh, pages_free, w, bottom=pages, color=COLOURS["free"], edgecolor="#bbbbbb", linewidth=0.4)
    ax.set_xticks(x, [f"{h} / {nd}" for h, nd in zip(frame["host"], frame["node"], strict=False)], rotation=60,
                  ha="right", fontsize=8)
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_ylim(0, 1.05)
    ax.yaxis.set_major_formatter(lambda v, _pos: f"{v:.0%}")
    ax.set_ylabel("of the node's capacity")
    ax.set_title("per host / NUMA node: CPUs | 4K memory | hugepages", pad=34)
    ax.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=4, frameon=False)
    return ax


def pin_map(plan: Plan, host: str, *, ax=None, labels: bool = True, max_legend: int = 24):
    """Every logical CPU of ``host`` as one square: one row per NUMA node, cores left to right (by first CPU), the
    threads of a core side by side. Colour: the dedicated guest pinned there (legend), reserved CPUs dark grey
    with 'R', idle siblings of ``threads: isolate`` vCPUs white hatched in their guest's colour, ``emulator:
    isolate`` CPUs in their guest's colour hatched with 'E', the shared pool light blue (the row label gives the
    node's shared vCPUs and load). The Axes holds exactly one patch per CPU of the host."""
    from matplotlib.patches import Patch, Rectangle

    from planner.analysis.frames import usage_by_host

    sc = plan.scenario
    if host not in sc.host_by_name:
        raise KeyError(f"no such host: {host}")
    model = sc.model_of(host)
    usage = usage_by_host(plan)[host]
    guests_here = sorted(plan.guests_on(host), key=lambda p: [g.name for g in sc.guests].index(p.guest))
    owner: dict[int, str] = {}
    emulator: dict[int, str] = {}
    for p in guests_here:
        g = sc.guest_by_name[p.guest]
        if g.dedicated:
            for pins in p.vcpu_pins:
                for c in pins:
                    owner[c] = p.guest
        if g.emulator == "isolate":
            for c in p.emulator_pins:
                emulator[c] = p.guest
    idle_owner: dict[int, str] = {}
    for c, name in list(owner.items()):
        if sc.guest_by_name[name].threads == "isolate":
            for s in model.core_of_cpu.get(c, (c,)):
                if s != c:
                    idle_owner[s] = name
    named = list(dict.fromkeys([p.guest for p in guests_here
                                if p.guest in set(owner.values()) | set(emulator.values())]))
    colour = {name: GUEST_PALETTE[i % len(GUEST_PALETTE)] for i, name in enumerate(named)}
    threads = max(len(core) for core in model.cores)
    gap = 0.35
    rows = []
    max_x = 0.0
    cores_by_node = []
    for node in model.nodes:
        in_node = set(node.cpus)
        cores = sorted((tuple(c for c in core if c in in_node) for core in model.cores if in_node.intersection(core)),
                       key=lambda core: core[0])
        cores_by_node.append(cores)
    width = max((len(c) for c in cores_by_node), default=1) * (threads + gap)
    ax = _axes(ax, (min(max(6.0, 0.22 * width + 2.5), 24.0), 0.9 * len(model.nodes) + 1.2))
    reserved = model.reserved_cpus
    for r, (node, cores) in enumerate(zip(model.nodes, cores_by_node, strict=False)):
        y = -r
        u = usage[node.id]
        pool = set(u.pool_cpus)
        for j, core in enumerate(cores):
            for k, c in enumerate(core):
                x = j * (threads + gap) + k
                max_x = max(max_x, x + 1)
                face, hatch, text, edge, text_colour = COLOURS["pool"], None, str(c), "#888888", "black"
                if c in reserved:
                    face, text, text_colour = COLOURS["reserved"], "R", "white"
                elif c in owner:
                    face = colour[owner[c]]
                elif c in emulator:
                    face, hatch, text = colour[emulator[c]], "..", "E"
                elif c in idle_owner:
                    face, hatch, edge = "white", "xxx", colour.get(idle_owner[c], "#888888")
                elif c not in pool:
                    face = COLOURS["free"]
                ax.add_patch(Rectangle((x, y - 0.4), 0.92, 0.8, facecolor=face, edgecolor=edge, hatch=hatch,
                                       linewidth=0.6))
                if labels:
                    ax.text(x + 0.46, y, text, ha="center", va="center", fontsize=5, color=text_colour)
        load = float(u.shared_load)
        rows.append(f"node {node.id}\n{len(u.pool_cpus)} pool CPUs, {u.shared_vcpus} vCPUs, load {load:.1f}")
    ax.set_xlim(-0.3, max_x + 0.3)
    ax.set_ylim(-len(model.nodes) + 0.4, 0.6)
    ax.set_yticks([-r for r in range(len(model.nodes))], rows, fontsize=7)
    ax.set_xticks([])
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_title(f"{host} ({model.name}): pCPUs by node and core, SMT siblings side by side", fontsize=9)
    handles = [Patch(facecolor=colour[n], label=n) for n in named[:max_legend]]
    if len(named) > max_legend:
        handles.append(Patch(facecolor="white", label=f"... {len(named) - max_legend} more guests"))
    handles += [
        Patch(facecolor=COLOURS["pool"], edgecolor="#888888", label="shared pool"),
        Patch(facecolor=COLOURS["reserved"], label="reserved (R)"),
        Patch(facecolor="white", edgecolor="#888888", hatch="xxx", label="idle sibling (isolate)"),
        Patch(facecolor="#cccccc", hatch="..", label="emulator CPU (E)"),
    ]
    ax.legend(handles=handles, fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return ax


def growth_plot(curve: pd.DataFrame, *, ax=None):
    """Hosts needed (solid, with the number at each point; '≤' where not proven minimal) and the lower bound from
    the totals (dashed) against the demand factor. ``curve`` is a ``capacity.growth_curve`` DataFrame. Two lines."""
    ax = _axes(ax, (6.0, 3.6))
    x = curve["factor"].astype(float).to_numpy()
    y = curve["hosts_needed"].astype(float).to_numpy()
    ax.plot(x, y, "o-", color="#1f77b4", linewidth=3.5, markersize=7, label="hosts needed", zorder=2)
    # on top, thinner and dashed in another colour: visible where it meets the hosts line
    ax.plot(x, curve["lower_bound_hosts"].astype(float).to_numpy(), "s--", color="#ff7f0e", linewidth=1.8,
            markersize=4, label="lower bound (totals)", zorder=3)
    proven = curve["proven"].to_numpy() if "proven" in curve else np.ones(len(curve), dtype=bool)
    for xi, yi, ok in zip(x, y, proven, strict=False):
        ax.annotate(f"{'' if ok else '≤'}{int(yi)}", (xi, yi), textcoords="offset points", xytext=(0, 7),
                    ha="center", fontsize=8)
    ax.set_xticks(x, [f"×{v:g}" for v in x])
    ax.set_xlabel("demand")
    ax.set_ylabel("hosts")
    ax.set_ylim(0, max(y.max() if len(y) else 1, 1) * 1.2)
    model = curve.attrs.get("model")
    ax.set_title(f"hosts needed as demand grows{f' ({model})' if model else ''}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return ax
