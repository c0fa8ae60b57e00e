"""plan.json, the machine-readable plan: its format version, its JSON Schema and the one function that reads it.

Every reader of a plan directory (``vplan apply``, ``vplan hugepages``, ``vplan check --domains OUT``) goes
through ``read_plan_document``, which refuses a file of another format version with one clear message instead
of failing later on a missing key. The schema (``planner/schemas/plan.schema.json``) documents every key; the
test suite validates every plan.json vplan writes against it.

Units and names (README "Units and names"): memory in KiB with ``_kib`` in the key, page sizes as strings
(``"2M"``, ``"1G"``), durations in seconds with ``_s``, fractions 0..1 with ``_fraction``, percentages with
``_pct``; CPU sets as Linux CPU-list strings with ``_cpulist`` (``pcpus``/``vcpu_ids`` in guest cells);
counts are plain names (``vcpus``, ``dedicated_cpus``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FORMAT_VERSION = 2  # 1: the unversioned plan.json of vplan 0.1 (bytes, page sizes as byte keys)
SCHEMA_PATH = Path(__file__).parent.parent / "schemas" / "plan.schema.json"


class PlanFileError(ValueError):
    """A plan directory whose plan.json is missing, unreadable or of another format; the message names the file."""


def plan_json_path(plan_dir: str | Path) -> Path:
    """The plan.json of PLAN, which may be vplan solve's output directory or the plan.json file itself."""
    path = Path(plan_dir)
    return path if path.is_file() else path / "plan.json"


def read_plan_document(plan_dir: str | Path) -> dict[str, Any]:
    """The plan.json of a ``vplan solve`` output directory, checked for its format version and main mappings."""
    path = plan_json_path(plan_dir)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlanFileError(f"{path}: not found (PLAN is the output directory of vplan solve)") from None
    except (OSError, ValueError) as exc:
        raise PlanFileError(f"{path}: cannot read ({exc})") from None
    if not isinstance(document, dict):
        raise PlanFileError(f"{path}: not a vplan plan (expected a JSON object)")
    version = document.get("format_version")
    if version != FORMAT_VERSION:
        found = "no format_version (written by vplan 0.1)" if version is None else f"format_version {version!r}"
        raise PlanFileError(f"{path}: {found}; this vplan reads format_version {FORMAT_VERSION}: run vplan solve "
                            "again to write the plan in this format")
    for key in ("guests", "hosts"):
        if not isinstance(document.get(key), dict):
            raise PlanFileError(f"{path}: no '{key}' mapping (not a vplan plan?)")
    return document


def schema() -> dict[str, Any]:
    """The JSON Schema of plan.json (draft 2020-12)."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
