"""The ``vplan`` command: a thin Typer layer over the Python API (load_scenario, solve, write_plan).

Exit status: 0 every guest placed (or input valid), 3 some guests unplaced (plan written, reasons given),
2 bad input (one message per problem, naming file, key and item; nothing written), 1 an internal error
(a plan that failed the checker is never written).
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from planner.files.planfile import headroom_document, replan_document
from planner.model.plan import Plan
from planner.model.stats import Headroom

from planner.cli.common import (EXIT_BUG, EXIT_INPUT, EXIT_OK, EXIT_UNPLACED, app, example as _example,  # noqa: F401
                                 load as _load, parse_time_limit)


def _version(value: bool) -> None:
    if value:
        from planner.model.version import __version__

        typer.echo(f"vplan {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_version,
                                 help="print vplan's version and exit"),
) -> None:
    """NUMA-aware capacity and placement planner for KVM/libvirt fleets."""


@app.command(epilog=_example("vplan validate scenarios/quickstart.yaml"))
def validate(scenario: Path = typer.Argument(..., metavar="SCENARIO.yaml", help="scenario YAML file")) -> None:
    """Check a scenario file without solving: every problem at once, exit 2 if any."""
    sc = _load(scenario)
    typer.echo(f"{scenario}: valid ({len(sc.hosts)} hosts, {len(sc.guests)} guests, {len(sc.host_models)} host models)")


def _scenario_inputs(path: Path, sc) -> list[Path]:
    """The files a solve reads (OUT must not be, hold or sit inside any of them): the scenario and its host
    model files."""
    inputs = [path]
    for model in sc.host_models.values():
        if model.source and not model.source.startswith("<") and os.path.exists(model.source):
            inputs.append(Path(model.source))
    return inputs


@app.command(epilog=_example("vplan solve scenarios/quickstart.yaml -o out/",
                             "vplan solve scenarios/fleet-50x1500.yaml -o out/ --time-limit 20s --report out-report.html",
                             "vplan solve scenarios/quickstart.yaml -o out/ --json > summary.json"))
def solve(
    scenario: Path = typer.Argument(..., metavar="SCENARIO.yaml", help="scenario YAML file"),
    out: Path = typer.Option(Path("out"), "-o", "--out", metavar="DIR", help="output directory: missing, empty or "
                             "vplan's own earlier output (replaced atomically)"),
    time_limit: Optional[str] = typer.Option(None, "--time-limit", metavar="DURATION",
                                             help="solver budget as in YAML: 20s, 2m or seconds; default "
                                                  "policy.time_limit"),
    stall: Optional[str] = typer.Option(None, "--stall", metavar="DURATION",
                                        help="stop once nothing improved for this long (as in YAML: 10s); default "
                                             "policy.stall"),
    seed: int = typer.Option(0, "--seed", metavar="N", help="solver random seed"),
    workers: Optional[int] = typer.Option(None, "--workers", metavar="N", help="CP-SAT worker threads"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress line and no summary"),
    deterministic: bool = typer.Option(
        False, "--deterministic", help="count budgets in CP-SAT deterministic time: the same scenario and --seed "
        "give the same plan (slower, and the time limit is only approximately seconds)"
    ),
    report: Optional[Path] = typer.Option(None, "--report", metavar="FILE.html",
                                          help="also write a self-contained HTML report (tables and plots) and "
                                               "FILE.placements.csv beside it"),
    method: str = typer.Option("auto", "--method", metavar="METHOD",
                               help="auto, patterns, direct (whole-fleet model) or greedy"),
    force: bool = typer.Option(False, "--force", help="an OUT (or --report file) vplan did not write is renamed "
                               "aside to OUT.old (OUT.old.1, ...) instead of refused; nothing is deleted"),
    nodes: bool = typer.Option(False, "--nodes", help="one summary row per host NUMA node instead of per host"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON on stdout (headline, use per "
                                                       "resource, hosts, unplaced guests)"),
    previous: Optional[Path] = typer.Option(None, "--previous", metavar="OLD_OUT",
                                            help="re-plan from this earlier output (its plan.json): guests keep host, "
                                                 "nodes and pCPUs unless moving places more guests or frees hosts; "
                                                 "plan.json lists the moves and a safe migration order"),
    max_moves: Optional[int] = typer.Option(None, "--max-moves", metavar="N",
                                            help="with --previous: move at most N guests that could have stayed"),
) -> None:
    """Plan the whole fleet, check the plan, write plan.json and one libvirt domain XML per placed guest.

    Prints the answer first (guests placed, hosts used, lower bound and gap, status), then one row per host;
    live progress goes to stderr when it is a terminal. Ctrl-C stops the search and writes the best checked plan
    found so far; a second Ctrl-C (or SIGTERM) aborts without writing anything."""
    import time

    from planner.cli.interrupt import run_stoppable
    from planner.analysis.output import write_plan_output
    from planner.engine.solver import PlanBug, Progress, solve as solve_fleet

    began = time.monotonic()
    limit = parse_time_limit(time_limit)
    stall_s = parse_time_limit(stall, "--stall")
    if method not in ("auto", "patterns", "direct", "greedy"):
        print(f"vplan: --method {method}: expected auto, patterns, direct or greedy", file=sys.stderr)
        raise typer.Exit(EXIT_INPUT)
    sc = _load(scenario)
    inputs = _scenario_inputs(scenario, sc)
    if previous is not None and (method != "auto" or deterministic or stall is not None):
        print("vplan: --previous re-plans with its own search (keep what can stay, then the fewest moves): "
              "--method, --deterministic and --stall do not apply to it", file=sys.stderr)
        raise typer.Exit(EXIT_INPUT)
    old = _read_previous(previous, max_moves)  # --previous: the earlier plan (None without)
    if previous is not None:
        inputs.append(previous)  # OUT never replaces the plan it re-plans from
    _check_outputs(out, report, inputs, force)  # refuse a bad OUT before spending the time limit
    console = Console() if sys.stdout.isatty() else Console(width=100)
    live, status = _live_status(began, limit, sc) if not quiet and sys.stderr.isatty() else (None, None)
    progress: Callable[[Progress], None] = status.update if status is not None else (lambda p: None)
    try:
        if live is not None:
            live.start()
        shown_limit = sc.policy.time_limit_s if limit is None else limit
        plan, interrupted = run_stoppable(lambda: solve_fleet(
            sc, time_limit_s=limit, seed=seed, workers=workers, progress=progress, deterministic=deterministic,
            method=method, stall_s=stall_s) if old is None else _replan(sc, old, max_moves, shown_limit, seed, workers),
            None if quiet else f"vplan: solving {scenario} (time limit {shown_limit:g}s; Ctrl-C "
                                                   "stops the search and writes the best plan found so far)")
    except PlanBug as exc:
        print(f"vplan: internal error: {exc}", file=sys.stderr)
        raise typer.Exit(EXIT_BUG)
    finally:
        if live is not None:
            live.stop()
    solved = time.monotonic()
    live_status = status if live is not None else None
    written = write_plan_output(plan, out, inputs=inputs, force=force,
                                progress=(lambda done, total: live_status.writing("writing", done, total))
                                if live_status is not None else None)
    if written.moved_aside is not None:
        print(f"vplan: {out} held files vplan did not write: renamed it to {written.moved_aside} (--force)",
              file=sys.stderr)
    csv_path = _after_write(plan, out, report, force, interrupted)
    total_s, write_s = time.monotonic() - began, time.monotonic() - solved
    if as_json:
        document = summary_document(plan, out, report, csv_path, total_s, write_s)
        if old is not None:
            document["replan"] = replan_document(plan.stats.replan) if plan.stats.replan is not None else None
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    elif not quiet:
        _print_outcome(plan, console, out, report, csv_path, nodes, old is not None, total_s, write_s)
    raise typer.Exit(EXIT_UNPLACED if plan.unplaced_reasons else EXIT_OK)


def _print_outcome(plan: Plan, console: Console, out: Path, report: Optional[Path], csv_path: Path | None,
                   nodes: bool, replanned: bool, total_s: float, write_s: float) -> None:
    """``vplan solve`` for people: the summary, a re-plan's lines, where the report went."""
    print_summary(plan, console, out, nodes=nodes, total_s=total_s, write_s=write_s)
    if replanned:
        for line in replan_text(plan).splitlines():
            console.print(Text(line))
    if report is not None:
        console.print(Text(f"wrote the report {report} and all placements in {csv_path}"))


