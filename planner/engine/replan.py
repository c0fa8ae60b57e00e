"""Fast re-plans: a changed scenario planned from the previous plan, moving as few unchanged guests as it can.

Every guest of the new scenario that the previous plan placed, with the same demands, on a host that still exists
with the same model, stays where it was (host and NUMA nodes) as long as the new scenario's rules allow it. Guests
that are new or changed are then placed first-fit, hosts already in use first; only if some still do not fit does
a short improvement round (``planner.engine.improve``) reconsider the least utilised hosts, which may move guests.
``stats.quick_replan`` reports ``kept``, ``moved`` (host or nodes changed), ``new`` and ``replan_s``.
CPU ids are pinned afresh for the whole plan (the pinning order is by name), so a kept guest keeps its host and
nodes but a dedicated guest may get other pCPUs of the same nodes.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from planner.engine.bounds import lower_bounds
from planner.engine.greedy import place_in_use_first
from planner.engine.improve import improve
from planner.engine.problem import FleetState, Problem, compile_problem, score
from planner.engine.solver import PhaseFailures, bound_figures, default_workers, finish_plan, strict_mode
from planner.model.plan import Plan, SolveStats
from planner.model.scenario import Scenario
from planner.model.stats import FewestMoves, QuickReplan, ReplanSummary


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
        # ``same`` implies a previous placement, hence a host: the two middle tests only tell mypy so
        if same and before is not None and host is not None and host in problem.host_model \
                and old_model.get(host) == problem.host_model[host]:
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
    place_in_use_first(problem, state, pending)
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
        stats = SolveStats(solver="replan", solver_status="GREEDY", greedy_placed=placed,
                           bound=bound_figures(bounds), hosts_used=-score(problem, assignment)[1],
                           improve_rounds=rounds, quick_replan=QuickReplan(kept=kept, new=new),
                           **failures.figures())
        return finish_plan(problem, assignment, stats, False, start, prefer)

    plan = failures.run("pinning the improved re-plan", finish, chosen) if chosen is not first_fit else None
    if plan is None:
        plan = finish(first_fit)
    moved = sum(
        1 for name, p in plan.placed.items()
        if name in previous.placed and (previous.placed[name].host, previous.placed[name].nodes) != (p.host, p.nodes)
    )
    figures = QuickReplan(kept=kept, new=new, moved=moved, replan_s=round(time.monotonic() - start, 3))
    return dataclasses.replace(plan, stats=dataclasses.replace(plan.stats, quick_replan=figures))


# ------------------------------------------------------------------------------------------------------------
# Re-plans with the fewest moves (``vplan solve NEW --previous OLD [--max-moves N]``)

def replan_fewest_moves(scenario: Scenario, previous, *, max_moves: int | None = None, time_limit_s: float = 20.0,
                        seed: int = 0, workers: int | None = None, strict: bool | None = None,
                        verify_order: bool = True) -> Plan:
    """Plan ``scenario`` from a previous plan (``planner.engine.migration.Previous``, or a ``Plan``) moving as few
    guests as it can: guests keep their host, nodes and pCPUs unless moving lets more guests in or frees hosts, within
    ``max_moves`` moves of guests that could have stayed (moves forced by a removed host or a changed guest are
    not counted against it).

    First every unchanged guest stays where it was (as far as the new rules allow) and new or changed guests are
    placed first-fit, hosts in use first; then the whole-fleet CP-SAT model with the ``moves`` family
    (``planner.engine.cpsat_model.define_moves``: placed, then hosts, then moves, then distance), hinted with that plan,
    may move guests where it places more or frees hosts. The plan's stats have ``moves`` (actions,
    ``planner.engine.migration.actions``), ``migration`` (the order, ``planner.engine.migration.migration_order``) and
    ``replan``: counts, hosts before and after, the budget and the time."""
    from planner.engine.clock import stop_requested
    from planner.engine.migration import Previous, keep_pins, previous_from_plan
    from planner.engine.problem import model_size

    start = time.monotonic()
    if not isinstance(previous, Previous):
        previous = previous_from_plan(previous)
    failures = PhaseFailures(strict_mode(strict))
    problem = compile_problem(scenario)
    stay = _stay_where_possible(problem, previous)
    size = model_size(problem)
    moves_of, rank = stay.moves_of, stay.ranking(max_moves)
    source, chosen, status_name, rounds = _fewest_moves_search(
        problem, stay, max_moves, rank, size <= FEWEST_MOVES_DIRECT_MAX_VARIABLES, len(previous.guests), start,
        time_limit_s, seed, workers or default_workers(), failures)
    hosts_used = -score(problem, chosen)[1] if scenario.policy.objective == "pack" else \
        len({h for (_c, h, _o), n in chosen.items() if n})
    bounds = lower_bounds(problem, with_lp=False).clamped(hosts_used)
    all_placed = sum(chosen.values()) == len(scenario.guests)
    stats = SolveStats(
        solver=f"replan-{source}", solver_status=status_name, greedy_placed=sum(stay.first_fit.values()),
        bound=bound_figures(bounds), hosts_used=hosts_used,
        gap_pct=round(100.0 * (hosts_used - bounds.hosts) / bounds.hosts, 2) if bounds.hosts and all_placed else None,
        model_variables=size, improve_rounds=rounds, interrupted=stop_requested(),  # Ctrl-C: the best found until then
        fewest_moves=FewestMoves(kept=stay.kept, forced_moves=stay.forced, max_moves=max_moves), **failures.figures())
    plan = finish_plan(problem, chosen, stats, status_name == "OPTIMAL" and source == "cp-sat", start, stay.prefer,
                       keep=keep_pins(previous))
    return _with_transition(plan, previous, problem, moves_of(chosen), stay.forced, max_moves, start, verify_order)


@dataclass(frozen=True)
class _Stay:
    """Where a re-plan starts: every unchanged guest at its previous slot where it still fits (``kept``), the others
    placed first-fit (``first_fit``). ``may_stay``: (class, host, option) -> guests that had that slot;
    ``prefer``: guest -> its previous (host, option); ``forced``: guests that had a place but cannot keep it."""

    first_fit: dict
    may_stay: dict[tuple[int, str, int], int]
    prefer: dict[str, tuple[str, int]]
    kept: int
    forced: int
    problem: Problem

    def moves_of(self, assignment) -> int:
        """Guests that could have stayed but are not at their previous slot (voluntary moves)."""
        return sum(k - min(k, assignment.get(key, 0)) for key, k in self.may_stay.items())

    def ranking(self, max_moves: int | None):
        """Rank of an assignment: within the budget, then placed, hosts, fewer moves, distance (larger is better)."""
        def rank(assignment) -> tuple:
            placed_, hosts_, distance_ = score(self.problem, assignment)
            moves = self.moves_of(assignment)
            return (max_moves is None or moves <= max_moves, placed_, hosts_, -moves, distance_)
        return rank


def _stay_where_possible(problem, previous) -> _Stay:
    """Every unchanged guest (same demands) at its previous slot if it fits there, then the rest first-fit, hosts
    already in use first (``planner.engine.greedy.place_in_use_first``)."""
    from planner.engine.migration import guest_demands, previous_demands

    state = FleetState(problem)
    class_of = {name: cls for cls in problem.classes for name in cls.members}
    may_stay: dict[tuple[int, str, int], int] = {}
    prefer: dict[str, tuple[str, int]] = {}
    pending = []
    kept = forced = 0
    for guest in problem.scenario.guests:
        cls = class_of[guest.name]
        old = previous.guests.get(guest.name)
        slot = _previous_slot(problem, cls, old) if old is not None and previous_demands(old) == guest_demands(guest) \
            else None
        if slot is not None:
            may_stay[(cls.index, *slot)] = may_stay.get((cls.index, *slot), 0) + 1
            prefer[guest.name] = slot
            if state.fits(cls, slot[0], cls.options[problem.host_model[slot[0]]][slot[1]]):
                state.place(cls, *slot)
                kept += 1
                continue
        elif old is not None:
            forced += 1  # its host is gone or of another model, or the guest changed
        pending.append(cls)
    place_in_use_first(problem, state, pending)
    return _Stay(dict(state.assignment), may_stay, prefer, kept, forced, problem)


def _fewest_moves_search(problem, stay: _Stay, max_moves, rank, direct: bool, previous_guests: int, start: float,
                         time_limit_s: float, seed: int, workers: int, failures: PhaseFailures):
    """The moves search from the first-fit plan: (source, best assignment, CP-SAT status, improvement rounds kept
    or None when the whole-fleet model ran). Without a budget, a first stage with a small one (5 % of the guests
    placed before, at least 10) for half the time: a narrower search that finds the moves that free hosts sooner,
    and the hint of the unbounded stage."""
    scenario = problem.scenario
    candidates = [("first-fit", stay.first_fit)]
    status_name = "GREEDY"
    stages = [max_moves] if max_moves is not None else [max(10, previous_guests // 20), None]
    rounds_kept = 0
    for number, budget in enumerate(stages, 1):
        stage_end = start + time_limit_s * number / len(stages)
        if not (problem.classes and scenario.hosts and time_limit_s > 0) or stage_end <= time.monotonic():
            break
        hint = max(candidates, key=lambda c: rank(c[1]))[1]
        if direct:
            outcome = failures.run("cp-sat (fewest moves)", _fewest_moves_cpsat, problem, stay.may_stay, budget,
                                   hint, stage_end, seed, workers)
            if outcome is not None:
                status_name, found = outcome
                if found is not None:
                    candidates.append(("cp-sat", found))
        else:
            # larger fleets: the same model (with the moves family) on a few hosts at a time
            result = failures.run("improvement rounds (fewest moves)", _fewest_moves_rounds, problem, hint,
                                  stay.may_stay, budget, rank, stage_end, seed + number, workers)
            if result is not None:
                found, rounds = result
                rounds_kept += rounds
                candidates.append(("rounds", found))
    source, chosen = max(candidates, key=lambda c: rank(c[1]))
    return source, chosen, status_name, None if direct else rounds_kept


def _fewest_moves_cpsat(problem, may_stay, budget, hint, stage_end: float, seed: int, workers: int):
    """The whole-fleet model with the moves family until ``stage_end`` (wall clock): (status, assignment or None)."""
    from ortools.sat.python import cp_model

    from planner.engine.clock import Clock, clock, using
    from planner.engine.cpsat_model import add_hint, build_model

    with using(Clock(False)):
        build = build_model(problem, previous=may_stay, max_moves=budget)
        add_hint(build, hint)
        solver = cp_model.CpSolver()
        clock().limit(solver.parameters, max(stage_end - time.monotonic(), 0.5), workers)
        solver.parameters.random_seed = seed
        status = clock().solve(solver, build.model)  # Ctrl-C stops it (planner.engine.clock)
        name = solver.status_name(status)
        if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return name, {k: v for k, var in build.x.items() if (v := solver.value(var))}
        return name, None


def _with_transition(plan: Plan, previous, problem, voluntary: int, forced: int, max_moves: int | None,
                     start: float, verify_order: bool) -> Plan:
    """A new plan with the re-plan's actions (``planner.engine.migration.actions``), their safe order
    (``migration_order``) and its figures (``ReplanSummary``); the plan given is left as it is."""
    from planner.engine.migration import actions, migration_order

    moves = actions(previous, plan)
    order = migration_order(previous, plan, problem, verify=verify_order)
    moved = [a for a in moves if a.move]
    after = set(plan.hosts_used)
    summary = ReplanSummary(
        moves=len(moved), voluntary_moves=voluntary, forced_moves=forced,
        live_migrations=sum(a.kind == "live-migrate" for a in moved),
        re_pins=sum(a.kind == "re-pin" for a in moves), starts=sum(a.kind == "start" for a in moves),
        stops=sum(a.kind == "stop" for a in moves), max_moves=max_moves,
        max_moves_met=max_moves is None or voluntary <= max_moves,
        hosts_before=len(previous.hosts_used), hosts_after=len(plan.hosts_used),
        hosts_freed=tuple(h for h in previous.hosts_used if h not in after), previous=previous.source,
        replan_s=round(time.monotonic() - start, 3))
    stats = dataclasses.replace(plan.stats, moves=tuple(moves), migration=order, replan=summary)
    return dataclasses.replace(plan, stats=stats)


FEWEST_MOVES_DIRECT_MAX_VARIABLES = 6000  # above: improvement rounds with the moves family instead


def _fewest_moves_rounds(problem, assignment, may_stay, max_moves, rank, deadline: float, seed: int, workers: int,
                         neighbourhood: int = 8, round_s: float = 3.0):
    """Large-neighbourhood search like ``planner.engine.improve``: each round re-solves the least utilised hosts plus a
    few random ones with the whole-fleet model and the ``moves`` family, the moves outside the neighbourhood
    taken off the budget; a round is kept only if it ranks better (more placed, fewer hosts, fewer moves).
    Returns (assignment, rounds kept)."""
    import random

    from ortools.sat.python import cp_model

    from planner.engine.clock import Clock, clock, stop_requested, using
    from planner.engine.cpsat_model import add_hint, build_model
    from planner.engine.improve import subproblem, utilisation

    rng = random.Random(seed)
    current = dict(assignment)
    kept_rounds = stale = 0
    with using(Clock(False)):
        while time.monotonic() + 0.5 < deadline and stale < 10 and not stop_requested():
            util = utilisation(problem, current)
            used = sorted(util, key=lambda h: (util[h], h))
            if len(used) < 2:
                break
            # the least utilised hosts (to free), a few random ones, and between rounds a random pick among the
            # next least utilised (room to take their guests)
            worst = used[: max(2, neighbourhood // 3)]
            roomy = used[len(worst): len(worst) + 2 * neighbourhood]
            rng.shuffle(roomy)
            others = [h for h in used if h not in worst]
            rng.shuffle(others)
            hosts = worst + roomy[: neighbourhood // 3]
            hosts += [h for h in others if h not in hosts][: neighbourhood - len(hosts)]
            chosen = set(hosts)
            sub, back, hint = subproblem(problem, current, hosts)
            if not sub.classes:
                break
            index = {c: i for i, c in enumerate(back)}
            outside = sum(k - min(k, current.get(key, 0)) for key, k in may_stay.items() if key[1] not in chosen)
            previous = {(index[c], h, o): k for (c, h, o), k in may_stay.items() if h in chosen and c in index}
            budget = None if max_moves is None else max(max_moves - outside, 0)
            build = build_model(sub, previous=previous, max_moves=budget)
            add_hint(build, hint)
            solver = cp_model.CpSolver()
            clock().limit(solver.parameters, max(min(round_s, deadline - time.monotonic()), 0.2), workers)
            solver.parameters.random_seed = rng.randrange(1 << 30)
            status = clock().solve(solver, build.model)  # Ctrl-C stops it (planner.engine.clock)
            if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
                stale += 1
                continue
            candidate = {k: v for k, v in current.items() if k[1] not in chosen}
            for (c, h, o), var in build.x.items():
                if (n := solver.value(var)):
                    candidate[(back[c], h, o)] = candidate.get((back[c], h, o), 0) + n
            if rank(candidate) > rank(current):
                current, kept_rounds, stale = candidate, kept_rounds + 1, 0
            else:
                stale += 1
    return current, kept_rounds


def _previous_slot(problem, cls, old) -> tuple[str, int] | None:
    """(host, option index) of a guest's previous place if that host still exists with the same model and the
    guest may go there with the same nodes; else None."""
    model = problem.host_model.get(old.host)
    if model is None or (old.model is not None and old.model != model) or old.host not in cls.allowed_hosts:
        return None
    options = cls.options.get(model, ())
    return next(((old.host, i) for i, o in enumerate(options) if tuple(o.nodes) == tuple(old.nodes)), None)
