"""`vplan apply --live` (planner.libvirt.live): virsh commands for running guests and what needs a restart; PLAN given as
the output directory or its plan.json; the hugetlbfs steps of `vplan hugepages`."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from planner.cli.main import app
from planner.libvirt.live import live_changes
from planner.io.loader import load_scenario_text
from planner.analysis.output import write_plan
from planner.engine.solver import solve

SCENARIO = """version: 1
name: live
host_models:
  m:
    nodes:
      - {id: 0, cpus: "0-7", memory: 16GiB, hugepages: {2M: 1024}}
      - {id: 1, cpus: "8-15", memory: 16GiB}
    reserved: {cpus: "0"}
hosts: [{name: h1, model: m}]
guests:
  - {name: web, vcpus: 2, memory: 1GiB, load: 0.3}
  - {name: db, vcpus: 2, memory: 1GiB, cpu: dedicated, emulator: isolate, hugepages: 2M, numa: 1}
  - {name: rx, vcpus: 1, memory: 512MiB, memory_mode: restrictive}
  - {name: wide, vcpus: 2, memory: 1GiB, numa: 2}
"""

runner = CliRunner()


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("live") / "out"
    write_plan(solve(load_scenario_text(SCENARIO), time_limit_s=2), out)
    return out


def _running(planned: Path, tmp_path: Path, edit=None) -> Path:
    """The plan's domains as `virsh dumpxml` of running guests would show them (id='N'), optionally edited."""
    running = tmp_path / "running"
    shutil.copytree(planned / "hosts", running)
    for i, path in enumerate(sorted(running.rglob("*.xml")), start=1):
        text = path.read_text().replace("<domain type='kvm'>", f"<domain type='kvm' id='{i}'>", 1)
        if edit is not None:
            text = edit(path.stem, text)
        path.write_text(text)
    return running


def test_guests_as_planned_need_nothing(planned: Path, tmp_path: Path) -> None:
    live = live_changes(planned, [_running(planned, tmp_path)])
    assert live.steps == [] and live.restarts == []
    assert live.unchanged == ["db", "rx", "web", "wide"]
    assert "true  # nothing to change live" in live.script()


def test_repins_live_and_lists_restarts(planned: Path, tmp_path: Path) -> None:
    db = json.loads((planned / "plan.json").read_text())["guests"]["db"]
    rx_node = json.loads((planned / "plan.json").read_text())["guests"]["rx"]["nodes"][0]
    other = 1 - rx_node

    def edit(guest: str, text: str) -> str:
        if guest == "db":  # vCPU 0 and the emulator moved away; hugepages dropped
            text = text.replace("<vcpupin vcpu='0' cpuset=", "<vcpupin vcpu='0' cpuset='15' old=", 1)
            text = text.replace("<emulatorpin cpuset=", "<emulatorpin cpuset='0' old=", 1)
            start, end = text.index("  <memoryBacking>"), text.index("</memoryBacking>\n") + len("</memoryBacking>\n")
            text = text[:start] + text[end:]
        if guest == "rx":  # restrictive, one cell: its memory node can move live
            text = text.replace(f"nodeset='{rx_node}'", f"nodeset='{other}'")
        if guest == "wide":  # strict, two cells: memory nodes swapped
            text = text.replace("cellid='0' mode='strict' nodeset='0'", "cellid='0' mode='strict' nodeset='X'")
            text = text.replace("cellid='1' mode='strict' nodeset='1'", "cellid='1' mode='strict' nodeset='0'")
            text = text.replace("nodeset='X'", "nodeset='1'")
        return text

    live = live_changes(planned / "plan.json", [_running(planned, tmp_path, edit)])
    argv = [step.argv for step in live.steps]
    pin0 = re.search(r"<vcpupin vcpu='0' cpuset='([^']*)'", (planned / "hosts" / "h1" / "db.xml").read_text())[1]
    assert pin0 != "15" and ("vcpupin", "db", "0", pin0, "--live") in argv
    assert not any(a[:3] == ("vcpupin", "db", "1") for a in argv)
    assert ("emulatorpin", "db", db["emulator_pcpus"], "--live") in argv
    assert ("numatune", "rx", "--nodeset", str(rx_node), "--live") in argv
    assert not any(a[1] == "wide" for a in argv)
    restarts = {(r.guest, r.what.split(" ")[0]) for r in live.restarts}
    assert restarts == {("db", "hugepages"), ("wide", "memory")}
    wide = next(r for r in live.restarts if r.guest == "wide")
    assert "restrictive" in wide.why and "migrate" in wide.why
    script = live.script()
    assert "$VIRSH emulatorpin db" in script and "#   wide on h1: memory nodes" in script
    assert live.unchanged == ["web"]


