"""Every example scenario solves, its plan passes the checker, and libvirt accepts the XML it writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from planner.verify.check import check_plan
from planner.io.loader import load_scenario
from planner.analysis.output import write_plan
from planner.engine.solver import solve
from tests.libvirt_validate import domain_errors

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))
LARGE = {"fleet-50x1500.yaml", "fleet-50x1500-change5.yaml"}


@pytest.mark.parametrize("path", [p for p in SCENARIOS if p.name not in LARGE], ids=lambda p: p.name)
def test_scenario_solves_checks_and_libvirt_accepts_its_xml(path, tmp_path):
    scenario = load_scenario(path)
    plan = solve(scenario, time_limit_s=20, workers=2)
    assert check_plan(plan) == []
    assert len(plan.placed) + len(plan.unplaced_reasons) == len(scenario.guests)
    out = write_plan(plan, tmp_path / "out")
    doc = json.loads((out / "plan.json").read_text())
    assert doc["status"] == plan.status
    xml_files = sorted(out.glob("hosts/*/*.xml"))
    assert len(xml_files) == len(plan.placed)
    for xml in xml_files:
        assert domain_errors(xml) is None, xml


def test_example_scenarios_exist():
    names = {p.name for p in SCENARIOS}
    assert {"quickstart.yaml", "overcommit-web.yaml", "dedicated-numa.yaml"} <= names


def test_quickstart_places_everything():
    plan = solve(load_scenario(ROOT / "scenarios" / "quickstart.yaml"), time_limit_s=20, workers=2)
    assert plan.unplaced_reasons == {}
    assert plan.status in ("optimal", "feasible")
