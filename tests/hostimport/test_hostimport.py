"""Host import (planner.hostimport.capture, `vplan host import`, capture keys in the loader).

Two kinds of fixture:
* tests/fixtures/hostimport/*: small captures written for vplan, one per quirk (sparse node ids, interleaved CPU
  ids, SMT4/SMT8 sibling ranges, CPU-less and memory-less nodes, missing distances / cell memory, 64K/16M/16G
  pages, POWER, aarch64, wrapped and partial numactl output, an lscpu -p file, a sysfs snapshot);
* tests/fixtures/hostimport/shared/*: copies of the public captures of ../shared/hostcaps and ../shared/numactl
  (SOURCES.md there), each imported to a model that matches the capture or refused with what is missing.
"""

from __future__ import annotations

import re
import shlex
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from planner.hostimport.capture import (
    SYSFS_CAPTURE_COMMAND,
    CaptureError,
    build_model,
    import_host,
    parse_capabilities,
    parse_lscpu,
    parse_numactl,
    read_capture,
)
from planner.io.loader import ScenarioError, load_scenario, load_scenario_text
from planner.model.units import parse_cpulist
from tests.conftest import vplan

REPO = Path(__file__).resolve().parents[2]
FIX = Path(__file__).parents[1] / "fixtures" / "hostimport"
SHARED = FIX / "shared"
G = 1024 * 1024
MIB = 1024


def nodes_of(model):
    return {n.id: n for n in model.nodes}


def load_model(path: Path, tmp_path: Path):
    """The host model file through the loader (as a scenario includes it)."""
    text = f'version: 1\nname: w\nhost_models:\n  m: {{include: "{path}"}}\nhosts: [{{name: h, model: m}}]\nguests: []\n'
    return load_scenario_text(text, filename=str(tmp_path / "w.yaml")).host_models["m"]


def same_model(a, b) -> bool:
    def key(m):
        return ([(n.id, n.cpus, n.memory_kib, dict(n.hugepages)) for n in m.nodes], m.distances, m.cores,
                m.reserved_cpus, m.reserved_memory_kib, m.arch)
    return key(a) == key(b)


# ------------------------------------------------------------------------------------------------ quirks (own fixtures)


def test_power9_sparse_ids_smt4_ranges_cpuless_gpu_nodes():
    m = import_host(FIX / "power9-sparse-smt4-gpu.xml").model
    assert [n.id for n in m.nodes] == [0, 8, 252, 253]
    assert m.arch == "ppc64le"
    assert m.node_by_id[252].cpus == () and m.node_by_id[252].memory_kib == 16 * G
    assert m.node_by_id[8].cpus == tuple(range(16, 32))
    assert m.cores[0] == (0, 1, 2, 3) and len(m.cores) == 8 and {len(c) for c in m.cores} == {4}
    # 64K is the base page here (not a pool); 2M and 1G are pools
    assert dict(m.node_by_id[0].hugepages) == {1048576: 0, 2048: 512}
    assert dict(m.node_by_id[8].hugepages) == {1048576: 4, 2048: 0}
    assert m.distance(0, 8) == 40 and m.distance(8, 252) == 80 and m.distance(253, 253) == 10


def test_power8_smt8_ranges_16m_16g_pools():
    imported = import_host(FIX / "power8-smt8-hash.xml")
    m = imported.model
    assert m.cores == (tuple(range(0, 8)), tuple(range(8, 16)), tuple(range(16, 24)), tuple(range(24, 32)))
    assert dict(m.node_by_id[0].hugepages) == {16 * G: 0, 16384: 32}
    assert dict(m.node_by_id[1].hugepages) == {16 * G: 1, 16384: 0}
    assert "SMT8" in " ".join(imported.capture.quirks)
    assert "cores:" in imported.yaml_text() and "16G: 1" in imported.yaml_text()


