"""solve(): scenario → compiled problem → greedy warm start → CP-SAT model → pinned, checked Plan.

The whole fleet is decided at once by one CP-SAT model (``planner.cpsat_model``) with the greedy plan as a full
hint, so there is always an answer; if the model's best is not better than the greedy plan (e.g. it found nothing
within the time limit), the greedy plan is used. Every plan is checked by ``planner.check`` — code that shares
nothing with this module — before it is returned: a plan that breaks a hard rule is a bug and raises ``PlanBug``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable, Protocol

from ortools.sat.python import cp_model

from planner.check import check_plan
from planner.cpsat_model import add_hint, build_model, objective_of, read_assignment
from planner.explain import explain_all
from planner.greedy import greedy
from planner.pinning import pin_assignment
from planner.plan import Plan, SolveStats
from planner.problem import Assignment, FleetState, Problem, compile_problem
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
    bound_hosts: float | None = None


class ProgressFn(Protocol):
    def __call__(self, progress: Progress) -> None: ...


def decode_objective(value: float, weights: dict[str, int]) -> tuple[int, int, int]:
    """(Σ priority placed, hosts or max load ‰, distance cost) from the weighted objective value."""
    value = round(value)
    placed = -((-value) // weights["placed"])
    rest = weights["placed"] * placed - value
    return placed, rest // weights["hosts"], rest % weights["hosts"] // weights["distance"]


class _Callback(cp_model.CpSolverSolutionCallback):
    def __init__(self, weights: dict[str, int], start: float, progress: ProgressFn | None):
        super().__init__()
        self.weights, self.start, self.progress = weights, start, progress
        self.first_solution_s: float | None = None

    def on_solution_callback(self) -> None:
        elapsed = time.monotonic() - self.start
        if self.first_solution_s is None:
            self.first_solution_s = elapsed
        if self.progress:
            placed, hosts, distance = decode_objective(self.objective_value, self.weights)
            self.progress(Progress("cp-sat", elapsed, placed, hosts, distance))


def _state_of(problem: Problem, assignment: Assignment) -> FleetState:
    state = FleetState(problem)
    for (c, host, o), n in sorted(assignment.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2])):
        for _ in range(n):
            state.place(problem.classes[c], host, o)
    return state


def default_workers() -> int:
    return max(2, min(8, os.cpu_count() or 2))


def solve(
    scenario: Scenario,
    *,
    time_limit_s: float | None = None,
    seed: int = 0,
    workers: int | None = None,
    progress: ProgressFn | None = None,
    use_cpsat: bool = True,
) -> Plan:
    """Plan the whole fleet. ``time_limit_s`` defaults to the scenario's ``policy.time_limit``."""
    start = time.monotonic()
    limit = scenario.policy.time_limit_s if time_limit_s is None else time_limit_s
    problem = compile_problem(scenario)
    if progress:
        progress(Progress("greedy", time.monotonic() - start))
    state = greedy(problem)
    greedy_assignment = dict(state.assignment)
    greedy_s = time.monotonic() - start
    chosen, solver_status, objective, bound, source = greedy_assignment, "GREEDY", None, None, "greedy"
    extra: dict[str, object] = {"greedy_s": round(greedy_s, 3)}
    if use_cpsat and problem.classes and scenario.hosts:
        build = build_model(problem)
        add_hint(build, greedy_assignment)
        solver = cp_model.CpSolver()
        params = solver.parameters
        params.max_time_in_seconds = max(limit - (time.monotonic() - start), 0.5)
        params.num_workers = workers or default_workers()
        params.random_seed = seed
        callback = _Callback(build.weights, start, progress)
        if progress:
            progress(Progress("cp-sat", time.monotonic() - start))
        status = solver.solve(build.model, callback)
        solver_status = solver.status_name(status)
        greedy_objective = objective_of(build, greedy_assignment)
        extra.update(
            first_solution_s=callback.first_solution_s and round(callback.first_solution_s, 3),
            cpsat_s=round(solver.wall_time, 3),
            greedy_objective=greedy_objective,
            variables=len(build.x),
        )
        if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            objective, bound = solver.objective_value, solver.best_objective_bound
            if objective >= greedy_objective:
                chosen, source = read_assignment(build, solver), "cp-sat"
        extra["weights"] = build.weights
        if objective is not None:
            placed, second, distance = decode_objective(objective, build.weights)
            extra.update(objective_placed=placed, objective_second=second, objective_distance=distance)
    placements = pin_assignment(problem, chosen)
    unplaced_names = [g.name for g in scenario.guests if g.name not in placements]
    final_state = _state_of(problem, chosen)
    unplaced = explain_all(problem, final_state, unplaced_names)
    if unplaced:
        status_text = "partial"
    elif source == "cp-sat" and solver_status == "OPTIMAL":
        status_text = "optimal"
    else:
        status_text = "feasible"
    stats = SolveStats(
        solver=source,
        solver_status=solver_status,
        objective=objective,
        best_bound=bound,
        wall_s=round(time.monotonic() - start, 3),
        greedy_placed=sum(greedy_assignment.values()),
        extra=extra,
    )
    plan = Plan(scenario=scenario, status=status_text, placed=placements, unplaced_reasons=unplaced, stats=stats)
    violations = check_plan(plan)
    if violations:
        lines = "\n".join(f"  [{v.rule}] {v.message}" for v in violations[:20])
        raise PlanBug(f"the plan breaks {len(violations)} hard rule(s); it was not written:\n{lines}")
    return plan
