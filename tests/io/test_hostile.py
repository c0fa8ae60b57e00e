"""Hostile input (issue 9): every input that used to hang, eat memory, crash or be wrongly accepted gets one clear
message naming the file and the key, exit 2, no traceback; ``vplan check`` on libvirt XML that vplan did not write
(a corpus in tests/fixtures/domains); and hypothesis fuzzing of the loader, the capture parsers and the domain
reader (time-bounded by max_examples)."""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from planner.verify.audit import AuditInputError, DomainFile, _read_domain, audit, read_domains, read_loads, read_mapping
from planner.hostimport.capture import CaptureError, import_host, parse_capabilities, parse_lscpu, parse_numactl, read_capture
from planner.io.loader import ScenarioError, load_scenario, load_scenario_text
from planner.model.units import parse_cpulist, parse_page_kib
from tests.conftest import vplan

FIX = Path(__file__).parents[1] / "fixtures"
DOMAINS = FIX / "domains"
SYSFS = FIX / "hostimport" / "sysfs-aarch64-sparse"
CAPS = FIX / "hostimport" / "x86-memory-tiers.xml"


def problems(path) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    return info.value.problems


def refused(result, *fragments: str) -> str:
    """Exit 2, no traceback, every fragment in the output."""
    out = result.output
    assert result.exit_code == 2, out
    assert "Traceback" not in out and not isinstance(result.exception, (TypeError, KeyError, IndexError)), out
    for fragment in fragments:
        assert fragment in out, out
    return out