def test_memory_tiers_memoryless_and_cpuless_nodes():
    m = import_host(FIX / "x86-memory-tiers.xml").model
    n = nodes_of(m)
    assert n[1].memory_kib == 0 and n[1].cpus == (4, 5, 6, 7, 12, 13, 14, 15)
    assert n[2].cpus == () and n[2].memory_kib == 128 * G
    assert dict(n[0].hugepages) == {1048576: 8, 2048: 1024}
    assert m.distances == ((10, 12, 30), (12, 10, 30), (30, 30, 10))
    assert m.core_of_cpu[4] == (4, 12)


def test_aarch64_64k_pool_and_arch():
    imported = import_host(FIX / "aarch64-64k-pools.xml")
    m = imported.model
    assert m.arch == "aarch64" and m.cpu_count == 64 and len(m.cores) == 64
    assert dict(m.node_by_id[0].hugepages) == {1048576: 0, 32768: 0, 2048: 0, 64: 1024}
    assert dict(m.node_by_id[1].hugepages) == {1048576: 2, 32768: 2, 2048: 256, 64: 0}
    text = imported.yaml_text()
    assert "arch: aarch64" in text and "64K: 1024" in text and "32M: 2" in text


def test_old_format_missing_memory_is_refused_with_what_to_add():
    with pytest.raises(CaptureError) as err:
        import_host(FIX / "x86-old-interleaved.xml")
    message = str(err.value)
    assert "x86-old-interleaved.xml" in message and "no memory for nodes 0-1" in message
    assert "--memory 64GiB" in message and err.value.key == "memory"


def test_old_format_with_memory_override_interleaved_default_distances():
    imported = import_host(FIX / "x86-old-interleaved.xml", memory=48 * G)
    m = imported.model
    assert m.node_by_id[0].cpus == tuple(range(0, 16, 2)) and m.node_by_id[1].cpus == tuple(range(1, 16, 2))
    assert m.core_of_cpu[0] == (0, 8) and m.core_of_cpu[3] == (3, 11)
    assert m.distances == ((10, 20), (20, 10))
    assert [n.memory_kib for n in m.nodes] == [48 * G, 48 * G]
    assert "interleaved" in " ".join(imported.capture.quirks)
    text = imported.yaml_text()
    assert "not in the capture, the default 10" in text and "distances:" not in text.split("\nnodes:")[1]
    assert "memory 48GiB on nodes 0-1 (not in the capture)" in text.replace("\n#   ", " ")
    # per node memory override
    m2 = import_host(FIX / "x86-old-interleaved.xml", memory={0: 32 * G, 1: 16 * G}).model
    assert [n.memory_kib for n in m2.nodes] == [32 * G, 16 * G]


def test_partial_distances_refused():
    with pytest.raises(CaptureError, match=r"cell 1 has no <distances> but other cells do; the distance table is "
                                           "partial"):
        import_host(FIX / "x86-partial-distances.xml")


def test_siblings_from_core_ids():
    imported = import_host(FIX / "x86-core-ids-no-siblings.xml")
    assert imported.model.core_of_cpu[0] == (0, 8) and imported.model.core_of_cpu[5] == (5, 13)
    assert "socket_id/die_id/core_id" in imported.capture.siblings_from


def test_hand_edited_topology_refused():
    with pytest.raises(CaptureError, match="CPU 0 is in cell 0 and in cell 1"):
        import_host(FIX / "x86-cells-share-cpus.xml")


def test_mib_memory_and_pages_without_unit():
    imported = import_host(FIX / "x86-mib-pages-no-unit.xml")
    assert [n.memory_kib for n in imported.model.nodes] == [16 * G, 16 * G]
    assert dict(imported.model.nodes[0].hugepages) == {2048: 256}
    assert "without a unit" in " ".join(imported.capture.quirks)
    assert imported.model.cores == ((0, 2), (1, 3), (4, 6), (5, 7))


def test_numactl_wrapped_lists_and_rows():
    capture = parse_numactl(str(FIX / "numactl-wrapped.txt"))
    assert [len(n.cpus) for n in capture.nodes] == [48, 16, 32, 32]
    assert capture.nodes[0].cpus[-1] == 87 and capture.nodes[2].cpus[-1] == 111
    assert capture.distances[0] == {0: 10, 1: 11, 2: 21, 3: 21}
    assert capture.nodes[0].memory_kib == 96631 * MIB  # numactl's MB is MiB
    m = build_model(capture, name="w", threads_per_core=2).model
    assert m.core_of_cpu[24] == (24, 88) and len(m.cores) == 64


