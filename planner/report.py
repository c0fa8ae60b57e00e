"""A self-contained HTML report of a plan: summary tables from the plan's DataFrames and the plots, embedded.

``write_report(plan, path, growth=None)`` writes one HTML file with no external resource (no script, no
stylesheet link, no remote image): every plot is a PNG inside the page as ``<img src="data:image/png;base64,...">``.
It opens in any browser, offline, and can be mailed or attached to a ticket.

Sections: summary (``plan.summary()``), hosts (``plan.host_usage()``, the main columns), plots (CPU and 4K
memory heatmaps per host and node, stacked bars per node, the pin map of up to ``pin_maps`` hosts used — the
busiest first — and the growth curve when ``growth`` is given), unplaced guests (``plan.unplaced()``), NUMA nodes
(``plan.node_usage()``, the main columns) and placements (``plan.placements()``, up to ``max_rows`` rows).
"""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path

import pandas as pd

from planner.plan import Plan

HOST_REPORT_COLUMNS = ["host", "model", "guests", "vcpus", "host_vcpu_per_core", "dedicated_cpus", "pool_cpus",
                       "shared_vcpus", "load_of_target", "cpu_used_fraction", "memory_4k_used_kib",
                       "memory_4k_capacity_kib", "memory_4k_used_fraction", "hugepages_used_fraction"]
NODE_REPORT_COLUMNS = ["host", "node", "cells", "usable_cpus", "dedicated_cpus", "idle_cpus", "emulator_cpus",
                       "pool_cpus", "shared_vcpus", "vcpu_per_core", "expected_load_cpus", "load_of_target",
                       "cpu_used_fraction", "memory_4k_used_kib", "memory_4k_free_mib", "memory_4k_used_fraction",
                       "hugepages_used_fraction"]

CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.8em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
figure { margin: 1em 0; } figcaption { font-size: 0.85em; color: #555; }
img { max-width: 100%; border: 1px solid #eee; }
.note { color: #666; font-size: 0.85em; }
"""


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def _table(frame: pd.DataFrame, css_class: str, index: bool = False) -> str:
    def fmt(value):
        if isinstance(value, float):
            return f"{value:,.3f}".rstrip("0").rstrip(".") if value == value else "–"
        return value

    shown = frame.copy()
    for col in shown.columns:
        if shown[col].dtype.kind == "f":
            shown[col] = shown[col].map(fmt)
    return shown.to_html(index=index, classes=css_class, border=0, escape=True, na_rep="–")


def plot_images(plan: Plan, growth: pd.DataFrame | None = None, pin_maps: int = 3, max_heatmap_hosts: int = 80,
                max_bar_nodes: int = 64) -> list[tuple[str, str]]:
    """(caption, base64 PNG) of every plot of the report, in order. On a large fleet the heatmaps show the
    ``max_heatmap_hosts`` busiest hosts used and the node bars the busiest hosts up to ``max_bar_nodes`` nodes."""
    from planner import plots

    images: list[tuple[str, str]] = []
    nodes = plan.node_usage()
    hosts = plan.host_usage()
    used_hosts = hosts[hosts["host_used"]] if hosts["host_used"].any() else hosts
    busiest = used_hosts.sort_values(["cpu_used_fraction", "guests"], ascending=False, kind="stable")["host"].tolist()
    in_order = [h for h in hosts["host"] if h in set(busiest)]

    def first(names: list[str]) -> list[str]:
        keep = set(names)
        return [h for h in in_order if h in keep]

    heat_hosts = in_order if len(in_order) <= max_heatmap_hosts else first(busiest[:max_heatmap_hosts])
    note = "" if len(heat_hosts) == len(in_order) else f" ({len(heat_hosts)} busiest of {len(in_order)} hosts used)"
    cols = max(int(nodes.loc[nodes["host"].isin(heat_hosts), "node"].nunique()), 1)
    for resource, caption in (("cpu", "CPUs committed per host and NUMA node"),
                              ("memory_4k", "4K memory used per host and NUMA node")):
        fig = _figure(2.2 + 0.7 * cols, 1.4 + 0.32 * max(len(heat_hosts), 1))
        plots.utilisation_heatmap(nodes, resource, ax=fig.add_subplot(), hosts=heat_hosts)
        images.append((caption + note, _png(fig)))
    nodes_per_host = nodes.groupby("host", sort=False).size()
    bar_hosts, count = [], 0
    for host in busiest:
        if bar_hosts and count + nodes_per_host[host] > max_bar_nodes:
            break
        bar_hosts.append(host)
        count += int(nodes_per_host[host])
    bar_hosts = first(bar_hosts)
    note = "" if len(bar_hosts) == len(in_order) else f" ({len(bar_hosts)} busiest of {len(in_order)} hosts used)"
    fig = _figure(max(6.0, 0.5 * count + 3), 4.0)
    plots.node_bars(nodes, ax=fig.add_subplot(), hosts=bar_hosts)
    images.append(("CPUs, 4K memory and hugepages per NUMA node (fractions of capacity)" + note, _png(fig)))
    for host in busiest[:pin_maps] if hosts["host_used"].any() else []:
        model = plan.scenario.model_of(host)
        cores = max(sum(1 for core in model.cores if set(core) & set(node.cpus)) for node in model.nodes)
        threads = max(len(core) for core in model.cores)
        fig = _figure(min(max(7.0, 0.2 * cores * (threads + 0.35) + 3.5), 26.0), 0.9 * len(model.nodes) + 1.3)
        plots.pin_map(plan, host, ax=fig.add_subplot())
        images.append((f"pin map of {host}", _png(fig)))
    if growth is not None:
        fig = _figure(6.5, 3.8)
        plots.growth_plot(growth, ax=fig.add_subplot())
        images.append(("hosts needed as demand grows", _png(fig)))
    return images


def report_html(plan: Plan, growth: pd.DataFrame | None = None, *, title: str | None = None, pin_maps: int = 3,
                max_rows: int = 500) -> str:
    """The report as an HTML string (see the module docs)."""
    sc = plan.scenario
    title = title or f"vplan report: {sc.name}"
    summary = plan.summary().T.reset_index()
    summary.columns = ["figure", "value"]
    summary["value"] = summary["value"].map(lambda v: f"{v:,.3f}".rstrip("0").rstrip(".") if isinstance(v, float) else v)
    hosts = plan.host_usage()
    hosts_used = hosts[hosts["host_used"]]
    nodes = plan.node_usage()
    placements = plan.placements()
    unplaced = plan.unplaced()
    parts = [
        "<!DOCTYPE html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{len(plan.placed)} of {len(sc.guests)} guests placed on {len(plan.hosts_used)} of {len(sc.hosts)} hosts; "
        f"status {html.escape(plan.status)}.</p>",
        "<h2>Summary</h2>",
        _table(summary, "summary"),
        "<h2>Hosts used</h2>",
        _table(hosts_used[HOST_REPORT_COLUMNS], "hosts"),
    ]
    if len(hosts_used) < len(hosts):
        empty = hosts.loc[~hosts["host_used"], "host"].tolist()
        parts.append(f"<p class='note'>{len(empty)} host(s) left empty: {html.escape(', '.join(empty[:50]))}"
                     f"{' …' if len(empty) > 50 else ''}</p>")
    parts.append("<h2>Plots</h2>")
    for caption, data in plot_images(plan, growth, pin_maps):
        parts.append(f"<figure><img src=\"data:image/png;base64,{data}\" alt=\"{html.escape(caption)}\">"
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    if growth is not None:
        parts += ["<h2>Growth</h2>", _table(growth, "growth")]
    parts.append(f"<h2>Unplaced guests ({len(unplaced)})</h2>")
    parts.append(_table(unplaced, "unplaced") if len(unplaced) else "<p>Every guest is placed.</p>")
    parts += ["<h2>NUMA nodes of the hosts used</h2>", _table(nodes.loc[nodes["host_used"], NODE_REPORT_COLUMNS], "nodes")]
    parts.append(f"<h2>Placements ({len(placements)} guest cells)</h2>")
    parts.append(_table(placements.head(max_rows), "placements"))
    if len(placements) > max_rows:
        parts.append(f"<p class='note'>first {max_rows} of {len(placements)} rows; all of them: plan.placements()</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(plan: Plan, path: str | os.PathLike, growth: pd.DataFrame | None = None, *,
                 title: str | None = None, pin_maps: int = 3, max_rows: int = 500) -> Path:
    """Write the self-contained HTML report of ``plan`` to ``path`` (written to a temporary file beside it and
    renamed into place). ``growth``: a ``capacity.growth_curve`` DataFrame to include (table and plot).
    Returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = report_html(plan, growth, title=title, pin_maps=pin_maps, max_rows=max_rows)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
    return out
