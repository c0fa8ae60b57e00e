"""A sysfs snapshot (a directory or a tarball) → :class:`Capture`.

The snapshot holds ``sys/devices/system/node/nodeN/{cpulist,meminfo,distance,hugepages/hugepages-SIZEkB/
nr_hugepages}`` and ``sys/devices/system/cpu/cpuN/topology/{thread_siblings_list,core_id,physical_package_id}``,
made with :data:`SYSFS_CAPTURE_COMMAND` (tar pads sysfs files with NUL bytes, which are ignored; an ``arch`` file
at the top, from ``uname -m``, gives the architecture). Only that layout is read: no recursive search, bounded
sizes (a gzip bomb is refused)."""

from __future__ import annotations

import os
import re
import tarfile
import zlib
from dataclasses import dataclass, field

from planner.files.safeio import InputFileError, check_regular, read_input_bytes
from planner.hostimport.captured import MAX_FILE_BYTES, Capture, CaptureNode, cpu_layout_quirk
from planner.hostimport.errors import fail
from planner.hostimport.siblings import siblings_from_cpu_facts
from planner.model.units import MAX_CPU_ID, MAX_MEMORY_KIB, MAX_NODE_ID, check_page_kib, format_cpulist, parse_cpulist

#: The one-line sysfs capture (run as root on the host; tar exits 1 because sysfs files shrink, which is harmless).
SYSFS_CAPTURE_COMMAND = (
    "uname -m > arch && tar czf host-sysfs.tgz arch "
    "/sys/devices/system/node/node*/{cpulist,meminfo,distance} "
    "/sys/devices/system/node/node*/hugepages/hugepages-*/nr_hugepages "
    "/sys/devices/system/cpu/cpu*/topology/{thread_siblings_list,core_id,physical_package_id}"
)

_SYS_NODE = re.compile(r"^sys/devices/system/node/node([0-9]{1,4})/(cpulist|meminfo|distance|"
                       r"hugepages/hugepages-([0-9]{1,9})kB/nr_hugepages)\Z")
_SYS_CPU = re.compile(r"^sys/devices/system/cpu/cpu([0-9]{1,5})/topology/"
                      r"(thread_siblings_list|core_id|physical_package_id|die_id)\Z")
_SYS_NODE_FILES = ("cpulist", "meminfo", "distance")
_SYS_CPU_FILES = ("thread_siblings_list", "core_id", "physical_package_id", "die_id")
MAX_SYSFS_FILE_BYTES = 1 << 20  # a sysfs file is one page; tar pads it to 4096 bytes
MAX_TAR_BYTES = 512 * 1024 * 1024  # decompressed tarball data read before giving up (a gzip bomb)


@dataclass
class _Snapshot:
    """The snapshot's files sorted by what they describe."""

    node_files: dict[int, dict[str, str]] = field(default_factory=dict)  # node -> cpulist/meminfo/distance -> text
    pages: dict[int, dict[int, int]] = field(default_factory=dict)  # node -> page KiB -> count
    cpu_files: dict[int, dict[str, str]] = field(default_factory=dict)  # cpu -> topology file -> text
    arch: str | None = None


def parse_sysfs(path: str) -> Capture:
    """Parse a sysfs snapshot (directory or tarball), see :data:`SYSFS_CAPTURE_COMMAND`."""
    try:
        files = _sysfs_files(path)
    except (EOFError, tarfile.TarError, zlib.error) as exc:  # a truncated or damaged .tgz
        raise fail(path, f"a truncated or damaged tarball ({exc}); capture it again") from None
    snap = _sort_files(path, files)
    if not snap.node_files:
        raise fail(path, "no sys/devices/system/node/nodeN/ files in the snapshot; capture with: "
                         + SYSFS_CAPTURE_COMMAND)
    quirks: list[str] = []
    ids = sorted(snap.node_files)
    nodes, owner = _nodes(path, snap, ids)
    if ids != list(range(len(ids))):
        quirks.append(f"sparse node ids {format_cpulist(ids)}")
    if (layout := cpu_layout_quirk(nodes)) is not None:
        quirks.append(layout)
    matrix = _distance_matrix(path, snap, ids, quirks)
    siblings, siblings_from = _siblings(path, snap, owner, quirks)
    huge_sizes = tuple(sorted({s for p in snap.pages.values() for s in p}))
    return Capture(kind="sysfs", path=path, nodes=nodes, distances=matrix, siblings=siblings,
                   siblings_from=siblings_from, arch=snap.arch, page_sizes=huge_sizes, quirks=quirks,
                   lists_base_page=False)


