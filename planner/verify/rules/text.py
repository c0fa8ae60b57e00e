"""How the rules write numbers, CPU lists and places in their messages."""

from __future__ import annotations

from collections.abc import Container, Iterable
from fractions import Fraction

from planner.model.units import format_cpulist
from planner.verify.usage import HostUsage, stray_shared_groups


def num(value: Fraction | int) -> str:
    """8.5, 68, 0.7; a value with no short decimal form as a fraction with its approximation."""
    value = Fraction(value)
    if value.denominator == 1:
        return str(value.numerator)
    den = value.denominator
    for p in (2, 5):
        while den % p == 0:
            den //= p
    if den == 1:
        text = f"{float(value):.10f}".rstrip("0").rstrip(".")
        if Fraction(text) == value:
            return text
    return f"{value.numerator}/{value.denominator} (~{float(value):.3f})"


def cpus(items: Iterable[int]) -> str:
    """A CPU list (``10-17,81-89``), ``(none)`` when empty."""
    text = format_cpulist(items)
    return text if text else "(none)"


def vlist(vcpus: Iterable[int]) -> str:
    """'vCPU 1' / 'vCPUs 0-1'."""
    vs = sorted(set(vcpus))
    word = "vCPU" if len(vs) == 1 else "vCPUs"
    return f"{word} {format_cpulist(vs)}"


def are(items: Iterable[int]) -> str:
    """'CPU 1 is' / 'CPUs 0-1 are' style agreement for a list of CPUs."""
    cs = sorted(set(items))
    return f"CPU {cs[0]} is" if len(cs) == 1 else f"CPUs {cpus(cs)} are"


def isare(vcpus: Iterable[int]) -> str:
    return "is" if len(set(vcpus)) == 1 else "are"


def tenant(name: str) -> str:
    return f"'{name}'" if name else "(none)"


def serving_shared(hu: HostUsage, taken: Container[int]) -> list[tuple[int, int | None, str]]:
    """The CPUs of ``taken`` (held by one guest for itself) that shared vCPUs are pinned to: (CPU, its node, the
    shared guests and vCPUs on it, in words), in CPU order per pin group."""
    out: list[tuple[int, int | None, str]] = []
    for (pins, _node), users in stray_shared_groups(hu):
        if not pins:
            continue
        who = "; ".join(f"{g} {vlist(vs)}" for g, vs in users)
        for c in sorted(frozenset(pins)):
            if c in taken:
                out.append((c, hu.facts.node_of_cpu.get(c), who))
    return out


def where(host: str, node: int | None) -> str:
    return host if node is None else f"{host} node {node}"
