"""`vplan apply` on domain XMLs with what libvirt allows around the parts vplan owns (tests/fixtures/apply/corpus):
memAccess/discard on cells, HMAT caches and interconnects, <vcpu current> with <vcpus>, DIMM and NVDIMM memory
devices, iothreadpin/vcpusched/emulatorsched/cachetune/memorytune, placement='auto', CRLF line endings.

Each merged file passes libvirt's validation (tests/libvirt_validate.py), keeps what it had byte for byte, and
keeps what libvirt needs to stay consistent; where that cannot be, the guest is refused with the reason and
nothing is written. In place, a backup is never overwritten."""

from __future__ import annotations

import os
import re
import shutil
import stat
from pathlib import Path

import pytest
from lxml import etree
from typer.testing import CliRunner

from planner.libvirt.apply import ApplyError, apply_plan
from planner.cli.main import app
from planner.io.loader import load_scenario
from tests.libvirt_validate import domain_errors
from tests.libvirt.test_apply import without_owned

CORPUS = Path(__file__).parents[1] / "fixtures" / "apply" / "corpus"
DOMAINS = CORPUS / "domains"
REFUSED = CORPUS / "refused"


@pytest.fixture(scope="module")
def solved(tmp_path_factory) -> Path:
    from planner.analysis.output import write_plan
    from planner.engine.solver import solve

    out = tmp_path_factory.mktemp("corpus") / "plan"
    plan = solve(load_scenario(CORPUS / "scenario.yaml"), time_limit_s=5, seed=0)
    assert not plan.unplaced_reasons
    write_plan(plan, out)
    return out