def _check_outputs(out: Path, report: Optional[Path], inputs: list, force: bool) -> None:
    """OUT (and the report and its CSV) must be writable by vplan (``planner.files.atomic``), the report not inside
    OUT; else every problem on stderr and exit 2."""
    from planner.files.atomic import OutputError, check_output_dir, check_output_file

    try:
        check_output_dir(out, inputs=inputs, force=force)
        if report is not None:
            from planner.analysis.report import placements_csv_path

            for path in (report, placements_csv_path(report)):
                if (os.path.realpath(path) + os.sep).startswith(os.path.realpath(out) + os.sep):
                    raise OutputError([f"{path}: is (inside) the output directory {out}, which vplan replaces "
                                       "whole; write the report beside it"])
                check_output_file(path, inputs=inputs, force=force)
    except OutputError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        raise typer.Exit(EXIT_INPUT)


def _live_status(began: float, limit: float | None, sc):
    """(rich Live, LiveStatus): the progress display on stderr while solving."""
    from rich.live import Live

    from planner.cli.progress import LiveStatus

    status = LiveStatus(began, limit if limit is not None else sc.policy.time_limit_s, len(sc.guests),
                        sc.policy.objective)
    return Live(status, console=Console(stderr=True), refresh_per_second=8, transient=True), status