def scenario(tmp_path: Path, body: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text("version: 1\nname: x\n" + body)
    return path


# ---------------------------------------------------------------------------------------------------------------
# 1. Hangs and unbounded memory


def laughs(levels: int) -> str:
    lines = ['  a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"  a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels)]
    return "guests:\n  - name: x\n" + "\n".join("  " + line for line in lines) + "\n"


def test_billion_laughs_is_refused_at_the_alias_that_crosses_the_limit(tmp_path):
    path = scenario(tmp_path, laughs(8))
    assert len(path.read_bytes()) < 800
    out = refused(vplan("validate", path), f"{path}: line 10: aliases expand this node to 1,111,111 values")
    assert "write the values out" in out


def test_small_alias_use_is_fine():
    text = ("version: 1\nname: x\nhost_models:\n  m: &m {nodes: [{id: 0, cpus: '0-7', memory: 64GiB}]}\n"
            "  n: *m\nhosts: [{name: h1, model: m}, {name: h2, model: n}]\n"
            "guests:\n  - &g {name: a, vcpus: 1, memory: 1GiB}\n  - {<<: *g, name: b}\n")
    assert [g.name for g in load_scenario_text(text, "s.yaml").guests] == ["a", "b"]


def test_recursive_alias_is_refused(tmp_path):
    refused(vplan("validate", scenario(tmp_path, "guests: &g [*g]\n")), "line 3: an alias is inside the node it names (recursive data)")


@pytest.mark.parametrize(("depth", "message"), [
    (100, "line 3: lists and mappings nested more than 64 deep"),
    (5000, "YAML syntax error"),  # libyaml's own limit comes first
])
def test_deep_nesting_is_refused(tmp_path, depth, message):
    path = scenario(tmp_path, "guests: " + "[" * depth + "]" * depth + "\n")
    refused(vplan("validate", path), f"{path}: ", message)


@pytest.mark.parametrize(("key", "target", "kind"), [
    ("include", "/dev/zero", "is a character device, not a regular file"),
    ("capabilities", "/dev/zero", "is a character device, not a regular file"),
    ("numactl", "/dev/urandom", "is a character device, not a regular file"),
    ("sysfs", "/dev/zero", "is a character device, not a regular file"),
    ("include", "fifo", "is a FIFO, not a regular file"),
    ("capabilities", "fifo", "is a FIFO, not a regular file"),
])
def test_devices_and_fifos_are_not_read(tmp_path, key, target, kind):
    os.mkfifo(tmp_path / "fifo")
    path = scenario(tmp_path, f"host_models:\n  m: {{{key}: {target}}}\nhosts: [{{name: h1, model: m}}]\n")
    refused(vplan("validate", path), f"{path}: host_models.m.{key}: ", kind)


def test_scenario_itself_a_fifo_or_too_large(tmp_path, monkeypatch):
    os.mkfifo(tmp_path / "fifo.yaml")
    refused(vplan("validate", tmp_path / "fifo.yaml"), "fifo.yaml: is a FIFO, not a regular file")
    import planner.io.loader

    monkeypatch.setattr(planner.io.loader, "MAX_SCENARIO_BYTES", 1000)
    big = scenario(tmp_path, "# " + "x" * 2000 + "\n")
    size = big.stat().st_size
    refused(vplan("validate", big), f"s.yaml: the file is {size} bytes, more than the 1000 bytes an input file may have")


@pytest.mark.parametrize(("cpus", "message"), [
    ("0-99999999", "CPU id 99999999 is too large (at most 65535)"),
    ([0, 4000000000], "CPU id 4000000000 is too large (at most 65535)"),
])
def test_cpu_ids_are_bounded_before_a_set_is_built(cpus, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_cpulist(cpus)


def test_capture_siblings_range_is_bounded(tmp_path):
    text = CAPS.read_text().replace("siblings='0,8'", "siblings='0-999999999'", 1)
    assert "0-999999999" in text
    (tmp_path / "c.xml").write_text(text)
    with pytest.raises(CaptureError, match="siblings: '0-999999999': CPU id 999999999 is too large"):
        read_capture(tmp_path / "c.xml")


def test_large_scenario_validates(tmp_path):
    """20,000 guests, one line each (1.7 MB): linear-time validation (libyaml; measured in the report)."""
    lines = ["version: 1", "name: big", "host_models:", "  m: {nodes: [{id: 0, cpus: '0-63', memory: 512GiB}]}",
             "hosts:", "  - {name: 'h[001-600]', model: m}", "guests:"]
    lines += [f"  - {{name: g{i:05d}, vcpus: 2, memory: 4GiB, load: 0.3}}" for i in range(20000)]
    path = tmp_path / "big.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert len(load_scenario(path).guests) == 20000


# ---------------------------------------------------------------------------------------------------------------
# 3. Wrong acceptance, leaked contents


def test_name_with_a_final_newline_is_refused(tmp_path):
    path = scenario(tmp_path, 'guests:\n  - {name: "g3\\n", vcpus: 1, memory: 1GiB}\n')
    assert problems(path) == [f"{path}: guests[0] (g3\\n).name: 'g3\\n' is not a valid name (letters, digits, '.', "
                              "'_', '-', starting with a letter or digit, at most 63 characters)"]


@pytest.mark.parametrize("text", ["3K", "3M", "0K", "12K", "32G"])
def test_page_sizes_are_powers_of_two(text):
    with pytest.raises(ValueError, match="not a page size"):
        parse_page_kib(text)


def test_scenario_page_size_3k_is_refused(tmp_path):
    path = scenario(tmp_path, "host_models:\n  m: {nodes: [{id: 0, cpus: '0-7', memory: 64GiB, hugepages: {3K: 4}}]}\n")
    assert problems(path) == [f"{path}: host_models.m.nodes[0].hugepages.3K: '3K' is not a page size (a power of two "
                              "from 4K to 16G, e.g. 4K, 64K, 2M, 1G)"]


def test_huge_node_id_is_refused(tmp_path):
    path = scenario(tmp_path, "host_models:\n  m: {nodes: [{id: 99999999999999999999, cpus: '0-7', memory: 64GiB}]}\n")
    assert problems(path) == [f"{path}: host_models.m.nodes[0].id: 99999999999999999999 is out of range (must be "
                              "0..4095)"]


def test_foreign_include_shows_none_of_its_content(tmp_path):
    secret = "".join(f"user{i}: secret-{i}\n" for i in range(300))
    (tmp_path / "shadow").write_text("root:$6$salt$hash:19000:0:99999:7:::\n" + secret)
    path = scenario(tmp_path, "host_models:\n  m: {include: shadow}\n")
    lines = problems(path)
    assert lines == [f"{tmp_path / 'shadow'}: not a host model: the file holds a mapping of 301 keys, none of them "
                     "known (expected a mapping with keys nodes, distances, cores, threads_per_core, reserved, arch, "
                     f"...); included by {path}: host_models.m.include"]
    assert "secret" not in "\n".join(lines)


def test_at_most_200_problems_are_shown(tmp_path):
    path = scenario(tmp_path, "guests:\n" + "".join(f"  - {{name: g{i}, vcpus: 0, memory: 1GiB}}\n"
                                                   for i in range(500)))
    lines = problems(path)
    assert len(lines) == 201 and lines[-1] == "... and 300 more problems (the first 200 are shown)"


def test_capture_page_size_zero_and_huge_cell_id(tmp_path):
    text = CAPS.read_text()
    (tmp_path / "zero.xml").write_text(text.replace("<pages unit='KiB' size='4'>", "<pages unit='KiB' size='0'>", 1))
    with pytest.raises(CaptureError, match=r"cell 0 <pages size>: '0' KiB is not a page size"):
        read_capture(tmp_path / "zero.xml")
    (tmp_path / "three.xml").write_text(text.replace("<pages unit='KiB' size='4'>", "<pages unit='KiB' size='3'>", 1))
    with pytest.raises(CaptureError, match=r"'3' KiB is not a page size"):
        read_capture(tmp_path / "three.xml")
    (tmp_path / "id.xml").write_text(text.replace("<cell id='0'>", "<cell id='99999999999999999999'>", 1))
    with pytest.raises(CaptureError, match=r"<cell>: id='99999999999999999999' is out of range \(at most 4095\)"):
        read_capture(tmp_path / "id.xml")


@pytest.mark.parametrize(("old", "new", "message"), [
    ("<cell id='0'>", "<cell id='¹'>", "<cell>: id='¹' is not a non-negative integer"),
    ("<sibling id='1' value='12'/>", "<sibling id='1' value='¹⁰'/>", "value='¹⁰' is not a non-negative integer"),
])
def test_capture_non_ascii_digits(tmp_path, old, new, message):
    text = CAPS.read_text()
    assert old in text
    (tmp_path / "c.xml").write_text(text.replace(old, new, 1))
    with pytest.raises(CaptureError, match=re.escape(message)):
        read_capture(tmp_path / "c.xml")


def test_sysfs_directory_is_not_searched_recursively(tmp_path):
    deep = tmp_path / "a" / "b" / "fixture"
    shutil.copytree(SYSFS, deep)
    result = vplan("host", "import", tmp_path)
    refused(result, f"{tmp_path}: no sys/devices/system/node/ at the top of this directory")
    assert "fixture" not in result.output  # not found two levels down


def test_two_snapshots_in_one_directory_are_refused(tmp_path):
    shutil.copytree(SYSFS, tmp_path / "h1")
    shutil.copytree(SYSFS, tmp_path / "h2")
    refused(vplan("host", "import", tmp_path), "h1, h2 hold snapshots: give one snapshot directory per host")
    assert import_host(tmp_path / "h1").model.arch == "aarch64"


def test_tarball_with_two_snapshots_and_a_cut_tarball(tmp_path):
    tarball = tmp_path / "two.tgz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(SYSFS / "sys", arcname="sys")
        tar.add(SYSFS / "sys", arcname="./sys")
    with pytest.raises(CaptureError, match="is in the tarball twice"):
        read_capture(tarball)
    good = tmp_path / "one.tgz"
    with tarfile.open(good, "w:gz") as tar:
        tar.add(SYSFS / "sys", arcname="sys")
    cut = tmp_path / "cut.tgz"
    cut.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    refused(vplan("host", "import", cut), f"{cut}: ")


def test_all_cpus_reserved_does_not_crash_the_bounds(tmp_path):
    path = scenario(tmp_path, "host_models:\n  m: {nodes: [{id: 0, cpus: '0-3', memory: 64GiB}], reserved: {cpus: "
                              "'0-3'}}\nhosts: [{name: h1, model: m}]\nguests: [{name: a, vcpus: 2, memory: 4GiB}]\n")
    result = vplan("solve", path, "-o", tmp_path / "out", "--time-limit", "2", "--quiet")
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output


# ---------------------------------------------------------------------------------------------------------------
# 2 and 4. Domain XML: tracebacks, then wrong findings


DOMAIN = """<domain type='kvm'>
  <name>g</name>
  <memory unit='GiB'>2</memory>
  <vcpu>2</vcpu>
  <cputune>
    <vcpupin vcpu='0' cpuset='0-1'/>
    <vcpupin vcpu='1' cpuset='4-7'/>
    <emulatorpin cpuset='0-1'/>
  </cputune>
  <numatune>
    <memnode cellid='0' mode='strict' nodeset='0'/>
    <memnode cellid='1' mode='strict' nodeset='1'/>
  </numatune>
  <cpu><numa>
    <cell id='0' cpus='0' memory='1' unit='GiB'><distances><sibling id='1' value='21'/></distances></cell>
    <cell id='1' cpus='1' memory='1' unit='GiB'/>
  </numa></cpu>
</domain>
"""


def check_one(tmp_path: Path, text: str, *extra: str):
    (tmp_path / "h1").mkdir(exist_ok=True)
    (tmp_path / "h1" / "g.xml").write_text(text)
    return vplan("check", DOMAINS / "host.yaml", "--domains", tmp_path, *extra)


def test_the_base_domain_is_clean(tmp_path):
    result = check_one(tmp_path, DOMAIN)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(("old", "new", "message"), [
    ("<vcpu>2</vcpu>", "<vcpu>²</vcpu>", "domain g: <vcpu> is '²', not a number 0..65536 (ASCII digits)"),
    ("<vcpu>2</vcpu>", "<vcpu>٢</vcpu>", "domain g: <vcpu> is '٢', not a number 0..65536 (ASCII digits)"),
    ("<vcpu>2</vcpu>", "<vcpu>4000000000</vcpu>", "<vcpu> is '4000000000', not a number 0..65536"),
    ("<vcpu>2</vcpu>", "<vcpu>99999999999999999999999</vcpu>", "<vcpu> is '99999999999999999999', not a number"),
    ("vcpupin vcpu='0'", "vcpupin vcpu='²'", "<vcpupin vcpu> is '²', not a number 0..65536 (ASCII digits)"),
    ("cpuset='4-7'", "cpuset='0-99999999'", "<vcpupin vcpu='1' cpuset>: '0-99999999': CPU id 99999999 is too large"),
    ("<cell id='0'", "<cell id='¹'", "<numa><cell id> is '¹', not a number 0..65536 (ASCII digits)"),
    ("value='21'", "value='¹⁰'", "<cell id='0'> <sibling value> is '¹⁰', not a number 0..255 (ASCII digits)"),
    ("cellid='1'", "cellid='٢'", "<memnode cellid> is '٢', not a number"),
    ("<domain type='kvm'>", "<!DOCTYPE d [<!ENTITY x 'g'>]><domain type='kvm'>",
     "the document has a <!DOCTYPE> (entity declarations): libvirt domain XML has none"),
    ("<memory unit='GiB'>2</memory>", "<memory unit='GiB'>9999999999</memory>", "more than 4 PiB"),
])
def test_domain_values_get_a_message(tmp_path, old, new, message):
    assert old in DOMAIN
    result = check_one(tmp_path, DOMAIN.replace(old, new, 1))
    refused(result, str(tmp_path / "h1" / "g.xml"), message)


def test_entity_is_never_expanded(tmp_path):
    text = DOMAIN.replace("<domain type='kvm'>", "<!DOCTYPE d [<!ENTITY n 'evil'>]><domain type='kvm'>")
    text = text.replace("<name>g</name>", "<name>&n;</name>")
    refused(check_one(tmp_path, text), "<!DOCTYPE>")


def test_domain_file_kinds(tmp_path):
    os.mkfifo(tmp_path / "fifo.xml")
    with pytest.raises(AuditInputError, match="fifo.xml: is a FIFO, not a regular file"):
        read_domains([str(tmp_path / "fifo.xml")], {"g": "h1"})
    (tmp_path / "map").write_bytes(b"\x7fELF\x02\x01\x01\x00\xff\xfe")
    with pytest.raises(AuditInputError, match="map: cannot read file: not UTF-8 text"):
        read_mapping(str(tmp_path / "map"))
    (tmp_path / "loads").write_text("g ²\n")
    with pytest.raises(AuditInputError, match=r"loads: g: '²' is not a number"):
        read_loads(str(tmp_path / "loads"))
    (tmp_path / "laughs.yaml").write_text("version: 1\nname: x\n" + laughs(8))
    with pytest.raises(AuditInputError, match="expands the document to"):
        read_mapping(str(tmp_path / "laughs.yaml"))


def test_partial_distances_are_filled_in_as_libvirt_does(tmp_path):
    """Only 0 -> 1 given: libvirt adds 0 -> 0 = 10, 1 -> 1 = 10 and 1 -> 0 = 21; no findings."""
    assert check_one(tmp_path, DOMAIN).exit_code == 0
    wrong = DOMAIN.replace("value='21'", "value='31'")
    result = check_one(tmp_path, wrong)
    assert result.exit_code == 1
    assert re.findall(r"\[distances\][^\n]*", result.output) == [
        "[distances] g on h1: cell 0 -> cell 1 distance is 31, but the host's node 0 -> node 1 distance is 21",
        "[distances] g on h1: cell 1 -> cell 0 distance is 31, but the host's node 1 -> node 0 distance is 21"]
    lonely = DOMAIN.replace("<distances><sibling id='1' value='21'/></distances>",
                            "<distances><sibling id='0' value='10'/></distances>")
    result = check_one(tmp_path, lonely)
    assert re.findall(r"\[distances\][^\n]*", result.output) == [
        "[distances] g on h1: no <distances> sibling between cells 0 and 1 (host distance node 0 -> node 1 is 21)"]


def read(text: str, scenario_path: Path = DOMAINS / "host.yaml"):
    sc = load_scenario(scenario_path)
    root = etree.fromstring(text.encode())
    return _read_domain(DomainFile("g.xml", "h1", root, "g"), sc.model_of("h1"))


def test_dimm_memory_is_counted_in_its_cell_and_nvdimm_is_not():
    r = read((DOMAINS / "h1" / "dimm.xml").read_text())
    assert [(c[0], c[2], c[3]) for c in r.cells] == [(0, 786432, 0), (1, 786432, 1)]
    assert r.memory_kib == 1572864  # <memory> 2 GiB minus the file-backed 512 MiB NVDIMM


def test_page_nodeset_names_guest_cells():
    r = read((DOMAINS / "h1" / "pages.xml").read_text())
    assert [(c[0], c[4]) for c in r.cells] == [(0, None), (1, 1048576)]
    assert r.page_kib == 1048576


def test_cells_without_id_and_domain_without_memory():
    text = DOMAIN.replace("<memory unit='GiB'>2</memory>", "").replace("<cell id='0' ", "<cell ")
    text = text.replace("<cell id='1' ", "<cell ")
    r = read(text)
    assert [(c[0], c[2], c[3]) for c in r.cells] == [(0, 1048576, 0), (1, 1048576, 1)] and r.memory_kib == 2097152


def test_unbound_cells_are_unknown_not_node_0(tmp_path):
    result = vplan("check", DOMAINS / "host.yaml", "--domains", FIX / "domains-bad" / "unbound.xml", "--map", "unbound=h1")
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.startswith("[")]
    assert lines == [
        "[numatune] unbound on h1: no <numatune>: the guest's memory is not bound to a host node and may cross nodes",
        "[numatune] unbound on h1: cell 0 memory is not bound to one node and its vCPUs are not pinned to one node "
        "either: its host node is unknown, so its memory and vCPUs are not checked against a node",
        "[numatune] unbound on h1: cell 1 memory is not bound to one node and its vCPUs are not pinned to one node "
        "either: its host node is unknown, so its memory and vCPUs are not checked against a node"]


def test_own_plan_on_a_two_cpu_host_is_clean_without_the_scenario(tmp_path):
    """Two shared guests on the one-CPU shared pool and a dedicated guest: the shared guests each have a pCPU
    'to themselves' by their own pins, but share it with each other: inferred shared, from the whole host."""
    (tmp_path / "m.yaml").write_text('nodes: [{id: 0, cpus: "0-1", memory: 8GiB}]\n')
    path = scenario(tmp_path, "host_models:\n  m: {include: m.yaml}\nhosts: [{name: h1, model: m}]\nguests:\n"
                              "  - {name: d1, vcpus: 1, memory: 1GiB, cpu: dedicated}\n"
                              "  - {name: s1, vcpus: 1, memory: 1GiB, load: 0.3}\n"
                              "  - {name: s2, vcpus: 1, memory: 1GiB, load: 0.3}\n")
    assert vplan("solve", path, "-o", tmp_path / "out", "--time-limit", "2", "--quiet").exit_code == 0
    (tmp_path / "loads").write_text("s1 0.3\ns2 0.3\n")
    result = vplan("check", "--host", f"h1={tmp_path / 'm.yaml'}", "--domains", tmp_path / "out", "--loads",
                   tmp_path / "loads")
    assert result.exit_code == 0, result.output
    assert "3 guests on 1 hosts: no findings" in result.output


def test_domain_corpus_findings_are_exact():
    """Domains written for the project with what libvirt allows around what vplan owns: memAccess/discard, HMAT
    caches and interconnects, vcpu current and <vcpus>, DIMM + NVDIMM, iothreadpin, vcpusched, emulatorsched,
    cachetune, placement='auto', CRLF line endings, per-cell hugepages, cells without id."""
    result = vplan("check", DOMAINS / "host.yaml", "--domains", DOMAINS, "--loads", DOMAINS / "loads.txt")
    lines = result.output.splitlines()
    assert result.exit_code == 1
    assert lines == [
        "[numatune] auto on h1: <numatune><memory placement='auto'>: the memory node is chosen at start, not planned",
        "[numatune] auto on h1: cell 0 has no <memnode> and the memory nodeset is none: its memory is not bound to one "
        "node (add <memnode cellid='0' nodeset='N'/>); its vCPUs are not pinned to one node either: its host node is "
        "unknown, so its memory and vCPUs are not checked against a node",
        "8 guests on 1 hosts: 2 findings (numatune 2)"]
    assert (DOMAINS / "h1" / "crlf.xml").read_bytes().count(b"\r\n") == 8
    document = json.loads(vplan("check", DOMAINS / "host.yaml", "--domains", DOMAINS, "--loads",
                                DOMAINS / "loads.txt", "--json").output)
    assert document["guests"]["auto"]["nodes"] == [None]  # unknown, not node 0
    assert document["guests"]["dimm"]["nodes"] == [0, 1] and document["guests"]["crlf"]["nodes"] == [1]


def test_corpus_per_cell_pages_are_checked_per_cell(tmp_path):
    """pages.xml: cell 1 takes one 1G page on node 1, cell 0 ordinary memory on node 0."""
    doms = read_domains([str(DOMAINS)])
    result = audit(load_scenario(DOMAINS / "host.yaml"), doms)
    cells = {c.cell_id: c for c in result.plan.placed["pages"].cells}
    assert (cells[0].node_id, cells[0].hugepage_kib, cells[1].node_id, cells[1].hugepage_kib) == (0, 0, 1, -1)
    assert result.plan.scenario.guest_by_name["pages"].hugepage_kib == 1048576


# ---------------------------------------------------------------------------------------------------------------
# 5. Fuzzing (bounded: max_examples, no deadline on a shared machine)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.function_scoped_fixture])
YAML_PIECES = st.sampled_from([
    "version: 1\n", "name: x\n", "guests:\n", "hosts:\n", "host_models:\n", "  - ", "{", "}", "[", "]", ", ",
    "name: g1", "vcpus: 2", "memory: 4GiB", "m: {nodes: [{id: 0, cpus: '0-7', memory: 8GiB}]}", "&a ", "*a", "<<: ",
    "!!python/object:os.system ", "\t", "'", '"', "\n", "  ", ": ", "- ", "?", "%YAML 1.1\n", "---\n", "0-99999999",
    "²", "٢", "1e999", ".nan", "99999999999999999999", "~", "\x00", "\ufeff", "include: /dev/zero", "hugepages: 3K",
])


@FUZZ
@given(st.lists(YAML_PIECES, max_size=40), st.text(max_size=20))
def test_fuzz_loader(pieces, noise):
    text = "".join(pieces) + noise
    try:
        load_scenario_text(text, "f.yaml")
    except ScenarioError as exc:
        assert exc.problems and all(line.startswith("f.yaml") or line.startswith("/dev/zero") or
                                    line.startswith("... and") for line in exc.problems), exc.problems
        assert len(exc.problems) <= 201


XML_VALUES = st.one_of(st.sampled_from(["0", "1", "2", "²", "٢", "-1", "0-99999999", "99999999999999999999", "", " ",
                                        "1,3-2", "^1", "0-3,^1", "4294967296", "KiB", "G", "x", "0x10", "１"]),
                       st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=6))


@FUZZ
@given(st.data())
def test_fuzz_capabilities(data):
    root = etree.fromstring(CAPS.read_bytes())
    for element in root.iter():
        for name in list(element.attrib):
            if data.draw(st.integers(0, 12)) == 0:
                element.set(name, data.draw(XML_VALUES))
        if element.text and element.text.strip() and data.draw(st.integers(0, 12)) == 0:
            element.text = data.draw(XML_VALUES)
    try:
        parse_capabilities("c.xml", etree.tostring(root))
    except CaptureError as exc:
        assert str(exc).startswith("c.xml: ")


@FUZZ
@given(st.lists(st.sampled_from(["available: 2 nodes (0-1)", "node 0 cpus: 0 1 2 3", "node 1 cpus: 4 5 6 7",
                                 "node 0 size: 8000 MB", "node 1 size: 99999999999999999999 MB", "node distances:",
                                 "node   0   1", "  0:  10  21", "  1:  21  10", "node ² cpus: 1", "1 2 3",
                                 "available: 99999999999 nodes", "node 99999999999 cpus: 1", "", "# CPU,Core,Socket",
                                 "0,0,0,0", "1,²,0,0", "node 0 cpus: " + "9" * 5000, "2," + "7" * 5000 + ",0,0",
                                 "  0:  10  " + "2" * 5000]), max_size=12))
def test_fuzz_numactl_and_lscpu(lines):
    text = "\n".join(lines)
    for parse in (parse_numactl, parse_lscpu):
        try:
            parse("n.txt", text)
        except CaptureError as exc:
            assert str(exc).startswith("n.txt")


@FUZZ
@given(st.data())
def test_fuzz_domain_reader(data):
    sc = load_scenario(DOMAINS / "host.yaml")
    root = etree.fromstring(DOMAIN.encode())
    for element in root.iter():
        for name in list(element.attrib):
            if data.draw(st.integers(0, 6)) == 0:
                element.set(name, data.draw(XML_VALUES))
        if element.text and element.text.strip() and data.draw(st.integers(0, 6)) == 0:
            element.text = data.draw(XML_VALUES)
    try:
        result = audit(sc, [DomainFile("g.xml", "h1", root, "g")])
    except AuditInputError as exc:
        assert all(line.startswith("g.xml: ") for line in exc.problems), exc.problems
    else:
        assert all(f.rule for f in result.findings)


def test_dimm_backed_by_another_node_is_told(tmp_path):
    text = DOMAIN.replace("</cpu>", "</cpu><devices><memory model='dimm'><source><nodemask>1</nodemask></source>"
                                    "<target><size unit='MiB'>512</size><node>0</node></target></memory></devices>")
    result = check_one(tmp_path, text)
    assert re.findall(r"\[numatune\][^\n]*", result.output) == [
        "[numatune] g on h1: a <memory model='dimm'> of 512MiB in cell 0 is backed by host node(s) 1 (its <source>"
        "<nodemask>), not the cell's node 0: checked as if on node 0"]


@pytest.mark.parametrize(("change", "message"), [
    (lambda t: t.replace("<domain", "<!DOCTYPE d [<!ENTITY x 'y'>]><domain", 1), "the document has a <!DOCTYPE>"),
    (lambda t: re.sub(r"<vcpu([^>]*)>1</vcpu>", r"<vcpu\1>²</vcpu>", t), "has no <vcpu> count"),
])
def test_apply_refuses_dtd_and_non_ascii_vcpus(tmp_path, change, message):
    (tmp_path / "m.yaml").write_text('nodes: [{id: 0, cpus: "0-1", memory: 8GiB}]\n')
    path = scenario(tmp_path, "host_models:\n  m: {include: m.yaml}\nhosts: [{name: h1, model: m}]\nguests:\n"
                              "  - {name: d1, vcpus: 1, memory: 1GiB}\n")
    assert vplan("solve", path, "-o", tmp_path / "plan", "--time-limit", "2", "--quiet").exit_code == 0
    (tmp_path / "doms").mkdir()
    text = (tmp_path / "plan" / "hosts" / "h1" / "d1.xml").read_text()
    (tmp_path / "doms" / "d1.xml").write_text(change(text))
    result = vplan("apply", tmp_path / "plan", "--domains", tmp_path / "doms", "-o", tmp_path / "out")
    refused(result, "d1", message)
    assert not (tmp_path / "out").exists()
