"""Greedy planners: the warm start of the CP-SAT model and the baselines it is measured against.

* ``first_fit``: guests in arrival (scenario) order, each on the first host and closest nodes where it fits;
* ``first_fit_decreasing``: the same after sorting by priority, then by size (largest share of a host first).

With ``objective: spread`` the host chosen is the least loaded one that fits instead of the first. Both count
resources exactly as the model does (``planner.engine.problem.FleetState``), so their plans pass the checker too.
"""

from __future__ import annotations

from planner.engine.problem import LOAD_SCALE, FleetState, GuestClass, Problem, shape_key


def average_host(problem: Problem) -> tuple[float, float]:
    """Usable CPUs and memory (4K plus pools) of an average host of the fleet."""
    caps = [problem.cap_of(h.name) for h in problem.scenario.hosts]
    if not caps:
        return 1.0, 1.0
    cpus = sum(c.usable_cpus for c in caps) / len(caps)
    memory = sum(
        sum(n.memory_4k_kib for n in c.nodes) + sum(s * p for n in c.nodes for s, p in n.pages.items()) for c in caps
    ) / len(caps)
    return max(cpus, 1), max(memory, 1)


def size_key(problem: Problem, cls: GuestClass, average: tuple[float, float] | None = None) -> float:
    """A guest's largest share of an average host: CPUs or memory, whichever is larger."""
    cpus, memory = average or average_host(problem)
    g = cls.guest
    cpu_share = (g.vcpus if g.dedicated else g.vcpus * float(g.load)) / cpus
    return max(cpu_share, g.memory_kib / memory)


def greedy(problem: Problem, order: str = "ffd") -> FleetState:
    """Place every guest it can, one at a time; returns the filled state (its ``assignment`` is the plan)."""
    state = FleetState(problem)
    queue: list[GuestClass] = []
    if order == "arrival":
        position = {g.name: i for i, g in enumerate(problem.scenario.guests)}
        members = sorted(
            ((position[name], cls) for cls in problem.classes for name in cls.members), key=lambda t: t[0]
        )
        queue = [cls for _, cls in members]
    else:
        average = average_host(problem)
        isolating = problem.policy.tenant_isolation != "none"  # tenant by tenant: hosts/nodes fill per tenant
        keyed = sorted(
            problem.classes,
            key=lambda c: (c.guest.host is None, -c.guest.priority, c.guest.tenant_name if isolating else "",
                           -size_key(problem, c, average), c.index),
        )
        queue = [cls for cls in keyed for _ in cls.members]
    spread = problem.policy.objective == "spread"
    # Hosts only fill up, so a host that cannot take a guest of some shape now never can: each shape keeps a pointer
    # to the first host that may still fit it, which makes first-fit linear in guests + hosts × shapes. A host
    # passed over only for an anti-affinity tag does not move the pointer (other guests of the shape may go there).
    first_open: dict[tuple, int] = {}
    for cls in queue:
        hosts = cls.allowed_hosts
        if spread:
            best = None
            for host in hosts:
                index = first_fitting_option(problem, state, cls, host)
                if index is not None:
                    usable = problem.cap_of(host).usable_cpus * LOAD_SCALE
                    score = (state.host_load[host] / usable, index)
                    if best is None or score < best[0]:
                        best = (score, host, index)
            if best is not None:
                state.place(cls, best[1], best[2])
            continue
        key = (shape_key(cls), hosts if cls.guest.host else None)
        i = first_open.get(key, 0)
        advancing = True
        tags = set(cls.guest.anti_affinity)
        while i < len(hosts):
            if tags and state.tag_clash(cls.guest, hosts[i]):
                advancing = False
                i += 1
                continue
            index = first_fitting_option(problem, state, cls, hosts[i])
            if index is not None:
                state.place(cls, hosts[i], index)
                break
            i += 1
            if advancing:
                first_open[key] = i
    return state


def first_fitting_option(problem: Problem, state: FleetState, cls: GuestClass, host: str) -> int | None:
    options = cls.options.get(problem.host_model[host], ())
    if not options or state.host_blocker(cls, host):
        return None
    for index, option in enumerate(options):
        if state.option_fits(cls, host, option):
            return index
    return None


def place_in_use_first(problem: Problem, state: FleetState, classes) -> None:
    """One guest of each class first-fit, onto the hosts already in use first, then the empty ones (what a re-plan
    places anew: new and changed guests)."""
    for cls in classes:
        in_use = [h for h in cls.allowed_hosts if state.host_guests[h]]
        for host in in_use + [h for h in cls.allowed_hosts if not state.host_guests[h]]:
            index = first_fitting_option(problem, state, cls, host)
            if index is not None:
                state.place(cls, host, index)
                break