def _after_write(plan: Plan, out: Path, report: Optional[Path], force: bool, interrupted: bool) -> Path | None:
    """After plan.json is written: one warning per failed phase, the HTML report (returns its CSV path), the
    Ctrl-C note."""
    for failure in plan.stats.failures:
        print(
            f"vplan: warning: the {failure.phase} phase failed ({failure.error}); the best checked plan found "
            f"before it is written; please report {out}/vplan-error.txt",
            file=sys.stderr,
        )
    csv_path = None
    if report is not None:
        from planner.analysis.report import placements_csv_path, write_report

        write_report(plan, report, force=force)
        csv_path = placements_csv_path(report)
    if interrupted:
        print(f"vplan: interrupted by Ctrl-C after {plan.stats.wall_s:.1f}s: wrote the best checked plan found "
              "until then (plan.json: solver.interrupted)", file=sys.stderr)
    return csv_path


def _read_previous(previous: Optional[Path], max_moves: Optional[int]):
    """``solve --previous OLD_OUT``: the earlier plan (``planner.engine.migration.previous_from_document``), or exit 2."""
    if max_moves is not None and previous is None:
        print("vplan: --max-moves needs --previous OLD_OUT (the plan to re-plan from)", file=sys.stderr)
        raise typer.Exit(EXIT_INPUT)
    if max_moves is not None and max_moves < 0:
        print(f"vplan: --max-moves {max_moves}: must be 0 or more", file=sys.stderr)
        raise typer.Exit(EXIT_INPUT)
    if previous is None:
        return None
    from planner.engine.migration import previous_from_document
    from planner.files.planfile import PlanFileError

    try:
        return previous_from_document(previous)
    except PlanFileError as exc:
        print(str(exc), file=sys.stderr)
        raise typer.Exit(EXIT_INPUT)


def _replan(sc, old, max_moves, limit_s, seed, workers):
    from planner.engine.replan import replan_fewest_moves

    return replan_fewest_moves(sc, old, max_moves=max_moves, time_limit_s=limit_s, seed=seed, workers=workers)