def test_vcpu_count_and_another_host_need_a_restart(planned: Path, tmp_path: Path) -> None:
    def edit(guest: str, text: str) -> str:
        return text.replace("<vcpu placement='static'>2</vcpu>", "<vcpu placement='static'>4</vcpu>") \
            if guest == "web" else text

    running = _running(planned, tmp_path, edit)
    (running / "h2").mkdir()
    (running / "h1" / "rx.xml").rename(running / "h2" / "rx.xml")
    (running / "h1" / "wide.xml").write_text((running / "h1" / "wide.xml").read_text().replace(" id='4'", ""))
    live = live_changes(planned, [running])
    assert [(r.guest, r.what) for r in live.restarts] == [("web", "vCPU count 4 -> 2")]
    assert live.not_running == ["wide"] and live.unchanged == ["db", "rx"]  # h2 is no host of the plan: rx as is
    assert [s for s in live.steps if s.guest == "web"] == []


def test_cli_live_writes_the_script(planned: Path, tmp_path: Path) -> None:
    running = _running(planned, tmp_path, lambda g, t: t.replace("<emulatorpin cpuset=", "<emulatorpin cpuset='3' o=")
                       if g == "web" else t)
    script = tmp_path / "live.sh"
    result = runner.invoke(app, ["apply", str(planned / "plan.json"), "--domains", str(running), "--live",
                                 "-o", str(script)])
    assert result.exit_code == 0, result.output
    assert script.stat().st_mode & 0o111
    assert "$VIRSH emulatorpin web" in script.read_text()
    assert "1 live commands for 1 guests; 0 changes need a restart" in result.stderr
    doc = runner.invoke(app, ["apply", str(planned), "--domains", str(running), "--live", "--json"])
    assert json.loads(doc.stdout)["commands"][0]["argv"][:3] == ["virsh", "emulatorpin", "web"]


def test_apply_and_hugepages_take_the_plan_file(planned: Path, tmp_path: Path) -> None:
    out = tmp_path / "applied"
    result = runner.invoke(app, ["apply", str(planned / "plan.json"), "--domains", str(planned / "hosts"),
                                 "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "h1" / "db.xml").read_text() == (planned / "hosts" / "h1" / "db.xml").read_text()
    by_dir = runner.invoke(app, ["hugepages", str(planned), "--json"])
    by_file = runner.invoke(app, ["hugepages", str(planned / "plan.json"), "--json"])
    assert by_file.exit_code == 0 and json.loads(by_file.stdout)["hosts"] == json.loads(by_dir.stdout)["hosts"]
    other = tmp_path / "x.json"
    other.write_text("{}")
    bad = runner.invoke(app, ["hugepages", str(other)])
    assert bad.exit_code == 2 and "plan.json" in bad.stderr


def test_hugepages_gives_the_mount_and_libvirt_steps(planned: Path) -> None:
    result = runner.invoke(app, ["hugepages", str(planned)])
    assert result.exit_code == 0
    assert "mkdir -p /dev/hugepages-2M && mount -t hugetlbfs -o pagesize=2M hugetlbfs /dev/hugepages-2M" in result.stdout
    assert 'hugetlbfs_mount = ["/dev/hugepages-2M"]' in result.stdout
    assert "restart" in result.stdout
    host = json.loads(runner.invoke(app, ["hugepages", str(planned), "--json"]).stdout)["hosts"]["h1"]
    assert host["hugetlbfs"] == [{"page": "2M", "path": "/dev/hugepages-2M",
                                  "mount": "mkdir -p /dev/hugepages-2M && mount -t hugetlbfs -o pagesize=2M hugetlbfs "
                                           "/dev/hugepages-2M",
                                  "fstab": "hugetlbfs /dev/hugepages-2M hugetlbfs pagesize=2M 0 0"}]
    assert host["qemu_conf"] == 'hugetlbfs_mount = ["/dev/hugepages-2M"]'


def test_a_plan_naming_a_domain_outside_its_directory_is_refused(planned: Path, tmp_path: Path) -> None:
    """Found in review: --live read whatever path plan.json named. It now reads the plan as apply does."""
    from planner.libvirt.live import LiveError

    copy = tmp_path / "plan"
    shutil.copytree(planned, copy)
    document = json.loads((copy / "plan.json").read_text())
    document["guests"]["web"]["xml"] = "../../elsewhere.xml"
    (copy / "plan.json").write_text(json.dumps(document))
    with pytest.raises(LiveError) as info:
        live_changes(copy, [_running(planned, tmp_path)])
    assert info.value.problems == [f"{copy / 'plan.json'}: guests.web.xml: '../../elsewhere.xml' is not a file "
                                   f"inside {copy}"]
