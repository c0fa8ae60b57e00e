"""``tenancy``: ``policy.tenant_isolation``."""

from __future__ import annotations

from planner.model.plan import Plan
from planner.verify.rules.text import cpus, tenant
from planner.verify.usage import GuestOnHost, HostUsage, PlanUsage
from planner.verify.violation import Violation


def _units(level: str, hu: HostUsage, g: GuestOnHost) -> list[tuple[object, str]]:
    """What the guest occupies at ``level``: the host, its cells' nodes, or the cores of its pinned CPUs."""
    host = hu.host
    if level == "host":
        return [(None, host)]
    if level == "node":
        return [(c.node_id, f"node {c.node_id} of {host}") for c in g.placement.cells]
    core_of = hu.facts.core_of_cpu
    cores = {core_of.get(cpu, (cpu,)) for pins in g.placement.vcpu_pins for cpu in pins}
    return [(core, f"core {cpus(core)} of {host}") for core in sorted(cores)]


def tenancy(plan: Plan, usage: PlanUsage) -> list[Violation]:
    """No host (``host``), host node (``node``: the nodes of guest cells) or physical core (``core``: the cores of
    the CPUs in vCPU pins) serves guests of two tenants (no ``tenant:``: the default tenant). Each guest that meets
    another tenant in a unit first taken by it is told once."""
    level = plan.scenario.policy.tenant_isolation
    if level == "none":
        return []
    out: list[Violation] = []
    for host, hu in usage.hosts.items():
        seen: dict[object, tuple[str, str]] = {}  # unit -> (tenant, first guest)
        for g in hu.guests:
            name = g.guest.tenant_name
            for unit, label in _units(level, hu, g):
                first = seen.setdefault(unit, (name, g.name))
                if first[0] != name:
                    node = unit if level == "node" and isinstance(unit, int) else None
                    out.append(Violation("tenancy", g.name, host, node,
                                         f"tenant isolation ({level}): {label} serves {first[1]} of tenant "
                                         f"{tenant(first[0])} and {g.name} of tenant {tenant(name)}"))
                    break
    return out