def test_numactl_cut_short_is_refused():
    with pytest.raises(CaptureError, match=r"node 3 has no 'node N cpus:' line \(the output is cut short"):
        read_capture(FIX / "numactl-cut.txt")


def test_numactl_without_siblings_needs_threads_or_lscpu():
    with pytest.raises(CaptureError) as err:
        import_host(FIX / "numactl-sparse-cpuless.txt")
    assert "no SMT sibling information" in str(err.value) and "--threads-per-core T" in str(err.value)
    m = import_host(FIX / "numactl-sparse-cpuless.txt", threads_per_core=1).model
    assert [n.id for n in m.nodes] == [0, 1, 8]
    assert m.node_by_id[8].cpus == () and m.node_by_id[8].memory_kib == 131072 * MIB
    assert m.distance(1, 8) == 40


def test_numactl_threads_rule_refused_when_it_does_not_fit():
    with pytest.raises(CaptureError, match=r"siblings of CPU 0 \(0,8\) would span nodes"):
        import_host(FIX / "numactl-adjacent.txt", lscpu=None, threads_per_core=2)


def test_numactl_lscpu_beside_the_capture():
    imported = import_host(FIX / "numactl-adjacent.txt")
    assert imported.model.cores[:2] == ((0, 1), (2, 3))
    assert "lscpu" in imported.notes[0] + " ".join(imported.notes)
    assert parse_lscpu(str(FIX / "numactl-adjacent.txt.lscpu"))[9] == {"cpu": 9, "core": 4, "socket": 1, "node": 1}


def test_numactl_missing_size_refused_then_override():
    with pytest.raises(CaptureError, match=r"no memory for node 1 \(the capture has no 'node N size:' lines\)"):
        import_host(FIX / "numactl-no-size.txt", threads_per_core=1)
    m = import_host(FIX / "numactl-no-size.txt", threads_per_core=1, memory=8 * G).model
    assert [n.memory_kib for n in m.nodes] == [8192 * MIB, 8 * G]


def test_sysfs_directory_and_tarball(tmp_path):
    directory = FIX / "sysfs-aarch64-sparse"
    m = import_host(directory).model
    assert m.arch == "aarch64" and [n.id for n in m.nodes] == [0, 2]
    assert m.node_by_id[0].memory_kib == 32 * G and m.node_by_id[2].memory_kib == 16 * G
    assert dict(m.node_by_id[0].hugepages) == {1048576: 0, 2048: 512, 64: 0}
    assert dict(m.node_by_id[2].hugepages) == {1048576: 2, 2048: 0, 64: 0}
    assert m.distances == ((10, 30), (30, 10))
    tarball = tmp_path / "host-sysfs.tgz"
    with tarfile.open(tarball, "w:gz") as tar:
        for item in sorted(directory.iterdir()):
            tar.add(item, arcname=item.name)
    assert same_model(import_host(tarball, name=m.name).model, m)
    assert "tar czf" in SYSFS_CAPTURE_COMMAND and "thread_siblings_list" in SYSFS_CAPTURE_COMMAND


