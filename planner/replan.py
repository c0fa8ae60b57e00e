"""Fast re-plans: a changed scenario planned from the previous plan, moving as few unchanged guests as it can.

Every guest of the new scenario that the previous plan placed, with the same demands, on a host that still exists
with the same model, stays where it was (host and NUMA nodes) as long as the new scenario's rules allow it. Guests
that are new or changed are then placed first-fit, hosts already in use first; only if some still do not fit does
a short improvement round (``planner.improve``) reconsider the least utilised hosts, which may move guests.
``stats.extra`` reports ``kept``, ``moved`` (host or nodes changed), ``new`` and ``replan_s``.
CPU ids are pinned afresh for the whole plan (the pinning order is by name), so a kept guest keeps its host and
nodes but a dedicated guest may get other pCPUs of the same nodes.
"""

from __future__ import annotations

import time

from planner.bounds import lower_bounds
from planner.greedy import _first_fitting_option
from planner.improve import improve
from planner.plan import Plan, SolveStats
from planner.problem import FleetState, compile_problem, score
from planner.scenario import Scenario
from planner.solver import PhaseFailures, default_workers, finish_plan, strict_mode


def replan(scenario: Scenario, previous: Plan, *, time_limit_s: float = 10.0, seed: int = 0,
           workers: int | None = None, strict: bool | None = None) -> Plan:
    start = time.monotonic()
    failures = PhaseFailures(strict_mode(strict))
    problem = compile_problem(scenario)
    state = FleetState(problem)
    class_of = {name: cls for cls in problem.classes for name in cls.members}
    old_guests = previous.scenario.guest_by_name
    old_model = {h.name: h.model for h in previous.scenario.hosts}
    pending = []
    kept = 0
    prefer: dict[str, tuple[str, int]] = {}  # guest -> (host, option) it had, so naming keeps it there
    for guest in scenario.guests:
        before = previous.placed.get(guest.name)
        cls = class_of[guest.name]
        same = before is not None and old_guests.get(guest.name) == guest
        host = before.host if before else None
        if same and host in problem.host_model and old_model.get(host) == problem.host_model[host]:
            options = cls.options.get(problem.host_model[host], ())
            nodes = tuple(c.node_id for c in before.cells)
            index = next((i for i, o in enumerate(options) if o.nodes == nodes), None)
            if index is not None and host in cls.allowed_hosts and state.fits(cls, host, options[index]):
                state.place(cls, host, index)
                prefer[guest.name] = (host, index)
                kept += 1
                continue
        pending.append(cls)
    new = sum(1 for g in scenario.guests if g.name not in previous.placed)
    for cls in pending:
        in_use = [h for h in cls.allowed_hosts if state.host_guests[h]]
        for host in in_use + [h for h in cls.allowed_hosts if not state.host_guests[h]]:
            index = _first_fitting_option(problem, state, cls, host)
            if index is not None:
                state.place(cls, host, index)
                break
    first_fit = chosen = dict(state.assignment)
    placed = sum(chosen.values())
    rounds = 0
    if placed < len(scenario.guests):
        result = failures.run("improve", improve, problem, chosen, start + time_limit_s, seed=seed,
                              workers=workers or default_workers())
        if result is not None:
            chosen, rounds = result
    hosts_of = [len({h for (_c, h, _o), n in a.items() if n}) for a in (first_fit, chosen)]
    bounds = lower_bounds(problem, with_lp=False).clamped(min(hosts_of))

    def finish(assignment):
        extra = {"kept": kept, "new": new, "improve_rounds": rounds, "bound_hosts": bounds.hosts,
                 "bound_binding": bounds.binding, "bound_text": bounds.text, "bounds": bounds.all_bounds, "hosts_used": -score(problem, assignment)[1]}
        failures.record(extra)
        stats = SolveStats(solver="replan", solver_status="GREEDY", greedy_placed=placed, extra=extra)
        return finish_plan(problem, assignment, stats, False, start, prefer)

    plan = failures.run("pinning the improved re-plan", finish, chosen) if chosen is not first_fit else None
    if plan is None:
        plan = finish(first_fit)
    moved = sum(
        1 for name, p in plan.placed.items()
        if name in previous.placed and (previous.placed[name].host, previous.placed[name].nodes) != (p.host, p.nodes)
    )
    plan.stats.extra["moved"] = moved  # type: ignore[index]
    plan.stats.extra["replan_s"] = round(time.monotonic() - start, 3)  # type: ignore[index]
    return plan
