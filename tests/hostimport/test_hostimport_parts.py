"""The pieces of planner.hostimport on their own: wording helpers, the CPU layout quirk, sibling groups from CPU
facts and from the threads_per_core rule, the build phases' refusals, the numactl line reader, and the facade."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest

from planner.analysis import generate
from planner.hostimport import build, capture, errors, numactl, siblings
from planner.hostimport.captured import Capture, CaptureNode, cpu_layout_quirk, mem_text, runs


def test_wording_helpers():
    assert errors.ids_text("node", [3], "has") == "node 3 has"
    assert errors.ids_text("node", [2, 0, 1, 1], "has") == "nodes 0-2 have"
    assert errors.ids_text("CPU", [4, 9]) == "CPUs 4,9"
    assert errors.cpus_are([7]) == "CPU 7 is" and errors.cpus_are([1, 0]) == "CPUs 0-1 are"
    assert errors.pools_text({2048: 0, 1048576: 8}) == "1G x 8" and errors.pools_text({2048: 0}) == "none"
    assert errors.hint("cli", "--memory", "memory:") == "--memory"
    assert errors.hint("yaml", "--memory", "memory:") == "memory:"
    error = errors.fail("host.xml", "no cells", "memory")
    assert isinstance(error, ValueError) and str(error) == "host.xml: no cells" and error.key == "memory"


def test_memory_text_and_runs():
    assert [mem_text(k) for k in (0, 32 * 1024**2, 64306 * 1024, 263763320)] == ["0", "32GiB", "64306MiB",
                                                                                 "263763320KiB"]
    assert runs([0, 1, 2, 5, 6, 12]) == 3 and runs([]) == 0


@pytest.mark.parametrize("cpus, quirk", [
    (((0, 1, 2, 3), (4, 5, 6, 7)), None),
    (((0, 1), (8, 9)), None),  # one run per node, gaps between nodes only
    (((0, 1, 4, 5), (8, 9, 12, 13)), "sparse CPU ids (gaps in the numbering)"),
    (((0, 1, 4, 5), (2, 3, 6, 7)), "node CPU lists split in ranges (e.g. cores first, their SMT siblings after all "
                                   "cores)"),
    (((0, 2, 4, 6, 8), (1, 3, 5, 7, 9)), "CPU ids interleaved across nodes"),
])
def test_cpu_layout_quirk(cpus, quirk):
    nodes = [CaptureNode(i, c, 1024) for i, c in enumerate(cpus)]
    assert cpu_layout_quirk(nodes) == quirk


def test_siblings_from_attributes_and_from_core_ids():
    quirks: list[str] = []
    facts = {0: {"siblings": (0, 2)}, 2: {"siblings": (0, 2)}, 1: {"siblings": (1, 3)}}  # CPU 3 offline
    groups, source = siblings.siblings_from_cpu_facts("c.xml", facts, {0: 0, 1: 0, 2: 0}, quirks)
    assert groups == [(0, 2), (1,)] and source == "the capture's siblings attributes"
    assert quirks == ["siblings name CPUs the capture does not list (offline: 3); they are left out"]
    ids = {c: {"socket_id": 0, "die_id": 0, "core_id": c % 2} for c in range(4)}
    groups, source = siblings.siblings_from_cpu_facts("c.xml", ids, {c: 0 for c in range(4)}, [])
    assert groups == [(0, 2), (1, 3)] and source == "the CPUs' socket_id/die_id/core_id"
    assert siblings.siblings_from_cpu_facts("c.xml", {0: {"core_id": 0}}, {0: 0}, []) == (None, "")
    with pytest.raises(capture.CaptureError, match="CPU 0 lists siblings 0-1 but CPU 1 lists 1"):
        siblings.siblings_from_cpu_facts("c.xml", {0: {"siblings": (0, 1)}, 1: {"siblings": (1,)}}, {0: 0, 1: 0}, [])
    with pytest.raises(capture.CaptureError, match="the siblings 0-1 sit in cells 0, 1"):
        siblings.siblings_from_cpu_facts("c.xml", {0: {"siblings": (0, 1)}, 1: {"siblings": (0, 1)}},
                                         {0: 0, 1: 1}, [])


def test_threads_per_core_rule():
    assert siblings.derived_groups(list(range(8)), 2) == [(0, 4), (1, 5), (2, 6), (3, 7)]
    assert siblings.derived_groups(list(range(6)), 3) == [(0, 2, 4), (1, 3, 5)]
    assert siblings.derived_groups([0, 1, 3], 1) == [(0,), (1,), (3,)]
    assert siblings.derived_groups([0, 1, 3, 4], 2) is None  # not 0..N-1
    assert siblings.derived_groups(list(range(6)), 4) is None  # N % T


def _capture(**kw) -> Capture:
    nodes = [CaptureNode(0, (0, 1, 2, 3), 8 * 1024**2, {4: 0, 2048: 16}), CaptureNode(1, (4, 5, 6, 7), None, {})]
    return Capture(kind="capabilities", path="h.xml", nodes=nodes, distances=None,
                   siblings=[(0, 1), (2, 3), (4, 5), (6, 7)], siblings_from="test", **kw)


def test_build_phases():
    log = build._Log()
    assert build._arch(_capture(), None, "cli", log) == "x86_64"
    assert log.notes == ["arch: not in the capture, x86_64 assumed (give --arch)"]
    with pytest.raises(capture.CaptureError, match="the capture says arch aarch64, not x86_64"):
        build._arch(_capture(arch="aarch64"), "x86_64", "cli", build._Log())
    with pytest.raises(capture.CaptureError, match=r"no memory for node 1 .*--memory 1=64GiB") as info:
        build._memories(_capture(), None, "cli", build._Log())
    assert info.value.key == "memory"
    log = build._Log()
    assert build._memories(_capture(), 4 * 1024**2, "cli", log) == {0: 8 * 1024**2, 1: 4 * 1024**2}
    assert log.choices == ["memory 4GiB on node 1 (not in the capture)"]
    log = build._Log()
    pools = build._pools(_capture(), {0: {1048576: 2}}, log)
    assert pools == {0: {2048: 16, 1048576: 2}, 1: {}}
    assert log.choices == ["node 0 hugepages 1G x 2 (the capture: none)"]
    assert log.warnings[0].startswith("1G pages are not listed by the capture (it lists 2M)")
    with pytest.raises(capture.CaptureError, match=r"node 0: hugepage pools 3GiB \+ reserved memory 6GiB exceed"):
        build._check_nodes_hold(_capture(), {0: 8 * 1024**2, 1: 0}, {0: {1048576: 3}, 1: {}}, 6 * 1024**2,
                                None, "cli")
    with pytest.raises(capture.CaptureError, match="reserved CPU 9 is not a CPU of this host"):
        build._reserved(_capture(), frozenset({9}), 0, build._Log())
    assert build._distances(_capture(), build._Log()) == ((10, 20), (20, 10))


def test_sibling_phase_threads_per_core_must_agree():
    with pytest.raises(capture.CaptureError, match="threads_per_core 4 disagrees") as info:
        build._sibling_groups(_capture(), 4, None, "cli")
    assert info.value.key == "threads_per_core"
    groups, source = build._sibling_groups(_capture(), 2, None, "cli")
    assert groups == [(0, 1), (2, 3), (4, 5), (6, 7)] and source == "test"


def test_numactl_reader_joins_wrapped_lines():
    text = "available: 2 nodes (0-1)\nnode 0 cpus: 0 1\n2 3\nnode 0 size: 100 MB\nnode 1 cpus: 4 5 6 7\n" \
           "node 1 size: 1 GB\nnode distances:\nnode 0 1\n0: 10 21\n1: 21 10\n"
    c = numactl.parse_numactl("n.txt", text)
    assert [(n.id, n.cpus, n.memory_kib) for n in c.nodes] == [(0, (0, 1, 2, 3), 100 * 1024), (1, (4, 5, 6, 7),
                                                                                                1024**2)]
    assert c.distances == {0: {0: 10, 1: 21}, 1: {0: 21, 1: 10}} and c.quirks == ["line-wrapped lists (joined)"]
    with pytest.raises(capture.CaptureError, match="line 2: 'node zero' is not numactl --hardware output"):
        numactl.parse_numactl("n.txt", "node 0 cpus: 0\nnode zero\n")


def test_facade_names_the_package_api():
    from planner.hostimport import read, spec, sysfs

    assert capture.read_capture is read.read_capture and capture.Imported is spec.Imported
    assert capture.SYSFS_CAPTURE_COMMAND is sysfs.SYSFS_CAPTURE_COMMAND and capture.build_model is build.build_model
    assert all(hasattr(capture, name) for name in capture.__all__)


def test_generator_phases():
    assert generate._split_hosts(7, 3, random.Random(1)) in ([3, 2, 2], [2, 3, 2], [2, 2, 3])
    assert sum(generate._split_hosts(10, 4, random.Random(0))) == 10
    node = generate.NodeOffer(cpus=8, cores=4, free_4k_kib=100, pools={2048: 10})
    model = generate.ModelOffer("m", generate.MODELS_DIR / "m.yaml", (node, node), threads=2)
    cap = generate._fleet_capacity([model], [3])
    assert (cap.cpus, cap.cores, cap.free_4k_kib, cap.pools_kib) == (48, 24, 600, {2048: 60 * 2048})
    assert cap.threads == Fraction(2)
    assert generate._load_drawer({"cpu": "dedicated"}, random.Random(0))() is None
    draws = {generate._load_drawer({"load": 0.5}, random.Random(s))() for s in range(40)}
    assert draws == {40, 50, 60}
    with pytest.raises(ValueError, match="existing must be a fraction from 0 to 1, not 2"):
        generate._check_arguments(1, 1, "given", 2)