def replan_text(plan: Plan) -> str:
    """The re-plan's lines of ``vplan solve --previous``: moves, other actions, hosts before and after, the order."""
    r, m = plan.stats.replan, plan.stats.migration
    if r is None:
        return ""
    moves, live = r.moves, r.live_migrations
    budget = "" if r.max_moves is None else f" (budget {r.max_moves}{'' if r.max_moves_met else ', exceeded'})"
    lines = [f"re-plan from {r.previous}",
             f"moves   {moves}{budget}: {live} live migrations, {moves - live} to other nodes of the same host, "
             f"{r.forced_moves} forced",
             f"actions {r.re_pins} re-pins (same nodes), {r.starts} starts, {r.stops} stops",
             f"hosts   {r.hosts_before} -> {r.hosts_after} used"
             + (f", freed: {', '.join(r.hosts_freed[:6])}{' …' if len(r.hosts_freed) > 6 else ''}"
                if r.hosts_freed else "")]
    if m is None:
        lines.append("order   0 steps (plan.json migration.steps), 0 states checked clean")
    elif m.unordered:
        lines.append(f"order   {len(m.unordered)} moves left unordered: a cycle no spare host breaks: "
                     + "; ".join(" -> ".join(c) for c in m.cycles))
    else:
        spare = f", through spare host {', '.join(m.spare_hosts)}" if m.spare_hosts else ""
        lines.append(f"order   {len(m.steps)} steps{spare} (plan.json migration.steps), {m.verified_steps} "
                     "states checked clean" + (f", {len(m.violations)} findings" if m.violations else ""))
    return "\n".join(lines)


def headroom_line(headroom: Headroom, plan: Plan) -> str:
    """``policy.survive`` in words: what the headroom costs in hosts, and whether every failure evacuates."""
    kind, count = next(iter(headroom.survive.items()))
    spare = headroom.spare_hosts
    text = (f"headroom: survives {count} failed {kind[:-1] if count == 1 else kind}: {headroom.hosts_used} hosts "
            f"used + {len(spare)} spare kept empty = {headroom.hosts_with_headroom} hosts "
            f"({', '.join(spare[:6])}{' …' if len(spare) > 6 else ''}); {headroom.complete} of "
            f"{headroom.failures} failures evacuate completely, checked in {headroom.evacuation_s:.1f}s")
    incomplete = [e.name for e in plan.evacuations if not e.complete]
    if incomplete:
        text += (f"; NOT survivable: {', '.join(incomplete[:5])}{' …' if len(incomplete) > 5 else ''} "
                 "(stranded guests in plan.json evacuations; add hosts)")
    return text


def summary_document(plan: Plan, out: Path | None, report: Path | None = None, csv_path: Path | None = None,
                     total_s: float | None = None, write_s: float | None = None) -> dict:
    """``vplan solve --json``: the headline, use per resource, unplaced guests with reasons, one entry per host
    used, and what was written (units as in plan.json)."""
    from planner.analysis.headline import fleet_use, headline

    hosts = plan.host_usage()
    used = hosts[hosts["host_used"]]
    page_cols = [c for c in hosts.columns if c.startswith("hugepages_") and c[-5:] in ("_used", "pages")]
    host_rows = []
    for _, r in used.iterrows():
        row = {"host": r["host"], "model": r["model"], "guests": int(r["guests"]), "vcpus": int(r["vcpus"]),
               "cpu_used_fraction": _frac(r["cpu_used_fraction"]), "load_of_target": _frac(r["load_of_target"]),
               "host_vcpu_per_core": _frac(r["host_vcpu_per_core"]),
               "memory_4k_used_kib": int(r["memory_4k_used_kib"]),
               "memory_4k_capacity_kib": int(r["memory_4k_capacity_kib"])}
        row.update({c: int(r[c]) for c in page_cols})
        host_rows.append(row)
    return {
        "format_version": 2,
        "headline": headline(plan),
        "total_s": round(total_s, 3) if total_s is not None else None,
        "write_s": round(write_s, 3) if write_s is not None else None,
        "unplaced": dict(plan.unplaced_reasons),
        "use": fleet_use(plan),
        "hosts": host_rows,
        "written": {"plan": str(out / "plan.json") if out is not None else None,
                    "domains": len(plan.placed),
                    "report": str(report) if report is not None else None,
                    "placements_csv": str(csv_path) if csv_path is not None else None},
        **({"headroom": headroom_document(plan.stats.headroom)} if plan.stats.headroom is not None else {}),
    }


