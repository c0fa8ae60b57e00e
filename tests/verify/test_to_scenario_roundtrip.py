"""`vplan check --to-scenario` writes numbers as numbers; solve → check --to-scenario → validate → solve."""

from __future__ import annotations

import json

import yaml
from typer.testing import CliRunner

from planner.cli.main import app

SCENARIO = """\
version: 1
name: roundtrip
policy: {cpu_load_target: 0.7, memory_overcommit: 1.5}
host_models:
  m:
    nodes: [{id: 0, cpus: "0-3,8-11", memory: 32GiB}, {id: 1, cpus: "4-7,12-15", memory: 32GiB}]
    threads_per_core: 2
    reserved: {cpus: "0,4"}
hosts: [{name: "h[1-3]", model: m}]
guests:
  - {name: "web[1-6]", vcpus: 2, memory: 4GiB, load: 0.3}
  - {name: half, vcpus: 3, memory: 3GiB, load: 0.25}
  - {name: db, vcpus: 4, memory: 8GiB, cpu: dedicated, threads: prefer}
"""


def test_solve_check_to_scenario_validate_solve(tmp_path):
    runner = CliRunner()
    source = tmp_path / "s.yaml"
    source.write_text(SCENARIO)
    out = tmp_path / "out"
    first = runner.invoke(app, ["solve", str(source), "-o", str(out), "--time-limit", "2", "-q"])
    assert first.exit_code == 0, first.output
    found = tmp_path / "found.yaml"
    checked = runner.invoke(app, ["check", str(source), "--domains", str(out), "--to-scenario", str(found)])
    assert checked.exit_code == 0, checked.output
    data = yaml.safe_load(found.read_text())
    loads = {g["name"]: g.get("load") for g in data["guests"]}
    assert loads["web1"] == 0.3 and loads["half"] == 0.25 and loads["db"] is None  # numbers, not '0.3'
    assert isinstance(data["policy"]["memory_overcommit"], float) and data["policy"]["memory_overcommit"] == 1.5
    valid = runner.invoke(app, ["validate", str(found)])
    assert valid.exit_code == 0, valid.output
    again = runner.invoke(app, ["solve", str(found), "-o", str(tmp_path / "again"), "--time-limit", "2", "-q"])
    assert again.exit_code == 0, again.output
    before = json.loads((out / "plan.json").read_text())["guests"]
    after = json.loads((tmp_path / "again" / "plan.json").read_text())["guests"]
    assert {g: v["host"] for g, v in after.items()} == {g: v["host"] for g, v in before.items()}  # all fixed


RACKS = """\
version: 1
name: racks
policy: {survive: {racks: 1}, anti_affinity_scope: rack, tenant_isolation: node, page_sharing: false, stall: 5s,
         node_memory_target: 0.9}
host_models:
  m:
    nodes: [{id: 0, cpus: "0-3,8-11", memory: 32GiB}, {id: 1, cpus: "4-7,12-15", memory: 32GiB}]
    threads_per_core: 2
    reserved: {cpus: "0,4"}
hosts:
  - {name: "a[1-2]", model: m, rack: r1, zone: z1}
  - {name: "b[1-2]", model: m, rack: r2, zone: z2}
guests:
  - {name: "web[1-4]", vcpus: 2, memory: 4GiB, load: 0.3, tenant: t1}
  - {name: "db[1-2]", vcpus: 2, memory: 4GiB, cpu: dedicated, anti_affinity: db, tenant: t2}
"""


def test_to_scenario_keeps_failure_domains_and_policy(tmp_path):
    runner = CliRunner()
    source = tmp_path / "s.yaml"
    source.write_text(RACKS)
    out = tmp_path / "out"
    assert runner.invoke(app, ["solve", str(source), "-o", str(out), "--time-limit", "2", "-q"]).exit_code == 0
    found = tmp_path / "found.yaml"
    checked = runner.invoke(app, ["check", str(source), "--domains", str(out), "--to-scenario", str(found)])
    assert checked.exit_code == 0, checked.output
    data = yaml.safe_load(found.read_text())
    assert data["policy"]["survive"] == {"racks": 1} and data["policy"]["anti_affinity_scope"] == "rack"
    assert data["policy"]["tenant_isolation"] == "node" and data["policy"]["page_sharing"] is False
    assert data["policy"]["stall"] == "5s" and data["policy"]["node_memory_target"] == 0.9
    assert [(h["name"], h.get("rack"), h.get("zone")) for h in data["hosts"]] == [
        ("a1", "r1", "z1"), ("a2", "r1", "z1"), ("b1", "r2", "z2"), ("b2", "r2", "z2")]
    racks = {h["name"]: h["rack"] for h in data["hosts"]}
    assert len({racks[g["host"]] for g in data["guests"] if g["name"].startswith("db")}) == 2  # db apart by rack
    assert runner.invoke(app, ["validate", str(found)]).exit_code == 0
    again = runner.invoke(app, ["solve", str(found), "-o", str(tmp_path / "again"), "--time-limit", "2", "-q"])
    assert again.exit_code == 0, again.output
