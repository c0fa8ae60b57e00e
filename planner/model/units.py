"""Small pure helpers for the values of scenario format v1: memory sizes, page sizes, CPU lists, name patterns,
durations. Every function raises ``ValueError`` with a message meant for a user (the loader adds file and key)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from fractions import Fraction

KIB_PER_UNIT: dict[str, int | Fraction] = {
    "KiB": 1,
    "MiB": 1024,
    "GiB": 1024**2,
    "TiB": 1024**3,
    # libvirt's short forms are binary
    "K": 1,
    "M": 1024,
    "G": 1024**2,
    "T": 1024**3,
    # decimal units, in KiB
    "KB": Fraction(1000, 1024),
    "MB": Fraction(1000**2, 1024),
    "GB": Fraction(1000**3, 1024),
    "TB": Fraction(1000**4, 1024),
}

#: Sanity bounds for ids and sizes read from users' files (a typo like '0-1000000000' must not build a huge set).
MAX_CPU_ID = 65535  # Linux: NR_CPUS is at most 8192
MAX_NODE_ID = 4095  # Linux: at most 1024 NUMA nodes
MAX_MEMORY_KIB = 1 << 42  # 4 PiB: above any machine (and far from int64 overflow in the solver)
MAX_PAGE_KIB = 16 * 1024**2  # 16G, POWER's largest page

_MEMORY_RE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]+)\s*\Z")


def parse_memory_kib(value: object, *, allow_zero: bool = False) -> int:
    """``'32GiB'`` → 33554432. Rounded down to a whole KiB (libvirt's unit).

    A bare number is refused, except ``0`` when ``allow_zero`` (a memory-less node)."""
    if isinstance(value, bool):
        raise ValueError(f"{shorten(repr(value), 80)} is not a memory size (expected e.g. 32GiB)")
    if isinstance(value, (int, float)):
        if allow_zero and value == 0:
            return 0
        raise ValueError(f"{shorten(repr(value), 80)}: memory needs a unit, e.g. 32GiB")
    if not isinstance(value, str):
        raise ValueError(f"{shorten(repr(value), 80)} is not a memory size (expected e.g. 32GiB)")
    text = value.strip()
    if allow_zero and text == "0":
        return 0
    if re.fullmatch(r"[0-9]+(\.[0-9]+)?", text):
        raise ValueError(f"'{shorten(str(value), 80)}': memory needs a unit, e.g. 32GiB")
    m = _MEMORY_RE.match(text)
    if not m:
        raise ValueError(f"'{shorten(str(value), 80)}' is not a memory size (expected e.g. 32GiB, 1.5GiB, 512MiB)")
    number, unit = m.groups()
    if unit not in KIB_PER_UNIT:
        units = " ".join(KIB_PER_UNIT)
        shown = shorten(str(value), 80)
        raise ValueError(f"'{shown}': unknown memory unit '{unit}' (units are case-sensitive: {units})")
    if len(number) > 30:
        raise ValueError(f"'{shorten(text)}': memory size has too many digits")
    try:
        kib = Fraction(Decimal(number)) * KIB_PER_UNIT[unit]
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only digits
        raise ValueError(f"'{shorten(str(value), 80)}' is not a memory size") from exc
    if kib > MAX_MEMORY_KIB:
        raise ValueError(f"'{shorten(text)}' is more than 4 PiB: not a real machine's memory")
    return int(kib)  # floor for non-negative values


def shorten(text: str, limit: int = 40) -> str:
    """Long user text shortened for a message."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


_PAGE_RE = re.compile(r"([0-9]{1,12})(K|KiB|M|MiB|G|GiB)\Z")


def parse_page_kib(value: object) -> int:
    """``'2M'``/``'2MiB'`` → 2048, ``'1G'``/``'1GiB'`` → 1048576, ``'64K'`` → 64."""
    text = str(value).strip()
    m = _PAGE_RE.match(text)
    if not m:
        raise ValueError(f"'{shorten(str(value))}' is not a page size (expected e.g. 2M, 2MiB, 1G, 1GiB)")
    number, unit = int(m.group(1)), m.group(2)[0]
    if number <= 0:
        raise ValueError(f"'{shorten(str(value), 80)}' is not a page size (must be positive)")
    return check_page_kib(number * {"K": 1, "M": 1024, "G": 1024**2}[unit], f"'{shorten(str(value), 80)}'")


def check_page_kib(page_kib: int, shown: str) -> int:
    """A page size is a power of two from 4K to 16G (``shown``: how the value is named in the message)."""
    if page_kib < 4 or page_kib > MAX_PAGE_KIB or page_kib & (page_kib - 1):
        raise ValueError(f"{shown} is not a page size (a power of two from 4K to 16G, e.g. 4K, 64K, 2M, 1G)")
    return page_kib


def format_page(page_kib: int) -> str:
    """2048 → '2M', 1048576 → '1G', 64 → '64K' (the short form used in scenarios and messages)."""
    for unit, size in (("G", 1024**2), ("M", 1024)):
        if page_kib % size == 0:
            return f"{page_kib // size}{unit}"
    return f"{page_kib}K"


def format_memory(kib: int) -> str:
    """A readable size for messages: 33554432 → '32GiB', 1536 → '1.5MiB'."""
    for unit, size in (("TiB", 1024**3), ("GiB", 1024**2), ("MiB", 1024)):
        if abs(kib) >= size:
            value = kib / size
            text = f"{value:.2f}".rstrip("0").rstrip(".")
            return f"{text}{unit}"
    return f"{kib}KiB"


_RANGE_RE = re.compile(r"(\^)?([0-9]+)(?:-([0-9]+))?\Z")


def parse_cpulist(value: object, max_id: int = MAX_CPU_ID) -> tuple[int, ...]:
    """Linux/libvirt list syntax → sorted unique ids. ``'0-3,8,^2'`` → (0, 1, 3, 8).

    Also takes a YAML list of non-negative integers; ``''`` and ``[]`` are empty. Ids above ``max_id`` are refused
    (before any range is built)."""
    if isinstance(value, bool):
        raise ValueError(f"{shorten(repr(value), 80)} is not a CPU list (expected e.g. '0-3,8,^2')")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value} is not a CPU list (ids are non-negative)")
        if value > max_id:
            raise ValueError(f"CPU id {shorten(str(value))} is too large (at most {max_id})")
        return (value,)
    if isinstance(value, (list, tuple)):
        ids: set[int] = set()
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int) or item < 0:
                shown = shorten(repr(list(value)), 60)
                raise ValueError(f"{shorten(repr(item))} in {shown} is not a CPU id (expected a "
                                 "non-negative integer)")
            if item > max_id:
                raise ValueError(f"CPU id {shorten(str(item))} is too large (at most {max_id})")
            ids.add(item)
        return tuple(sorted(ids))
    if not isinstance(value, str):
        raise ValueError(f"{shorten(repr(value), 80)} is not a CPU list (expected e.g. '0-3,8,^2')")
    text = value.strip()
    if not text:
        return ()
    included: set[int] = set()
    excluded: set[int] = set()
    for part in text.split(","):
        m = _RANGE_RE.match(part.strip())
        if not m:
            raise ValueError(f"'{shorten(value)}' is not a CPU list (expected e.g. '0-3,8,^2')")
        negate, lo_text, hi_text = m.groups()
        for number in (lo_text, hi_text):
            if number is not None and (len(number) > 9 or int(number) > max_id):
                raise ValueError(f"'{shorten(value)}': CPU id {shorten(number)} is too large (at most {max_id})")
        lo = int(lo_text)
        hi = int(hi_text) if hi_text is not None else lo
        if hi < lo:
            raise ValueError(f"'{shorten(str(value), 80)}' is not a CPU list: range {lo}-{hi} runs backwards")
        (excluded if negate else included).update(range(lo, hi + 1))
    if not included and excluded:
        raise ValueError(f"'{shorten(str(value), 80)}' is not a CPU list: it only excludes")
    return tuple(sorted(included - excluded))


