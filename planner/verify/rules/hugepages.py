"""``hugepages``: hugepage cells against the node's pools."""

from __future__ import annotations

from planner.model.plan import Plan
from planner.model.units import format_page
from planner.verify.usage import PlanUsage
from planner.verify.violation import Violation


def hugepages(plan: Plan, usage: PlanUsage) -> list[Violation]:
    """Per node and page size: Σ ⌈cell memory / page⌉ over the node's cells of that page size ≤ the node's pool of
    that size (no pool: 0 pages)."""
    out: list[Violation] = []
    for hu in usage.hosts.values():
        for node, nu in hu.nodes.items():
            pool = hu.facts.pages[node]
            for size, n in nu.hugepages_used.items():
                have = pool.get(size, 0)
                if n > have:
                    out.append(Violation("hugepages", None, hu.host, node,
                                         f"{hu.host} node {node}: guest cells take {n} {format_page(size)} pages, "
                                         f"above the node's pool of {have}"))
    return out
