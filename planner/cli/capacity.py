"""``vplan size``, ``vplan headroom`` and ``vplan growth``: sizing questions from the command line.

Thin layers over ``planner.analysis.capacity`` (``fewest_hosts``, ``fewest_to_add``, ``headroom``, ``runway``); the
solves of a search run on a local process pool or, with ``--scheduler tcp://HOST:8786``, on a Dask cluster
(``planner.analysis.sweep``). Bad input: one line naming the file or option and the value, exit 2; ``--json`` prints the
answer as JSON (units in the keys: ``_kib``, ``_s``, ``_fraction``).
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Optional

import typer

from planner.cli.common import EXIT_INPUT, EXIT_OK, example as _example, load as _load, parse_time_limit  # noqa: F401

PLOT_MARKER = "vplan growth --plot"  # in the PNG's Software text chunk, so vplan may replace its own plot


def _fail(message: str) -> None:
    print(message, file=sys.stderr)
    raise typer.Exit(EXIT_INPUT)


def _model(sc, name: str, scenario: Path):
    from planner.analysis.variants import resolve_model, available_models

    try:
        return resolve_model(sc, name)
    except ValueError:
        _fail(f"--model {name}: no such host model in {scenario} ({', '.join(sorted(sc.host_models))}) nor in the "
              f"catalogue models/hosts/ ({', '.join(available_models())})")


@contextlib.contextmanager
def sweep_executor(scheduler: Optional[str], jobs: int = 3):
    """No scheduler: solves one after the other in this process (None); else that Dask cluster's executor
    (``local`` for a local process pool)."""
    from planner.analysis.sweep import SchedulerError, executor_for

    if scheduler is None:
        yield None
        return
    try:
        with executor_for(None if scheduler == "local" else scheduler, jobs=jobs) as executor:
            yield executor
    except SchedulerError as exc:
        _fail(str(exc))


_SCHEDULER_HELP = ("run the solves side by side: 'local' (a process pool on this machine) or a Dask scheduler "
                   "address tcp://HOST:8786 (needs dask[distributed])")


def _sizing_document(sc, sizing, add: bool) -> dict:
    return {
        "scenario": sc.name, "model": sizing.model, "add": add, "guests": len(sc.guests),
        "fleet_hosts": len(sc.hosts), "hosts": sizing.hosts, "lower_bound_hosts": sizing.lower_bound,
        "lower_bound_by_resource": dict(sizing.bounds), "proven": sizing.proven,
        "placed": len(sizing.plan.placed) if sizing.plan is not None else 0,
        "hosts_used": len(sizing.plan.hosts_used) if sizing.plan is not None else 0,
        "solves": len(sizing.attempts), "search_s": sizing.search_s,
        "attempts": [{"hosts": a.hosts, "placed": a.placed, "unplaced": a.unplaced, "hosts_used": a.hosts_used,
                      "status": a.status, "solve_s": a.solve_s} for a in sizing.attempts],
    }


def size(
    scenario: Path = typer.Argument(..., metavar="SCENARIO.yaml", help="scenario YAML file"),
    model: str = typer.Option(..., "--model", metavar="MODEL", help="host model: of the scenario or the catalogue "
                              "(models/hosts/NAME.yaml)"),
    add: bool = typer.Option(False, "--add", help="how many hosts of MODEL to add to the scenario's own (mixed) "
                             "fleet, running guests staying where they are"),
    time_limit: str = typer.Option("5s", "--time-limit", metavar="DURATION", help="budget of each solve"),
    seed: int = typer.Option(0, "--seed", metavar="N", help="solver random seed"),
    workers: Optional[int] = typer.Option(None, "--workers", metavar="N", help="CP-SAT worker threads per solve"),
    deterministic: bool = typer.Option(False, "--deterministic", help="budgets in CP-SAT deterministic time: the "
                                       "same answer on every run and every executor"),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", metavar="ADDRESS", help=_SCHEDULER_HELP),
    as_json: bool = typer.Option(False, "--json", help="the answer as JSON on stdout"),
) -> None:
    """The fewest hosts of MODEL that place every guest (a new fleet), or with --add how many of MODEL to add to
    the fleet the scenario has. Prints the answer, the lower bound per resource and whether it is proven."""
    from planner.analysis.capacity import CannotFit, fewest_hosts, fewest_to_add

    limit = parse_time_limit(time_limit)
    sc = _load(scenario)
    target = _model(sc, model, scenario)
    try:
        with sweep_executor(scheduler) as executor:
            search = fewest_to_add if add else fewest_hosts
            sizing = search(sc, target, time_limit_s=limit, seed=seed, workers=workers, executor=executor,
                            deterministic=deterministic)
    except CannotFit as exc:
        _fail(f"{scenario}: {exc}")
    if as_json:
        sys.stdout.write(json.dumps(_sizing_document(sc, sizing, add), indent=2) + "\n")
        raise typer.Exit(EXIT_OK)
    how = "proven minimal" if sizing.proven else "the fewest found (an upper bound)"
    if add:
        if sizing.hosts == 0:
            typer.echo(f"{sc.name}: the {len(sc.hosts)} hosts of the fleet place all {len(sc.guests):,} guests: add "
                       f"no {sizing.model} host")
        else:
            typer.echo(f"{sc.name}: add {sizing.hosts} host{'s' if sizing.hosts != 1 else ''} of {sizing.model} to "
                       f"the {len(sc.hosts)} of the fleet to place all {len(sc.guests):,} guests ({how})")
    else:
        typer.echo(f"{sc.name}: {sizing.hosts} host{'s' if sizing.hosts != 1 else ''} of {sizing.model} place all "
                   f"{len(sc.guests):,} guests ({how})")
    bounds = ", ".join(f"{k} {v}" for k, v in sizing.bounds.items())
    typer.echo(f"lower bound {sizing.lower_bound} from the totals ({bounds}); {len(sizing.attempts)} solves in "
               f"{sizing.search_s:.1f} s")


def headroom(
    out: Path = typer.Argument(..., metavar="OUT", help="vplan solve's output directory (or its plan.json)"),
    flavour: str = typer.Option(..., "--flavour", "--flavor", metavar="FLAVOUR",
                                help="catalogue flavour (models/flavours.yaml)"),
    scenario: Path = typer.Option(..., "--scenario", "-s", metavar="SCENARIO.yaml",
                                  help="the scenario OUT was solved from (plan.json names it but does not hold "
                                       "its host models)"),
    host: Optional[list[str]] = typer.Option(None, "--host", metavar="HOST", help="only these hosts (repeat)"),
    as_json: bool = typer.Option(False, "--json", help="the answer as JSON on stdout"),
) -> None:
    """How many more guests of FLAVOUR fit into the plan in OUT, per host and in all, and what binds on each
    host: its free resources counted with the solver's own node rules."""
    from planner.analysis.capacity import headroom as count_headroom
    from planner.files.planfile import PlanFileError, plan_json_path, read_plan_document

    try:
        document = read_plan_document(out)
    except PlanFileError as exc:
        _fail(str(exc))
    sc = _load(scenario)
    where = plan_json_path(out)
    if document.get("scenario") != sc.name:
        _fail(f"{where}: a plan of scenario '{document.get('scenario')}', but {scenario} is scenario '{sc.name}': "
              "give the scenario OUT was solved from with --scenario")
    placements = {name: (g["host"], tuple(g.get("nodes") or ())) for name, g in document["guests"].items()
                  if isinstance(g, dict) and g.get("host")}
    try:
        result = count_headroom(sc, placements, flavour, hosts=host or None)
    except ValueError as exc:
        text = str(exc)
        _fail(f"--flavour {flavour}: {text}" if text.startswith("unknown flavour") else
              f"--host: {text}" if text.startswith("host ") else f"{where}: {text}")
    if as_json:
        doc = {"plan": str(where), "scenario": sc.name, **result.document()}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        raise typer.Exit(EXIT_OK)
    from planner.analysis.variants import flavour_guest

    probe = flavour_guest(flavour, "probe", sc.policy)
    frame = result.frame
    width = max([len("host")] + [len(h) for h in frame["host"]])
    typer.echo(f"{'host':<{width}}  {'guests':>6}  {'+' + flavour:>10}  binding")
    for _, r in frame.iterrows():
        node = f" (node {int(r['binding_node'])})" if r["binding_node"] is not None and r["binding_node"] == r[
            "binding_node"] else ""
        typer.echo(f"{r['host']:<{width}}  {int(r['guests']):>6}  {int(r['fits']):>10}  {r['binding']}{node}")
    at_least = "" if result.exact else "at least "
    typer.echo(f"{at_least}{result.total:,} more {flavour} guests ({probe.vcpus} vCPUs, "
               f"{probe.memory_kib / 1024**2:g} GiB each) fit on {len(frame)} host{'s' if len(frame) != 1 else ''}")
    binding = ", ".join(f"{name} on {n} host{'s' if n != 1 else ''}" for name, n in result.binding_counts().items())
    typer.echo(f"binding: {binding}")


