"""The ``vplan`` command: a thin Typer layer over the Python API (load_scenario, solve, write_plan).

Exit status: 0 every guest placed (or input valid), 3 some guests unplaced (plan written, reasons given),
2 bad input (one message per problem, naming file, key and item; nothing written), 1 an internal error
(a plan that failed the checker is never written).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from planner.loader import ScenarioError, load_scenario
from planner.plan import Plan

EXIT_OK, EXIT_BUG, EXIT_INPUT, EXIT_UNPLACED = 0, 1, 2, 3


class _Group(typer.core.TyperGroup):
    """Every command runs with vplan's SIGINT/SIGTERM handling (``planner.interrupt``); a refused output path, a
    filesystem error or a signal ends it with one line on stderr instead of a traceback."""

    def invoke(self, ctx):
        from planner.atomic import OutputError
        from planner.interrupt import Aborted, exit_now, signal_handlers

        with signal_handlers():
            try:
                return super().invoke(ctx)
            except Aborted as exc:
                how = "Ctrl-C" if exc.exit_code == 130 else str(exc)
                print(f"vplan: aborted by {how}: nothing half-written is left, existing output is as it was",
                      file=sys.stderr, flush=True)
                exit_now(exc.exit_code)  # at once: no waiting for (or tearing down) a search still unwinding
            except OutputError as exc:
                for problem in exc.problems:
                    print(problem, file=sys.stderr)
                raise typer.Exit(EXIT_INPUT)
            except OSError as exc:
                where = exc.filename or "vplan"
                print(f"{where}: {exc.strerror or exc}", file=sys.stderr)
                raise typer.Exit(EXIT_INPUT)


app = typer.Typer(cls=_Group, add_completion=False, no_args_is_help=True,
                  help="NUMA-aware capacity and placement planner for KVM/libvirt fleets.")


def _load(path: Path):
    try:
        return load_scenario(path)
    except ScenarioError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        raise typer.Exit(EXIT_INPUT)


@app.command()
def validate(scenario: Path = typer.Argument(..., help="scenario YAML file")) -> None:
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


@app.command()
def solve(
    scenario: Path = typer.Argument(..., help="scenario YAML file"),
    out: Path = typer.Option(Path("out"), "-o", "--out", help="output directory: missing, empty or vplan's own "
                             "earlier output (replaced atomically)"),
    time_limit: Optional[float] = typer.Option(None, "--time-limit", help="seconds; default policy.time_limit"),
    seed: int = typer.Option(0, "--seed", help="solver random seed"),
    workers: Optional[int] = typer.Option(None, "--workers", help="CP-SAT worker threads"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress line and no summary"),
    deterministic: bool = typer.Option(
        False, "--deterministic", help="count budgets in CP-SAT deterministic time: the same scenario and --seed "
        "give the same plan (slower, and the time limit is only approximately seconds)"
    ),
    report: Optional[Path] = typer.Option(None, "--report", help="also write a self-contained HTML report (tables and plots)"),
    force: bool = typer.Option(False, "--force", help="an OUT (or --report file) vplan did not write is renamed "
                               "aside to OUT.old (OUT.old.1, ...) instead of refused; nothing is deleted"),
) -> None:
    """Plan the whole fleet, check the plan, write plan.json and one libvirt domain XML per placed guest.

    Ctrl-C stops the search and writes the best checked plan found so far; a second Ctrl-C (or SIGTERM) aborts
    without writing anything."""
    from planner.atomic import OutputError, check_output_dir, check_output_file
    from planner.interrupt import run_stoppable
    from planner.output import write_plan_output
    from planner.solver import PlanBug, Progress, solve as solve_fleet

    sc = _load(scenario)
    inputs = _scenario_inputs(scenario, sc)
    try:  # refuse a bad OUT before spending the time limit
        check_output_dir(out, inputs=inputs, force=force)
        if report is not None:
            if (os.path.realpath(report) + os.sep).startswith(os.path.realpath(out) + os.sep):
                raise OutputError([f"{report}: is (inside) the output directory {out}, which vplan replaces whole; "
                                   "write the report beside it"])
            check_output_file(report, inputs=inputs, force=force)
    except OutputError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        raise typer.Exit(EXIT_INPUT)
    console = Console() if sys.stdout.isatty() else Console(width=150)
    status = None if quiet else console.status("compiling…")

    def progress(p: Progress) -> None:
        if status is None:
            return
        if p.placed is None:
            status.update(f"{p.phase}: {p.elapsed_s:.1f}s")
        else:
            label = "hosts" if sc.policy.objective == "pack" else "max load ‰"
            status.update(
                f"{p.phase}: best so far {p.placed} placed (Σ priority), {p.hosts} {label}, "
                f"distance cost {p.distance} — {p.elapsed_s:.1f}s"
            )

    try:
        if status is not None:
            status.start()
        limit = sc.policy.time_limit_s if time_limit is None else time_limit
        plan, interrupted = run_stoppable(lambda: solve_fleet(
            sc, time_limit_s=time_limit, seed=seed, workers=workers, progress=progress, deterministic=deterministic),
            None if quiet else f"vplan: solving {scenario} (time limit {limit:g}s; Ctrl-C stops the search and "
                               "writes the best plan found so far)")
    except PlanBug as exc:
        print(f"vplan: internal error: {exc}", file=sys.stderr)
        raise typer.Exit(EXIT_BUG)
    finally:
        if status is not None:
            status.stop()
    written = write_plan_output(plan, out, inputs=inputs, force=force)
    if written.moved_aside is not None:
        print(f"vplan: {out} held files vplan did not write: renamed it to {written.moved_aside} (--force)",
              file=sys.stderr)
    if report is not None:
        from planner.report import write_report

        write_report(plan, report, force=force)
    if interrupted:
        print(f"vplan: interrupted by Ctrl-C after {plan.stats.wall_s:.1f}s: wrote the best checked plan found "
              "until then (plan.json: solver.interrupted)", file=sys.stderr)
    if not quiet:
        print_summary(plan, console, out)
        if report is not None:
            console.print(f"wrote the report {report}", highlight=False)
    raise typer.Exit(EXIT_UNPLACED if plan.unplaced_reasons else EXIT_OK)


def print_summary(plan: Plan, console: Console, out: Path | None = None, max_hosts: int = 40) -> None:
    """Hosts used; per host and node: dedicated/shared CPUs, vCPU:core ratio, load against target, memory and
    hugepages; unplaced guests with reasons; solver status, objective and time."""
    from planner.check import node_usage
    from planner.units import format_memory, format_page

    sc = plan.scenario
    usage = node_usage(plan)
    used = plan.hosts_used
    table = Table(title=f"{sc.name}: {len(plan.placed)} of {len(sc.guests)} guests on {len(used)} of {len(sc.hosts)} hosts")
    for col in ("host", "node", "cells", "dedicated", "pool", "vCPU:core", "load/target", "4K mem used/free", "pages used/free"):
        table.add_column(col, justify="left" if col == "host" else "right", no_wrap=col == "host")
    target = float(sc.policy.cpu_load_target)
    for host in used[:max_hosts]:
        guests_here = plan.guests_on(host)
        for node_id, u in usage[host].items():
            cells = sum(1 for p in guests_here for c in p.cells if c.node_id == node_id)
            ratio = f"{float(u.shared_vcpus / u.pool_cores):.2f}" if u.pool_cores else "-"
            load = float(u.shared_load / len(u.pool_cpus)) if u.pool_cpus else 0.0
            pages = ", ".join(
                f"{format_page(k)} {u.hugepages_used.get(k, 0)}/{u.hugepages_free.get(k, 0)}" for k in sorted(u.hugepages_free)
            )
            table.add_row(
                host,
                str(node_id),
                str(cells),
                str(len(u.dedicated_cpus)),
                str(len(u.pool_cpus)),
                ratio,
                f"{load:.0%}/{target:.0%}",
                f"{format_memory(u.memory_4k_used_kib)}/{format_memory(u.memory_4k_free_kib)}",
                pages or "-",
            )
    console.print(table)
    if len(used) > max_hosts:
        console.print(f"… {len(used) - max_hosts} more hosts in plan.json")
    if plan.unplaced_reasons:
        unplaced = Table(title=f"{len(plan.unplaced_reasons)} unplaced guest{'s' if len(plan.unplaced_reasons) != 1 else ''}")
        unplaced.add_column("guest")
        unplaced.add_column("reason")
        for name, reason in plan.unplaced_reasons.items():
            unplaced.add_row(name, reason)
        console.print(unplaced)
    s = plan.stats
    extra = s.extra
    bound = extra.get("bound_hosts")
    gap = extra.get("gap_pct")
    line = (
        f"status {plan.status} (solver {s.solver}, CP-SAT {s.solver_status}); hosts used {len(used)}"
        + (f" (lower bound {bound} by {extra.get('bound_binding')}" + (f", gap {gap}%" if gap is not None else "") + ")" if bound else "")
        + f"; placed {len(plan.placed)}/{len(sc.guests)}; time {s.wall_s:.1f}s"
    )
    if "objective_distance" in extra:
        line += f"; NUMA distance cost {extra['objective_distance']}"
    if extra.get("interrupted"):
        line += "; interrupted by Ctrl-C (best plan found until then)"
    console.print(line, highlight=False)
    if out is not None:
        console.print(f"wrote {out}/plan.json and {len(plan.placed)} domain XML files under {out}/hosts/", highlight=False)


@app.command()
def compare(
    a: Path = typer.Argument(..., help="scenario YAML file A"),
    b: Path = typer.Argument(..., help="scenario YAML file B"),
    time_limit: Optional[float] = typer.Option(None, "--time-limit", help="seconds per solve; default policy.time_limit"),
    seed: int = typer.Option(0, "--seed", help="solver random seed"),
    workers: Optional[int] = typer.Option(None, "--workers", help="CP-SAT worker threads"),
    max_guests: int = typer.Option(40, "--max-guests", help="moved guests listed at most"),
) -> None:
    """Solve two scenarios and print what differs: hosts used, utilisation per resource, guests that moved.

    A and B are scenario files (a plan.json does not hold its scenario, so plans are compared in Python:
    planner.compare.compare(plan_a, plan_b))."""
    from planner.compare import compare as compare_plans
    from planner.solver import PlanBug

    from planner.interrupt import run_stoppable

    sc_a, sc_b = _load(a), _load(b)
    try:  # in a worker thread, so that Ctrl-C aborts at once (planner.interrupt)
        result, _ = run_stoppable(lambda: compare_plans(sc_a, sc_b, labels=(str(a), str(b)), time_limit_s=time_limit,
                                                        seed=seed, workers=workers), stop_on_ctrl_c=False)
    except PlanBug as exc:
        print(f"vplan: internal error: {exc}", file=sys.stderr)
        raise typer.Exit(EXIT_BUG)
    typer.echo(result.text(max_guests=max_guests))


@app.command()
def generate(
    hosts: int = typer.Option(50, help="number of hosts"),
    guests: int = typer.Option(1500, help="number of guests"),
    seed: int = typer.Option(1, help="random seed"),
    out: Path = typer.Option(..., "-o", "--out", help="scenario file to write"),
    force: bool = typer.Option(False, "--force", help="a file vplan did not write is renamed aside to FILE.old "
                                                      "instead of refused"),
) -> None:
    """Write a seeded random fleet scenario (mixed real host models and flavours)."""
    from planner.atomic import OutputError, check_output_file, write_file_atomically
    from planner.generate import FLAVOURS_FILE, MODELS_DIR, generate_fleet

    problems = [f"--{name} {value}: must be at least {low}"
                for name, value, low in (("hosts", hosts, 1), ("guests", guests, 0)) if value < low]
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        raise typer.Exit(EXIT_INPUT)
    try:
        inputs = [MODELS_DIR, FLAVOURS_FILE]  # the catalogue it reads
        check_output_file(out, inputs=inputs, force=force)
        text = generate_fleet(hosts, guests, seed=seed, out_path=str(out))
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


# real hosts and deployed guests: `host import`, `check`, `apply`, `hugepages` (planner/cli_ops.py)
from planner.cli_ops import register as _register_ops  # noqa: E402

_register_ops(app)


def main() -> None:  # console script entry point
    app()


if __name__ == "__main__":
    sys.exit(main())
