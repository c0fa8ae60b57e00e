"""solve(): scenario → compiled problem → greedy warm start → CP-SAT model → pinned, checked Plan.

The whole fleet is decided at once by one CP-SAT model (``planner.cpsat_model``) with the greedy plan as a full
hint, so there is always an answer; if the model's best is not better than the greedy plan (e.g. it found nothing
within the time limit), the greedy plan is used. Every plan is checked by ``planner.check`` — code that shares
nothing with this module — before it is returned: a plan that breaks a hard rule is a bug and raises ``PlanBug``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, Protocol

from ortools.sat.python import cp_model

from planner.check import check_plan
from planner.clock import Clock, clock, using
from planner.bounds import Bounds, lower_bounds
from planner.cpsat_model import add_hint, build_model, read_assignment
from planner.decompose import decompose
from planner.explain import explain_all
from planner.greedy import greedy
from planner.improve import improve
from planner.pinning import pin_assignment
from planner.plan import Plan, SolveStats
from planner.problem import Assignment, FleetState, Problem, compile_problem, model_size, score
from planner.scenario import Scenario


class PlanBug(RuntimeError):
    """A plan broke a hard rule: a bug in the planner, never the user's fault. The plan is not written."""


@dataclass(frozen=True)
class Progress:
    phase: str
    elapsed_s: float
    placed: int | None = None
    hosts: int | None = None
    distance: int | None = None


class ProgressFn(Protocol):
    def __call__(self, progress: Progress) -> None: ...


def decode_objective(value: float, weights: dict[str, int]) -> tuple[int, int, int]:
    """(Σ priority placed, hosts or max load ‰, distance cost) from the weighted objective value."""
    value = round(value)
    placed = -((-value) // weights["placed"])
    rest = weights["placed"] * placed - value
    return placed, rest // weights["hosts"], rest % weights["hosts"] // weights["distance"]


@contextlib.contextmanager
def _stall_watch(solver: cp_model.CpSolver, callback: "_Callback", stall_s: float, start: float, active: bool):
    """Stops the search once no better solution came for ``stall_s`` seconds (wall-clock mode only)."""
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.25):
            last = getattr(callback, "last_solution_s", None)
            if last is None:
                last = callback.started_s
            if time.monotonic() - start - last >= stall_s:
                solver.stop_search()
                return

    callback.started_s = time.monotonic() - start
    thread = threading.Thread(target=watch, daemon=True) if active else None
    if thread:
        thread.start()
    try:
        yield
    finally:
        done.set()
        if thread:
            thread.join()


class _Callback(cp_model.CpSolverSolutionCallback):
    """Reports progress; with ``stop_when`` = (Σ priority, host bound) it stops the search once a solution places
    everything on as few hosts as the lower bound allows, after a short grace for the distance cost."""

    def __init__(self, weights: dict[str, int], start: float, progress: ProgressFn | None, stop_when=None):
        super().__init__()
        self.weights, self.start, self.progress, self.stop_when = weights, start, progress, stop_when
        self.first_solution_s: float | None = None
        self.at_bound_since: float | None = None

    def on_solution_callback(self) -> None:
        elapsed = time.monotonic() - self.start
        self.last_solution_s = elapsed
        if self.first_solution_s is None:
            self.first_solution_s = elapsed
        placed, hosts, distance = decode_objective(self.objective_value, self.weights)
        if self.progress:
            self.progress(Progress("cp-sat", elapsed, placed, hosts, distance))
        if self.stop_when and placed >= self.stop_when[0] and hosts <= self.stop_when[1]:
            if self.at_bound_since is None:
                self.at_bound_since = elapsed
            elif elapsed - self.at_bound_since >= STOP_AT_BOUND_GRACE_S:
                self.stop_search()


def _state_of(problem: Problem, assignment: Assignment) -> FleetState:
    state = FleetState(problem)
    for (c, host, o), n in sorted(assignment.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2])):
        for _ in range(n):
            state.place(problem.classes[c], host, o)
    return state


def default_workers() -> int:
    return max(2, min(8, os.cpu_count() or 2))


PORTFOLIO_SHARE = 0.35  # of the time limit: heuristics not started by then are skipped (wall-clock mode)


def run_portfolio(problem: Problem, mix: dict[str, float], until: float, first_s: float | None = None):
    """The construction heuristics other than first-fit-decreasing (which made the first plan); in deterministic mode
    every one runs (the clock is charged a fixed amount per guest), else those not started by ``until``."""
    from planner.heuristics import portfolio

    deterministic = clock().deterministic
    plans = portfolio(problem, mix, None if deterministic else until, skip=("first-fit-decreasing",), first_s=first_s)
    clock().tick(2e-5 * len(problem.scenario.guests) * len(plans))
    return plans


