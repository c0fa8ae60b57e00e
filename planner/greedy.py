"""Greedy planners: the warm start of the CP-SAT model and the baselines it is measured against.

* ``first_fit``: guests in arrival (scenario) order, each on the first host and closest nodes where it fits;
* ``first_fit_decreasing``: the same after sorting by priority, then by size (largest share of a host first).

With ``objective: spread`` the host chosen is the least loaded one that fits instead of the first. Both count
resources exactly as the model does (``planner.problem.FleetState``), so their plans pass the checker too.
"""

from __future__ import annotations

from planner.problem import LOAD_SCALE, Assignment, FleetState, GuestClass, Problem


def _size_key(problem: Problem, cls: GuestClass) -> float:
    """A guest's largest share of an average host: CPUs or memory, whichever is larger."""
    caps = [problem.cap_of(h.name) for h in problem.scenario.hosts] or []
    if not caps:
        return 0.0
    cpus = sum(c.usable_cpus for c in caps) / len(caps)
    memory = sum(sum(n.memory_4k_kib for n in c.nodes) + sum(s * p for n in c.nodes for s, p in n.pages.items()) for c in caps) / len(caps)
    g = cls.guest
    cpu_share = (g.vcpus if g.dedicated else g.vcpus * float(g.load)) / max(cpus, 1)
    return max(cpu_share, g.memory_kib / max(memory, 1))


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
        keyed = sorted(
            problem.classes,
            key=lambda c: (c.guest.host is None, -c.guest.priority, -_size_key(problem, c), c.index),
        )
        queue = [cls for cls in keyed for _ in cls.members]
    spread = problem.policy.objective == "spread"
    for cls in queue:
        best = None
        for host in cls.allowed_hosts:
            options = cls.options.get(problem.host_model[host], ())
            if not options or state.host_blocker(cls, host):
                continue
            for index, option in enumerate(options):
                if not state.option_shortfalls(cls, host, option):
                    if not spread:
                        best = (host, index)
                        break
                    usable = problem.cap_of(host).usable_cpus * LOAD_SCALE
                    score = (state.host_load[host] / usable, option.distance_cost)
                    if best is None or score < best[0]:
                        best = (score, host, index)
                    break
            if best is not None and not spread:
                break
        if best is not None:
            host, index = best[-2], best[-1]
            state.place(cls, host, index)
    return state


def assignment_placed(assignment: Assignment) -> int:
    return sum(assignment.values())