@pytest.fixture(scope="module")
def merged(solved, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus-apply") / "merged"
    result = apply_plan(solved, DOMAINS, out)
    assert sorted(result.written) == sorted(p.stem for p in DOMAINS.glob("*.xml"))
    return out


def root_of(path: Path) -> etree._Element:
    return etree.fromstring(path.read_bytes())


def test_every_merged_file_passes_libvirt_validation(merged):
    for path in sorted(merged.glob("*.xml")):
        assert domain_errors(path) is None, (path.name, domain_errors(path))


def test_parts_vplan_does_not_own_are_unchanged(merged):
    for path in sorted(merged.glob("*.xml")):
        original = (DOMAINS / path.name).read_bytes().decode()
        assert without_owned(path.read_bytes().decode()) == without_owned(original), path.name


def test_cells_keep_memaccess_and_discard(merged):
    cells = root_of(merged / "memaccess.xml").findall("cpu/numa/cell")
    assert len(cells) == 2
    assert [(c.get("memAccess"), c.get("discard")) for c in cells] == [("shared", "yes")] * 2
    # one old cell, two new ones: the one value goes on every cell (vhost-user needs shared memory on all)
    cells1 = root_of(merged / "memaccess1.xml").findall("cpu/numa/cell")
    assert [c.get("memAccess") for c in cells1] == ["shared", "shared"]
    text = (merged / "memaccess.xml").read_text()
    assert "<access mode='shared'/>" in text and "<driver type='virtiofs'/>" in text


def test_hmat_cache_and_interconnects_are_kept(merged):
    before, after = root_of(DOMAINS / "hmat.xml"), root_of(merged / "hmat.xml")

    def canon(e):
        e = etree.fromstring(etree.tostring(e, with_tail=False))
        for x in e.iter():
            x.text = x.text if x.text and x.text.strip() else None
            x.tail = None
        return etree.tostring(e, method="c14n")

    assert canon(after.find("cpu/numa/cell[@id='0']/cache")) == canon(before.find("cpu/numa/cell[@id='0']/cache"))
    assert canon(after.find("cpu/numa/interconnects")) == canon(before.find("cpu/numa/interconnects"))
    assert after.find("cpu/numa/cell[@id='1']/cache") is None
    assert len(after.findall("cpu/numa/interconnects/*")) == 3


def test_vcpu_current_and_vcpus_are_kept(merged):
    text = (merged / "vcpucurrent.xml").read_text()
    vcpu = root_of(merged / "vcpucurrent.xml").find("vcpu")
    assert vcpu.get("current") == "2" and vcpu.text == "4"
    original = (DOMAINS / "vcpucurrent.xml").read_text()
    block = original[original.index("  <vcpus>"):original.index("</vcpus>") + len("</vcpus>")]
    assert block in text  # byte for byte
    assert len(root_of(merged / "vcpucurrent.xml").findall("cputune/vcpupin")) == 4  # pins for every vCPU


def test_cells_leave_room_for_memory_devices(merged, solved):
    # libvirt: <memory> = cells + DIMM/NVDIMM sizes; the plan gave the guest's whole 3 GiB to its cells
    dimm = root_of(merged / "dimm.xml")
    cells = dimm.findall("cpu/numa/cell")
    assert len(cells) == 2 and all(c.get("unit") == "KiB" for c in cells)
    assert sum(int(c.get("memory")) for c in cells) == 3145728 - 1048576  # two 512 MiB DIMMs on cell 0
    plan_cells = root_of(next(solved.rglob("dimm.xml"))).findall("cpu/numa/cell")
    assert int(cells[0].get("memory")) == int(plan_cells[0].get("memory")) - 1048576
    assert int(cells[1].get("memory")) == int(plan_cells[1].get("memory"))
    original = (DOMAINS / "dimm.xml").read_text()
    devices = original[original.index("  <devices>"):]
    assert (merged / "dimm.xml").read_text().endswith(devices)
    nvdimm = root_of(merged / "nvdimm.xml")
    assert [c.get("memory") for c in nvdimm.findall("cpu/numa/cell")] == ["2097152"]
    assert nvdimm.find("memoryBacking/hugepages/page").get("size") == "2048"
    assert nvdimm.find("devices/memory/target/label/size").text == "128"


def test_other_cputune_children_are_kept_in_place(merged, solved):
    text = (merged / "tuned.xml").read_text()
    original = (DOMAINS / "tuned.xml").read_text()
    kept = original[original.index("    <iothreadpin iothread='1'"):original.index("  </cputune>")]
    assert kept in text  # iothreadpin, emulatorsched, vcpusched, iothreadsched, cachetune, memorytune
    cputune = root_of(merged / "tuned.xml").find("cputune")
    assert [p.get("vcpu") for p in cputune.findall("vcpupin")] == ["0", "1", "2", "3"]
    planned = root_of(next(solved.rglob("tuned.xml"))).find("cputune/emulatorpin").get("cpuset")
    assert cputune.find("emulatorpin").get("cpuset") == planned != "0"  # the plan's emulator pin, not the old one
    assert "<iothreads>2</iothreads>" in text


def test_placement_auto_is_replaced_by_the_plan(merged):
    root = root_of(merged / "auto.xml")
    assert root.find("vcpu").get("placement") == "static"
    assert root.find("numatune/memory").get("placement") is None
    assert root.find("numatune/memory").get("nodeset") is not None


def test_crlf_files_stay_crlf(merged):
    data = (merged / "crlf.xml").read_bytes()
    assert data.count(b"\r\n") == data.count(b"\n") > 20
    assert b"  <!-- written on Windows -->\r\n" in data
    assert b"<vcpupin" in data


@pytest.mark.parametrize("name, words", [
    ("hmat3", ["hmat3", "<interconnects>", "HMAT", "describe 3 cells", "numa: 3"]),
    ("dimmgone", ["dimmgone", "target guest cell 1", "the plan has cells 0", "numa: 2"]),
    ("mixedcells", ["mixedcells", "memAccess=shared", "numa: 4"]),
])
def test_what_cannot_stay_consistent_is_refused_with_the_reason(solved, tmp_path, name, words):
    domains = tmp_path / "domains"
    domains.mkdir()
    shutil.copy(REFUSED / f"{name}.xml", domains)
    with pytest.raises(ApplyError) as info:
        apply_plan(solved, domains, tmp_path / "out")
    message = "\n".join(info.value.problems)
    for word in words:
        assert word in message, (word, message)
    assert str(domains / f"{name}.xml") in message
    assert not (tmp_path / "out").exists()
    result = CliRunner().invoke(app, ["apply", str(solved), "--domains", str(domains), "-o", str(tmp_path / "o2")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["domains"]


def test_in_place_never_overwrites_a_backup_and_keeps_the_mode(solved, tmp_path):
    domains = tmp_path / "domains"
    shutil.copytree(DOMAINS, domains)
    target = domains / "dimm.xml"
    os.chmod(target, 0o600)
    original = target.read_bytes()
    runner = CliRunner()
    first = runner.invoke(app, ["apply", str(solved), "--domains", str(domains), "--in-place"])
    assert first.exit_code == 0, first.output
    assert (domains / "dimm.xml.bak").read_bytes() == original
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    merged = target.read_bytes()
    assert merged != original
    # again: every file is already as planned, nothing is rewritten and no backup made
    second = runner.invoke(app, ["apply", str(solved), "--domains", str(domains), "--in-place"])
    assert second.exit_code == 0, second.output
    assert "already as planned" in second.output
    assert not list(domains.glob("*.bak.1"))
    # the domain changed since: a new backup beside the first, which keeps the original
    target.write_bytes(original)
    third = runner.invoke(app, ["apply", str(solved), "--domains", str(domains), "--in-place"])
    assert third.exit_code == 0, third.output
    assert (domains / "dimm.xml.bak").read_bytes() == original
    assert (domains / "dimm.xml.bak.1").read_bytes() == original
    assert target.read_bytes() == merged
    assert "(backup " + str(domains / "dimm.xml.bak.1") + ")" in third.output
    assert not [p for p in domains.iterdir() if p.name.startswith(".")]  # no temporary left
