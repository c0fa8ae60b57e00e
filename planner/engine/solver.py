"""solve(): scenario → compiled problem → greedy warm start → CP-SAT model → pinned, checked Plan.

The whole fleet is decided at once by one CP-SAT model (``planner.engine.cpsat_model``) with the greedy plan as a full
hint, so there is always an answer; if the model's best is not better than the greedy plan (e.g. it found nothing
within the time limit), the greedy plan is used. Every plan is checked by ``planner.verify.check`` — code that shares
nothing with this module — before it is returned: a plan that breaks a hard rule is a bug and raises ``PlanBug``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Callable, Protocol

from ortools.sat.python import cp_model

from planner.verify.check import check_plan
from planner.engine.clock import Clock, clock, stop_requested, using
from planner.engine.bounds import Bounds, describe, lower_bounds
from planner.engine.cpsat_model import add_hint, build_model, read_assignment
from planner.engine.decompose import decompose
from planner.engine.explain import explain_all
from planner.engine.greedy import greedy
from planner.engine.improve import improve
from planner.engine.pinning import pin_assignment
from planner.model.plan import Plan, SolveStats
from planner.engine.problem import Assignment, FleetState, Problem, compile_problem, model_size, score
from planner.model.scenario import Scenario


class PlanBug(RuntimeError):
    """A plan broke a hard rule: a bug in the planner, never the user's fault. The plan is not written."""


STRICT_ENV = "VPLAN_STRICT"  # "1": a failing phase raises instead of falling back (the test suite sets it)


def strict_mode(strict: bool | None = None) -> bool:
    return os.environ.get(STRICT_ENV) == "1" if strict is None else strict


class PhaseFailures:
    """Failures of solve phases after a complete plan exists: recorded (phase, error, traceback), never lost.

    In strict mode (tests) the failure is raised instead. ``record`` goes into ``stats.extra``: ``failures``
    (phase and error, in plan.json) and ``error_report`` (the tracebacks, written to OUT/vplan-error.txt)."""

    def __init__(self, strict: bool):
        self.strict = strict
        self.items: list[tuple[str, str, str]] = []

    def run(self, phase: str, fn: Callable, *args, **kwargs):
        """``fn(*args, **kwargs)``, or None if it raised (non-strict mode)."""
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if self.strict:
                raise
            self.items.append((phase, f"{type(exc).__name__}: {exc}", traceback.format_exc()))
            return None

    def record(self, extra: dict) -> None:
        if self.items:
            extra["failures"] = [{"phase": phase, "error": error} for phase, error, _ in self.items]
            extra["error_report"] = "\n".join(
                f"vplan: phase '{phase}' failed; the best plan found before it was kept.\n{tb}" for phase, _e, tb in self.items
            )


@dataclass(frozen=True)
class Progress:
    phase: str
    elapsed_s: float
    placed: int | None = None
    hosts: int | None = None
    distance: int | None = None
    bound: int | None = None  # lower bound on hosts, once known


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
    return FleetState.from_assignment(problem, assignment)


def _hosts_of(assignment: Assignment) -> int:
    return len({h for (_c, h, _o), n in assignment.items() if n})


def default_workers() -> int:
    return max(2, min(8, os.cpu_count() or 2))


PORTFOLIO_SHARE = 0.35  # of the time limit: heuristics not started by then are skipped (wall-clock mode)


def run_portfolio(problem: Problem, mix: dict[str, float], until: float, first_s: float | None = None):
    """The construction heuristics other than first-fit-decreasing (which made the first plan); in deterministic mode
    every one runs (the clock is charged a fixed amount per guest), else those not started by ``until``."""
    from planner.engine.heuristics import portfolio

    deterministic = clock().deterministic
    plans = portfolio(problem, mix, None if deterministic else until, skip=("first-fit-decreasing",), first_s=first_s)
    clock().tick(2e-5 * len(problem.scenario.guests) * len(plans))
    return plans


DIRECT_MODEL_MAX_VARIABLES = 6000  # above this the whole-fleet model is left to the pattern decomposition
DIRECT_MODEL_HARD_MAX_VARIABLES = 150_000  # method="direct": above this, improvement rounds instead (see _solve)
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
    strict: bool | None = None,
    stall_s: float | None = None,
) -> Plan:
    """Plan the whole fleet. ``time_limit_s`` defaults to the scenario's ``policy.time_limit``.

    ``method``: ``auto`` (pattern decomposition for ``pack``, then the whole-fleet model where it is small enough),
    ``direct`` (whole-fleet model only), ``patterns`` (decomposition only), ``greedy`` (no CP-SAT).
    ``deterministic``: budgets in CP-SAT deterministic time (see ``planner.engine.clock``), so the same scenario and seed
    give the same plan; by default the time limit is wall-clock seconds (better plans within the limit).
    ``strict``: a phase that fails after the greedy plan exists (patterns, improvement, CP-SAT, pinning a
    candidate) raises; by default (``VPLAN_STRICT`` unset) the best plan that pins and checks is returned and the
    failure is recorded in ``stats.extra['failures']`` (and its traceback in ``stats.extra['error_report']``)."""
    with using(Clock(deterministic)):
        plan = _solve(scenario, time_limit_s, seed, workers, progress, use_cpsat, method, strict_mode(strict), stall_s)
    return add_headroom(plan, strict_mode(strict))