def format_cpulist(ids: Iterable[int]) -> str:
    """(0, 1, 2, 3, 8, 72) → '0-3,8,72'. The inverse of ``parse_cpulist`` for plain lists."""
    values = sorted(set(ids))
    parts: list[str] = []
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        parts.append(str(values[i]) if i == j else f"{values[i]}-{values[j]}")
        i = j + 1
    return ",".join(parts)


NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")  # match() or fullmatch(): \Z, not $ (a final newline)
_PATTERN_RE = re.compile(r"([^\[\]]*)\[([0-9]+)-([0-9]+)\]([^\[\]]*)\Z")


def expand_name(pattern: str) -> list[str]:
    """``'web[01-03]'`` → ['web01', 'web02', 'web03']; a plain name → [name]. Each result must be a valid name."""
    if not isinstance(pattern, str):
        raise ValueError(f"{shorten(repr(pattern), 80)} is not a name")
    if "[" in pattern or "]" in pattern:
        m = _PATTERN_RE.match(pattern)
        if not m:
            raise ValueError(f"'{shorten(pattern, 80)}' is not a name pattern (expected one group, e.g. web[01-40])")
        prefix, lo_text, hi_text, suffix = m.groups()
        lo, hi = int(lo_text), int(hi_text)
        if lo > hi:
            raise ValueError(f"'{shorten(pattern, 80)}': pattern range {lo_text}-{hi_text} runs backwards")
        width = len(lo_text)
        names = [f"{prefix}{i:0{width}d}{suffix}" for i in range(lo, hi + 1)]
    else:
        names = [pattern]
    for name in names:
        if not NAME_RE.match(name):
            raise ValueError(
                f"'{shorten(name, 80)}' is not a valid name (letters, digits, '.', '_', '-', starting with a letter or "
                "digit, at most 63 characters)"
            )
    return names