def _sort_files(path: str, files: dict[str, str]) -> _Snapshot:
    """Each file by its place in the layout: node files, hugepage counts, CPU topology files, ``arch``."""
    snap = _Snapshot()
    for rel, text in files.items():
        m = _SYS_NODE.search(rel)
        if m:
            node = int(m.group(1))
            if node > MAX_NODE_ID:
                raise fail(path, f"{rel}: node id {node} is out of range (at most {MAX_NODE_ID})")
            if m.group(3):
                value = text.strip()
                if not re.fullmatch(r"[0-9]{1,15}", value):
                    raise fail(path, f"{rel}: {value[:20]!r} is not a page count")
                try:
                    size = check_page_kib(int(m.group(3)), f"{rel}: {m.group(3)}kB")
                except ValueError as exc:
                    raise fail(path, str(exc)) from None
                snap.pages.setdefault(node, {})[size] = int(value)
            else:
                snap.node_files.setdefault(node, {})[m.group(2)] = text
            continue
        m = _SYS_CPU.search(rel)
        if m:
            if int(m.group(1)) > MAX_CPU_ID:
                raise fail(path, f"{rel}: CPU id {m.group(1)} is out of range (at most {MAX_CPU_ID})")
            snap.cpu_files.setdefault(int(m.group(1)), {})[m.group(2)] = text.strip()
            continue
        if rel == "arch" or rel.endswith("/arch"):
            snap.arch = text.strip() or None
    return snap


def _nodes(path: str, snap: _Snapshot, ids: list[int]) -> tuple[list[CaptureNode], dict[int, int]]:
    """The nodes (CPUs from ``cpulist``, memory from ``meminfo``'s MemTotal, pools) and each CPU's node."""
    nodes: list[CaptureNode] = []
    owner: dict[int, int] = {}
    for node in ids:
        got = snap.node_files[node]
        if "cpulist" not in got:
            raise fail(path, f"node{node}/cpulist is missing from the snapshot")
        try:
            node_cpus = parse_cpulist(got["cpulist"].strip())
        except ValueError as exc:
            raise fail(path, f"node{node}/cpulist: {exc}") from None
        for cpu in node_cpus:
            if cpu in owner:
                raise fail(path, f"CPU {cpu} is in node{owner[cpu]}/cpulist and node{node}/cpulist")
            owner[cpu] = node
        memory = None
        if "meminfo" in got:
            m = re.search(r"MemTotal:\s*([0-9]{1,13})\s*kB", got["meminfo"])
            if not m:
                raise fail(path, f"node{node}/meminfo has no 'MemTotal: N kB' line")
            memory = int(m.group(1))
            if memory > MAX_MEMORY_KIB:
                raise fail(path, f"node{node}/meminfo: MemTotal {memory} kB is more than 4 PiB")
        nodes.append(CaptureNode(node, node_cpus, memory, dict(snap.pages.get(node, {}))))
    return nodes, owner


def _distance_matrix(path: str, snap: _Snapshot, ids: list[int],
                     quirks: list[str]) -> dict[int, dict[int, int]] | None:
    """The ``distance`` files: every node's (one value per node) or none (None, said in the quirks)."""
    have_distance = [n for n in ids if "distance" in snap.node_files[n]]
    if have_distance and len(have_distance) != len(ids):
        missing = [n for n in ids if n not in have_distance]
        raise fail(path, f"node{format_cpulist(missing)}/distance missing while other nodes have theirs")
    if not have_distance:
        quirks.append("no node distance files")
        return None
    matrix: dict[int, dict[int, int]] = {}
    for node in ids:
        values = snap.node_files[node]["distance"].split()
        if len(values) != len(ids) or not all(re.fullmatch(r"[0-9]{1,3}", v) for v in values):
            raise fail(path, f"node{node}/distance {' '.join(values)!r} does not give {len(ids)} distances "
                             f"(one per node {format_cpulist(ids)})")
        matrix[node] = dict(zip(ids, (int(v) for v in values), strict=True))
    return matrix


def _siblings(path: str, snap: _Snapshot, owner: dict[int, int],
              quirks: list[str]) -> tuple[list[tuple[int, ...]] | None, str]:
    """SMT groups from every listed CPU's ``thread_siblings_list``, else from its package/die/core ids; (None, '')
    when the topology files are missing (for some CPUs: said in the quirks)."""
    present = set(owner)
    topo = {c: f for c, f in snap.cpu_files.items() if c in present}
    if topo and all("thread_siblings_list" in f for f in topo.values()) and set(topo) == present:
        facts = {}
        for cpu, f in topo.items():
            try:
                facts[cpu] = {"siblings": parse_cpulist(f["thread_siblings_list"])}
            except ValueError as exc:
                raise fail(path, f"cpu{cpu}/topology/thread_siblings_list: {exc}") from None
        siblings, _ = siblings_from_cpu_facts(path, facts, owner, quirks)
        return siblings, "thread_siblings_list"
    if topo and set(topo) == present and all("core_id" in f and "physical_package_id" in f for f in topo.values()):
        ids_facts = {cpu: {"socket_id": _sysfs_int(path, cpu, "physical_package_id", f["physical_package_id"]),
                           "die_id": _sysfs_int(path, cpu, "die_id", f.get("die_id", "0") or "0"),
                           "core_id": _sysfs_int(path, cpu, "core_id", f["core_id"])} for cpu, f in topo.items()}
        return siblings_from_cpu_facts(path, ids_facts, owner, quirks)
    if topo:
        missing = sorted(present - set(topo))
        quirks.append(f"CPU topology files missing for CPUs {format_cpulist(missing)}")
    return None, ""


