"""`vplan apply` (planner.libvirt.apply): a plan merged into full, realistic domain XMLs (tests/fixtures/apply/domains:
disks, interfaces, comments, other cputune/memoryBacking/cpu children, 4-space indentation with double quotes,
self-closing <cpu/>, missing <cputune>/<numatune>/<cpu>).

Round trip: the merged files pass libvirt's schema and `virsh define --validate`, `vplan check` finds them clean,
and everything vplan does not own is unchanged (canonicalised subtrees, and byte for byte around the edits)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from lxml import etree

from planner.libvirt.apply import ApplyError, apply_plan
from planner.io.loader import load_scenario
from tests.libvirt_validate import domain_errors
from tests.conftest import vplan

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "scenarios" / "quickstart.yaml"
DOMAINS = Path(__file__).parents[1] / "fixtures" / "apply" / "domains"
GUESTS = ("big1", "cache1", "db1", "ded1", "rt1", "web01")

#: what vplan owns: (parent XPath, child tag); removing these from before and after must leave equal documents
OWNED = [(".", "vcpu"), (".", "numatune"), ("cputune", "vcpupin"), ("cputune", "emulatorpin"), ("cpu", "topology"),
         ("cpu", "numa"), ("memoryBacking", "hugepages")]


@pytest.fixture(scope="module")
def solved(tmp_path_factory) -> Path:
    from planner.analysis.output import write_plan
    from planner.engine.solver import solve

    out = tmp_path_factory.mktemp("qs") / "out"
    write_plan(solve(load_scenario(QUICKSTART), time_limit_s=20, seed=0), out)
    return out


@pytest.fixture(scope="module")
def merged(solved, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("apply") / "merged"
    result = apply_plan(solved, DOMAINS, out)
    assert sorted(result.written) == sorted(GUESTS)
    return out


def files(root: Path) -> dict[str, Path]:
    return {p.stem: p for p in root.rglob("*.xml")}


def without_owned(path_or_text) -> bytes:
    """The document without vplan's parts (and without containers left empty), canonicalised with comments."""
    text = path_or_text.read_text() if isinstance(path_or_text, Path) else path_or_text
    root = etree.fromstring(text.encode())
    for parent_path, tag in OWNED:
        parent = root if parent_path == "." else root.find(parent_path)
        if parent is not None:
            for child in parent.findall(tag):
                parent.remove(child)
    for tag in ("cputune", "memoryBacking", "cpu"):
        element = root.find(tag)
        if element is not None and len(element) == 0 and not element.attrib:
            root.remove(element)
    for element in root.iter():
        if element.text is not None and not element.text.strip():
            element.text = None
        if element.tail is not None and not element.tail.strip():
            element.tail = None
    return etree.tostring(root, method="c14n", with_comments=True)


def test_merged_files_validate_with_libvirt(merged):
    for name, path in files(merged).items():
        assert domain_errors(path) is None, (name, domain_errors(path))


def test_parts_vplan_does_not_own_are_unchanged(merged):
    for name, path in files(merged).items():
        original = files(DOMAINS)[name]
        assert without_owned(path) == without_owned(original), name


def test_bytes_outside_the_edits_are_kept(merged):
    for name, path in files(merged).items():
        before, after = files(DOMAINS)[name].read_text(), path.read_text()
        head = before[: before.index("<name>")]
        assert after.startswith(head), name  # leading comments, declaration, root start tag
        tail = before[before.index("<devices>"):]
        assert after.endswith(tail), name  # devices and everything after them, byte for byte
        if "<os>" in before and "<cpu" in before:
            block = before[before.index("<os>"):before.index("<cpu")]
            assert block in after, name  # <os>, <features> etc. untouched
    db1 = files(merged)["db1"].read_text()
    assert "<!-- old hand pinning, to be replaced by the planner -->" in db1
    assert "    <shares>2048</shares>\n" in db1 and "    <period>100000</period>\n    <quota>-1</quota>\n" in db1
    assert "<nosharepages/>\n    <locked/>" in db1
    assert "<entry name='manufacturer'>Example &amp; Co</entry>" in db1
    rt1 = files(merged)["rt1"].read_text()
    assert '        <vcpupin vcpu="0"' in rt1  # the file's indentation and quote style
    assert '<iothreadpin iothread="1" cpuset="0"/>' in rt1
    assert '<cpu mode="host-passthrough" check="none" migratable="off">' in rt1


def test_owned_parts_are_the_plans(merged, solved):
    plan = json.loads((solved / "plan.json").read_text())
    for name, path in files(merged).items():
        mine = etree.parse(str(path)).getroot()
        theirs = etree.parse(str(solved / plan["guests"][name]["xml"])).getroot()
        for xpath in ("vcpu", "numatune", "cpu/topology", "cpu/numa", "memoryBacking/hugepages"):
            a, b = mine.find(xpath), theirs.find(xpath)
            assert (a is None) == (b is None), (name, xpath)
            if a is not None:
                assert etree.tostring(a, method="c14n").strip() == etree.tostring(b, method="c14n").strip() or \
                    _same(a, b), (name, xpath)
        pins = [(p.tag, dict(p.attrib)) for p in mine.find("cputune") if p.tag in ("vcpupin", "emulatorpin")]
        want = [(p.tag, dict(p.attrib)) for p in theirs.find("cputune")]
        assert pins == want, name
    ded1 = etree.parse(str(files(merged)["ded1"])).getroot()
    assert ded1.find("memoryBacking") is None  # its only child was <hugepages/>; the plan has no pages for ded1
    cache1 = etree.parse(str(files(merged)["cache1"])).getroot()
    assert [c.tag for c in cache1.find("memoryBacking")] == ["hugepages", "source", "access"]