def test_overrides_pools_reserved_and_their_errors():
    imported = import_host(FIX / "x86-memory-tiers.xml", hugepages={0: {2048: 0, 1048576: 16}},
                           reserved_cpus=(0, 8), reserved_memory_kib=2 * G)
    n0 = imported.model.node_by_id[0]
    assert dict(n0.hugepages) == {1048576: 16, 2048: 0}
    assert imported.model.reserved_cpus == frozenset({0, 8})
    assert any("node 0 hugepages 1G x 16 (the capture: 8)" in c for c in imported.choices)
    with pytest.raises(CaptureError, match="node 1 has no memory but hugepage pools 2M x 4"):
        import_host(FIX / "x86-memory-tiers.xml", hugepages={1: {2048: 4}})
    with pytest.raises(CaptureError, match="reserved CPU 99 is not a CPU of this host"):
        import_host(FIX / "x86-memory-tiers.xml", reserved_cpus=(99,))
    with pytest.raises(CaptureError, match="hugepages override for node 5, which the capture does not have"):
        import_host(FIX / "x86-memory-tiers.xml", hugepages={5: {2048: 1}})
    with pytest.raises(CaptureError, match="pools 64GiB \\+ reserved memory 2GiB exceed its memory 64GiB"):
        import_host(FIX / "x86-memory-tiers.xml", hugepages={0: {1048576: 64, 2048: 0}}, reserved_memory_kib=2 * G)
    with pytest.raises(CaptureError, match="the capture says arch ppc64le, not aarch64"):
        import_host(FIX / "power8-smt8-hash.xml", arch="aarch64")
    with pytest.raises(CaptureError, match="threads_per_core 2 disagrees with the capture's sibling groups"):
        import_host(FIX / "power8-smt8-hash.xml", threads_per_core=2)


def test_yaml_text_round_trips_through_the_loader(tmp_path):
    for name in ("power9-sparse-smt4-gpu.xml", "x86-memory-tiers.xml", "aarch64-64k-pools.xml",
                 "power8-smt8-hash.xml", "x86-mib-pages-no-unit.xml"):
        imported = import_host(FIX / name)
        path = tmp_path / f"{name}.yaml"
        path.write_text(imported.yaml_text(source="test"))
        assert same_model(load_model(path, tmp_path), imported.model), name
        assert path.read_text().startswith("# ")


# ------------------------------------------------------------------------------------------------ shared captures

CAPS = SHARED / "hostcaps"
NUMACTL = SHARED / "numactl"


def _expected_from_xml(path: Path) -> dict:
    """The capture read independently (stdlib ElementTree): nodes, CPUs, sibling groups, memory, pools, distances."""
    host = ET.parse(path).getroot().find("host")
    cells = host.findall("topology/cells/cell")
    sizes = sorted({int(p.get("size")) for c in cells for p in c.findall("pages")} |
                   {int(p.get("size")) for p in host.findall("cpu/pages")})
    base = sizes[0] if sizes and sizes[0] <= 64 else None
    present = {int(cpu.get("id")) for c in cells for cpu in c.findall("cpus/cpu")}
    out = {"ids": [], "cpus": {}, "memory": {}, "pools": {}, "distances": {}, "groups": set()}
    for c in sorted(cells, key=lambda c: int(c.get("id"))):
        cid = int(c.get("id"))
        out["ids"].append(cid)
        out["cpus"][cid] = tuple(sorted(int(x.get("id")) for x in c.findall("cpus/cpu")))
        mem = c.find("memory")
        out["memory"][cid] = int(mem.text) if mem is not None else None
        out["pools"][cid] = {int(p.get("size")): int(p.text) for p in c.findall("pages") if int(p.get("size")) != base}
        out["distances"][cid] = {int(s.get("id")): int(s.get("value")) for s in c.findall("distances/sibling")}
        for x in c.findall("cpus/cpu"):
            out["groups"].add(tuple(i for i in parse_cpulist(x.get("siblings")) if i in present))
    return out


def _check_against_xml(model, path: Path, memory_override=None, pools_override=None):
    want = _expected_from_xml(path)
    assert [n.id for n in model.nodes] == want["ids"]
    assert {n.id: n.cpus for n in model.nodes} == want["cpus"]
    assert set(model.cores) == want["groups"]
    for n in model.nodes:
        assert n.memory_kib == (want["memory"][n.id] if memory_override is None else memory_override)
        pools = dict(want["pools"][n.id])
        pools.update((pools_override or {}).get(n.id, {}))
        assert dict(n.hugepages) == pools
    if any(want["distances"].values()):
        assert {a: {b: model.distance(a, b) for b in want["ids"]} for a in want["ids"]} == want["distances"]
    else:
        assert all(model.distance(a, b) == (10 if a == b else 20) for a in want["ids"] for b in want["ids"])