def add_headroom(plan: Plan, strict: bool) -> Plan:
    """``policy.survive``: the plan with an evacuation per failure (``planner.engine.evacuate``), each judged by the
    checker. An evacuation that breaks a rule is a bug: raised in strict mode, else the plan is kept without
    evacuations and the failure recorded (the plan itself was checked)."""
    from planner.verify.check import check_evacuations
    from planner.engine.evacuate import with_evacuations

    failures = PhaseFailures(strict)
    result = failures.run("evacuation", with_evacuations, plan)
    if result is not None:
        began = time.monotonic()
        violations = check_evacuations(result)
        if "headroom" in result.stats.extra:
            result.stats.extra["headroom"]["evacuation_check_s"] = round(time.monotonic() - began, 3)
        if violations:
            lines = "\n".join(f"  [{v.rule}] {v.message}" for v in violations[:20])
            failures.run("evacuation check", _raise_bug, f"an evacuation breaks {len(violations)} hard rule(s):\n{lines}")
        else:
            return result
    extra = dict(plan.stats.extra)
    failures.record(extra)
    return dataclasses.replace(plan, stats=dataclasses.replace(plan.stats, extra=extra))


def _raise_bug(message: str) -> None:
    raise PlanBug(message)


def _solve(scenario, time_limit_s, seed, workers, progress, use_cpsat, method, strict, stall_s=None) -> Plan:
    start = time.monotonic()
    failures = PhaseFailures(strict)
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
    all_guests = sum(cls.size * cls.guest.priority for cls in problem.classes)
    candidates: list[tuple[tuple, str, Assignment]] = [(score(problem, greedy_assignment), "greedy", greedy_assignment)]
    bounds = bounds.clamped(_hosts_of(greedy_assignment))
    extra.update(bound_hosts=bounds.hosts, bound_binding=bounds.binding, bounds=bounds.all_bounds, bound_text=bounds.text)
    extra["greedy_hosts"] = -candidates[0][0][1] if scenario.policy.objective == "pack" else None
    if scenario.policy.objective == "pack" and method != "greedy" and problem.classes:
        # the portfolio of construction heuristics (planner.engine.heuristics): every plan a candidate, the best kept
        for h in failures.run("heuristics", run_portfolio, problem, mix, start + PORTFOLIO_SHARE * limit,
                              extra["greedy_s"]) or []:
            candidates.append((score(problem, h.assignment), h.name, h.assignment))
        extra["heuristics"] = {name: {"placed": sc[0], "hosts": -sc[1]} for sc, name, _ in candidates}
        extra["heuristics_s"] = round(time.monotonic() - start, 3)
    heuristic_plans = [a for _sc, _n, a in candidates]
    start_assignment = max(candidates, key=lambda c: c[0])[2]  # the best start for what follows
    if progress:
        sc0 = max(c[0] for c in candidates)
        progress(Progress("bounds", time.monotonic() - start, sc0[0], -sc0[1], -sc0[2], bounds.hosts))

    def at_bound(sc: tuple) -> bool:
        return scenario.policy.objective == "pack" and sc[0] == all_guests and -sc[1] <= bounds.hosts

    solver_status, objective, bound = "GREEDY", None, None
    size = model_size(problem)
    extra["model_variables"] = size
    run_patterns = method == "patterns" or (
        method == "auto" and scenario.policy.objective == "pack" and not at_bound(max(c[0] for c in candidates))
    )
    run_direct = method == "direct" or (method == "auto" and size <= DIRECT_MODEL_MAX_VARIABLES)
    direct_too_large = method == "direct" and size > DIRECT_MODEL_HARD_MAX_VARIABLES
    if direct_too_large:
        # building it alone would take longer than any sensible limit and gigabytes: the same model on a few
        # hosts at a time (improvement rounds) instead
        run_direct = False
        extra["direct_model"] = (f"not built: {size} variables (more than {DIRECT_MODEL_HARD_MAX_VARIABLES}); "
                                 "improvement rounds with the whole-fleet model on a few hosts at a time instead")
    if run_patterns and problem.classes:
        if progress:
            progress(Progress("patterns", time.monotonic() - start))
        share = 0.5 if run_direct else 0.9
        result = failures.run("patterns", decompose, problem, start_assignment,
                              clock().now() + share * (deadline - clock().now()), seed=seed, workers=workers,
                              more_columns=heuristic_plans, stall_s=stall)
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
                    bounds = Bounds(result.lp_bound, kind, bounds.all_bounds,
                                    describe(problem, kind, result.lp_bound, bounds.all_bounds))
                    bounds = bounds.clamped(min(_hosts_of(a) for _s, _n, a in candidates))
                extra.update(bound_hosts=bounds.hosts, bound_binding=bounds.binding, bounds=bounds.all_bounds,
                             bound_text=bounds.text)
            extra["patterns_s"] = round(time.monotonic() - start, 3)
            if progress:
                sc = candidates[-1][0]
                progress(Progress("patterns", time.monotonic() - start, sc[0], -sc[1], -sc[2], bounds.hosts))
    best = max(candidates, key=lambda c: c[0])
    # improvement rounds move guests within a few hosts and cannot see a tag's other guests in the same rack or
    # zone: not run when some anti-affinity tag has a wider scope (the other phases honour every scope)
    scoped = any(cls.guest.anti_affinity and scenario.scope_of(cls.guest) != "host" for cls in problem.classes)
    if (run_patterns or direct_too_large) and not run_direct and not scoped and not at_bound(best[0]) and clock().now() + 1 < deadline:
        if progress:
            progress(Progress("improve", time.monotonic() - start))
        result = failures.run("improve", improve, problem, best[2], deadline, seed=seed, workers=workers,
                              stop_at=bounds.hosts if best[0][0] == all_guests else None, stall_s=stall)
        if result is not None:
            improved, rounds = result
            extra.update(improve_rounds=rounds, improve_s=round(time.monotonic() - start, 3))
            candidates.append((score(problem, improved), "improve", improved))
            best = max(candidates, key=lambda c: c[0])
        if progress:
            progress(Progress("improve", time.monotonic() - start, best[0][0], -best[0][1], -best[0][2], bounds.hosts))
    if run_direct and problem.classes and scenario.hosts and not (at_bound(best[0]) and method == "auto" and best[0][2] == 0):
        def run_cpsat():
            objective = bound = None
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
                status = clock().solve(solver, build.model, callback)
            clock().charge(solver)
            solver_status = solver.status_name(status)
            extra.update(cpsat_s=round(solver.wall_time, 3), weights=build.weights)
            if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
                objective, bound = solver.objective_value, solver.best_objective_bound
                assignment = read_assignment(build, solver)
                candidates.append((score(problem, assignment), "cp-sat", assignment))
            return solver_status, objective, bound

        outcome = failures.run("cp-sat", run_cpsat)
        if outcome is not None:
            solver_status, objective, bound = outcome
            last_score, last_name, last = candidates[-1]
            if (solver_status == "OPTIMAL" and last_name == "cp-sat" and scenario.policy.objective == "pack"
                    and last_score[0] == all_guests and _hosts_of(last) > bounds.hosts):
                # proven optimal with every guest placed: its host count is itself a lower bound
                proven_hosts = _hosts_of(last)
                bounds = Bounds(proven_hosts, "cp_sat", {**bounds.all_bounds, "cp_sat": proven_hosts},
                                describe(problem, "cp_sat", proven_hosts, bounds.all_bounds))
    # on a tie the CP-SAT answer wins: its status (OPTIMAL) then holds for the plan
    ranked = sorted(candidates, key=lambda c: (c[0], c[1] == "cp-sat"), reverse=True)
    extra["candidates"] = {name: list(sc) for sc, name, _ in candidates}
    # a bound is never above the hosts of a plan found (every candidate is a plan)
    bounds = bounds.clamped(min(_hosts_of(a) for _s, _n, a in candidates))
    extra.update(bound_hosts=bounds.hosts, bound_binding=bounds.binding, bounds=bounds.all_bounds, bound_text=bounds.text)
    if stop_requested():  # planner.engine.clock.request_stop (Ctrl-C): the best plan found until then
        extra["interrupted"] = True
    if progress:
        top = ranked[0][0]
        progress(Progress("finish", time.monotonic() - start, top[0], -top[1], -top[2], bounds.hosts))
    for position, (best_score, source, chosen) in enumerate(ranked):
        proven = (source == "cp-sat" and solver_status == "OPTIMAL") or (at_bound(best_score) and best_score[2] == 0)
        hosts_used = len({h for (_c, h, _o), n in chosen.items() if n})
        extra.update(hosts_used=hosts_used)
        extra.pop("gap_pct", None)
        if bounds.hosts and best_score[0] == all_guests:
            extra["gap_pct"] = round(100.0 * (hosts_used - bounds.hosts) / bounds.hosts, 2)
        failures.record(extra)
        stats = SolveStats(
            solver=source,
            solver_status=solver_status,
            objective=objective,
            best_bound=bound,
            wall_s=0.0,
            greedy_placed=sum(greedy_assignment.values()),
            extra=extra,
        )
        if position == len(ranked) - 1:
            return finish_plan(problem, chosen, stats, proven, start)  # the last candidate: its failure is raised
        plan = failures.run(f"pinning the {source} plan", finish_plan, problem, chosen, stats, proven, start)
        if plan is not None:
            return plan
    raise AssertionError("unreachable: the greedy candidate is always there")


def finish_plan(problem: Problem, chosen: Assignment, stats: SolveStats, proven: bool, start: float,
                prefer: dict[str, tuple[str, int]] | None = None, keep=None) -> Plan:
    """Pin, explain the unplaced, set the status, and check: the last steps of every solve (``prefer``, ``keep``:
    a re-plan's previous slots and pCPUs, ``planner.engine.pinning.pin_assignment``)."""
    scenario = problem.scenario
    placements = pin_assignment(problem, chosen, prefer, keep)
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
