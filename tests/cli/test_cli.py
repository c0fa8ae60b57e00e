"""The vplan command as a user runs it: exit codes, messages without tracebacks, atomic output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import vplan_process as vplan

FIXTURES = Path(__file__).parents[1] / "fixtures" / "cli"


def test_solve_example_writes_plan_and_xml(tmp_path):
    out = tmp_path / "out"
    result = vplan("solve", str(FIXTURES / "example.yaml"), "-o", str(out), "--time-limit", "10")
    assert result.returncode == 0, result.stderr
    doc = json.loads((out / "plan.json").read_text())
    assert doc["scenario"] == "example"
    assert doc["status"] == "optimal"
    assert set(doc["guests"]) == {f"web0{i}" for i in range(1, 7)} | {"db1", "db2", "rt1"}
    for name, g in doc["guests"].items():
        assert g["reason"] is None
        assert (out / g["xml"]).read_text().startswith("<domain type='kvm'>")
    assert doc["guests"]["db1"]["host"] != doc["guests"]["db2"]["host"]  # anti-affinity
    assert result.stderr == ""  # no progress line when stderr is not a terminal
    first = result.stdout.splitlines()[0]
    assert first == "example: 9 of 9 guests placed on 2 of 2 hosts"  # the answer first
    words = " ".join(result.stdout.split())  # (long lines are wrapped at words)
    assert "status optimal, plan by" in words and "gap 0: no plan can use fewer hosts" in words
    assert not list(tmp_path.glob(".out.*"))  # no temporary directory left behind


def test_unplaced_guest_exit_3_with_reason(tmp_path):
    out = tmp_path / "out"
    result = vplan("solve", str(FIXTURES / "unplaced.yaml"), "-o", str(out), "--quiet", "--time-limit", "5")
    assert result.returncode == 3, result.stderr
    doc = json.loads((out / "plan.json").read_text())
    assert doc["status"] == "partial"
    db7 = doc["guests"]["db7"]
    assert db7["host"] is None and db7["xml"] is None
    assert "needs 10 dedicated vCPUs (threads=isolate) in one cell" in db7["reason"]
    assert "8 cores (node 1)" in db7["reason"] and "short by 2 cores" in db7["reason"]  # node 0 has only 7
    assert not (out / "hosts" / "kvm03" / "db7.xml").exists()
    assert result.stdout == ""  # --quiet


def test_bad_input_exit_2_names_file_key_item_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old plan")
    result = vplan("solve", str(FIXTURES / "bad.yaml"), "-o", str(out))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert any("bad.yaml: host_models.r650.nodes[1].cpus: '8-15,^9x' is not a CPU list" in l for l in lines)
    assert any("bad.yaml: guests[0] (a).memory" in l and "unit" in l for l in lines)
    assert len(lines) == 2  # all problems, once each
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]  # the existing OUT is untouched


def test_validate_ok_and_missing_file():
    ok = vplan("validate", str(FIXTURES / "example.yaml"))
    assert ok.returncode == 0 and "valid" in ok.stdout
    missing = vplan("validate", str(FIXTURES / "nope.yaml"))
    assert missing.returncode == 2
    assert "nope.yaml" in missing.stderr and "Traceback" not in missing.stderr


def test_existing_output_is_replaced_whole(tmp_path):
    out = tmp_path / "out"
    first = vplan("solve", str(FIXTURES / "example.yaml"), "-o", str(out), "-q", "--time-limit", "5")
    assert first.returncode == 0, first.stderr
    next((out / "hosts").rglob("*.xml")).unlink()  # a file vplan wrote, removed: nothing of the user's
    result = vplan("solve", str(FIXTURES / "unplaced.yaml"), "-o", str(out), "-q", "--time-limit", "5")
    assert result.returncode == 3, result.stderr
    assert [p.name for p in (out / "hosts").iterdir()] == ["kvm03"]  # the earlier plan (kvm1, kvm2) is gone whole
    assert json.loads((out / "plan.json").read_text())["scenario"] == "unplaced"
    assert not list(tmp_path.glob(".out.*"))


def test_same_seed_gives_byte_identical_plan(tmp_path):
    outs = []
    for run in ("a", "b"):
        out = tmp_path / run
        result = vplan("solve", str(FIXTURES / "unplaced.yaml"), "-o", str(out), "-q", "--seed", "7", "--time-limit", "3", "--deterministic")
        assert result.returncode == 3
        outs.append(out)
    files_a = sorted(p.relative_to(outs[0]) for p in outs[0].rglob("*.xml"))
    files_b = sorted(p.relative_to(outs[1]) for p in outs[1].rglob("*.xml"))
    assert files_a == files_b and files_a
    for rel in files_a:
        assert (outs[0] / rel).read_bytes() == (outs[1] / rel).read_bytes()
    doc_a, doc_b = (json.loads((o / "plan.json").read_text()) for o in outs)
    timing = ("solve_s", "greedy_s", "first_plan_s", "patterns_s", "improve_s", "cpsat_s", "heuristics_s")
    for doc in (doc_a, doc_b):
        for key in timing:
            doc["solver"].pop(key, None)
        doc["headline"].pop("solve_s")
    assert doc_a == doc_b