SHARED_XML = {
    # file: (nodes, CPUs, threads per core, arch, overrides) -- real values from the captures
    "kvm-aarch64.xml": ([0, 1], 160, 1, "aarch64", {}),
    "kvm-ppc64le.xml": ([0, 1], 96, 8, "ppc64le", {}),
    "kvm-x86_64.xml": ([0], 8, 2, "x86_64", {}),
    "caps_libvirt_ibm_S822L_le.out": ([0, 1, 16, 17], 20, 1, "ppc64le", {}),
    "caps_libvirt_multiqemu.out": ([0, 1], 24, 2, "x86_64", {}),
    "caps_libvirt_amd_6274.out": ([0, 1, 2, 3], 32, 2, "x86_64", {"memory": 32 * G}),
    "caps_libvirt_intel_E5649.out": ([0, 1], 24, 2, "x86_64", {"memory": 48 * G}),
    "vircaps-x86_64-hmat.xml": ([0, 1], 24, 1, "x86_64",
                                {"hugepages": {0: {2048: 0, G: 0}, 1: {2048: 0, G: 0}}}),
    "vircaps-x86_64-resctrl-amd.xml": ([0, 1], 64, 2, "x86_64",
                                       {"hugepages": {0: {2048: 0, G: 0}, 1: {2048: 0, G: 0}}}),
}

REFUSED_XML = {
    "caps_libvirt_amd_6274.out": ("no memory for nodes 0-3 (the capture has no <memory> in cells", "memory"),
    "caps_libvirt_intel_E5649.out": ("no memory for nodes 0-1 (the capture has no <memory> in cells", "memory"),
    "vircaps-x86_64-hmat.xml": ("node 0: the capture's hugepage pools (1G x 6144, 2M x 4096 = 6.01TiB) exceed its "
                                "memory 1GiB: the capture is inconsistent", "hugepages"),
    "vircaps-x86_64-resctrl-amd.xml": ("node 0: the capture's hugepage pools (1G x 6144, 2M x 4096 = 6.01TiB) exceed "
                                       "its memory 1GiB", "hugepages"),
}


def test_every_shared_capture_is_covered():
    assert {p.name for p in CAPS.iterdir() if p.name != "SOURCES.md"} == set(SHARED_XML)
    assert {p.name for p in NUMACTL.iterdir() if p.name != "SOURCES.md"} == set(SHARED_NUMACTL)


@pytest.mark.parametrize("name", sorted(SHARED_XML))
def test_shared_capabilities_capture(name):
    ids, cpus, threads, arch, overrides = SHARED_XML[name]
    path = CAPS / name
    if name in REFUSED_XML:
        text, key = REFUSED_XML[name]
        with pytest.raises(CaptureError) as err:
            import_host(path)
        assert text in str(err.value) and str(path) in str(err.value) and err.value.key == key
        # the message says what to add: following it makes the import work
        assert ("--memory" in str(err.value)) == (key == "memory")
        assert ("--hugepages 0:2M=0 --hugepages 0:1G=0" in str(err.value)) == (key == "hugepages")
    model = import_host(path, **overrides).model
    assert [n.id for n in model.nodes] == ids and model.cpu_count == cpus and model.arch == arch
    assert {len(c) for c in model.cores} == {threads}
    _check_against_xml(model, path, overrides.get("memory"), overrides.get("hugepages"))


