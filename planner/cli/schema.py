"""``vplan schema [--kind scenario|host-model|flavours] [-o FILE]``: the JSON Schema of scenario files (or of host
model files, or of the flavour catalogue), generated from the pydantic models of ``planner.io.schema``, so that an
editor validates and completes scenario YAML. Registered on the ``vplan`` app by ``planner.cli.main``.

Without ``-o`` the schema goes to stdout; with ``-o FILE`` it is written atomically under the output rules of
``planner.files.atomic`` (a file vplan did not write is refused unless ``--force``, which renames it aside).
Exit status: 0 written, 2 a refused output path (one line per problem).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from planner.cli.common import EXIT_INPUT


def schema_text(kind: str) -> str:
    """The JSON Schema of ``kind`` as indented JSON text with a final newline (keys in the models' order)."""
    from planner.io.schema import json_schema

    return json.dumps(json_schema(kind), indent=2, ensure_ascii=False) + "\n"


def schema(
    kind: str = typer.Option("scenario", "--kind", "-k",
                             help="scenario (a scenario file), host-model (models/hosts/*.yaml) or flavours "
                                  "(models/flavours.yaml)"),
    out: Path | None = typer.Option(None, "--output", "-o", help="write the schema to this file (atomically) "
                                                                   "instead of stdout"),
    force: bool = typer.Option(False, "--force", help="replace an existing file vplan did not write (it is "
                                                      "renamed aside to FILE.old)"),
) -> None:
    """Print or write the JSON Schema of scenario files, for editors (VS Code's YAML extension:
    ``# yaml-language-server: $schema=PATH`` on a scenario's first line)."""
    from planner.files.atomic import OutputError, write_file_atomically
    from planner.io.schema import SCHEMA_KINDS

    if kind not in SCHEMA_KINDS:
        print(f"--kind {kind}: not one of: {', '.join(SCHEMA_KINDS)}", file=sys.stderr)
        raise typer.Exit(EXIT_INPUT)
    text = schema_text(kind)
    if out is None:
        sys.stdout.write(text)
        return
    try:
        written = write_file_atomically(out, text, force=force)
    except OutputError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        raise typer.Exit(EXIT_INPUT) from None
    note = f" (the file that was there is now {written.moved_aside})" if written.moved_aside else ""
    typer.echo(f"wrote the {kind} JSON Schema to {out}{note}")


def register(app: typer.Typer) -> None:
    """Add ``schema`` to the ``vplan`` app."""
    app.command("schema", epilog="Examples:\n\n  vplan schema -o scenario.schema.json\n\n"
                "  vplan schema --kind host-model -o host-model.schema.json")(schema)
