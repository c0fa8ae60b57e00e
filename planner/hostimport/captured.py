"""What a capture says (:class:`Capture`, :class:`CaptureNode`), whatever its kind, and the reading helpers the
parsers share: bounded file reads, page sizes, long-number refusal, the CPU layout quirk."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from planner.files.safeio import InputFileError, read_input_bytes
from planner.hostimport.errors import fail
from planner.model.units import check_page_kib, scaled_kib

Kind = Literal["capabilities", "numactl", "sysfs"]

#: The largest capture file read (bytes).
MAX_FILE_BYTES = 64 * 1024 * 1024


@dataclass
class CaptureNode:
    id: int
    cpus: tuple[int, ...]
    memory_kib: int | None  # None: the capture does not say
    pages: dict[int, int] = field(default_factory=dict)  # page KiB -> pages (every size listed, base included)


@dataclass
class Capture:
    kind: Kind
    path: str
    nodes: list[CaptureNode]  # sorted by id
    distances: dict[int, dict[int, int]] | None  # node id -> node id -> distance; None: not in the capture
    siblings: list[tuple[int, ...]] | None  # SMT groups; None: not in the capture
    siblings_from: str = ""  # where the groups came from (for the header)
    arch: str | None = None
    page_sizes: tuple[int, ...] = ()  # every page size the host lists, KiB, sorted
    cpu_model: str | None = None
    vendor: str | None = None
    quirks: list[str] = field(default_factory=list)  # irregularities met and how they were read
    lists_base_page: bool = True  # False: every size listed is a hugepage size (sysfs lists no base page)

    @property
    def base_page_kib(self) -> int | None:
        """The base (non-huge) page: the smallest size listed if it is at most 64 KiB (a capture that lists it)."""
        if not self.lists_base_page:
            return None
        sizes = sorted(set(self.page_sizes) | {s for n in self.nodes for s in n.pages})
        return sizes[0] if sizes and sizes[0] <= 64 else None

    @property
    def huge_sizes(self) -> tuple[int, ...]:
        base = self.base_page_kib
        sizes = set(self.page_sizes) | {s for n in self.nodes for s in n.pages}
        return tuple(sorted(s for s in sizes if s != base))

    @property
    def cpu_count(self) -> int:
        return sum(len(n.cpus) for n in self.nodes)


def page_kib(value: str | None, unit: str | None, what: str) -> int:
    """A page size attribute (``<pages size='2048'>``, ``<page size='1' unit='G'>``): a scaled integer that is a
    power of two from 4K to 16G. Raises ValueError naming ``what``."""
    return check_page_kib(scaled_kib(value, unit, what), f"{what}: {value!r} {unit or 'KiB'}")


def mem_text(kib: int) -> str:
    """Exact memory text for YAML: 0, 32GiB, 64306MiB, 263763320KiB."""
    if kib == 0:
        return "0"
    for unit, size in (("TiB", 1024**3), ("GiB", 1024**2), ("MiB", 1024)):
        if kib % size == 0:
            return f"{kib // size}{unit}"
    return f"{kib}KiB"


def read_bytes(path: str) -> bytes:
    """A capture file's bytes: a regular file of at most ``MAX_FILE_BYTES`` (not a device or FIFO)."""
    if os.path.isdir(path):
        raise fail(path, "is a directory (a sysfs snapshot directory holds sys/devices/system/node/...)")
    try:
        return read_input_bytes(path, MAX_FILE_BYTES)
    except InputFileError as exc:
        raise fail(path, str(exc)) from None


def read_text(path: str, key: str | None = None) -> str:
    """A text capture file's contents (UTF-8, else refused naming the file)."""
    try:
        return read_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        raise fail(path, "not UTF-8 text", key) from None


def no_long_numbers(path: str, text: str, key: str | None = None) -> None:
    """Numbers in a text capture have at most 12 digits (a CPU id, a size in MB): refused before any is read."""
    m = re.search(r"[0-9]{13,}", text)
    if m:
        line = text.count("\n", 0, m.start()) + 1
        raise fail(path, f"line {line}: the number {m.group()[:20]}... has too many digits for a capture", key)


def runs(ids: Iterable[int]) -> int:
    """Number of contiguous runs in a sorted id list: (0-5,12-17) → 2."""
    values = sorted(ids)
    return sum(1 for i, v in enumerate(values) if i == 0 or values[i - 1] != v - 1)


def cpu_layout_quirk(nodes: list[CaptureNode]) -> str | None:
    """How node CPU lists are laid out when they are not one contiguous range each."""
    counts = {n.id: runs(n.cpus) for n in nodes if n.cpus}
    if not counts or max(counts.values()) <= 1:
        return None
    spans = sorted((min(n.cpus), max(n.cpus)) for n in nodes if n.cpus)
    overlap = any(spans[i + 1][0] < spans[i][1] for i in range(len(spans) - 1))
    if not overlap:
        return "sparse CPU ids (gaps in the numbering)"
    if max(counts.values()) <= 4:
        return "node CPU lists split in ranges (e.g. cores first, their SMT siblings after all cores)"
    return "CPU ids interleaved across nodes"
