"""``vplan evacuate SCENARIO PLAN --host H | --rack R [-o OUT] [--json]``: where the guests of a failed host or
rack go (``planner.engine.evacuate``), checked by the checker; ``-o OUT`` writes the fleet after the failure as a plan
directory (plan.json and the domain XML of every guest, the moved ones on their new hosts).

Exit status: 0 every guest re-placed, 3 some guests stranded, 2 bad input, 1 an evacuation breaking a rule (a bug).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Optional

import typer

from planner.cli.common import EXIT_BUG, EXIT_INPUT, EXIT_OK, EXIT_UNPLACED  # noqa: F401


def evacuate(
    scenario: Path = typer.Argument(..., metavar="SCENARIO.yaml", help="the scenario the plan was made from"),
    plan: Path = typer.Argument(..., metavar="PLAN", help="vplan solve's output directory or its plan.json"),
    host: Optional[str] = typer.Option(None, "--host", help="the failed host"),
    rack: Optional[str] = typer.Option(None, "--rack", help="the failed rack (hosts' rack: label)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="write the fleet after the failure here (a plan "
                                       "directory, following vplan solve's output rules)"),
    as_json: bool = typer.Option(False, "--json", help="the evacuation as JSON (as in plan.json evacuations)"),
    force: bool = typer.Option(False, "--force", help="an OUT vplan did not write is renamed aside, not refused"),
) -> None:
    """Re-place the guests of a failed host (--host) or rack (--rack) on the surviving hosts under every hard rule,
    with pins; print the moves, check them, and with -o write the evacuated fleet. Exit 0 all moved, 3 some
    stranded, 2 bad input."""
    from planner.analysis.output import evacuation_document, write_plan_output
    from planner.cli.common import load as _load
    from planner.engine.evacuate import EvacuateError, failure_of, plan_from_document
    from planner.engine.evacuate import evacuate as evacuate_fleet
    from planner.files.atomic import OutputError, check_output_dir
    from planner.files.planfile import PlanFileError, plan_json_path, read_plan_document
    from planner.verify.check import check_evacuations

    if (host is None) == (rack is None):
        print("vplan evacuate: give exactly one of --host H or --rack R", file=sys.stderr)
        raise typer.Exit(EXIT_INPUT)
    sc = _load(scenario)
    inputs = [scenario, plan]
    try:
        if out is not None:
            check_output_dir(out, inputs=inputs, force=force)
        document = read_plan_document(plan)
        base = plan_from_document(sc, document, str(plan_json_path(plan)))
        failure = failure_of(base, host=host, rack=rack)
    except (PlanFileError, EvacuateError) as exc:
        print(str(exc), file=sys.stderr)
        raise typer.Exit(EXIT_INPUT)
    except OutputError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        raise typer.Exit(EXIT_INPUT)
    evacuation = evacuate_fleet(base, failure)
    checked = dataclasses.replace(base, evacuations=(evacuation,))
    violations = check_evacuations(checked)
    if violations:
        for v in violations[:20]:
            print(f"vplan: internal error: [{v.rule}] {v.message}", file=sys.stderr)
        raise typer.Exit(EXIT_BUG)
    after = base.evacuated(evacuation)
    if out is not None:
        write_plan_output(after, out, inputs=inputs, force=force)
    if as_json:
        doc = {"evacuation": evacuation_document(evacuation), "checked": True, "out": str(out) if out else None}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        print(f"{failure.kind} {failure.name} fails ({', '.join(failure.hosts)}): "
              f"{len(evacuation.moved)} guests move, {len(evacuation.stranded)} stranded, "
              f"{len(evacuation.repinned)} surviving guests re-pinned"
              + (f", spare hosts filled: {', '.join(evacuation.spare_hosts)}" if evacuation.spare_hosts else ""))
        for name, p in evacuation.moved.items():
            print(f"  {name}: {base.placed[name].host} -> {p.host} node{'s' if len(p.nodes) > 1 else ''} "
                  f"{','.join(str(n) for n in p.nodes)}")
        for name, reason in evacuation.stranded.items():
            print(f"  {name}: stranded: {reason}")
        print("checked: every rule holds after the evacuation" + (f"; wrote {out}" if out else ""))
    raise typer.Exit(EXIT_UNPLACED if evacuation.stranded else EXIT_OK)


def register(app: typer.Typer) -> None:
    app.command(name="evacuate")(evacuate)
