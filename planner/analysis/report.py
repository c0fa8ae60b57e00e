"""A self-contained HTML report of a plan: summary tables from the plan's DataFrames and the plots, embedded.

``write_report(plan, path, growth=None)`` writes one HTML file with no external resource (no script, no
stylesheet link, no remote image): every plot is a PNG inside the page as ``<img src="data:image/png;base64,...">``.
It opens in any browser, offline, and can be mailed or attached to a ticket.

Sections: the headline (guests placed, hosts used, lower bound and what binds it, gap, status with the method,
time), unplaced guests with their reasons (before anything else when there are any), use per resource over the
hosts used, hosts (``plan.host_usage()``, the main columns), plots (CPU and 4K memory heatmaps per host and node
on a sequential colour scale, stacked bars per node, the pin map of up to ``pin_maps`` hosts used — the busiest
first — and the growth curve when ``growth`` is given), NUMA nodes (``plan.node_usage()``) and the first
placements; ``write_report`` writes every placement to ``REPORT.placements.csv`` beside the report. Headers carry
their units (GiB, %); every table and plot fits a 1,400 px wide window.
"""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path

import pandas as pd

from planner.model.plan import Plan

GIB_KIB = 1024**2
DPI = 110
MAX_FIGURE_IN = 11.5  # 1,265 px at DPI: every plot shows at its own size in a 1,400 px window

# shown columns: (DataFrame column, header with its unit, how to show a value)
HOST_REPORT_COLUMNS = [
    ("host", "host", "text"), ("model", "model", "text"), ("guests", "guests", "int"), ("vcpus", "vCPUs", "int"),
    ("host_vcpu_per_core", "vCPUs per core", "ratio"), ("dedicated_cpus", "dedicated CPUs", "int"),
    ("pool_cpus", "shared pool CPUs", "int"), ("cpu_used_fraction", "CPUs used %", "pct"),
    ("load_of_target", "shared load % of target", "pct"), ("memory_4k_used_kib", "4K memory used GiB", "gib"),
    ("memory_4k_capacity_kib", "4K memory GiB", "gib"), ("memory_4k_used_fraction", "4K memory used %", "pct"),
    ("hugepages_used_fraction", "hugepages used %", "pct"),
]
NODE_REPORT_COLUMNS = [
    ("host", "host", "text"), ("node", "node", "int"), ("cells", "guest cells", "int"),
    ("dedicated_cpus", "dedicated CPUs", "int"), ("idle_cpus", "idle siblings", "int"),
    ("emulator_cpus", "emulator CPUs", "int"), ("pool_cpus", "shared pool CPUs", "int"),
    ("shared_vcpus", "shared vCPUs", "int"), ("vcpu_per_core", "vCPUs per pool core", "ratio"),
    ("load_of_target", "shared load % of target", "pct"), ("cpu_used_fraction", "CPUs used %", "pct"),
    ("memory_4k_used_kib", "4K memory used GiB", "gib"), ("memory_4k_free_kib", "4K memory free GiB", "gib"),
    ("memory_4k_used_fraction", "4K memory used %", "pct"), ("hugepages_used_fraction", "hugepages used %", "pct"),
]
UNPLACED_REPORT_COLUMNS = [
    ("guest", "guest", "text"), ("vcpus", "vCPUs", "int"), ("memory_kib", "memory GiB", "gib"),
    ("cpu", "CPU", "text"), ("threads", "threads", "text"), ("page_size", "page size", "text"),
    ("priority", "priority", "int"), ("reason", "why it is not placed", "reason"),
]
PLACEMENT_REPORT_COLUMNS = [
    ("guest", "guest", "text"), ("host", "host", "text"), ("cell", "cell", "int"), ("node", "host node", "int"),
    ("cpu", "CPU", "text"), ("threads", "threads", "text"), ("vcpus", "vCPUs", "int"),
    ("pcpus", "host CPUs", "cpus"), ("memory_kib", "memory GiB", "gib"), ("page_size", "page size", "text"),
    ("load", "load %", "pct"), ("distance", "NUMA distance", "int"),
]

CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 1.5em; color: #222;
       max-width: 1340px; }
h1 { font-size: 1.5em; margin-bottom: 0.3em; } \
h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.8em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; white-space: normal; max-width: 7em; vertical-align: bottom; }
td.text, th.text { text-align: left; }
td.reason { text-align: left; white-space: normal; min-width: 28em; }
td.cpus { text-align: left; white-space: normal; max-width: 16em; word-break: break-all; }
table.headline { font-size: 1em; }
table.headline th { text-align: left; max-width: none; background: none; vertical-align: top; }
table.headline td { text-align: left; white-space: normal; }
.unplaced h2 { color: #b00020; }
figure { margin: 1em 0; } figcaption { font-size: 0.85em; color: #555; }
img { max-width: 100%; border: 1px solid #eee; }
.note { color: #666; font-size: 0.85em; }
"""

def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def _cell(value, kind: str) -> str:
    if value is None or (isinstance(value, float) and value != value) or value is pd.NA:
        return "–"
    if kind == "pct":
        return f"{100 * float(value):.0f}"
    if kind == "gib":
        gib = float(value) / GIB_KIB
        return f"{gib:,.1f}"
    if kind == "ratio":
        return f"{float(value):.2f}"
    if kind == "int":
        return f"{int(value):,}"
    return html.escape(str(value))


def _table(frame: pd.DataFrame, columns: list[tuple[str, str, str]], css_class: str) -> str:
    """An HTML table of ``frame``'s ``columns`` with readable headers (units in them) and formatted values."""
    columns = [c for c in columns if c[0] in frame.columns]
    head = "".join(f"<th class='{'text' if kind in ('text', 'reason', 'cpus') else 'num'}'>{html.escape(header)}</th>"
                   for _col, header, kind in columns)
    rows = []
    for record in frame[[c[0] for c in columns]].itertuples(index=False):
        cells = "".join(f"<td class='{kind if kind in ('text', 'reason', 'cpus') else 'num'}'>{_cell(v, kind)}</td>"
                        for v, (_col, _header, kind) in zip(record, columns, strict=False))
        rows.append(f"<tr>{cells}</tr>")
    return f"<table class='{css_class}'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def plot_images(plan: Plan, growth: pd.DataFrame | None = None, pin_maps: int = 3, max_heatmap_hosts: int = 80,
                max_bar_nodes: int = 32) -> list[tuple[str, str]]:
    """(caption, base64 PNG) of every plot of the report, in order. On a large fleet the heatmaps show the
    ``max_heatmap_hosts`` busiest hosts used and the node bars the busiest hosts up to ``max_bar_nodes`` nodes."""
    from planner.analysis import plots

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
    bar_hosts: list[str] = []
    count = 0
    for host in busiest:
        if bar_hosts and count + nodes_per_host[host] > max_bar_nodes:
            break
        bar_hosts.append(host)
        count += int(nodes_per_host[host])
    bar_hosts = first(bar_hosts)
    note = "" if len(bar_hosts) == len(in_order) else f" ({len(bar_hosts)} busiest of {len(in_order)} hosts used)"
    fig = _figure(min(max(6.0, 0.33 * count + 2.5), MAX_FIGURE_IN), 4.6)  # fits 1,400 px, no legend outside
    plots.node_bars(nodes, ax=fig.add_subplot(), hosts=bar_hosts)
    images.append(("CPUs, 4K memory and hugepages per NUMA node (% of the node's capacity)" + note, _png(fig)))
    for host in busiest[:pin_maps] if hosts["host_used"].any() else []:
        model = plan.scenario.model_of(host)
        cores = max(sum(1 for core in model.cores if set(core) & set(node.cpus)) for node in model.nodes)
        threads = max(len(core) for core in model.cores)
        width = min(max(7.0, 0.2 * cores * (threads + 0.35) + 3.5), MAX_FIGURE_IN - 2.0)  # legend beside it
        fig = _figure(width, 0.9 * len(model.nodes) + 1.3)
        square_px = (width - 3.5) * DPI / max(cores * (threads + 0.35), 1)
        plots.pin_map(plan, host, ax=fig.add_subplot(), labels=square_px >= 12)
        images.append((f"pin map of {host}", _png(fig)))
    if growth is not None:
        fig = _figure(6.5, 3.8)
        plots.growth_plot(growth, ax=fig.add_subplot())
        images.append(("hosts needed as demand grows", _png(fig)))
    return images


GROWTH_REPORT_COLUMNS = [
    ("factor", "demand factor", "ratio"), ("guests", "guests", "int"), ("vcpus", "vCPUs", "int"),
    ("memory_kib", "memory GiB", "gib"), ("lower_bound_hosts", "lower bound (hosts)", "int"),
    ("hosts_needed", "hosts needed", "int"), ("proven", "proven minimal", "text"),
    ("cpu_used_fraction", "CPUs used %", "pct"), ("memory_4k_used_fraction", "4K memory used %", "pct"),
    ("hugepages_used_fraction", "hugepages used %", "pct"), ("load_of_target", "shared load % of target", "pct"),
]
USE_LABELS = {"cpus": ("CPUs committed", "CPUs"), "shared_load": ("shared load at the load target", "CPUs"),
              "vcpus": ("vCPUs under the vCPU:core cap", "vCPUs"), "memory_4k": ("4K memory", "GiB")}


def placements_csv_path(report_path: str | os.PathLike) -> Path:
    """Where ``write_report`` puts the full placements CSV: ``REPORT.placements.csv`` beside the report."""
    path = Path(report_path)
    return path.with_name(f"{path.stem}.placements.csv")


def _headline_html(plan: Plan) -> str:
    from planner.analysis.headline import headline, headline_lines

    rows = "".join(f"<tr><th>{html.escape(label)}</th><td>{html.escape(text)}</td></tr>"
                   for label, text in headline_lines(headline(plan)))
    return f"<table class='headline'>{rows}</table>"


def _use_html(plan: Plan) -> str:
    from planner.analysis.headline import fleet_use

    rows = []
    for name, entry in fleet_use(plan).items():
        label, unit = USE_LABELS.get(name, (f"{name[len('hugepages_'):]} hugepages", "pages"))
        key = {"CPUs": "cpus", "vCPUs": "vcpus", "GiB": "kib", "pages": "pages"}[unit]
        used, cap = entry[f"used_{key}"], entry[f"capacity_{key}"]
        if not used and not cap:
            continue
        if unit == "GiB":
            used, cap = used / GIB_KIB, cap / GIB_KIB
        frac = entry["used_fraction"]
        rows.append(f"<tr><td class='text'>{html.escape(label)}</td><td>{used:,.0f}</td><td>{cap:,.0f}</td>"
                    f"<td class='text'>{unit}</td><td>{'–' if frac is None else f'{100 * frac:.0f}'}</td></tr>")
    head = ("<tr><th class='text'>resource</th><th>used</th><th>capacity</th><th class='text'>unit</th>"
            "<th>used %</th></tr>")
    return f"<table class='use'><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def report_html(plan: Plan, growth: pd.DataFrame | None = None, *, title: str | None = None, pin_maps: int = 3,
                max_rows: int = 200, csv_name: str | None = None) -> str:
    """The report as an HTML string (see the module docs): the headline first (guests placed, hosts used, lower
    bound and what binds it, gap, status), unplaced guests before anything else, use per resource, hosts, plots,
    NUMA nodes, the first ``max_rows`` placements (all of them in the CSV ``csv_name`` beside the report)."""
    sc = plan.scenario
    title = title or f"vplan report: {sc.name}"
    hosts = plan.host_usage()
    hosts_used = hosts[hosts["host_used"]]
    nodes = plan.node_usage()
    placements = plan.placements()
    unplaced = plan.unplaced()
    parts = [
        "<!DOCTYPE html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<section id='headline'><p><strong>{len(plan.placed):,} of {len(sc.guests):,} guests placed on "
        f"{len(plan.hosts_used):,} of {len(sc.hosts):,} hosts</strong></p>{_headline_html(plan)}</section>",
    ]
    if len(unplaced):
        parts += [f"<section id='unplaced' class='unplaced'><h2>Unplaced guests ({len(unplaced):,})</h2>",
                  _table(unplaced, UNPLACED_REPORT_COLUMNS, "unplaced"), "</section>"]
    parts += [f"<h2>Use over the {len(hosts_used):,} hosts used</h2>", _use_html(plan),
              f"<h2>Hosts used ({len(hosts_used):,})</h2>"]
    host_columns = list(HOST_REPORT_COLUMNS)
    if all(str(h).startswith(str(m)) for h, m in zip(hosts_used["host"], hosts_used["model"], strict=False)):
        host_columns = [c for c in host_columns if c[0] != "model"]  # the host names already say it
    parts.append(_table(hosts_used, host_columns, "hosts"))
    if len(hosts_used) < len(hosts):
        empty = hosts.loc[~hosts["host_used"], "host"].tolist()
        parts.append(f"<p class='note'>{len(empty)} host(s) left empty: {html.escape(', '.join(empty[:50]))}"
                     f"{' …' if len(empty) > 50 else ''}</p>")
    parts.append("<h2 id='plots'>Plots</h2>")
    for caption, data in plot_images(plan, growth, pin_maps):
        parts.append(f"<figure><img src=\"data:image/png;base64,{data}\" alt=\"{html.escape(caption)}\">"
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    if growth is not None:
        parts += ["<h2>Growth</h2>", _table(growth, GROWTH_REPORT_COLUMNS, "growth")]
    if not len(unplaced):
        parts.append("<h2>Unplaced guests (0)</h2><p>Every guest is placed.</p>")
    parts += ["<h2>NUMA nodes of the hosts used</h2>",
              _table(nodes.loc[nodes["host_used"]], NODE_REPORT_COLUMNS, "nodes")]
    parts.append(f"<h2>Placements ({len(placements):,} guest cells)</h2>")
    if csv_name:
        parts.append(f"<p class='note'>All of them, with every column, in <a href='{html.escape(csv_name)}'>"
                     f"{html.escape(csv_name)}</a> beside this report (memory in KiB).</p>")
    parts.append(_table(placements.head(max_rows), PLACEMENT_REPORT_COLUMNS, "placements"))
    if len(placements) > max_rows:
        parts.append(f"<p class='note'>first {max_rows:,} of {len(placements):,} rows"
                     + (f"; all of them in {html.escape(csv_name)}" if csv_name else "") + "</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(plan: Plan, path: str | os.PathLike, growth: pd.DataFrame | None = None, *,
                 title: str | None = None, pin_maps: int = 3, max_rows: int = 200, force: bool = False) -> Path:
    """Write the self-contained HTML report of ``plan`` to ``path`` and every placement (``plan.placements()``)
    to ``placements_csv_path(path)`` beside it (each written to a temporary file and renamed into place; an
    existing file is replaced only if vplan wrote it, see ``planner.files.atomic``). ``growth``: a
    ``capacity.growth_curve`` DataFrame to include (table and plot). Returns the report's path."""
    from planner.files.atomic import MARKERS, write_file_atomically

    inputs = (plan.scenario.path,) if plan.scenario.path else ()
    csv_path = placements_csv_path(path)
    write_file_atomically(csv_path, plan.placements().to_csv(index=False), inputs=inputs, force=force)
    text = report_html(plan, growth, title=title, pin_maps=pin_maps, max_rows=max_rows, csv_name=csv_path.name)
    text = text.replace("<head>", "<head>" + MARKERS[-1], 1)  # so vplan may replace it later
    return write_file_atomically(path, text, inputs=inputs, force=force).path
