"""``threads``: SMT policies of dedicated guests, ``threads: isolate`` (whole idle cores) and ``require`` (pairs)."""

from __future__ import annotations

from planner.model.plan import Plan
from planner.verify.rules.text import cpus, serving_shared, where
from planner.verify.usage import GuestOnHost, HostUsage, PlanUsage
from planner.verify.violation import Violation


def threads(plan: Plan, usage: PlanUsage) -> list[Violation]:
    """``threads: isolate``: each vCPU has a core of its own, whose other threads (the idle siblings) serve no vCPU
    (shared or dedicated) and no emulator; ``threads: require``: an even number of vCPUs, vCPUs 2i and 2i+1 on two
    threads of one core."""
    out: list[Violation] = []
    for hu in usage.hosts.values():
        out += _idle_serving_shared(hu)
        for g in hu.guests:
            if g.guest.dedicated and g.guest.threads == "isolate":
                out += _isolate(hu, g)
        for g in hu.guests:
            if g.guest.dedicated and g.guest.threads == "require":
                out += _require(hu, g)
        out += _idle_serving_emulators(hu)
    return out


def _idle_text(hu: HostUsage, c: int) -> str:
    g, v, core_cpu = hu.cpus.idle[c]
    return f"CPU {c}, the idle sibling of {g} vCPU {v} (threads: isolate, on CPU {core_cpu})"


def _idle_serving_shared(hu: HostUsage) -> list[Violation]:
    return [Violation("threads", hu.cpus.idle[c][0], hu.host, node,
                      f"{where(hu.host, node)}: {_idle_text(hu, c)}, serves shared {who}")
            for c, node, who in serving_shared(hu, hu.cpus.idle)]


def _idle_serving_emulators(hu: HostUsage) -> list[Violation]:
    out: list[Violation] = []
    for pins, names in hu.cpus.emulator_groups.items():
        for c in pins:
            if c in hu.cpus.idle:
                node = hu.facts.node_of_cpu.get(c)
                out.append(Violation("threads", hu.cpus.idle[c][0], hu.host, node,
                                     f"{where(hu.host, node)}: {_idle_text(hu, c)}, serves the emulator of "
                                     f"{', '.join(names)}"))
    return out


def _isolate(hu: HostUsage, g: GuestOnHost) -> list[Violation]:
    """Two vCPUs of the guest on one core, or a sibling of its CPU pinned by a dedicated vCPU."""
    host, name = hu.host, g.name
    core_of, node_of = hu.facts.core_of_cpu, hu.facts.node_of_cpu
    out: list[Violation] = []
    cores_seen: dict[tuple[int, ...], int] = {}
    for v, c in g.singles:
        core = core_of.get(c, (c,))
        node = node_of.get(c)
        if core in cores_seen:
            out.append(Violation("threads", name, host, node,
                                 f"{where(host, node)}: {name} (threads: isolate) has vCPUs {cores_seen[core]} and {v} "
                                 f"on one core {cpus(core)}"))
            continue
        cores_seen[core] = v
        for s in core:
            if s == c:
                continue
            for other, ov in hu.cpus.dedicated.get(s, ()):
                if other == name and core_of.get(s, (s,)) in cores_seen:
                    continue  # told as two vCPUs on one core
                out.append(Violation("threads", name, host, node,
                                     f"{where(host, node)}: {name} vCPU {v} (threads: isolate) is on CPU {c}, whose "
                                     f"sibling {s} serves {other} vCPU {ov}"))
    return out


def _require(hu: HostUsage, g: GuestOnHost) -> list[Violation]:
    host, name = hu.host, g.name
    out: list[Violation] = []
    if g.guest.vcpus % 2:
        out.append(Violation("threads", name, host, None,
                             f"{name} on {host} (threads: require) has {g.guest.vcpus} vCPUs, not an even number"))
    pins_all = g.placement.vcpu_pins
    for v in range(0, len(pins_all) - 1, 2):
        a, b = pins_all[v], pins_all[v + 1]
        if len(a) != 1 or len(b) != 1:
            continue  # told by 'cpus'
        ca, cb = a[0], b[0]
        node = hu.facts.node_of_cpu.get(ca)
        core = hu.facts.core_of_cpu.get(ca)
        if ca == cb or core is None or cb not in core:
            out.append(Violation("threads", name, host, node,
                                 f"{where(host, node)}: {name} (threads: require) vCPUs {v} and {v + 1} are on CPUs "
                                 f"{ca} "
                                 f"and {cb}, not two threads of one core"))
    return out