DIRECT_MODEL_MAX_VARIABLES = 6000  # above this the whole-fleet model is left to the pattern decomposition
STOP_AT_BOUND_GRACE_S = 2.0  # once hosts used meet the lower bound, time left to improve the distance cost


def solve(
    scenario: Scenario,
    *,
    time_limit_s: float | None = None,
    seed: int = 0,
    workers: int | None = None,
    progress: ProgressFn | None = None,
    use_cpsat: bool = True,
    method: str = "auto",
    deterministic: bool = False,
    stall_s: float | None = None,
) -> Plan:
    """Plan the whole fleet. ``time_limit_s`` defaults to the scenario's ``policy.time_limit``.

    ``method``: ``auto`` (pattern decomposition for ``pack``, then the whole-fleet model where it is small enough),
    ``direct`` (whole-fleet model only), ``patterns`` (decomposition only), ``greedy`` (no CP-SAT).
    ``deterministic``: budgets in CP-SAT deterministic time (see ``planner.clock``), so the same scenario and seed
    give the same plan; by default the time limit is wall-clock seconds (better plans within the limit)."""
    with using(Clock(deterministic)):
        return _solve(scenario, time_limit_s, seed, workers, progress, use_cpsat, method, stall_s)


def _solve(scenario, time_limit_s, seed, workers, progress, use_cpsat, method, stall_s=None) -> Plan:
    start = time.monotonic()
    stall = scenario.policy.stall_s if stall_s is None else stall_s
    limit = scenario.policy.time_limit_s if time_limit_s is None else time_limit_s
    # keep time for pinning, explanations and the checker after the search (about 1 s per 10,000 guests)
    deadline = clock().now() + limit - min(0.1 * limit, 0.2 + 1e-4 * len(scenario.guests))
    workers = workers or default_workers()
    problem = compile_problem(scenario)
    if not use_cpsat:
        method = "greedy"
    if progress:
        progress(Progress("greedy", time.monotonic() - start))
    state = greedy(problem)
    greedy_assignment = dict(state.assignment)
    extra: dict[str, object] = {"greedy_s": round(time.monotonic() - start, 3)}
    extra["first_plan_s"] = round(time.monotonic() - start, 3)
    mix: dict[str, float] = {}
    bounds = lower_bounds(problem, with_lp=True, mix=mix)
    extra.update(bound_hosts=bounds.hosts, bound_binding=bounds.binding, bounds=bounds.all_bounds)
    all_guests = sum(cls.size * cls.guest.priority for cls in problem.classes)
    candidates: list[tuple[tuple, str, Assignment]] = [(score(problem, greedy_assignment), "greedy", greedy_assignment)]
    extra["greedy_hosts"] = -candidates[0][0][1] if scenario.policy.objective == "pack" else None
    if scenario.policy.objective == "pack" and method != "greedy" and problem.classes:
        # the portfolio of construction heuristics (planner.heuristics): every plan a candidate, the best kept
        for h in run_portfolio(problem, mix, start + PORTFOLIO_SHARE * limit, extra["greedy_s"]):
            candidates.append((score(problem, h.assignment), h.name, h.assignment))
        extra["heuristics"] = {name: {"placed": sc[0], "hosts": -sc[1]} for sc, name, _ in candidates}
        extra["heuristics_s"] = round(time.monotonic() - start, 3)
    heuristic_plans = [a for _sc, _n, a in candidates]
    start_assignment = max(candidates, key=lambda c: c[0])[2]  # the best start for what follows

    def at_bound(sc: tuple) -> bool:
        return scenario.policy.objective == "pack" and sc[0] == all_guests and -sc[1] <= bounds.hosts

    solver_status, objective, bound = "GREEDY", None, None
    size = model_size(problem)
    extra["model_variables"] = size
    run_patterns = method == "patterns" or (
        method == "auto" and scenario.policy.objective == "pack" and not at_bound(max(c[0] for c in candidates))
    )
    run_direct = method == "direct" or (method == "auto" and size <= DIRECT_MODEL_MAX_VARIABLES)
    if run_patterns and problem.classes:
        if progress:
            progress(Progress("patterns", time.monotonic() - start))
        share = 0.5 if run_direct else 0.9
        result = decompose(problem, start_assignment, clock().now() + share * (deadline - clock().now()), seed=seed,
                           workers=workers, more_columns=heuristic_plans, stall_s=stall)
        if result is not None:
            candidates.append((score(problem, result.assignment), "patterns", result.assignment))
            extra.update(pattern_columns=result.columns, pattern_rounds=result.rounds, pattern_lp=result.lp_hosts,
                         pattern_status=result.status)
            # the pattern LP bounds the hosts of the decomposed part only: valid for the fleet without fixed guests
            # (fixed hosts could absorb other guests, which the patterns do not model)
            if result.lp_bound is not None and not any(cls.guest.host for cls in problem.classes):
                kind = result.bound_kind or "pattern_lp"
                bounds = dataclasses.replace(bounds, all_bounds={**bounds.all_bounds, kind: result.lp_bound})
                if result.lp_bound > bounds.hosts:
                    bounds = Bounds(result.lp_bound, kind, bounds.all_bounds)
                extra.update(bound_hosts=bounds.hosts, bound_binding=bounds.binding, bounds=bounds.all_bounds)
            extra["patterns_s"] = round(time.monotonic() - start, 3)
            if progress:
                sc = candidates[-1][0]
                progress(Progress("patterns", time.monotonic() - start, sc[0], -sc[1], -sc[2]))
    best = max(candidates, key=lambda c: c[0])
    if run_patterns and not run_direct and not at_bound(best[0]) and clock().now() + 1 < deadline:
        if progress:
            progress(Progress("improve", time.monotonic() - start))
        improved, rounds = improve(problem, best[2], deadline, seed=seed, workers=workers,
                                   stop_at=bounds.hosts if best[0][0] == all_guests else None, stall_s=stall)
        extra.update(improve_rounds=rounds, improve_s=round(time.monotonic() - start, 3))
        candidates.append((score(problem, improved), "improve", improved))
        best = max(candidates, key=lambda c: c[0])
    if run_direct and problem.classes and scenario.hosts and not (at_bound(best[0]) and method == "auto" and best[0][2] == 0):
        build = build_model(problem)
        if scenario.policy.objective == "pack" and bounds.hosts and best[0][0] == all_guests:
            # valid only when every guest can be placed (the greedy or pattern plan shows it can)
            build.model.add(sum(build.used.values()) >= bounds.hosts).with_name("lower_bound[hosts]")
        add_hint(build, best[2])
        solver = cp_model.CpSolver()
        params = solver.parameters
        clock().limit(params, max(deadline - clock().now(), 0.5), workers)
        params.random_seed = seed
        stop_when = (all_guests, bounds.hosts) if scenario.policy.objective == "pack" and not clock().deterministic else None
        callback = _Callback(build.weights, start, progress, stop_when=stop_when)
        if progress:
            progress(Progress("cp-sat", time.monotonic() - start))
        with _stall_watch(solver, callback, stall, start, active=not clock().deterministic):
            status = solver.solve(build.model, callback)
        clock().charge(solver)
        solver_status = solver.status_name(status)
        extra.update(cpsat_s=round(solver.wall_time, 3), weights=build.weights)
        if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            objective, bound = solver.objective_value, solver.best_objective_bound
            assignment = read_assignment(build, solver)
            candidates.append((score(problem, assignment), "cp-sat", assignment))
    # on a tie the CP-SAT answer wins: its status (OPTIMAL) then holds for the plan
    best_score, source, chosen = max(candidates, key=lambda c: (c[0], c[1] == "cp-sat"))
    extra["candidates"] = {name: list(sc) for sc, name, _ in candidates}
    proven = (source == "cp-sat" and solver_status == "OPTIMAL") or (at_bound(best_score) and best_score[2] == 0)
    hosts_used = len({h for (_c, h, _o), n in chosen.items() if n})
    extra.update(hosts_used=hosts_used)
    if bounds.hosts and best_score[0] == all_guests:
        extra["gap_pct"] = round(100.0 * (hosts_used - bounds.hosts) / bounds.hosts, 2)
    stats = SolveStats(
        solver=source,
        solver_status=solver_status,
        objective=objective,
        best_bound=bound,
        wall_s=0.0,
        greedy_placed=sum(greedy_assignment.values()),
        extra=extra,
    )
    return finish_plan(problem, chosen, stats, proven, start)


def finish_plan(problem: Problem, chosen: Assignment, stats: SolveStats, proven: bool, start: float,
                prefer: dict[str, tuple[str, int]] | None = None) -> Plan:
    """Pin, explain the unplaced, set the status, and check: the last steps of every solve."""
    scenario = problem.scenario
    placements = pin_assignment(problem, chosen, prefer)
    unplaced_names = [g.name for g in scenario.guests if g.name not in placements]
    unplaced = explain_all(problem, _state_of(problem, chosen), unplaced_names)
    status_text = "partial" if unplaced else ("optimal" if proven else "feasible")
    stats = dataclasses.replace(stats, wall_s=round(time.monotonic() - start, 3))
    plan = Plan(scenario=scenario, status=status_text, placed=placements, unplaced_reasons=unplaced, stats=stats)
    violations = check_plan(plan)
    if violations:
        lines = "\n".join(f"  [{v.rule}] {v.message}" for v in violations[:20])
        raise PlanBug(f"the plan breaks {len(violations)} hard rule(s); it was not written:\n{lines}")
    return plan