def _frac(value) -> float | None:
    value = float(value)
    return None if math.isnan(value) else round(value, 4)


def _gib(kib: float) -> str:
    gib = kib / 1024**2
    return f"{gib:,.0f}" if abs(gib) >= 100 else f"{gib:,.1f}"


def _pct(fraction) -> str:
    fraction = float(fraction)
    return "–" if math.isnan(fraction) else f"{100 * fraction:.0f}%"


def _ratio(value) -> str:
    value = float(value)
    return "–" if math.isnan(value) else f"{value:.1f}"


def print_summary(plan: Plan, console: Console, out: Path | None = None, *, nodes: bool = False,
                  max_hosts: int = 60, total_s: float | None = None, write_s: float | None = None) -> None:
    """The answer first: the headline (status with the method, guests placed, hosts used, lower bound and what
    binds it, gap, time); unplaced guests with their full reasons; one row per host used (``nodes``: per host
    NUMA node) with totals per resource; the use of each resource over the hosts used. Fits 100 columns."""
    from rich import box

    from planner.analysis.headline import headline, headline_lines

    sc = plan.scenario
    h = headline(plan)
    title = Text(f"{sc.name}: {h['placed']:,} of {h['guests']:,} guests placed on {h['hosts_used']:,} of "
                 f"{h['hosts']:,} hosts", style="bold")
    console.print(title)
    import textwrap

    for label, text in headline_lines(h, total_s, write_s):
        if label in ("status", "bound", "time") or (label == "guests" and h["unplaced"]):
            lines = textwrap.wrap(text, width=max(console.width - 8, 40), break_long_words=False,
                                  break_on_hyphens=False)
            for i, line in enumerate(lines):
                console.print(Text.assemble((f"{label if i == 0 else '':<8}", "bold"), line), soft_wrap=True)
    if plan.unplaced_reasons:
        console.print(_unplaced_table(plan))
    if plan.stats.interrupted:
        console.print(Text("interrupted by Ctrl-C: this is the best plan found until then"))
    if plan.stats.headroom is not None:
        console.print(Text(headroom_line(plan.stats.headroom, plan)), soft_wrap=True)
    notes = plan.notes()
    if notes:
        hosts = sorted({plan.placed[g].host for g in notes}, key=[h.name for h in sc.hosts].index)
        console.print(Text(
            f"note: {len(notes)} guest{'s' if len(notes) != 1 else ''} with emulator: host run their emulator threads "
            f"on the shared pool of their nodes, on hosts that reserve no CPUs: {', '.join(hosts[:5])}"
            f"{' …' if len(hosts) > 5 else ''} (plan.json guests.NAME.note)"))
    frame = plan.node_usage() if nodes else plan.host_usage()
    used = frame[frame["host_used"]]
    sizes = [c[len("hugepages_"):-len("_pages")] for c in frame.columns if c.startswith("hugepages_")
             and c.endswith("_pages")]
    sizes = [s for s in sizes if (used[f"hugepages_{s}_pages"] > 0).any() or (used[f"hugepages_{s}_used"] > 0).any()]
    show_model = not all(str(host).startswith(str(model)) for host, model in zip(used["host"], used["model"]))
    table = Table(title=Text("per NUMA node of the hosts used" if nodes else "per host used", style="bold"),
                  title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    table.add_column("host", no_wrap=True)
    if nodes:
        table.add_column("node", justify="right", no_wrap=True)
    if show_model and not nodes:
        table.add_column("model", no_wrap=True)
    heads = ["cells" if nodes else "guests", "vCPUs", "CPUs\nused", "load\n/target", "vCPU\n/core",
             "4K GiB\nused/cap"] + [f"{s} pages\nused/pool" for s in sizes]
    for head in heads:
        table.add_column(head, justify="right", no_wrap=True)
    shown = used.head(max_hosts * (8 if nodes else 1))
    for _, r in shown.iterrows():
        cells = [Text(str(r["host"]))]
        if nodes:
            cells.append(str(int(r["node"])))
        if show_model and not nodes:
            cells.append(Text(str(r["model"])))
        vcpus = int(r["shared_vcpus"] + r["dedicated_vcpus"]) if nodes else int(r["vcpus"])
        vpc = r["vcpu_per_core"] if nodes else r["host_vcpu_per_core"]
        cells += [str(int(r["cells"] if nodes else r["guests"])), str(vcpus), _pct(r["cpu_used_fraction"]),
                  _pct(r["load_of_target"]), _ratio(vpc),
                  f"{_gib(r['memory_4k_used_kib'])}/{_gib(r['memory_4k_capacity_kib'])}"]
        cells += [f"{int(r[f'hugepages_{s}_used'])}/{int(r[f'hugepages_{s}_pages'])}" for s in sizes]
        table.add_row(*cells)
    console.print(table)
    if len(used) > len(shown):
        console.print(Text(f"… {len(used) - len(shown)} more rows: all of them in {out}/plan.json"
                           if out is not None else f"… {len(used) - len(shown)} more rows"))
    empty = [hname for hname, u in zip(frame.drop_duplicates("host")["host"], frame.drop_duplicates("host")["host_used"]) if not u]
    if empty:
        console.print(Text(f"{len(empty)} host{'s' if len(empty) != 1 else ''} left empty: "
                           + (", ".join(empty) if len(empty) <= 6 else f"{', '.join(empty[:5])} and {len(empty) - 5} more")))
    grid = _use_grid(plan, h["hosts_used"])
    console.print(grid)
    if out is not None:
        console.print(Text(f"wrote {out}/plan.json and {len(plan.placed):,} domain XML files under {out}/hosts/"))


def _unplaced_table(plan: Plan) -> Table:
    """The unplaced guests with their full reasons."""
    from rich import box

    n = len(plan.unplaced_reasons)
    unplaced = Table(title=Text(f"{n} unplaced guest{'s' if n != 1 else ''}", style="bold red"),
                     title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    unplaced.add_column("guest", no_wrap=True)
    unplaced.add_column("why (what is missing, where, by how much)")
    for name, reason in plan.unplaced_reasons.items():
        unplaced.add_row(Text(name), Text(reason))  # Text: a reason's [..] is not markup
    return unplaced


def _use_grid(plan: Plan, hosts_used: int) -> Table:
    """The use of each resource over the hosts used: used, capacity and the fraction (``fleet_use``)."""
    from rich import box

    from planner.analysis.headline import fleet_use

    sc = plan.scenario
    use = fleet_use(plan)
    grid = Table(title=Text(f"use over the {hosts_used:,} host{'s' if hosts_used != 1 else ''} used",
                            style="bold"), title_justify="left",
                 box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True, show_header=False)
    grid.add_column(no_wrap=True)
    grid.add_column(justify="right", no_wrap=True)
    grid.add_column()
    target = float(sc.policy.cpu_load_target)
    labels = {"cpus": ("CPUs committed", "cpus", "of {cap} usable CPUs"),
              "shared_load": ("shared load", "cpus", f"of {{cap}} CPUs at the {target:.0%} load target"),
              "vcpus": ("vCPUs", "vcpus", f"of {{cap}} allowed ({float(sc.policy.cpu_overcommit_max):g} per core)"),
              "memory_4k": ("4K memory", "kib", "of {cap} GiB")}
    for name, entry in use.items():
        if name in labels:
            label, unit, text = labels[name]
        else:
            label, unit, text = f"{name[len('hugepages_'):]} hugepages", "pages", "of {cap} pages in the pools"
        used_v, cap_v = entry[f"used_{unit}"], entry[f"capacity_{unit}"]
        if not cap_v and not used_v:
            continue
        if unit == "kib":
            used_s, cap_s = _gib(used_v), _gib(cap_v)
        else:
            used_s, cap_s = f"{used_v:,.0f}", f"{cap_v:,.0f}"
        frac = entry["used_fraction"]
        grid.add_row(label, _pct(frac if frac is not None else math.nan), Text(f"{used_s} " + text.format(cap=cap_s)))
    return grid


@app.command(epilog=_example("vplan compare scenarios/quickstart.yaml bigger.yaml --time-limit 20s",
                             "vplan compare before.yaml after.yaml --json > diff.json"))
def compare(
    a: Path = typer.Argument(..., metavar="A.yaml", help="scenario YAML file A"),
    b: Path = typer.Argument(..., metavar="B.yaml", help="scenario YAML file B"),
    time_limit: Optional[str] = typer.Option(None, "--time-limit", metavar="DURATION",
                                             help="solver budget per scenario: 20s, 2m or seconds; default "
                                                  "policy.time_limit"),
    seed: int = typer.Option(0, "--seed", metavar="N", help="solver random seed"),
    workers: Optional[int] = typer.Option(None, "--workers", metavar="N", help="CP-SAT worker threads"),
    max_guests: int = typer.Option(20, "--max-guests", metavar="N", help="changed guests listed at most"),
    as_json: bool = typer.Option(False, "--json", help="the comparison as JSON on stdout (every changed guest)"),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", metavar="ADDRESS",
                                            help="solve A and B side by side: 'local' (a process pool) or a Dask "
                                                 "scheduler tcp://HOST:8786"),
) -> None:
    """Solve two scenarios and print what differs: each plan's headline first (guests placed, hosts used, lower
    bound), the figures side by side, utilisation per resource, then the guests that moved.

    A and B are scenario files (a plan.json does not hold its scenario, so plans are compared in Python:
    planner.analysis.compare.compare(plan_a, plan_b))."""
    from planner.analysis.compare import compare as compare_plans
    from planner.cli.capacity import sweep_executor
    from planner.cli.interrupt import run_stoppable
    from planner.engine.solver import PlanBug

    limit = parse_time_limit(time_limit)
    sc_a, sc_b = _load(a), _load(b)
    labels = (a.name, b.name) if a.name != b.name else (str(a), str(b))
    labels = (f"{labels[0]} ({sc_a.name})", f"{labels[1]} ({sc_b.name})")

    def run():
        with sweep_executor(scheduler, jobs=2) as executor:
            return compare_plans(sc_a, sc_b, labels=labels, time_limit_s=limit, seed=seed, workers=workers,
                                 executor=executor)

    try:  # in a worker thread, so that Ctrl-C aborts at once (planner.cli.interrupt)
        result, _ = run_stoppable(run, stop_on_ctrl_c=False)
    except PlanBug as exc:
        print(f"vplan: internal error: {exc}", file=sys.stderr)
        raise typer.Exit(EXIT_BUG)
    if as_json:
        sys.stdout.write(json.dumps(result.document(), indent=2) + "\n")
    else:
        typer.echo(result.text(max_guests=max_guests))


@app.command(epilog=_example("vplan generate --hosts 50 --guests 1500 --seed 1 -o fleet.yaml"))
def generate(
    hosts: int = typer.Option(50, metavar="N", help="number of hosts"),
    guests: int = typer.Option(1500, metavar="N", help="number of guests"),
    seed: int = typer.Option(1, metavar="N", help="random seed"),
    out: Path = typer.Option(..., "-o", "--out", metavar="FILE.yaml", help="scenario file to write"),
    models: str = typer.Option("", metavar="A,B", help="comma-separated catalogue host models (models/hosts/; "
                                                       "default: 3 models)"),
    order: str = typer.Option("given", metavar="ORDER", help="hosts listed by model as given, 'smallest' or "
                                                             "'largest' model first"),
    existing: float = typer.Option(0.0, metavar="FRACTION", help="fraction 0..1 of guests already running "
                                                                 "(host: set where they fit)"),
    force: bool = typer.Option(False, "--force", help="a file vplan did not write is renamed aside to FILE.old "
                                                      "instead of refused"),
) -> None:
    """Write a seeded random fleet scenario (mixed real host models and flavours)."""
    from planner.files.atomic import OutputError, check_output_file, write_file_atomically
    from planner.analysis.generate import FLAVOURS_FILE, MODELS_DIR, generate_fleet

    problems = [f"--{name} {value}: must be at least {low}"
                for name, value, low in (("hosts", hosts, 1), ("guests", guests, 0)) if value < low]
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        raise typer.Exit(EXIT_INPUT)
    names = [m.strip() for m in models.split(",") if m.strip()] or None
    try:
        inputs = [MODELS_DIR, FLAVOURS_FILE]  # the catalogue it reads
        check_output_file(out, inputs=inputs, force=force)
        text = generate_fleet(hosts, guests, seed=seed, models=names, out_path=str(out), order=order,
                              existing=existing)
        written = write_file_atomically(out, text, inputs=inputs, force=force)
    except OutputError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        raise typer.Exit(EXIT_INPUT)
    except ValueError as exc:
        print(f"vplan generate: {exc}", file=sys.stderr)
        raise typer.Exit(EXIT_INPUT)
    if written.moved_aside is not None:
        print(f"{out}: was not written by vplan: renamed it to {written.moved_aside} (--force)", file=sys.stderr)
    typer.echo(f"wrote {out}")


@app.command(epilog=_example("vplan diff old/ new/", "vplan diff old/ new/ --json > moves.json"))
def diff(
    old: Path = typer.Argument(..., metavar="OLD_OUT", help="earlier output directory (or its plan.json)"),
    new: Path = typer.Argument(..., metavar="NEW_OUT", help="later output directory (or its plan.json)"),
    as_json: bool = typer.Option(False, "--json", help="the differences as JSON on stdout"),
    max_rows: int = typer.Option(40, "--max-rows", metavar="N", help="rows listed per section at most (text)"),
) -> None:
    """Show what changes from one plan to another: moves (host or nodes), re-pins (same nodes, other pCPUs),
    starts, stops, hosts freed and newly used, and NEW's migration order when it is a re-plan of OLD."""
    from planner.engine.migration import diff_text, plan_diff
    from planner.files.planfile import PlanFileError

    try:
        result = plan_diff(old, new)
    except PlanFileError as exc:
        print(str(exc), file=sys.stderr)
        raise typer.Exit(EXIT_INPUT)
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        typer.echo(diff_text(result, max_rows=max_rows))


# real hosts and deployed guests: `host import`, `check`, `apply`, `hugepages` (planner/cli/ops.py)
from planner.cli.ops import register as _register_ops  # noqa: E402

_register_ops(app)

# failure headroom: `evacuate` (planner/cli/evacuate.py)
from planner.cli.evacuate import register as _register_evacuate  # noqa: E402

_register_evacuate(app)
# sizing: `size`, `headroom`, `growth` (planner/cli/capacity.py)
from planner.cli.capacity import register as _register_capacity  # noqa: E402

_register_capacity(app)
# JSON Schema of scenario files: `schema` (planner/cli/schema.py)
from planner.cli.schema import register as _register_schema  # noqa: E402

_register_schema(app)


def main() -> None:  # console script entry point
    app()


if __name__ == "__main__":
    sys.exit(main())
