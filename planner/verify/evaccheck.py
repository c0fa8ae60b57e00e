"""``vplan check --domains OUT``: the evacuations a plan.json holds (``policy.survive``), read back and judged.

Checker-side code (no solver import): the deployed fleet comes from the domain XML (``planner.verify.audit``), the
evacuations from plan.json (every moved or re-pinned guest with one CPU list per vCPU), and
``planner.verify.check.check_evacuations`` judges each failure's evacuated fleet against every hard rule.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from planner.model.errors import VplanError
from planner.model.plan import CellPlacement, Evacuation, GuestPlacement, Plan
from planner.model.units import parse_cpulist
from planner.verify.check import Violation, check_evacuations


class EvacuationFileError(VplanError, ValueError):
    """An ``evacuations`` entry of plan.json that cannot be read; the message names the file and the key."""


def _placement(name: str, doc: Any, where: str) -> GuestPlacement:
    try:
        cells = tuple(CellPlacement(cell_id=int(c["cell"]), node_id=int(c["node"]),
                                    vcpus=parse_cpulist(c["vcpu_ids"]), memory_kib=int(c["memory_kib"]))
                      for c in doc["cells"])
        return GuestPlacement(guest=name, host=str(doc["host"]), cells=cells,
                              vcpu_pins=tuple(parse_cpulist(p) for p in doc["vcpu_pins"]),
                              emulator_pins=parse_cpulist(doc["emulator_pcpus"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise EvacuationFileError(f"{where}.{name}: not a placement ({type(exc).__name__}: {exc})") from None


def evacuations_from_document(document: dict, path: str = "plan.json") -> tuple[Evacuation, ...]:
    """The ``evacuations`` of a plan.json as ``Evacuation`` objects (empty when it has none)."""
    out = []
    for i, e in enumerate(document.get("evacuations") or ()):
        where = f"{path}: evacuations[{i}]"
        try:
            failure = e["failure"]
            out.append(Evacuation(
                kind=str(failure["kind"]), name=str(failure["name"]),
                failed_hosts=tuple(str(h) for h in failure["hosts"]),
                moved={n: _placement(n, p, f"{where}.moved") for n, p in e["moved"].items()},
                repinned={n: _placement(n, p, f"{where}.repinned") for n, p in e["repinned"].items()},
                stranded={str(n): str(r) for n, r in e["stranded"].items()},
                spare_hosts=tuple(e.get("spare_hosts", ()))))
        except (KeyError, TypeError, AttributeError) as exc:
            raise EvacuationFileError(f"{where}: missing or malformed key ({exc})") from None
        if bool(e.get("complete")) != out[-1].complete:
            raise EvacuationFileError(f"{where}.complete: {e.get('complete')!r} but {len(out[-1].stranded)} guests "
                                      "are stranded")
    return tuple(out)


def check_plan_evacuations(plan: Plan, plan_dir: str | Path) -> list[Violation]:
    """Every breach of the evacuations in ``plan_dir``/plan.json, judged on ``plan`` (the deployed fleet)."""
    from planner.files.planfile import plan_json_path, read_plan_document

    document = read_plan_document(plan_dir)
    evacuations = evacuations_from_document(document, str(plan_json_path(plan_dir)))
    if not evacuations:
        return []
    return check_evacuations(dataclasses.replace(plan, evacuations=evacuations))
