"""``lscpu -p`` output: the SMT siblings a ``numactl --hardware`` capture lacks (CPUs of one socket and core id)."""

from __future__ import annotations

import re
from pathlib import Path

from planner.hostimport.captured import no_long_numbers, read_text
from planner.hostimport.errors import fail

#: cpu id -> {"cpu": id, "core": id, "socket": id or None, "node": id or None}
LscpuRows = dict[int, dict[str, int | None]]


def parse_lscpu(path: str, text: str | None = None) -> LscpuRows:
    """``lscpu -p`` → {cpu: {"core": id, "socket": id, "node": id or None}} (columns named by its '# CPU,...'
    header; without a header, the default columns CPU,Core,Socket,Node)."""
    if text is None:
        text = read_text(path, "lscpu")
    no_long_numbers(path, text, "lscpu")
    columns = ["cpu", "core", "socket", "node"]
    result: LscpuRows = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            body = stripped.lstrip("#").strip()
            if body.lower().startswith("cpu,"):
                columns = [c.strip().lower() for c in body.split(",")]
            continue
        values = _row(path, number, stripped, columns)
        cpu = values["cpu"]
        if cpu is None or values["core"] is None:
            raise fail(path, f"line {number}: no CPU or Core value", "lscpu")
        result[cpu] = values
    if not result:
        raise fail(path, "no CPU lines: not `lscpu -p` output", "lscpu")
    return result


def _row(path: str, number: int, stripped: str, columns: list[str]) -> dict[str, int | None]:
    """One data line: the cpu, core, socket and node columns (None where empty or absent)."""
    fields = [f.strip() for f in stripped.split(",")]
    if "cpu" not in columns or "core" not in columns:
        raise fail(path, "the lscpu -p header has no CPU and Core columns (use plain `lscpu -p`)", "lscpu")
    if len(fields) < len(columns) - columns[::-1].index("core"):
        raise fail(path, f"line {number}: {stripped!r} has too few fields for {','.join(columns)}", "lscpu")
    values: dict[str, int | None] = {}
    for name in ("cpu", "core", "socket", "node"):
        if name in columns and columns.index(name) < len(fields):
            field_text = fields[columns.index(name)]
            if field_text == "":
                values[name] = None
            elif re.fullmatch(r"[0-9]+", field_text):
                values[name] = int(field_text)
            else:
                raise fail(path, f"line {number}: {name} {field_text!r} is not a number", "lscpu")
        else:
            values[name] = None
    return values


def looks_like_lscpu(text: str) -> bool:
    """A ``# CPU,...`` header, or data lines that are all comma-separated numbers."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    data = [line for line in lines if not line.startswith("#")]
    return bool(data) and any(line.lower().lstrip("# ").startswith("cpu,") for line in lines if line.startswith("#")) \
        or bool(data) and all(re.fullmatch(r"[0-9]+(,[0-9]*)+", line) for line in data)


def lscpu_beside(path: str) -> str | None:
    """An ``lscpu -p`` file next to a capture: ``FILE.lscpu``, ``STEM.lscpu`` or ``lscpu.txt`` in its directory."""
    p = Path(path)
    for candidate in (Path(str(p) + ".lscpu"), p.with_suffix(".lscpu"), p.parent / "lscpu.txt"):
        if candidate != p and candidate.is_file():
            return str(candidate)
    return None