def parse_duration_s(value: object) -> float:
    """``60``, ``'60s'``, ``'2m'``, ``'1.5m'`` → seconds."""
    if isinstance(value, bool):
        raise ValueError(f"{shorten(repr(value), 80)} is not a duration (expected e.g. 60s or 2m)")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(s|m)?\s*", value)
        if not m:
            raise ValueError(f"'{shorten(str(value), 80)}' is not a duration (expected e.g. 60s or 2m)")
        seconds = float(m.group(1)) * (60 if m.group(2) == "m" else 1)
    else:
        raise ValueError(f"{shorten(repr(value), 80)} is not a duration (expected e.g. 60s or 2m)")
    if not seconds > 0 or seconds == float("inf"):  # also refuses nan
        raise ValueError(f"{shorten(repr(value), 80)}: a duration must be a positive, finite number of seconds")
    return seconds


def to_fraction(value: object, what: str = "number") -> Fraction:
    """A YAML number (or numeric string) as an exact fraction: 0.7 → 7/10, not the float's binary expansion."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{shorten(repr(value), 80)} is not a {what}")
    try:
        return Fraction(Decimal(str(value).strip()))
    except (InvalidOperation, ValueError, OverflowError) as exc:  # inf and nan have no exact fraction
        raise ValueError(f"{shorten(repr(value), 80)} is not a {what}") from exc


# libvirt scaled integers

_SCALE_KIB: dict[str, float | int] = {
    "b": 1 / 1024, "bytes": 1 / 1024,
    "k": 1, "KiB": 1, "KB": 1000 / 1024,
    "M": 1024, "MiB": 1024, "MB": 1000**2 / 1024,
    "G": 1024**2, "GiB": 1024**2, "GB": 1000**3 / 1024,
    "T": 1024**3, "TiB": 1024**3, "TB": 1000**4 / 1024,
    "P": 1024**4, "PiB": 1024**4, "PB": 1000**5 / 1024,
    "E": 1024**5, "EiB": 1024**5, "EB": 1000**6 / 1024,
}


def scaled_kib(value: str | None, unit: str | None, what: str) -> int:
    """A libvirt scaled integer (``<memory unit='GiB'>4</memory>``, ``<pages size='2048'>``) in KiB; libvirt's
    default unit is KiB. Raises ValueError naming ``what``."""
    text = (value or "").strip()
    if not re.fullmatch(r"[0-9]+", text):
        raise ValueError(f"{what}: {value!r} is not a whole number")
    unit = (unit or "KiB").strip()
    scale = _SCALE_KIB.get(unit)
    if scale is None:
        raise ValueError(f"{what}: unknown unit {unit[:20]!r} (libvirt units: {', '.join(_SCALE_KIB)})")
    if len(text) > 30:
        raise ValueError(f"{what}: {text[:20]}... has too many digits")
    kib = int(text) * scale if isinstance(scale, int) else int(int(text) * scale)
    if kib > MAX_MEMORY_KIB:
        raise ValueError(f"{what}: {text} {unit} is more than 4 PiB: not a real machine's size")
    return kib