def test_shared_capture_spot_values():
    """A few numbers read off the captures by eye (so the cross-check above cannot agree with itself wrongly)."""
    arm = import_host(CAPS / "kvm-aarch64.xml").model
    assert [n.memory_kib for n in arm.nodes] == [263763320, 262082520]
    assert set(arm.nodes[0].hugepages) == {64, 2048, 32768, 1048576}
    ppc = import_host(CAPS / "kvm-ppc64le.xml").model
    assert ppc.core_of_cpu[13] == tuple(range(8, 16)) and set(ppc.nodes[0].hugepages) == {16384, 16777216}
    power8 = import_host(CAPS / "caps_libvirt_ibm_S822L_le.out").model
    assert power8.distances[0] == (10, 20, 40, 40) and power8.node_by_id[16].cpus == (80, 88, 96, 104, 112)
    amd = import_host(CAPS / "caps_libvirt_amd_6274.out", memory=32 * G).model
    assert amd.core_of_cpu[30] == (30, 31) and [n.hugepages[2048] for n in amd.nodes] == [100, 1, 0, 100]
    e5649 = import_host(CAPS / "caps_libvirt_intel_E5649.out", memory=48 * G).model
    assert e5649.node_by_id[1].cpus == tuple(range(1, 24, 2)) and e5649.core_of_cpu[2] == (2, 14)
    hmat = import_host(CAPS / "vircaps-x86_64-hmat.xml", hugepages={0: {2048: 0, G: 0}, 1: {2048: 0, G: 0}}).model
    assert hmat.node_by_id[1].cpus == () and hmat.node_by_id[1].memory_kib == 2097152
    sandy = import_host(CAPS / "caps_libvirt_multiqemu.out").model
    assert sandy.distances == ((10, 21), (21, 10)) and sandy.node_by_id[0].cpus == tuple(range(6)) + tuple(range(12, 18))


SHARED_NUMACTL = {
    # file: (threads, node ids, CPUs per node, memory MiB per node, distance row 0 or None, first core)
    "caps_numactl_4_nodes.out": (1, [0, 1, 2, 3], [8] * 4, [65525, 65536, 65536, 65535], [10, 20, 20, 20], (0,)),
    "lkml-2019-xeon-e7-4870-8socket-8node.txt": (
        2, list(range(8)), [20] * 8, [64177, 64507, 64507, 64507, 64507, 64507, 64507, 64480],
        [10, 12, 17, 17, 19, 19, 19, 19], (0, 80)),
    "lkml-2025-epyc-7401-8node-memoryless.txt": (
        2, list(range(8)), [12] * 8, [0, 31584, 0, 0, 0, 32214, 0, 0], None, (0, 48)),
    "rocm-blogs_affinity-part2_epyc-2s-nps4-8node.txt": (
        2, list(range(8)), [32] * 8, [64306, 64502, 64502, 64447, 64502, 64502, 64502, 64492],
        [10, 12, 12, 12, 32, 32, 32, 32], (0, 128)),
    "unix-se-92302-core-i7-1node.txt": (2, [0], [8], [16063], [10], (0, 4)),
}


@pytest.mark.parametrize("name", sorted(SHARED_NUMACTL))
def test_shared_numactl_capture(name):
    threads, ids, per_node, memory, row0, core0 = SHARED_NUMACTL[name]
    path = NUMACTL / name
    with pytest.raises(CaptureError) as err:  # numactl has no siblings: the user must say
        import_host(path)
    assert "no SMT sibling information" in str(err.value) and str(path) in str(err.value)
    model = import_host(path, threads_per_core=threads).model
    assert [n.id for n in model.nodes] == ids
    assert [len(n.cpus) for n in model.nodes] == per_node
    assert [n.memory_kib for n in model.nodes] == [m * MIB for m in memory]
    assert model.cores[0] == core0 and len(model.cores) == sum(per_node) // threads
    assert all(dict(n.hugepages) == {} for n in model.nodes)  # numactl shows no pools
    if row0 is None:
        assert model.distances[0] == tuple(10 if i == 0 else 20 for i in range(len(ids)))
    else:
        assert list(model.distances[0]) == row0


def test_lkml_wrapped_node_lists_are_joined():
    capture = read_capture(NUMACTL / "lkml-2019-xeon-e7-4870-8socket-8node.txt")
    assert capture.nodes[2].cpus == tuple(range(20, 30)) + tuple(range(100, 110))
    assert "line-wrapped lists (joined)" in capture.quirks


# ------------------------------------------------------------------------------------------------ loader keys


def _scenario(tmp_path: Path, models: str, guests: str = "[]") -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(f"version: 1\nname: s\nhost_models:\n{models}\nhosts: [{{name: h1, model: m}}]\n"
                    f"guests: {guests}\n")
    return path


