"""Any capture: its kind told from the content (not the file name), then parsed by the matching reader."""

from __future__ import annotations

import os
import re
from typing import Literal

from planner.hostimport.capabilities import parse_capabilities
from planner.hostimport.captured import Capture, Kind, read_bytes
from planner.hostimport.errors import fail
from planner.hostimport.lscpu import looks_like_lscpu
from planner.hostimport.numactl import parse_numactl
from planner.hostimport.sysfs import parse_sysfs


def detect_kind(path: str) -> Kind | Literal["lscpu"]:
    """A directory or a tarball (gzip, bzip2, xz, plain tar) is a sysfs snapshot; XML is ``virsh capabilities``;
    then ``lscpu -p`` and ``numactl --hardware`` text by their lines."""
    if os.path.isdir(path):
        return "sysfs"
    raw = read_bytes(path)
    if raw[:2] == b"\x1f\x8b" or raw[:3] == b"BZh" or raw[:6] == b"\xfd7zXZ\x00" or raw[257:262] == b"ustar":
        return "sysfs"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise fail(path, "neither text nor a tarball: not a capture") from None
    head = text.lstrip()
    if head.startswith("<"):
        return "capabilities"
    if looks_like_lscpu(text):
        return "lscpu"
    if re.search(r"^\s*(available:\s*[0-9]+\s+node|node\s+[0-9]+\s+cpus:|No NUMA available)", text, re.M):
        return "numactl"
    raise fail(path, "not a capture this importer reads (virsh capabilities XML, numactl --hardware output, "
                     "lscpu -p output, or a sysfs snapshot directory/tarball)")


def read_capture(path: str | os.PathLike) -> Capture:
    """Parse any capture (the kind is told from the content)."""
    path = os.fspath(path)
    kind = detect_kind(path)
    if kind == "capabilities":
        return parse_capabilities(path)
    if kind == "numactl":
        return parse_numactl(path)
    if kind == "sysfs":
        return parse_sysfs(path)
    raise fail(path, "is `lscpu -p` output: it gives SMT siblings for a numactl capture; give it with the "
                     "capture (vplan host import host.txt host.lscpu) or name it host.txt.lscpu beside it")
