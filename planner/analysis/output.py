"""Writing a plan: ``OUT/plan.json`` and ``OUT/hosts/HOST/GUEST.xml``, atomically.

Everything is written into a temporary directory beside OUT and renamed into place only when complete, so an
existing OUT is either replaced whole or left untouched. OUT must be missing, empty or vplan's own earlier output
(``planner.files.atomic``: its manifest lists what vplan wrote); anything else raises
``planner.files.atomic.OutputError``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

from planner.files.atomic import Written, write_directory_atomically
from planner.files.planfile import FORMAT_VERSION, solver_document, transition_document
from planner.libvirt.domain import domain_xml
from planner.model.plan import Plan
from planner.model.units import format_cpulist, format_page
from planner.verify.check import node_usage

ERROR_FILE = "vplan-error.txt"


def _number(value: Fraction | int | float) -> int | float:
    if isinstance(value, Fraction):
        return int(value) if value.denominator == 1 else round(float(value), 6)
    return value


def xml_path(plan: Plan, guest: str) -> str:
    return f"hosts/{plan.placed[guest].host}/{guest}.xml"


def _page(size_kib: int | None) -> str:
    return format_page(size_kib) if size_kib else "4K"


def plan_document(plan: Plan) -> dict[str, Any]:
    """The JSON document of a plan (spec: Output; every key in planner/schemas/plan.schema.json): the format
    version, the headline, fleet-wide use per resource, then every guest and host, then the solver's figures.
    Units and names as in README "Units and names" (memory in KiB ``_kib``, page sizes ``"2M"``/``"1G"``)."""
    from planner.analysis.headline import fleet_use, headline

    scenario = plan.scenario
    guests: dict[str, Any] = {}
    notes = plan.notes()
    for g in scenario.guests:
        p = plan.placed.get(g.name)
        if p is None:
            guests[g.name] = {"host": None, "xml": None, "reason": plan.unplaced_reasons.get(g.name), "nodes": [],
                              "vcpus": g.vcpus, "memory_kib": g.memory_kib, "cpu": g.cpu,
                              "page_size": _page(g.hugepage_kib)}
            continue
        guests[g.name] = {
            "host": p.host,
            "xml": xml_path(plan, g.name),
            "reason": None,
            "nodes": [c.node_id for c in p.cells],
            "vcpus": g.vcpus,
            "memory_kib": g.memory_kib,
            "cpu": g.cpu,
            "page_size": _page(g.hugepage_kib),
            "cells": [
                {
                    "cell": c.cell_id,
                    "node": c.node_id,
                    "vcpu_ids": format_cpulist(c.vcpus),
                    "memory_kib": c.memory_kib,
                    "pcpus": format_cpulist({cpu for v in c.vcpus for cpu in p.vcpu_pins[v]}),
                }
                for c in p.cells
            ],
            "emulator_pcpus": format_cpulist(p.emulator_pins),
        }
        if g.name in notes:
            guests[g.name]["note"] = notes[g.name]
    usage = node_usage(plan)
    hosts: dict[str, Any] = {}
    for h in scenario.hosts:
        on_host = plan.guests_on(h.name)
        nodes = {}
        for node_id, u in usage.get(h.name, {}).items():
            nodes[str(node_id)] = {
                "pool_cpulist": format_cpulist(u.pool_cpus),
                "pool_cores": _number(u.pool_cores),
                "dedicated_cpulist": format_cpulist(u.dedicated_cpus),
                "idle_cpulist": format_cpulist(u.idle_cpus),
                "emulator_cpulist": format_cpulist(u.emulator_cpus),
                "shared_vcpus": u.shared_vcpus,
                "expected_load_cpus": _number(u.shared_load),
                "dedicated_vcpus": u.dedicated_vcpus,
                "memory_4k_used_kib": u.memory_4k_used_kib,
                "memory_4k_free_kib": u.memory_4k_free_kib,
                "hugepages_used_pages": {format_page(k): v for k, v in sorted(u.hugepages_used.items()) if v},
                "hugepages_free_pages": {format_page(k): v for k, v in sorted(u.hugepages_free.items())},
            }
        hosts[h.name] = {
            "model": h.model,
            "used": bool(on_host),
            "guests": len(on_host),
            "vcpus": sum(scenario.guest_by_name[p.guest].vcpus for p in on_host),
            "nodes": nodes,
        }
    evacuations = {"evacuations": [evacuation_document(e) for e in plan.evacuations]} if plan.evacuations else {}
    return {
        "format_version": FORMAT_VERSION,
        "scenario": scenario.name,
        "status": plan.status,
        "headline": headline(plan),
        "use": fleet_use(plan),
        "guests": guests,
        "hosts": hosts,
        # the solve's figures and a re-plan's moves and migration order: the mapping of planner.files.planfile
        "solver": solver_document(plan.stats),
        **transition_document(plan.stats),
        **evacuations,
    }


def placement_document(p) -> dict[str, Any]:
    """One guest placement with every pin: host, nodes, cells, one CPU list per vCPU, emulator CPUs."""
    return {
        "host": p.host,
        "nodes": [c.node_id for c in p.cells],
        "cells": [{"cell": c.cell_id, "node": c.node_id, "vcpu_ids": format_cpulist(c.vcpus),
                   "memory_kib": c.memory_kib} for c in p.cells],
        "vcpu_pins": [format_cpulist(pins) for pins in p.vcpu_pins],
        "emulator_pcpus": format_cpulist(p.emulator_pins),
    }


def evacuation_document(e) -> dict[str, Any]:
    """plan.json ``evacuations[i]``: the failure, whether every guest finds a place, spare hosts it fills, and per
    guest its new placement (``moved``), the new pins of surviving guests on receiving hosts (``repinned``), or
    why it fits nowhere (``stranded``)."""
    return {
        "failure": {"kind": e.kind, "name": e.name, "hosts": list(e.failed_hosts)},
        "complete": e.complete,
        "spare_hosts": list(e.spare_hosts),
        "moved": {name: placement_document(p) for name, p in e.moved.items()},
        "repinned": {name: placement_document(p) for name, p in e.repinned.items()},
        "stranded": dict(e.stranded),
    }


def write_plan(plan: Plan, out_dir: str | Path, *, inputs=(), force: bool = False,
               progress: Callable[[int, int], None] | None = None) -> Path:
    """Write plan.json and one domain XML per placed guest into ``out_dir``, atomically. Returns the path.

    ``inputs``: paths OUT must not be, hold or sit inside (the scenario and its files); ``force``: rename a
    directory vplan did not write aside (``OUT.old``) instead of refusing (``planner.files.atomic``).
    ``progress(done, total)`` is called as files are written (total: the domain XMLs plus plan.json)."""
    return write_plan_output(plan, out_dir, inputs=inputs, force=force, progress=progress).path


def write_plan_output(plan: Plan, out_dir: str | Path, *, inputs=(), force: bool = False,
                      progress: Callable[[int, int], None] | None = None) -> Written:
    """:func:`write_plan`, returning also where a foreign OUT was renamed aside (``force``)."""
    total = len(plan.placed) + 1

    def fill(tmp: Path) -> None:
        for i, name in enumerate(sorted(plan.placed)):
            path = tmp / xml_path(plan, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(domain_xml(plan, name), encoding="utf-8")
            if progress is not None and i % 25 == 0:
                progress(i + 1, total)
        (tmp / "plan.json").write_text(json.dumps(plan_document(plan), indent=2) + "\n", encoding="utf-8")
        error_report = plan.stats.error_report
        if error_report:  # a solve phase failed after a complete plan existed: its traceback, to report
            (tmp / ERROR_FILE).write_text(error_report, encoding="utf-8")
        if progress is not None:
            progress(total, total)

    if plan.scenario.path:
        inputs = (*inputs, plan.scenario.path)
    return write_directory_atomically(Path(out_dir), fill, inputs=inputs, force=force, kind="solve")