def _sysfs_int(path: str, cpu: int, name: str, text: str) -> int:
    text = text.strip()
    if not re.fullmatch(r"-?[0-9]{1,9}", text):
        raise fail(path, f"cpu{cpu}/topology/{name} {text[:20]!r} is not a number")
    return int(text)


def _sysfs_keep(name: str) -> bool:
    """Only the documented layout at the snapshot's top: ``arch``, ``sys/devices/system/{node,cpu}/...``."""
    return name == "arch" or bool(_SYS_NODE.match(name) or _SYS_CPU.match(name))


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _sysfs_files(path: str) -> dict[str, str]:
    """Relative path → text (NUL padding from tar removed) of the files of a snapshot directory or tarball."""
    if os.path.isdir(path):
        return _sysfs_dir_files(path)
    try:
        check_regular(path)
    except InputFileError as exc:
        raise fail(path, str(exc)) from None
    try:
        archive = tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise fail(path, f"not a directory nor a readable tarball ({exc})") from None
    try:
        with archive:
            return _tar_files(path, archive)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise fail(path, f"the tarball is damaged or cut short ({exc})") from None


def _tar_files(path: str, archive: tarfile.TarFile) -> dict[str, str]:
    """The layout's files in an open tarball, each once, within ``MAX_SYSFS_FILE_BYTES`` each, ``MAX_FILE_BYTES``
    in all and ``MAX_TAR_BYTES`` of tar data read."""
    files: dict[str, str] = {}
    total = 0
    for member in archive:
        if archive.offset > MAX_TAR_BYTES:
            raise fail(path, "the tarball holds too much data for a sysfs snapshot")
        name = member.name
        while name.startswith(("./", "/")):
            name = name[1:] if name.startswith("/") else name[2:]
        if not member.isfile() or not _sysfs_keep(name):
            continue
        if name in files:
            raise fail(path, f"{name} is in the tarball twice (two snapshots in one tarball? give one per "
                             "host)")
        total += member.size
        if member.size > MAX_SYSFS_FILE_BYTES or total > MAX_FILE_BYTES:
            raise fail(path, "the tarball holds too much data for a sysfs snapshot")
        handle = archive.extractfile(member)
        if handle is None:
            continue
        files[name] = handle.read().replace(b"\0", b"").decode("utf-8", "replace")
    return files


def _sysfs_dir_files(path: str) -> dict[str, str]:
    """The snapshot files under a directory, looked up where the layout puts them (no recursive search)."""
    files: dict[str, str] = {}
    wanted: list[str] = ["arch"]
    base = os.path.join(path, "sys", "devices", "system")
    if not os.path.isdir(os.path.join(base, "node")):
        nested = sorted(name for name in _listdir(os.path.join(path))
                        if os.path.isdir(os.path.join(path, name, "sys", "devices", "system", "node")))
        hint = (f"; {', '.join(nested[:5])} {'hold snapshots' if len(nested) > 1 else 'holds a snapshot'}: give "
                "one snapshot directory per host" if nested else "")
        raise fail(path, "no sys/devices/system/node/ at the top of this directory (a sysfs snapshot holds arch and "
                         f"sys/devices/system/node/nodeN/...{hint}); capture with: " + SYSFS_CAPTURE_COMMAND)
    for name in _listdir(os.path.join(base, "node")):
        if re.fullmatch(r"node[0-9]{1,4}", name):
            rel = f"sys/devices/system/node/{name}"
            wanted += [f"{rel}/{f}" for f in _SYS_NODE_FILES]
            wanted += [f"{rel}/hugepages/{h}/nr_hugepages" for h in _listdir(os.path.join(path, rel, "hugepages"))]
    for name in _listdir(os.path.join(base, "cpu")):
        if re.fullmatch(r"cpu[0-9]{1,5}", name):
            wanted += [f"sys/devices/system/cpu/{name}/topology/{f}" for f in _SYS_CPU_FILES]
    for rel in wanted:
        full = os.path.join(path, *rel.split("/"))
        if not _sysfs_keep(rel) or not os.path.lexists(full):
            continue
        try:
            data = read_input_bytes(full, MAX_SYSFS_FILE_BYTES)
        except InputFileError as exc:
            raise fail(path, f"{rel}: {exc}") from None
        files[rel] = data.replace(b"\0", b"").decode("utf-8", "replace")
    return files