def test_loader_capabilities_key_with_overrides(tmp_path):
    (tmp_path / "caps").mkdir()
    (tmp_path / "caps" / "old.xml").write_text((FIX / "x86-old-interleaved.xml").read_text())
    path = _scenario(tmp_path, "  m: {capabilities: caps/old.xml, memory: {0: 32GiB, 1: 16GiB}, "
                               "reserved: {cpus: '0,8', memory: 1GiB}, hugepages: {0: {2M: 512}, 1: {1G: 2}}}",
                     "[{name: g, vcpus: 2, memory: 1GiB, hugepages: 1G}]")
    model = load_scenario(path).host_models["m"]
    assert [n.memory_kib for n in model.nodes] == [32 * G, 16 * G]
    assert model.reserved_cpus == frozenset({0, 8}) and model.reserved_memory_kib == G
    assert dict(model.node_by_id[1].hugepages) == {G: 2}
    assert model.source == str(tmp_path / "caps" / "old.xml")


def test_loader_numactl_and_sysfs_keys(tmp_path):
    nm = FIX / "numactl-wrapped.txt"
    path = _scenario(tmp_path, f"  m: {{numactl: '{nm}', threads_per_core: 2}}")
    assert load_scenario(path).host_models["m"].cpu_count == 128
    path = _scenario(tmp_path, f"  m: {{sysfs: '{FIX / 'sysfs-aarch64-sparse'}'}}")
    assert load_scenario(path).host_models["m"].arch == "aarch64"


def test_loader_capture_in_included_file_is_relative_to_that_file(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "box.xml").write_text((FIX / "x86-memory-tiers.xml").read_text())
    (models / "box.yaml").write_text("capabilities: box.xml\nreserved: {cpus: '0,8'}\n")
    path = _scenario(tmp_path, "  m: {include: models/box.yaml}")
    assert load_scenario(path).host_models["m"].node_by_id[2].memory_kib == 128 * G


@pytest.mark.parametrize("model, expected", [
    ("{capabilities: caps.xml}",
     "s.yaml: host_models.m.capabilities: {d}/caps.xml: no memory for nodes 0-1 (the capture has no <memory> in "
     "cells; older libvirt wrote none): give the node memory, memory: 64GiB (every node without one) or memory: "
     "{{0: 64GiB}} (per node) in this host model"),
    ("{numactl: n.txt}",
     "s.yaml: host_models.m.numactl: {d}/n.txt: has no SMT sibling information (numactl --hardware never has): give "
     "threads_per_core: T"),
    ("{capabilities: caps.xml, memory: 8GiB, nodes: []}",
     "s.yaml: host_models.m.nodes: comes from the capture (capabilities:); remove it"),
    ("{capabilities: caps.xml, memory: 8GiB, reserved: {cpus: '0,99'}}",
     "s.yaml: host_models.m.reserved: {d}/caps.xml: reserved CPU 99 is not a CPU of this host"),
    ("{capabilities: caps.xml, memory: 8GiB, hugepages: {7: {2M: 1}}}",
     "s.yaml: host_models.m.hugepages: {d}/caps.xml: hugepages override for node 7, which the capture does not have"),
    ("{capabilities: caps.xml, memory: 8GiB, hugepages: {0: {2X: 1}}}",
     "s.yaml: host_models.m.hugepages.0.2X: '2X' is not a page size"),
    ("{capabilities: caps.xml, numactl: n.txt}",
     "s.yaml: host_models.m.numactl: give one capture per host model (also capabilities:)"),
    ("{numactl: caps.xml}", "s.yaml: host_models.m.numactl: {d}/caps.xml is a capabilities capture, not numactl"),
    ("{nodes: [{id: 0, cpus: '0', memory: 1GiB}], memory: 2GiB}",
     "s.yaml: host_models.m.memory: only with a capture (capabilities:, numactl: or sysfs:)"),
])
def test_loader_capture_errors(tmp_path, model, expected):
    (tmp_path / "caps.xml").write_text((FIX / "x86-old-interleaved.xml").read_text())
    (tmp_path / "n.txt").write_text((FIX / "numactl-adjacent.txt").read_text())
    path = _scenario(tmp_path, f"  m: {model}")
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    want = expected.format(d=tmp_path).replace("s.yaml", str(path))
    assert any(line.startswith(want) for line in err.value.problems), err.value.problems


