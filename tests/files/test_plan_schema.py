"""plan.json: format version, JSON Schema, one reader, one set of units and names (README "Units and names")."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest

from planner.io.loader import load_scenario
from planner.analysis.output import write_plan
from planner.files.planfile import FORMAT_VERSION, PlanFileError, read_plan_document
from planner.engine.solver import solve

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parents[1] / "fixtures" / "cli"


@pytest.fixture(scope="module")
def quick_doc(tmp_path_factory, quickstart_plan):
    plan = quickstart_plan
    out = write_plan(plan, tmp_path_factory.mktemp("q") / "out")
    return plan, read_plan_document(out)


def test_written_plan_is_valid_and_keeps_units_in_its_keys(quick_doc, plan_validator):
    plan, doc = quick_doc
    plan_validator.validate(doc)
    assert doc["format_version"] == FORMAT_VERSION == 2
    assert list(doc)[:5] == ["format_version", "scenario", "status", "headline", "use"]  # the answer first
    h = doc["headline"]
    assert (h["guests"], h["placed"], h["hosts"], h["hosts_used"]) == (31, 31, 4, len(plan.hosts_used))
    assert h["bound_hosts"] == plan.stats.bound.hosts and h["bound_text"]
    assert h["gap_hosts"] == h["hosts_used"] - h["bound_hosts"]
    db1 = doc["guests"]["db1"]
    assert db1["page_size"] == "1G" and db1["memory_kib"] == plan.scenario.guest_by_name["db1"].memory_kib
    assert sum(c["memory_kib"] for c in db1["cells"]) == db1["memory_kib"]
    assert doc["guests"]["web01"]["page_size"] == "4K"
    # the same quantity has the same key and unit as the DataFrames
    nodes = plan.node_usage().set_index(["host", "node"])
    for host, entry in doc["hosts"].items():
        for node, usage in entry["nodes"].items():
            row = nodes.loc[(host, int(node))]
            assert usage["memory_4k_used_kib"] == row["memory_4k_used_kib"]
            assert usage["pool_cpulist"] == row["pool_cpulist"]
            assert usage["expected_load_cpus"] == pytest.approx(row["expected_load_cpus"])
            assert usage["hugepages_used_pages"].get("1G", 0) == row["hugepages_1G_used"]
    bounds = doc["solver"]["bounds"]
    assert "hugepages_1G" in bounds and not any(k.endswith("KiB") for k in bounds)
    use = doc["use"]
    hosts = plan.host_usage()
    used = hosts[hosts["host_used"]]
    assert use["memory_4k"]["used_kib"] == used["memory_4k_used_kib"].sum()
    assert use["hugepages_1G"]["used_pages"] == used["hugepages_1G_used"].sum()


def test_the_schema_rejects_old_keys(quick_doc, plan_validator):
    _plan, doc = quick_doc
    bad = copy.deepcopy(doc)
    node = next(iter(bad["hosts"].values()))["nodes"]["0"]
    node["memory_4k_used"] = node.pop("memory_4k_used_kib") * 1024  # bytes, no unit: format 1
    with pytest.raises(jsonschema.ValidationError):
        plan_validator.validate(bad)
    bad = copy.deepcopy(doc)
    bad["guests"]["db1"]["page_size"] = 1048576
    with pytest.raises(jsonschema.ValidationError):
        plan_validator.validate(bad)


def test_partial_plan_is_valid(tmp_path, plan_validator):
    plan = solve(load_scenario(FIXTURES / "unplaced.yaml"), time_limit_s=5)
    doc = read_plan_document(write_plan(plan, tmp_path / "out"))
    plan_validator.validate(doc)
    assert doc["status"] == doc["headline"]["status"] == "partial"
    assert doc["headline"]["gap_hosts"] is None and doc["headline"]["unplaced"] == 1
    assert doc["guests"]["db7"]["reason"] and doc["guests"]["db7"]["host"] is None


def test_reader_refuses_another_format_with_one_message(tmp_path):
    (tmp_path / "plan.json").write_text(json.dumps({"scenario": "x", "status": "optimal", "guests": {}, "hosts": {}}))
    with pytest.raises(PlanFileError, match=r"plan.json: no format_version \(written by vplan 0.1\); .*vplan solve"):
        read_plan_document(tmp_path)
    (tmp_path / "plan.json").write_text("[1, 2]")
    with pytest.raises(PlanFileError, match="not a vplan plan"):
        read_plan_document(tmp_path)
    with pytest.raises(PlanFileError, match="not found"):
        read_plan_document(tmp_path / "nowhere")
