"""Plain value parsers of the scenario format: each takes a YAML value and returns the parsed value or raises
``ValueError`` whose text is the loader's message for the user (the part after ``FILE: key.path: ``).

Shared by the loader (``planner.io.loader``) and the pydantic models of the file (``planner.io.schema``), whose
field validators call them, so a message is written once. Units go through ``planner.model.units``.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable
from fractions import Fraction

from planner.model.units import (
    MAX_CPU_ID,
    NAME_RE,
    expand_name,
    format_cpulist,
    parse_cpulist,
    parse_duration_s,
    parse_memory_kib,
    shorten,
    to_fraction,
)

MAX_PATTERN_NAMES = 100_000
SCOPES = ("host", "rack", "zone")


def _show(value: object, limit: int = 60) -> str:
    """A value as the user wrote it in YAML, for messages (long text shortened to ``limit``)."""
    if value is None:
        return "null (no value)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(shorten(value, limit))
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, (set, frozenset)):
        return "a set"
    if isinstance(value, Fraction):
        return _num(value)
    return shorten(str(value), limit)


def _num(value: Fraction) -> str:
    """Fraction(7, 10) → '0.7', Fraction(8) → '8'."""
    if value.denominator == 1:
        return str(value.numerator)
    text = f"{float(value):.6f}".rstrip("0").rstrip(".")
    return text



def _int(value: object, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{_show(value)} is not an integer")
    if minimum is not None and maximum is not None and not minimum <= value <= maximum:
        raise ValueError(f"{value} is out of range (must be {minimum}..{maximum})")
    if minimum is not None and value < minimum:
        raise ValueError(f"{value} is out of range (must be >= {minimum})")
    if maximum is not None and value > maximum:
        raise ValueError(f"{value} is out of range (must be <= {maximum})")
    return value


def _number(value: object) -> Fraction:
    """A YAML number (or, from the Python API, a Fraction) as an exact Fraction (0.7 → 7/10). Strings and booleans
    are refused."""
    if isinstance(value, Fraction):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{_show(value)} is not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{_show(value)} is not a finite number")
    return to_fraction(value)


def _ranged(value: object, low: Fraction | int, high: Fraction | int | None, *, low_open: bool = False,
            text: str) -> Fraction:
    """A number in [low, high] (or (low, high] when ``low_open``); ``text`` describes the range for messages."""
    number = _number(value)
    too_low = number <= low if low_open else number < low
    if too_low or (high is not None and number > high):
        raise ValueError(f"{_num(number)} is out of range (must be {text})")
    return number


def _choice(value: object, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        close = difflib.get_close_matches(str(value), choices, n=1) if isinstance(value, str) else []
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"{_show(value)} is not one of: {', '.join(choices)}{hint}")
    return value


def _bool(value: object) -> bool:
    """true or false (YAML booleans only)."""
    if not isinstance(value, bool):
        raise ValueError(f"{_show(value)} is not true or false")
    return value


def _name(value: object) -> str:
    """A plain name (no pattern)."""
    _string_name(value)
    if not NAME_RE.match(value):
        raise ValueError(f"'{shorten(value, 80)}' is not a valid name (letters, digits, '.', '_', '-', starting with a "
                         "letter or digit, at most 63 characters)")
    return value


def _string_name(value: object) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{_show(value)} is not a name (a name is a string; quote it, e.g. name: \"01\")")


def _pattern(value: object) -> list[str]:
    """A name or a pattern like ``web[01-40]`` → the names."""
    _string_name(value)
    match = re.search(r"\[([0-9]+)-([0-9]+)\]", value)
    if match and (len(match.group(1)) > 9 or len(match.group(2)) > 9
                  or int(match.group(2)) - int(match.group(1)) >= MAX_PATTERN_NAMES):
        raise ValueError(f"'{shorten(value, 80)}' expands to more than {MAX_PATTERN_NAMES} names")
    return expand_name(value)


def _cpus(value: object) -> tuple[int, ...]:
    """A CPU list, bounded so that a typo cannot build a huge set."""
    if isinstance(value, str):
        big = [n for n in re.findall(r"[0-9]+", value) if len(n) > 9 or int(n) > MAX_CPU_ID]
        if big:
            raise ValueError(f"'{shorten(value)}': CPU id {shorten(big[0])} is too large (at most {MAX_CPU_ID})")
    if isinstance(value, list):
        big = [n for n in value if isinstance(n, int) and not isinstance(n, bool) and n > MAX_CPU_ID]
        if big:
            raise ValueError(f"CPU id {big[0]} is too large (at most {MAX_CPU_ID})")
    if value is None:
        raise ValueError("null (no value) is not a CPU list (expected e.g. '0-3,8,^2'; '' for none)")
    return parse_cpulist(value)



def _memory(value: object, *, allow_zero: bool = False) -> int:
    if value is None:
        raise ValueError("null (no value) is not a memory size (expected e.g. 32GiB)")
    return parse_memory_kib(value, allow_zero=allow_zero)


def _duration(value: object) -> float:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{_show(value)} is not a duration (expected e.g. 60s or 2m)")
    if value is None:
        raise ValueError("null (no value) is not a duration (expected e.g. 60s or 2m)")
    return parse_duration_s(value)


def _cpus_text(cpus: Iterable[int]) -> str:
    text = format_cpulist(cpus)
    return f"CPU {text}" if text.isdigit() else f"CPUs {text}"


def _survive(value: object) -> tuple[str, int]:
    """``{hosts: 1}`` or ``{racks: 1}``: how many failed hosts (racks) the plan must survive (0 or 1)."""
    expected = "(expected {hosts: 1} or {racks: 1})"
    if not isinstance(value, dict) or len(value) != 1:
        raise ValueError(f"{_show(value)} is not one failure to survive {expected}")
    if next(iter(value)) not in ("hosts", "racks"):
        raise ValueError(f"{_show(next(iter(value)))} is not a failure to survive {expected}")
    kind, count = next(iter(value.items()))
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= 1:
        raise ValueError(f"{kind}: {_show(count)} is not supported (expected 0 or 1: vplan plans for one failed "
                         f"{kind[:-1]} at a time)")
    return kind, count


def _tags(value: object) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    tags: list[str] = []
    for tag in items:
        if not isinstance(tag, str) or not tag.strip():
            raise ValueError(f"{_show(tag)} is not a tag (expected a string or a list of strings)")
        if tag not in tags:
            tags.append(tag)
    return tuple(tags)


_XML_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}\Z")


def _xml_token(value: object, what: str) -> str:
    if not isinstance(value, str) or not _XML_TOKEN.match(value):
        raise ValueError(f"{_show(value)} is not {what} (letters, digits, '.', '_', '+', '-'; at most 64)")
    return value