def _same(a, b) -> bool:
    def norm(e):
        return [(x.tag, dict(x.attrib), (x.text or "").strip()) for x in e.iter()]
    return norm(a) == norm(b)


def test_check_finds_the_merged_domains_clean(merged, solved):
    plan = json.loads((solved / "plan.json").read_text())
    maps = [x for g in GUESTS for x in ("--map", f"{g}={plan['guests'][g]['host']}")]
    result = vplan("check", str(QUICKSTART), "--domains", str(merged / "kvm-a"), "--domains", str(merged / "kvm-b"),
                   *maps)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "6 guests on" in result.stdout and "no findings" in result.stdout


def test_apply_is_idempotent(merged, solved, tmp_path):
    again = tmp_path / "again"
    apply_plan(solved, merged, again)
    for name, path in files(again).items():
        assert path.read_bytes() == files(merged)[name].read_bytes(), name


def test_refuses_a_domain_of_another_size_naming_the_guest(solved, tmp_path):
    domains = tmp_path / "domains"
    shutil.copytree(DOMAINS, domains)
    db1 = domains / "kvm-a" / "db1.xml"
    db1.write_text(db1.read_text().replace("cpuset='8-15'>8</vcpu>", "cpuset='8-15'>6</vcpu>"))
    web01 = domains / "kvm-a" / "web01.xml"
    web01.write_text(web01.read_text().replace("<memory unit='GiB'>4</memory>", "<memory unit='GiB'>6</memory>"))
    out = tmp_path / "out"
    with pytest.raises(ApplyError) as err:
        apply_plan(solved, domains, out)
    text = str(err.value)
    assert "db1: the domain has 6 vCPUs" in text and "the plan 8" in text
    assert "web01: the domain has 6291456 KiB of memory" in text
    assert not out.exists()
    result = vplan("apply", str(solved), "--domains", str(domains), "-o", str(out))
    assert result.exit_code == 2 and "db1: the domain has 6 vCPUs" in result.stderr and not out.exists()


def test_in_place_keeps_backups(solved, merged, tmp_path):
    domains = tmp_path / "domains"
    shutil.copytree(DOMAINS, domains)
    result = vplan("apply", str(solved), "--domains", str(domains), "--in-place")
    assert result.exit_code == 0, result.stderr
    for name, path in files(domains).items():
        if path.suffix != ".xml":
            continue
        backup = path.with_name(path.name + ".bak")
        assert backup.read_bytes() == files(DOMAINS)[name].read_bytes()
        assert path.read_bytes() == files(merged)[name].read_bytes()


def test_cli_needs_out_or_in_place(solved):
    result = vplan("apply", str(solved), "--domains", str(DOMAINS))
    assert result.exit_code == 2 and "--in-place" in result.stderr
    result = vplan("apply", str(DOMAINS), "--domains", str(DOMAINS), "-o", "/tmp/never-written")
    assert result.exit_code == 2 and "plan.json: not found" in result.stderr
    assert not Path("/tmp/never-written").exists()


def test_the_owned_set_is_the_declared_set():
    """apply's owned parts (what it replaces, strips and verifies) are derived from the declarations in
    planner.libvirt.elements, in libvirt's order: the same set as this file's hand-written OWNED."""
    from planner.libvirt.apply import CELL_OWNED_ATTRS, OWNED as APPLY_OWNED
    from planner.libvirt.elements import NumaCell, Vcpu, owned_parts, parent_path

    assert sorted((path, tag) for path, tags in APPLY_OWNED.items() for tag in tags) == sorted(OWNED)
    assert [(parent_path(p), p.TAG) for p in owned_parts()] == [
        ("memoryBacking", "hugepages"), (".", "vcpu"), ("cputune", "vcpupin"), ("cputune", "emulatorpin"),
        (".", "numatune"), ("cpu", "topology"), ("cpu", "numa")]
    assert CELL_OWNED_ATTRS == {a.name for a in NumaCell.ATTRS} == {"id", "cpus", "memory", "unit"}
    assert Vcpu.KEPT == ("current",)


def test_an_undeclared_cell_attribute_is_kept_and_a_declared_one_replaced():
    from planner.libvirt.apply import merge_domain

    domain = ("<domain type='kvm'>\n  <name>g</name>\n  <memory unit='KiB'>1048576</memory>\n  <vcpu>1</vcpu>\n"
              "  <cpu mode='host-model'>\n    <numa>\n      <cell id='0' cpus='0' memory='1' unit='GiB' "
              "memAccess='shared'/>\n    </numa>\n  </cpu>\n</domain>\n")
    plan = etree.fromstring(
        "<domain><memory unit='KiB'>1048576</memory><vcpu placement='static'>1</vcpu><cputune><vcpupin vcpu='0' "
        "cpuset='3'/><emulatorpin cpuset='2'/></cputune><numatune><memory mode='strict' nodeset='1'/></numatune>"
        "<cpu><topology sockets='1' dies='1' cores='1' threads='1'/><numa><cell id='0' cpus='0' memory='1048576' "
        "unit='KiB'/></numa></cpu></domain>")
    merged = merge_domain(domain, plan, "g", "g.xml")
    assert "<cell id='0' cpus='0' memory='1048576' unit='KiB' memAccess='shared'/>" in merged
    assert "  <vcpu placement='static'>1</vcpu>\n  <cputune>\n    <vcpupin vcpu='0' cpuset='3'/>\n" in merged
    assert "<cpu mode='host-model'>\n    <topology sockets='1' dies='1' cores='1' threads='1'/>\n    <numa>" in merged
