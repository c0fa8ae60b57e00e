"""planner.model.units: the value syntax of scenario format v1 (memory, page sizes, CPU lists, names, durations)."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from planner.model.units import (
    expand_name,
    format_cpulist,
    format_memory,
    format_page,
    parse_cpulist,
    parse_duration_s,
    parse_memory_kib,
    parse_page_kib,
    to_fraction,
)

# ---------------------------------------------------------------------------------------------------------------
# CPU lists


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0-3", (0, 1, 2, 3)),
        ("0-17,72-89", tuple(range(0, 18)) + tuple(range(72, 90))),
        ("0-3,8,^2", (0, 1, 3, 8)),
        ("0-7,^2-4", (0, 1, 5, 6, 7)),
        ("8,0", (0, 8)),
        (" 1 , 3 ", (1, 3)),
        ("5,5,5", (5,)),
        ("", ()),
        ("   ", ()),
        ([], ()),
        ([3, 1, 2, 1], (1, 2, 3)),
        (7, (7,)),
    ],
)
def test_parse_cpulist(text, expected):
    assert parse_cpulist(text) == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("8-15,^9x", "'8-15,^9x' is not a CPU list (expected e.g. '0-3,8,^2')"),
        ("3-1", "range 3-1 runs backwards"),
        ("^2", "it only excludes"),
        ("a", "is not a CPU list"),
        ("1,,2", "is not a CPU list"),
        ("-1", "is not a CPU list"),
        ([1, -2], "-2 in [1, -2] is not a CPU id"),
        ([1, True], "True in [1, True] is not a CPU id"),
        ([1, "2"], "'2' in [1, '2'] is not a CPU id"),
        (True, "True is not a CPU list"),
        (-1, "ids are non-negative"),
        (1.5, "1.5 is not a CPU list"),
        (None, "None is not a CPU list"),
    ],
)
def test_parse_cpulist_errors(value, fragment):
    with pytest.raises(ValueError) as info:
        parse_cpulist(value)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("ids", "text"),
    [((0, 1, 2, 3, 8, 72), "0-3,8,72"), ((), ""), ((5,), "5"), ((3, 1, 2, 2), "1-3"), ((0, 2, 4), "0,2,4")],
)
def test_format_cpulist(ids, text):
    assert format_cpulist(ids) == text


@given(st.sets(st.integers(min_value=0, max_value=300), max_size=60))
def test_cpulist_round_trip(ids):
    assert parse_cpulist(format_cpulist(ids)) == tuple(sorted(ids))


# ---------------------------------------------------------------------------------------------------------------
# Memory


@pytest.mark.parametrize(
    ("text", "kib"),
    [
        ("32GiB", 32 * 1024**2),
        ("1.5GiB", 1536 * 1024),
        ("512MiB", 512 * 1024),
        ("4KiB", 4),
        ("1TiB", 1024**3),
        # libvirt's short forms are binary
        ("2K", 2),
        ("2M", 2048),
        ("1G", 1024**2),
        ("1T", 1024**3),
        # decimal units
        ("1KB", 0),  # 1000 bytes = 0.976 KiB, rounded down
        ("2KB", 1),  # 2000 bytes = 1.95 KiB
        ("1MB", 976),  # 10**6 / 1024 = 976.56
        ("1GB", 976562),  # 10**9 / 1024 = 976562.5
        ("1TB", 976562500),
        ("1.5KiB", 1),  # rounded down to a whole KiB
        (" 8GiB ", 8 * 1024**2),
        ("8 GiB", 8 * 1024**2),
    ],
)
def test_parse_memory_kib(text, kib):
    assert parse_memory_kib(text) == kib


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("4096", "memory needs a unit, e.g. 32GiB"),
        (4096, "memory needs a unit, e.g. 32GiB"),
        (1.5, "memory needs a unit"),
        ("0", "memory needs a unit"),
        ("32gib", "unknown memory unit 'gib' (units are case-sensitive"),
        ("32GIB", "unknown memory unit 'GIB'"),
        ("32gb", "unknown memory unit 'gb'"),
        ("32k", "unknown memory unit 'k'"),
        ("32PiB", "unknown memory unit 'PiB'"),
        ("GiB", "is not a memory size"),
        ("-1GiB", "is not a memory size"),
        ("1e3GiB", "is not a memory size"),
        (True, "is not a memory size"),
        ([1], "is not a memory size"),
    ],
)
def test_parse_memory_errors(value, fragment):
    with pytest.raises(ValueError) as info:
        parse_memory_kib(value)
    assert fragment in str(info.value)


def test_memory_zero_only_when_allowed():
    assert parse_memory_kib(0, allow_zero=True) == 0
    assert parse_memory_kib("0", allow_zero=True) == 0
    assert parse_memory_kib("0GiB") == 0  # with a unit, 0 is a size like any other
    with pytest.raises(ValueError, match="needs a unit"):
        parse_memory_kib(0)
    with pytest.raises(ValueError, match="needs a unit"):
        parse_memory_kib(5, allow_zero=True)


@pytest.mark.parametrize(("kib", "text"), [(33554432, "32GiB"), (1536, "1.5MiB"), (512, "512KiB"),
                                           (1024**3, "1TiB"), (-10 * 1024**2, "-10GiB")])
def test_format_memory(kib, text):
    assert format_memory(kib) == text


# ---------------------------------------------------------------------------------------------------------------
# Page sizes


@pytest.mark.parametrize(
    ("text", "kib"),
    [("2M", 2048), ("2MiB", 2048), ("1G", 1024**2), ("1GiB", 1024**2), ("64K", 64), ("64KiB", 64),
     ("16M", 16384), ("16G", 16 * 1024**2), ("4K", 4)],
)
def test_parse_page_kib(text, kib):
    assert parse_page_kib(text) == kib


@pytest.mark.parametrize("text", ["2", "2m", "2MB", "1gib", "0M", "1.5G", "", "2 M", "huge"])
def test_parse_page_errors(text):
    with pytest.raises(ValueError, match="page size"):
        parse_page_kib(text)


@pytest.mark.parametrize(("kib", "text"), [(2048, "2M"), (1024**2, "1G"), (64, "64K"), (16 * 1024**2, "16G"),
                                           (32768, "32M")])
def test_format_page(kib, text):
    assert format_page(kib) == text
    assert parse_page_kib(text) == kib


# ---------------------------------------------------------------------------------------------------------------
# Names and patterns


def test_expand_name_zero_padding():
    names = expand_name("web[01-40]")
    assert len(names) == 40
    assert names[0] == "web01" and names[8] == "web09" and names[9] == "web10" and names[-1] == "web40"


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("kvm[1-3]", ["kvm1", "kvm2", "kvm3"]),
        ("kvm[8-10]", ["kvm8", "kvm9", "kvm10"]),  # width of A: no padding
        ("n[001-002].dc1", ["n001.dc1", "n002.dc1"]),
        ("[1-2]x", ["1x", "2x"]),
        ("db[7-7]", ["db7"]),
        ("plain", ["plain"]),
        ("a.b_c-d", ["a.b_c-d"]),
    ],
)
def test_expand_name(pattern, expected):
    assert expand_name(pattern) == expected


@pytest.mark.parametrize(
    ("pattern", "fragment"),
    [
        ("web[40-01]", "runs backwards"),
        ("web[1-2][3-4]", "is not a name pattern"),
        ("web[a-b]", "is not a name pattern"),
        ("web[1-2", "is not a name pattern"),
        ("-web", "is not a valid name"),
        ("bad name", "is not a valid name"),
        ("", "is not a valid name"),
        ("x" * 64, "is not a valid name"),
        ("x[1-2]!", "is not a valid name"),
    ],
)
def test_expand_name_errors(pattern, fragment):
    with pytest.raises(ValueError, match=fragment.replace("[", r"\[")):
        expand_name(pattern)


def test_expand_name_limits():
    assert expand_name("x" * 63) == ["x" * 63]
    assert expand_name("[1-2]") == ["1", "2"]
    with pytest.raises(ValueError):
        expand_name(5)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------------
# Durations and exact numbers


@pytest.mark.parametrize(("value", "seconds"), [(60, 60.0), (1.5, 1.5), ("60s", 60.0), ("2m", 120.0),
                                                ("1.5m", 90.0), ("90", 90.0), (" 30s ", 30.0)])
def test_parse_duration(value, seconds):
    assert parse_duration_s(value) == seconds


@pytest.mark.parametrize("value", ["1h", "60 sec", "", "m", True, 0, "0s", -5, [60]])
def test_parse_duration_errors(value):
    with pytest.raises(ValueError, match="duration"):
        parse_duration_s(value)


@pytest.mark.parametrize(("value", "fraction"), [(0.7, Fraction(7, 10)), (8, Fraction(8)), ("0.25", Fraction(1, 4)),
                                                 (0.1, Fraction(1, 10)), (1.0, Fraction(1))])
def test_to_fraction_is_exact(value, fraction):
    assert to_fraction(value) == fraction


@pytest.mark.parametrize("value", [True, None, "abc", [1]])
def test_to_fraction_errors(value):
    with pytest.raises(ValueError):
        to_fraction(value)


def test_non_finite_numbers_are_refused_cleanly():
    import pytest

    from planner.model.units import parse_duration_s, to_fraction

    for bad in (float("inf"), float("nan")):
        with pytest.raises(ValueError):
            to_fraction(bad)
        with pytest.raises(ValueError):
            parse_duration_s(bad)
