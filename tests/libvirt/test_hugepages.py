"""`vplan hugepages` (planner.libvirt.hugepages): pages per host node and size, kernel command line, sysfs values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from planner.cli.main import app
from planner.libvirt.hugepages import HugepageError, read_plan_pages
from planner.model.units import parse_page_kib

PLAN = Path(__file__).parents[1] / "fixtures" / "hugepages" / "plan"
REPO = Path(__file__).resolve().parents[2]


def sysfs(node: int, size_kib: int) -> str:
    return f"/sys/devices/system/node/node{node}/hugepages/hugepages-{size_kib}kB/nr_hugepages"


def test_pages_per_node_and_size():
    pages = read_plan_pages(PLAN)
    assert [h.host for h in pages.hosts] == ["kvm1", "power1"]  # kvm2 uses no hugepages
    kvm1 = pages.hosts[0]
    assert kvm1.need == {1048576: {0: 24, 1: 16}, 2048: {1: 1536}}
    assert kvm1.pool[1048576] == {0: 32, 1: 16} and kvm1.pool[2048] == {1: 2048}
    assert kvm1.kernel_cmdline() == "default_hugepagesz=1G hugepagesz=1G hugepages=40"
    assert kvm1.kernel_cmdline_per_node() == "default_hugepagesz=1G hugepagesz=1G hugepages=0:24,1:16"
    values = dict(kvm1.sysfs())
    assert values[sysfs(0, 1048576)] == 24 and values[sysfs(1, 1048576)] == 16 and values[sysfs(2, 1048576)] == 0
    assert values[sysfs(1, 2048)] == 1536 and values[sysfs(0, 2048)] == 0
    power = pages.hosts[1]
    assert power.need == {16777216: {8: 2}}
    assert power.kernel_cmdline() == "default_hugepagesz=16G hugepagesz=16G hugepages=2"
    assert dict(power.sysfs())[sysfs(8, 16777216)] == 2 and dict(power.sysfs())[sysfs(0, 16777216)] == 0


def test_cli_text_and_json():
    result = CliRunner().invoke(app, ["hugepages", str(PLAN)])
    assert result.exit_code == 0
    assert "kvm1:\n" in result.stdout and "  node 0: 24 x 1G (model pool 32)" in result.stdout
    assert f"echo 1536 > {sysfs(1, 2048)}" in result.stdout
    assert "per-node form (Linux >= 5.16): default_hugepagesz=1G hugepagesz=1G hugepages=0:24,1:16" in result.stdout
    data = json.loads(CliRunner().invoke(app, ["hugepages", str(PLAN), "--json"]).stdout)
    kvm1 = data["hosts"]["kvm1"]
    assert kvm1["pages"] == {"2M": {"1": 1536}, "1G": {"0": 24, "1": 16}}
    assert kvm1["kernel_cmdline"] == "default_hugepagesz=1G hugepagesz=1G hugepages=40"
    assert {"path": sysfs(0, 1048576), "value": 24} in kvm1["sysfs"]
    assert "kvm2" not in data["hosts"]


def test_bad_plan_dir(tmp_path):
    with pytest.raises(HugepageError, match="plan.json: not found"):
        read_plan_pages(tmp_path)
    result = CliRunner().invoke(app, ["hugepages", str(tmp_path)])
    assert result.exit_code == 2 and "not found" in result.stderr


def test_quickstart_plan(tmp_path, quickstart_plan):
    """On a real plan: the need per node is exactly what plan.json says is used, for every size."""
    from planner.analysis.output import write_plan

    out = write_plan(quickstart_plan, tmp_path / "o")
    doc = json.loads((out / "plan.json").read_text())
    pages = {h.host: h for h in read_plan_pages(out).hosts}
    for host, entry in doc["hosts"].items():
        used = {(int(n), parse_page_kib(s)): c for n, u in entry["nodes"].items()
                for s, c in u["hugepages_used_pages"].items()
                if c}
        need = {(n, s): c for s, by_node in (pages[host].need.items() if host in pages else []) for n, c in
                by_node.items() if c}
        assert need == used, host
    one_g = sum(c for h in pages.values() for n, c in h.need.get(1048576, {}).items())
    assert one_g == 16  # db1 and db2, 8 GiB of 1G pages each
