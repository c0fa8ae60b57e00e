"""``memory``: 4K memory per guest cell and per host node (hugepage cells: ``hugepages``)."""

from __future__ import annotations

import math
from fractions import Fraction

from planner.model.plan import Plan
from planner.model.units import format_memory
from planner.verify.rules.text import num
from planner.verify.usage import HostUsage, PlanUsage, cell_page_kib
from planner.verify.violation import Violation


def memory(plan: Plan, usage: PlanUsage) -> list[Violation]:
    """Per cell: a 4K cell never takes more than its node's free 4K memory (memory_overcommit never applies inside
    one guest). Per node, with D the 4K memory of dedicated guests' cells, S that of shared guests' cells and r the
    memory_overcommit: D + S / r ≤ the node's free 4K memory (memory − reserved − hugepage pools)."""
    ratio = plan.scenario.policy.memory_overcommit
    out: list[Violation] = []
    for hu in usage.hosts.values():
        out += _cells(hu)
        out += _nodes(hu, ratio)
    return out


def memory_target(plan: Plan, usage: PlanUsage) -> list[Violation]:
    """Per node, with policy.node_memory_target t < 1 (t = 1: no headroom rule): D + S / r ≤ t × the node's free 4K
    memory (D, S and r as in ``memory``): headroom kept for the host's page cache and QEMU's own memory."""
    policy = plan.scenario.policy
    target, ratio = policy.node_memory_target, policy.memory_overcommit
    if target >= 1:
        return []
    out: list[Violation] = []
    for hu in usage.hosts.values():
        for node, nu in hu.nodes.items():
            ded_kib = hu.memory_4k_dedicated_kib.get(node, 0)
            committed = Fraction(ded_kib) + Fraction(nu.memory_4k_used_kib - ded_kib) / ratio
            allowed = target * hu.facts.free_4k_kib[node]
            if committed > allowed:
                out.append(Violation(
                    "memory_target", None, hu.host, node,
                    f"{hu.host} node {node}: guest cells commit {format_memory(math.ceil(committed))} of 4K memory, "
                    f"above the node memory target {float(target):.0%} of the free "
                    f"{format_memory(hu.facts.free_4k_kib[node])} ({format_memory(math.floor(allowed))})"))
    return out


def _cells(hu: HostUsage) -> list[Violation]:
    out: list[Violation] = []
    free = hu.facts.free_4k_kib
    for g in hu.guests:
        for cell in g.placement.cells:
            node = cell.node_id
            if node not in free or cell_page_kib(g.guest, cell) or cell.memory_kib <= free[node]:
                continue
            out.append(Violation("memory", g.name, hu.host, node,
                                 f"{g.name} cell {cell.cell_id} on {hu.host} node {node} has "
                                 f"{format_memory(cell.memory_kib)} of 4K memory, above the node's free "
                                 f"{format_memory(free[node])} (memory_overcommit never applies inside one guest)"))
    return out


def _nodes(hu: HostUsage, ratio: Fraction) -> list[Violation]:
    out: list[Violation] = []
    for node, nu in hu.nodes.items():
        ded_kib = hu.memory_4k_dedicated_kib.get(node, 0)
        shared_kib = nu.memory_4k_used_kib - ded_kib
        if Fraction(ded_kib) + Fraction(shared_kib) / ratio > hu.facts.free_4k_kib[node]:
            out.append(Violation("memory", None, hu.host, node, _node_text(hu, node, ded_kib, shared_kib, ratio)))
    return out


def _node_text(hu: HostUsage, node: int, ded_kib: int, shared_kib: int, ratio: Fraction) -> str:
    free = hu.facts.free_4k_kib[node]
    at = f"{hu.host} node {node}"
    if ratio == 1:
        used = ded_kib + shared_kib
        return (f"{at}: guest cells take {used} KiB ({format_memory(used)}) of 4K memory, above the free {free} KiB "
                f"({format_memory(free)})")
    return (f"{at}: guest cells take {format_memory(ded_kib)} of 4K memory for dedicated guests (1:1) and "
            f"{format_memory(shared_kib)} for shared guests (÷ {num(ratio)} = "
            f"{format_memory(math.ceil(shared_kib / ratio))}), above the free {free} KiB ({format_memory(free)})")
