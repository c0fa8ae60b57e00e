"""``placement``: fixed hosts and anti-affinity tags."""

from __future__ import annotations

from collections import defaultdict

from planner.model.plan import Plan
from planner.verify.usage import PlanUsage
from planner.verify.violation import Violation


def fixed_host(plan: Plan, usage: PlanUsage) -> list[Violation]:
    """A guest with ``host:`` is placed on that host."""
    out: list[Violation] = []
    for host, hu in usage.hosts.items():
        for g in hu.guests:
            fixed = g.guest.host
            if fixed is not None and fixed != host:
                out.append(Violation("placement", g.name, host, None,
                                     f"{g.name} is fixed to host {fixed} but is placed on {host}"))
    return out


def anti_affinity(plan: Plan, usage: PlanUsage) -> list[Violation]:
    """No two guests sharing an anti-affinity tag are in one failure domain of the tag's scope (host, rack or zone:
    ``anti_affinity_scope``). The first guest of the scenario keeps its place; each later one is told, with the
    others it meets."""
    scenario = plan.scenario
    order = {g.name: i for i, g in enumerate(scenario.guests)}
    tags: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for host, hu in usage.hosts.items():
        for g in hu.guests:
            if g.guest.anti_affinity:
                domain = scenario.host_by_name[host].domain(scenario.scope_of(g.guest))
                for tag in g.guest.anti_affinity:
                    tags[(tag, domain)].append((g.name, host))
    out: list[Violation] = []
    for (tag, domain), entries in tags.items():
        if len(entries) <= 1:
            continue
        entries.sort(key=lambda e: order[e[0]])
        for name, host in entries[1:]:
            same_host = domain == f"host {host}"
            place = host if same_host else f"{host} ({domain})"
            others = ", ".join(n if same_host else f"{n} on {h}" for n, h in entries if n != name)
            out.append(Violation("placement", name, host, None,
                                 f"anti-affinity tag '{tag}': {name} is on {place} with {others}"))
    return out
