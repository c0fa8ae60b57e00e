"""SMT sibling groups: from a capture's per-CPU facts (``siblings`` lists, else socket/die/core ids) and from the
``threads_per_core`` rule (Linux's usual numbering: the siblings of c are c + k*N/T)."""

from __future__ import annotations

from collections.abc import Mapping

from planner.hostimport.errors import fail, ids_text
from planner.model.units import format_cpulist

#: cpu id -> {"siblings": (ids...)} or {"socket_id": .., "die_id": .., "core_id": ..}
CpuFacts = Mapping[int, Mapping[str, object]]


def siblings_from_cpu_facts(path: str, facts: CpuFacts, owner: Mapping[int, int],
                            quirks: list[str]) -> tuple[list[tuple[int, ...]] | None, str]:
    """SMT groups from the ``siblings`` attributes, else from socket/die/core ids; (None, '') if neither.
    ``owner`` maps a CPU to its node; the quirks met are appended to ``quirks``."""
    if not facts:
        return [], "no CPUs"
    with_siblings = [c for c, f in facts.items() if "siblings" in f]
    if with_siblings and len(with_siblings) != len(facts):
        missing = sorted(set(facts) - set(with_siblings))
        raise fail(path, f"{ids_text('CPU', missing, 'has')} no siblings attribute but others do")
    if with_siblings:
        return _groups_from_siblings(path, facts, owner, quirks), "the capture's siblings attributes"
    keys = ("socket_id", "die_id", "core_id")
    if all(facts[c].get("core_id") is not None and facts[c].get("socket_id") is not None for c in facts):
        by_key: dict[tuple, list[int]] = {}
        for cpu in sorted(facts):
            key = tuple(facts[cpu].get(k) for k in keys) + (owner[cpu],)
            by_key.setdefault(key, []).append(cpu)
        quirks.append("no siblings attributes: sibling groups from socket_id/die_id/core_id")
        return sorted(tuple(g) for g in by_key.values()), "the CPUs' socket_id/die_id/core_id"
    return None, ""


def _groups_from_siblings(path: str, facts: CpuFacts, owner: Mapping[int, int],
                          quirks: list[str]) -> list[tuple[int, ...]]:
    """The groups the ``siblings`` lists give, offline CPUs (not in the capture) dropped. Every CPU of a group
    must list the same group, and a group sits in one node."""
    present = set(facts)
    groups: dict[int, tuple[int, ...]] = {}
    offline: set[int] = set()
    for cpu in sorted(facts):
        listed: tuple[int, ...] = facts[cpu]["siblings"]  # type: ignore[assignment]
        if cpu not in listed:
            raise fail(path, f"CPU {cpu}: siblings {format_cpulist(listed)} do not include CPU {cpu} itself")
        offline.update(c for c in listed if c not in present)
        groups[cpu] = tuple(c for c in listed if c in present)
    for cpu, group in groups.items():
        for other in group:
            if groups[other] != group:
                raise fail(path, f"CPU {cpu} lists siblings {format_cpulist(group)} but CPU {other} lists "
                                 f"{format_cpulist(groups[other])}; sibling groups must agree")
    unique = sorted(set(groups.values()))
    for group in unique:
        spanned = sorted({owner[c] for c in group})
        if len(spanned) > 1:
            raise fail(path, f"the siblings {format_cpulist(group)} sit in cells {', '.join(map(str, spanned))}; "
                             "a core sits in one node")
    sizes = sorted({len(g) for g in unique})
    if offline:
        quirks.append(f"siblings name CPUs the capture does not list (offline: {format_cpulist(offline)}); "
                      "they are left out")
    if any(len(g) >= 2 and g == tuple(range(g[0], g[-1] + 1)) for g in unique):
        quirks.append(f"siblings written as ranges (SMT{max(sizes)} groups like {format_cpulist(unique[0])})"
                      if max(sizes) > 2 else f"siblings of adjacent ids ({format_cpulist(unique[0])}, ...)")
    return unique


def derived_groups(cpus: list[int], threads: int) -> list[tuple[int, ...]] | None:
    """The threads_per_core rule: siblings of c are c + k*N/T; None when the ids are not 0..N-1 or N % T."""
    count = len(cpus)
    if threads == 1:
        return [(c,) for c in cpus]
    if cpus != list(range(count)) or count % threads:
        return None
    step = count // threads
    return [tuple(c + k * step for k in range(threads)) for c in range(step)]