def growth(
    scenario: Path = typer.Argument(..., metavar="SCENARIO.yaml", help="scenario YAML file"),
    rate: str = typer.Option(..., "--rate", metavar="RATE", help="demand growth per month: 5%/month, 5% or 0.05"),
    months: int = typer.Option(24, "--months", metavar="N", help="months to look ahead"),
    model: Optional[str] = typer.Option(None, "--model", metavar="MODEL",
                                        help="also size the hosts of MODEL to add for the last month's demand"),
    plot: Optional[Path] = typer.Option(None, "--plot", metavar="FILE.png", help="write the plot as a PNG"),
    time_limit: str = typer.Option("5s", "--time-limit", metavar="DURATION", help="budget of each solve"),
    seed: int = typer.Option(0, "--seed", metavar="N", help="solver random seed"),
    workers: Optional[int] = typer.Option(None, "--workers", metavar="N", help="CP-SAT worker threads per solve"),
    deterministic: bool = typer.Option(False, "--deterministic", help="budgets in CP-SAT deterministic time"),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", metavar="ADDRESS", help=_SCHEDULER_HELP),
    force: bool = typer.Option(False, "--force", help="a --plot file vplan did not write is renamed aside"),
    as_json: bool = typer.Option(False, "--json", help="the answer as JSON on stdout"),
) -> None:
    """The month the scenario's fleet runs out as the demand grows: per resource from the totals, and for the
    fleet from solves (the first month some guest no longer fits); with --model, the hosts of MODEL to add."""
    from planner.files.atomic import OutputError, check_output_file, write_file_atomically
    from planner.analysis.capacity import CannotFit, parse_rate, runway, runway_plot

    limit = parse_time_limit(time_limit)
    try:
        monthly = parse_rate(rate)
    except ValueError as exc:
        _fail(f"--rate {rate}: {exc}")
    if not 0 <= months <= 600:
        _fail(f"--months {months}: must be between 0 and 600")
    sc = _load(scenario)
    target = _model(sc, model, scenario) if model is not None else None
    if plot is not None:
        if plot.suffix.lower() != ".png":
            _fail(f"--plot {plot}: name a .png file")
        try:
            check_output_file(plot, inputs=[scenario], force=force)
        except OutputError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            raise typer.Exit(EXIT_INPUT)
    try:
        with sweep_executor(scheduler) as executor:
            result = runway(sc, monthly, months, target, time_limit_s=limit, seed=seed, workers=workers,
                            executor=executor, deterministic=deterministic)
    except CannotFit as exc:
        _fail(f"{scenario}: {exc}")
    if plot is not None:
        import io

        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 4.5))
        runway_plot(result, ax=ax)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, metadata={"Software": PLOT_MARKER})
        plt.close(fig)
        write_file_atomically(plot, buf.getvalue(), inputs=[scenario], force=force)
    if as_json:
        doc = {"scenario": sc.name, **result.document(), "plot": str(plot) if plot is not None else None}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        raise typer.Exit(EXIT_OK)
    pct = f"{float(monthly):.2%}".replace(".00%", "%")
    first = result.fleet_month
    fleet = f"{result.fleet_hosts} host{'s' if result.fleet_hosts != 1 else ''}"
    typer.echo(f"{sc.name}: demand +{pct}/month: " + (
        f"the fleet of {fleet} runs out in month {first} ({int(result.frame['guests'][first]):,} "
        f"guests; month {first - 1} still fits)" if first is not None and first > 0 else
        f"the fleet of {fleet} does not place every guest even now" if first == 0 else
        f"the fleet of {fleet} lasts the {months} months "
        f"({int(result.frame['guests'].iloc[-1]):,} guests at the end)"))
    from planner.analysis.capacity import RESOURCE_NAMES

    typer.echo("per resource (the guests' total over the fleet's):")
    last = result.frame.iloc[-1]
    for key, month in result.resource_months.items():
        if not (result.frame[f"{key}_used_fraction"] > 0).any():
            continue  # nothing asks for it (no anti-affinity tags, no pages of that size)
        label = RESOURCE_NAMES.get(key, key.replace("hugepages_", "") + " hugepages")
        now = float(result.frame[f"{key}_used_fraction"].iloc[0])
        end = float(last[f"{key}_used_fraction"])
        when = f"runs out in month {month}" if month is not None else f"lasts ({end:.0%} in month {months})"
        typer.echo(f"  {label:<40} {now:>5.0%} now, {when}")
    if result.add_at_horizon is not None:
        add = result.add_at_horizon
        typer.echo(f"month {months}: add {add.hosts} host{'s' if add.hosts != 1 else ''} of {add.model} "
                   f"({'proven minimal' if add.proven else 'the fewest found'}; lower bound {add.lower_bound})")
    typer.echo(f"{len(result.solved)} months solved in {result.search_s:.1f} s"
               + (f"; wrote the plot {plot}" if plot is not None else ""))


def register(app: typer.Typer) -> None:
    app.command(epilog=_example("vplan size scenarios/fleet-50x1500.yaml --model amd-nps4",
                                "vplan size scenarios/quickstart.yaml --model amd-nps4 --add --json"))(size)
    app.command(epilog=_example("vplan solve scenarios/quickstart.yaml -o out/ && "
                                "vplan headroom out/ --flavour medium --scenario scenarios/quickstart.yaml"))(headroom)
    app.command(epilog=_example("vplan growth scenarios/quickstart.yaml --rate 5%/month --months 24 --plot g.png",
                                "vplan growth fleet.yaml --rate 3% --months 36 --model amd-nps4 "
                                "--scheduler tcp://sched:8786"))(growth)