# ------------------------------------------------------------------------------------------------ CLI and catalogue


def test_cli_host_import_writes_model(tmp_path):
    out = tmp_path / "m" / "tiers.yaml"
    out.parent.mkdir()  # vplan writes into an existing directory only
    result = vplan("host", "import", str(FIX / "x86-memory-tiers.xml"), "--reserved-cpus", "0,8",
                   "--reserved-memory", "2GiB", "--hugepages", "0:1G=4", "--source", "a test capture", "-o", str(out))
    assert result.exit_code == 0, result.stderr
    text = out.read_text()
    assert text.startswith("# tiers: 3 nodes, 16 CPUs, 8 cores (2 threads per core), x86_64.")
    assert "# Source: a test capture" in text and "Planning choices (importer overrides" in text
    model = load_model(out, tmp_path)
    assert dict(model.node_by_id[0].hugepages) == {G: 4, 2048: 1024} and model.reserved_memory_kib == 2 * G
    # --check compares
    assert vplan("host", "import", str(FIX / "x86-memory-tiers.xml"), "--reserved-cpus", "0,8", "--reserved-memory",
                 "2GiB", "--hugepages", "0:1G=4", "--source", "a test capture", "-o", str(out), "--check").exit_code == 0
    assert vplan("host", "import", str(FIX / "x86-memory-tiers.xml"), "-o", str(out), "--check").exit_code == 1


def test_cli_host_import_numactl_with_lscpu_argument_and_errors(tmp_path):
    result = vplan("host", "import", str(FIX / "numactl-sparse-cpuless.txt"), "--threads-per-core", "1")
    assert result.exit_code == 0 and "  - {id: 8, cpus: \"\", memory: 128GiB}" in result.stdout
    result = vplan("host", "import", str(FIX / "numactl-adjacent.txt"), str(FIX / "numactl-adjacent.txt.lscpu"))
    assert result.exit_code == 0 and "cores: [[0, 1], [2, 3]" in result.stdout
    result = vplan("host", "import", str(FIX / "x86-old-interleaved.xml"))
    assert result.exit_code == 2 and "--memory 64GiB" in result.stderr and "Traceback" not in result.stderr
    result = vplan("host", "import", str(FIX / "x86-old-interleaved.xml"), "--hugepages", "0:1G")
    assert result.exit_code == 2 and "expected NODE:SIZE=PAGES" in result.stderr
    result = vplan("host", "import", str(FIX / "numactl-cut.txt"), str(FIX / "x86-memory-tiers.xml"))
    assert result.exit_code == 2 and "give exactly one capture" in result.stderr


MODEL_FILES = sorted((REPO / "models" / "hosts").glob("*.yaml"))


def _regenerate_command(text: str) -> list[str]:
    lines = text.splitlines()
    start = lines.index("# Regenerate:")
    parts = []
    for line in lines[start + 1:]:
        if not line.startswith("#   "):
            break
        parts.append(line[2:].strip())
    return shlex.split(" ".join(parts))


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: p.stem)
def test_catalogue_model_is_the_importers_output(path, monkeypatch):
    """Every catalogue model is what `vplan host import` makes of its public capture (its header's command)."""
    monkeypatch.chdir(REPO)
    command = _regenerate_command(path.read_text())
    assert command[:3] == ["vplan", "host", "import"] and command[-2:] == ["-o", f"models/hosts/{path.name}"]
    assert Path(command[3]).resolve().is_relative_to(SHARED)  # a copy of a public capture
    result = vplan(*command[1:], "--check")
    assert result.exit_code == 0, result.stderr


def test_catalogue_has_six_vendors_aarch64_and_eight_nodes(tmp_path):
    models = {p.stem: load_model(p, tmp_path) for p in MODEL_FILES}
    assert len(models) >= 6
    assert any(m.arch == "aarch64" for m in models.values())
    assert any(len(m.nodes) >= 8 for m in models.values())
    sources = " ".join(p.read_text().split("\nnodes:")[0] for p in MODEL_FILES)
    for vendor in ("Intel", "AMD", "Arm", "IBM"):
        assert vendor in sources
