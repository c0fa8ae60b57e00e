"""What every ``vplan`` command shares: the exit-code table, the command group (signals, refused output, OS
errors as one line), the app object, scenario loading that exits 2 with one message per problem, durations."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from planner.io.loader import ScenarioError, load_scenario

#: The exit-code table of every command: 0 done (every guest placed, input valid, nothing found); 1 an internal
#: error (a plan that failed the checker is never written), and for ``vplan check`` findings; 2 bad input (one
#: message per problem naming file, key and item; nothing written); 3 done but not all of it (guests unplaced or
#: stranded).
EXIT_OK, EXIT_BUG, EXIT_INPUT, EXIT_UNPLACED = 0, 1, 2, 3
EXIT_FINDINGS = 1  # vplan check: the plan or the deployed domains break a rule


class _Group(typer.core.TyperGroup):
    """Every command runs with vplan's SIGINT/SIGTERM handling (``planner.cli.interrupt``); a refused output path, a
    filesystem error or a signal ends it with one line on stderr instead of a traceback."""

    def invoke(self, ctx):
        from planner.files.atomic import OutputError
        from planner.cli.interrupt import Aborted, exit_now, signal_handlers

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


def load(path: Path):
    try:
        return load_scenario(path)
    except ScenarioError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        raise typer.Exit(EXIT_INPUT)


def example(*lines: str) -> str:
    return "Examples:\n\n" + "\n\n".join(f"  {line}" for line in lines)


def parse_time_limit(value: Optional[str], option: str = "--time-limit") -> Optional[float]:
    """``--time-limit`` (or ``option``): a duration as in YAML (``20s``, ``2m``, ``90``); a bad one is exit 2 with
    one message."""
    if value is None:
        return None
    from planner.model.units import parse_duration_s

    try:
        return parse_duration_s(value)
    except ValueError as exc:
        print(f"{option} {value}: {exc}", file=sys.stderr)
        raise typer.Exit(EXIT_INPUT)
