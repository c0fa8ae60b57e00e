"""``emulator``: emulator pins by the guest's ``emulator`` policy, never on a dedicated pCPU."""

from __future__ import annotations

from collections import defaultdict

from planner.model.plan import Plan
from planner.verify.rules.text import are, cpus, serving_shared, where
from planner.verify.usage import GuestOnHost, HostUsage, PlanUsage
from planner.verify.violation import Violation


def emulator(plan: Plan, usage: PlanUsage) -> list[Violation]:
    """Every guest has emulator pins, never on a dedicated pCPU. ``emulator: host`` (on a host with reserved CPUs):
    exactly the reserved CPUs. ``emulator: isolate``: exactly one CPU, not reserved, on the node of cell 0, not an
    idle sibling, serving no vCPU and no other guest's emulator. ``shared`` (and ``host`` on a host without reserved
    CPUs): inside the shared pools of the guest's nodes."""
    out: list[Violation] = []
    for hu in usage.hosts.values():
        out += _isolated_serving_shared(hu)
        out += _emulator_pins(hu)
        out += _isolated_shared_by_emulators(hu)
    return out


def _iso_text(hu: HostUsage, c: int) -> str:
    return f"CPU {c}, the emulator CPU of {hu.cpus.emulator_isolate[c]} (emulator: isolate)"


def _isolated_serving_shared(hu: HostUsage) -> list[Violation]:
    return [Violation("emulator", hu.cpus.emulator_isolate[c], hu.host, node,
                      f"{where(hu.host, node)}: {_iso_text(hu, c)}, serves shared {who}")
            for c, node, who in serving_shared(hu, hu.cpus.emulator_isolate)]


def _emulator_pins(hu: HostUsage) -> list[Violation]:
    """Per emulator pin set: dedicated CPUs in it, then each guest's policy."""
    by_name = {g.name: g for g in hu.guests}
    out: list[Violation] = []
    for pins, names in hu.cpus.emulator_groups.items():
        for c in pins:
            if c in hu.cpus.dedicated:
                dg, dv = hu.cpus.dedicated[c][0]
                node = hu.facts.node_of_cpu.get(c)
                for name in names:
                    out.append(Violation("emulator", name, hu.host, node,
                                         f"{where(hu.host, node)}: the emulator of {name} is pinned to CPU {c}, a "
                                         f"dedicated pCPU of {dg} vCPU {dv}"))
        for name in names:
            out += _policy(hu, by_name[name], pins)
    return out


def _policy(hu: HostUsage, g: GuestOnHost, pins: tuple[int, ...]) -> list[Violation]:
    host, name, facts = hu.host, g.name, hu.facts
    policy = g.guest.emulator
    if not pins:
        return [Violation("emulator", name, host, None, f"{name} on {host} has no emulator pins")]
    if policy == "host" and facts.reserved:
        if frozenset(pins) == facts.reserved:
            return []
        return [Violation("emulator", name, host, None,
                          f"{host}: {name} (emulator: host) has its emulator on {cpus(pins)}, not on the host's "
                          f"reserved CPUs {cpus(facts.reserved)}")]
    if policy == "isolate":
        return _isolate(hu, g, pins)
    allowed = frozenset().union(*(hu.pools[n] for n in g.nodes)) if g.nodes else frozenset()
    outside = sorted(frozenset(pins) - allowed)
    if not outside:
        return []
    reasons = "; ".join(hu.owner_text(c) for c in outside[:4]) + ("; ..." if len(outside) > 4 else "")
    return [Violation("emulator", name, host, None,
                      f"{host}: {name} (emulator: {policy}) has its emulator on {cpus(pins)}, but {are(outside)} "
                      f"outside the shared pools of its nodes {', '.join(map(str, g.nodes)) or '(none)'} ({reasons})")]


def _isolate(hu: HostUsage, g: GuestOnHost, pins: tuple[int, ...]) -> list[Violation]:
    """``emulator: isolate``: one CPU, not reserved, on the node of cell 0, not an idle sibling."""
    host, name = hu.host, g.name
    node0 = g.placement.cells[0].node_id if g.placement.cells else None
    if len(pins) != 1:
        return [Violation("emulator", name, host, node0, f"{where(host, node0)}: {name} (emulator: isolate) has its "
                                                         f"emulator on {cpus(pins)}, not on exactly one CPU")]
    c = pins[0]
    node = hu.facts.node_of_cpu.get(c)
    head = f"{name} (emulator: isolate) has its emulator on"
    out: list[Violation] = []
    if c in hu.facts.reserved:
        out.append(Violation("emulator", name, host, node, f"{where(host, node)}: {head} reserved CPU {c}"))
    if node != node0:
        on = f"node {node}" if node is not None else f"no node of {host}"
        out.append(Violation("emulator", name, host, node0,
                             f"{where(host, node0)}: {head} CPU {c}, on {on}, not on node {node0} of its cell 0"))
    if c in hu.cpus.idle:
        ig, iv, _core_cpu = hu.cpus.idle[c]
        out.append(Violation("emulator", name, host, node, f"{where(host, node)}: {head} CPU {c}, the idle sibling of "
                                                           f"{ig} vCPU {iv} (threads: isolate)"))
    return out


def _isolated_shared_by_emulators(hu: HostUsage) -> list[Violation]:
    """An isolated emulator CPU serves no other guest's emulator (vCPUs on it: told above)."""
    users: dict[int, list[str]] = defaultdict(list)
    for pins, names in hu.cpus.emulator_groups.items():
        for c in pins:
            if c in hu.cpus.emulator_isolate:
                users[c].extend(names)
    out: list[Violation] = []
    for c, owner in hu.cpus.emulator_isolate.items():
        others = [g for g in users.get(c, ()) if g != owner]
        if others:
            node = hu.facts.node_of_cpu.get(c)
            out.append(Violation("emulator", owner, hu.host, node,
                                 f"{where(hu.host, node)}: {_iso_text(hu, c)}, also serves the emulator of "
                                 f"{', '.join(others)}"))
    return out
