"""``cpus``: vCPU pins. Dedicated vCPUs own one CPU of their cell's node; shared vCPUs stay in their node's pool."""

from __future__ import annotations

from planner.model.plan import Plan
from planner.verify.rules.text import are, cpus, isare, vlist, where
from planner.verify.usage import GuestOnHost, HostUsage, PlanUsage, stray_shared_groups
from planner.verify.violation import Violation


def cpus_rule(plan: Plan, usage: PlanUsage) -> list[Violation]:
    """A dedicated vCPU is pinned to exactly one CPU, never a reserved one, on the node of its cell, and that CPU
    serves no other vCPU (dedicated or shared); a shared vCPU is pinned to some CPUs, all inside the shared pool of
    its cell's node (the node's CPUs − reserved − dedicated − idle siblings − isolated emulator CPUs)."""
    out: list[Violation] = []
    for hu in usage.hosts.values():
        for g in hu.guests:
            if g.guest.dedicated:
                out += _dedicated_pins(hu, g)
        out += _shared_cpus(hu)
        out += _shared_pins(hu)
    return out


def _dedicated_pins(hu: HostUsage, g: GuestOnHost) -> list[Violation]:
    host, name, facts = hu.host, g.name, hu.facts
    out: list[Violation] = []
    for v, pins in enumerate(g.placement.vcpu_pins):
        node = g.vcpu_nodes[v]
        at = where(host, node)
        if len(pins) != 1:
            out.append(Violation("cpus", name, host, node,
                                 f"{at}: dedicated {name} vCPU {v} is pinned to {cpus(pins)}, not to exactly one CPU"))
        for c in pins:
            if c in facts.reserved:
                out.append(Violation("cpus", name, host, node, f"{at}: {name} vCPU {v} is pinned to reserved CPU {c}"))
            elif node is not None and c not in facts.node_cpus[node]:
                nor = "" if c in facts.node_of_cpu else f" (nor of {host})"
                out.append(Violation("cpus", name, host, node,
                                     f"{at}: {name} vCPU {v} is pinned to CPU {c}, which is not a CPU of node "
                                     f"{node}{nor}"))
    return out


def _shared_cpus(hu: HostUsage) -> list[Violation]:
    """A dedicated CPU pinned by several vCPUs: each guest holding it is told."""
    out: list[Violation] = []
    for c, users in hu.cpus.dedicated.items():
        if len(users) > 1:
            node = hu.facts.node_of_cpu.get(c)
            text = ", ".join(f"{g} vCPU {v}" for g, v in users)
            for g in dict.fromkeys(g for g, _ in users):
                out.append(Violation("cpus", g, hu.host, node, f"{where(hu.host, node)}: CPU {c} is a dedicated pCPU "
                                                               f"of {g} but serves {len(users)} vCPUs: {text}"))
    return out


def _shared_pins(hu: HostUsage) -> list[Violation]:
    """Shared vCPUs pinned to nothing or outside their pool; the owners of dedicated CPUs they use are told too."""
    host, facts, dedicated = hu.host, hu.facts, hu.cpus.dedicated
    out: list[Violation] = []
    for (pins, node), users in stray_shared_groups(hu):
        if not pins:
            for g, vs in users:
                out.append(Violation("cpus", g, host, node, f"{where(host, node)}: {g} {vlist(vs)} {isare(vs)} pinned "
                                                            "to no CPU"))
            continue
        pinset = frozenset(pins)
        if node is not None:
            pool = hu.pools[node]
            outside = sorted(pinset - pool)
            reasons = "; ".join(hu.owner_text(c) for c in outside[:4]) + ("; ..." if len(outside) > 4 else "")
            for g, vs in users:
                out.append(Violation("cpus", g, host, node,
                                     f"{where(host, node)}: shared {g} {vlist(vs)} {isare(vs)} pinned to {cpus(pins)}, "
                                     f"but {are(outside)} outside the node's shared pool {cpus(pool)} ({reasons})"))
        who = "; ".join(f"{g} {vlist(vs)}" for g, vs in users)
        for c in sorted(pinset):
            for g, v in dedicated.get(c, ()):
                cn = facts.node_of_cpu.get(c)
                out.append(Violation("cpus", g, host, cn,
                                     f"{where(host, cn)}: CPU {c}, dedicated to {g} vCPU {v}, also serves shared "
                                     f"{who}"))
    return out
