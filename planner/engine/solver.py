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
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

from ortools.sat.python import cp_model

from planner.engine.bounds import Bounds, describe, lower_bounds
from planner.engine.clock import Clock, clock, stop_requested, using
from planner.engine.cpsat_model import add_hint, build_model, read_assignment
from planner.engine.decompose import decompose
from planner.engine.explain import explain_all
from planner.engine.greedy import greedy
from planner.engine.improve import improve
from planner.engine.pinning import pin_assignment
from planner.engine.problem import Assignment, FleetState, Problem, compile_problem, model_size, score
from planner.model.plan import Plan, PlanStatus, SolveStats
from planner.model.scenario import Scenario
from planner.model.stats import Failure, HeuristicScore, LowerBound, PatternFigures, SearchFigures
from planner.verify.check import check_plan


class PlanBug(RuntimeError):
    """A plan broke a hard rule: a bug in the planner, never the user's fault. The plan is not written."""


STRICT_ENV = "VPLAN_STRICT"  # "1": a failing phase raises instead of falling back (the test suite sets it)


def strict_mode(strict: bool | None = None) -> bool:
    return os.environ.get(STRICT_ENV) == "1" if strict is None else strict


class PhaseFailures:
    """Failures of solve phases after a complete plan exists: recorded (phase, error, traceback), never lost.

    In strict mode (tests) the failure is raised instead. ``figures`` gives the ``SolveStats`` fields."""

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

    def added_to(self, stats: SolveStats) -> SolveStats:
        """``stats`` with these failures after the ones it has."""
        mine = self.figures()
        report = "\n".join(r for r in (stats.error_report, mine["error_report"]) if r) or None
        return dataclasses.replace(stats, failures=stats.failures + mine["failures"], error_report=report)

    def figures(self) -> dict[str, Any]:
        """``SolveStats`` fields: ``failures`` (phase and error, in plan.json) and ``error_report`` (the
        tracebacks, written to OUT/vplan-error.txt; None without failures)."""
        report = "\n".join(f"vplan: phase '{phase}' failed; the best plan found before it was kept.\n{tb}"
                           for phase, _e, tb in self.items)
        return {"failures": tuple(Failure(phase, error) for phase, error, _ in self.items),
                "error_report": report or None}


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
def _stall_watch(solver: cp_model.CpSolver, callback: _Callback, stall_s: float, start: float, active: bool):
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

    started_s: float  # set by ``_stall_watch`` before its watcher runs

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
    ``deterministic``: budgets in CP-SAT deterministic time (see ``planner.engine.clock``), so the same scenario and
    seed give the same plan; by default the time limit is wall-clock seconds (better plans within the limit).
    ``strict``: a phase that fails after the greedy plan exists (patterns, improvement, CP-SAT, pinning a
    candidate) raises; by default (``VPLAN_STRICT`` unset) the best plan that pins and checks is returned and the
    failure is recorded in ``stats.failures`` (and its traceback in ``stats.error_report``)."""
    with using(Clock(deterministic)):
        plan = _solve(scenario, time_limit_s, seed, workers, progress, use_cpsat, method, strict_mode(strict), stall_s)
    return add_headroom(plan, strict_mode(strict))


def add_headroom(plan: Plan, strict: bool) -> Plan:
    """``policy.survive``: the plan with an evacuation per failure (``planner.engine.evacuate``), each judged by the
    checker. An evacuation that breaks a rule is a bug: raised in strict mode, else the plan is kept without
    evacuations and the failure recorded (the plan itself was checked)."""
    from planner.engine.evacuate import with_evacuations
    from planner.verify.check import check_evacuations

    failures = PhaseFailures(strict)
    result = failures.run("evacuation", with_evacuations, plan)
    if result is not None:
        began = time.monotonic()
        violations = check_evacuations(result)
        if result.stats.headroom is not None:
            headroom = dataclasses.replace(result.stats.headroom, evacuation_check_s=round(time.monotonic() - began, 3))
            result = dataclasses.replace(result, stats=dataclasses.replace(result.stats, headroom=headroom))
        if violations:
            lines = "\n".join(f"  [{v.rule}] {v.message}" for v in violations[:20])
            message = f"an evacuation breaks {len(violations)} hard rule(s):\n{lines}"
            failures.run("evacuation check", _raise_bug, message)
        else:
            return result
    return dataclasses.replace(plan, stats=failures.added_to(plan.stats))


def _raise_bug(message: str) -> None:
    raise PlanBug(message)


@dataclass
class _Run:
    """One solve's working state, handed from phase to phase (what it reports is frozen: ``SolveStats``).

    ``candidates``: every plan found, as (score, source, assignment); a score is (Σ priority placed, -hosts or
    -load ‰, -distance), larger is better."""

    scenario: Scenario
    problem: Problem
    start: float
    limit: float
    deadline: float  # on the solve's clock (planner.engine.clock)
    seed: int
    workers: int
    progress: ProgressFn | None
    method: str
    stall: float
    failures: PhaseFailures
    greedy_assignment: Assignment
    bounds: Bounds
    mix: dict[str, float]
    candidates: list[tuple[tuple, str, Assignment]]
    search: SearchFigures
    model_variables: int = 0
    improve_rounds: int | None = None
    solver_status: str = "GREEDY"
    objective: float | None = None
    best_bound: float | None = None

    @property
    def pack(self) -> bool:
        return self.scenario.policy.objective == "pack"

    @cached_property
    def all_guests(self) -> int:
        """Σ priority of every guest: the placed term of a plan placing everything."""
        return sum(cls.size * cls.guest.priority for cls in self.problem.classes)

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def best(self) -> tuple[tuple, str, Assignment]:
        return max(self.candidates, key=lambda c: c[0])

    def at_bound(self, sc: tuple) -> bool:
        """Every guest placed on as few hosts as the lower bound allows (pack): nothing left to gain in hosts."""
        return self.pack and sc[0] == self.all_guests and -sc[1] <= self.bounds.hosts

    def report(self, phase: str, sc: tuple | None = None) -> None:
        if self.progress:
            if sc is None:
                self.progress(Progress(phase, self.elapsed()))
            else:
                self.progress(Progress(phase, self.elapsed(), sc[0], -sc[1], -sc[2], self.bounds.hosts))

    def note(self, **figures) -> None:
        """Record figures of the phase that just ran (``SearchFigures`` fields)."""
        self.search = dataclasses.replace(self.search, **figures)


def _solve(scenario, time_limit_s, seed, workers, progress, use_cpsat, method, strict, stall_s=None) -> Plan:
    """The phases in order: compile and the first plan, the start plans, the pattern decomposition, improvement
    rounds, the whole-fleet CP-SAT model, then the best candidate that pins and checks."""
    run = _compile(scenario, time_limit_s, seed, workers, progress, method if use_cpsat else "greedy", strict, stall_s)
    _start_plans(run)
    run.model_variables = size = model_size(run.problem)
    run_patterns = run.method == "patterns" or (
        run.method == "auto" and run.pack and not run.at_bound(run.best()[0]))
    run_direct = run.method == "direct" or (run.method == "auto" and size <= DIRECT_MODEL_MAX_VARIABLES)
    direct_too_large = run.method == "direct" and size > DIRECT_MODEL_HARD_MAX_VARIABLES
    if direct_too_large:
        # building it alone would take longer than any sensible limit and gigabytes: the same model on a few
        # hosts at a time (improvement rounds) instead
        run_direct = False
        run.note(direct_model=f"not built: {size} variables (more than {DIRECT_MODEL_HARD_MAX_VARIABLES}); "
                              "improvement rounds with the whole-fleet model on a few hosts at a time instead")
    if run_patterns and run.problem.classes:
        _patterns(run, share=0.5 if run_direct else 0.9)
    if (run_patterns or direct_too_large) and not run_direct:
        _improve(run)
    best = run.best()
    if run_direct and run.problem.classes and scenario.hosts and not (
            run.at_bound(best[0]) and run.method == "auto" and best[0][2] == 0):
        _search(run)
    return _pin_best(run)


def _compile(scenario: Scenario, time_limit_s, seed, workers, progress, method, strict, stall_s) -> _Run:
    """The problem, the greedy plan (first-fit decreasing, the first candidate) and the lower bounds."""
    start = time.monotonic()
    limit = scenario.policy.time_limit_s if time_limit_s is None else time_limit_s
    # keep time for pinning, explanations and the checker after the search (about 1 s per 10,000 guests)
    deadline = clock().now() + limit - min(0.1 * limit, 0.2 + 1e-4 * len(scenario.guests))
    problem = compile_problem(scenario)
    if progress:
        progress(Progress("greedy", time.monotonic() - start))
    greedy_assignment = dict(greedy(problem).assignment)
    greedy_s = round(time.monotonic() - start, 3)
    first_plan_s = round(time.monotonic() - start, 3)
    mix: dict[str, float] = {}
    bounds = lower_bounds(problem, with_lp=True, mix=mix).clamped(_hosts_of(greedy_assignment))
    greedy_score = score(problem, greedy_assignment)
    search = SearchFigures(greedy_s=greedy_s, first_plan_s=first_plan_s, candidates={},
                           greedy_hosts=-greedy_score[1] if scenario.policy.objective == "pack" else None)
    return _Run(scenario=scenario, problem=problem, start=start, limit=limit, deadline=deadline, seed=seed,
                workers=workers or default_workers(), progress=progress, method=method,
                stall=scenario.policy.stall_s if stall_s is None else stall_s, failures=PhaseFailures(strict),
                greedy_assignment=greedy_assignment, bounds=bounds, mix=mix,
                candidates=[(greedy_score, "greedy", greedy_assignment)], search=search)


def _start_plans(run: _Run) -> None:
    """The portfolio of construction heuristics (``planner.engine.heuristics``, pack only): every plan a candidate,
    the best the start of what follows."""
    if run.pack and run.method != "greedy" and run.problem.classes:
        for h in run.failures.run("heuristics", run_portfolio, run.problem, run.mix,
                                  run.start + PORTFOLIO_SHARE * run.limit, run.search.greedy_s) or []:
            run.candidates.append((score(run.problem, h.assignment), h.name, h.assignment))
        run.note(heuristics={name: HeuristicScore(sc[0], -sc[1]) for sc, name, _ in run.candidates},
                 heuristics_s=round(run.elapsed(), 3))
    run.report("bounds", run.best()[0])


def _patterns(run: _Run, share: float) -> None:
    """The pattern decomposition (``planner.engine.decompose``) for ``share`` of the time left; its LP bound
    raises the lower bound when no guest is fixed."""
    run.report("patterns")
    problem = run.problem
    start_assignment = run.best()[2]
    result = run.failures.run("patterns", decompose, problem, start_assignment,
                              clock().now() + share * (run.deadline - clock().now()), seed=run.seed,
                              workers=run.workers, more_columns=[a for _sc, _name, a in run.candidates],
                              stall_s=run.stall)
    if result is None:
        return
    run.candidates.append((score(problem, result.assignment), "patterns", result.assignment))
    run.note(patterns=PatternFigures(result.columns, result.rounds, result.lp_hosts, result.status))
    # the pattern LP bounds the hosts of the decomposed part only: valid for the fleet without fixed guests
    # (fixed hosts could absorb other guests, which the patterns do not model)
    if result.lp_bound is not None and not any(cls.guest.host for cls in problem.classes):
        kind = result.bound_kind or "pattern_lp"
        bounds = dataclasses.replace(run.bounds, all_bounds={**run.bounds.all_bounds, kind: result.lp_bound})
        if result.lp_bound > bounds.hosts:
            bounds = Bounds(result.lp_bound, kind, bounds.all_bounds,
                            describe(problem, kind, result.lp_bound, bounds.all_bounds))
            bounds = bounds.clamped(min(_hosts_of(a) for _s, _n, a in run.candidates))
        run.bounds = bounds
    run.note(patterns_s=round(run.elapsed(), 3))
    run.report("patterns", run.candidates[-1][0])


def _improve(run: _Run) -> None:
    """Improvement rounds (``planner.engine.improve``) on the best plan so far, until the deadline. They move guests
    within a few hosts and cannot see a tag's other guests in the same rack or zone: not run when some
    anti-affinity tag has a wider scope (the other phases honour every scope), nor at the bound."""
    scenario, problem = run.scenario, run.problem
    scoped = any(cls.guest.anti_affinity and scenario.scope_of(cls.guest) != "host" for cls in problem.classes)
    best = run.best()
    if scoped or run.at_bound(best[0]) or clock().now() + 1 >= run.deadline:
        return
    run.report("improve")
    result = run.failures.run("improve", improve, problem, best[2], run.deadline, seed=run.seed, workers=run.workers,
                              stop_at=run.bounds.hosts if best[0][0] == run.all_guests else None, stall_s=run.stall)
    if result is not None:
        improved, rounds = result
        run.improve_rounds = rounds
        run.note(improve_s=round(run.elapsed(), 3))
        run.candidates.append((score(problem, improved), "improve", improved))
    run.report("improve", run.best()[0])


def _search(run: _Run) -> None:
    """The whole-fleet CP-SAT model hinted with the best plan so far; proven optimal with every guest placed, its
    host count is itself a lower bound (``cp_sat``)."""
    outcome = run.failures.run("cp-sat", _run_cpsat, run, run.best())
    if outcome is None:
        return
    run.solver_status, run.objective, run.best_bound = outcome
    last_score, last_name, last = run.candidates[-1]
    if (run.solver_status == "OPTIMAL" and last_name == "cp-sat" and run.pack
            and last_score[0] == run.all_guests and _hosts_of(last) > run.bounds.hosts):
        proven_hosts = _hosts_of(last)
        run.bounds = Bounds(proven_hosts, "cp_sat", {**run.bounds.all_bounds, "cp_sat": proven_hosts},
                            describe(run.problem, "cp_sat", proven_hosts, run.bounds.all_bounds))


def _run_cpsat(run: _Run, best: tuple[tuple, str, Assignment]) -> tuple[str, float | None, float | None]:
    """Build and solve the model until the deadline (or a stall, or the bound reached): (status, objective, bound);
    a solution found is a candidate."""
    problem, objective, bound = run.problem, None, None
    build = build_model(problem)
    if run.pack and run.bounds.hosts and best[0][0] == run.all_guests:
        # valid only when every guest can be placed (the greedy or pattern plan shows it can)
        build.model.add(sum(build.used.values()) >= run.bounds.hosts).with_name("lower_bound[hosts]")
    add_hint(build, best[2])
    solver = cp_model.CpSolver()
    clock().limit(solver.parameters, max(run.deadline - clock().now(), 0.5), run.workers)
    solver.parameters.random_seed = run.seed
    stop_when = (run.all_guests, run.bounds.hosts) if run.pack and not clock().deterministic else None
    callback = _Callback(build.weights, run.start, run.progress, stop_when=stop_when)
    run.report("cp-sat")
    with _stall_watch(solver, callback, run.stall, run.start, active=not clock().deterministic):
        status = clock().solve(solver, build.model, callback)
    clock().charge(solver)
    run.note(cpsat_s=round(solver.wall_time, 3), weights=build.weights)
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        objective, bound = solver.objective_value, solver.best_objective_bound
        assignment = read_assignment(build, solver)
        run.candidates.append((score(problem, assignment), "cp-sat", assignment))
    return solver.status_name(status), objective, bound


def _pin_best(run: _Run) -> Plan:
    """The candidates best first (on a tie the CP-SAT answer wins: its status then holds for the plan): the first
    that pins and checks is the plan; a failing one is recorded and the next tried, the last one's failure raised."""
    ranked = sorted(run.candidates, key=lambda c: (c[0], c[1] == "cp-sat"), reverse=True)
    run.note(candidates={name: tuple(sc) for sc, name, _ in run.candidates})
    # a bound is never above the hosts of a plan found (every candidate is a plan)
    run.bounds = run.bounds.clamped(min(_hosts_of(a) for _s, _n, a in run.candidates))
    interrupted = stop_requested()  # planner.engine.clock.request_stop (Ctrl-C): the best plan found until then
    run.report("finish", ranked[0][0])
    for position, (best_score, source, chosen) in enumerate(ranked):
        proven = (source == "cp-sat" and run.solver_status == "OPTIMAL") or (
            run.at_bound(best_score) and best_score[2] == 0)
        hosts_used = _hosts_of(chosen)
        gap = run.bounds.hosts and best_score[0] == run.all_guests
        stats = SolveStats(
            solver=source, solver_status=run.solver_status, objective=run.objective, best_bound=run.best_bound,
            wall_s=0.0, greedy_placed=sum(run.greedy_assignment.values()), bound=bound_figures(run.bounds),
            hosts_used=hosts_used, gap_pct=round(100.0 * (hosts_used - run.bounds.hosts) / run.bounds.hosts, 2)
            if gap else None, model_variables=run.model_variables, improve_rounds=run.improve_rounds,
            interrupted=interrupted, search=run.search, **run.failures.figures())
        if position == len(ranked) - 1:
            return finish_plan(run.problem, chosen, stats, proven, run.start)  # the last candidate: its failure raised
        plan = run.failures.run(f"pinning the {source} plan", finish_plan, run.problem, chosen, stats, proven,
                                run.start)
        if plan is not None:
            return plan
    raise AssertionError("unreachable: the greedy candidate is always there")


def bound_figures(bounds: Bounds) -> LowerBound:
    """The engine's lower bounds as the plan reports them (``planner.model.stats.LowerBound``)."""
    return LowerBound(bounds.hosts, bounds.binding, dict(bounds.all_bounds), bounds.text)


def finish_plan(problem: Problem, chosen: Assignment, stats: SolveStats, proven: bool, start: float,
                prefer: dict[str, tuple[str, int]] | None = None, keep=None) -> Plan:
    """Pin, explain the unplaced, set the status, and check: the last steps of every solve (``prefer``, ``keep``:
    a re-plan's previous slots and pCPUs, ``planner.engine.pinning.pin_assignment``)."""
    scenario = problem.scenario
    placements = pin_assignment(problem, chosen, prefer, keep)
    unplaced_names = [g.name for g in scenario.guests if g.name not in placements]
    unplaced = explain_all(problem, _state_of(problem, chosen), unplaced_names)
    status_text: PlanStatus = "partial" if unplaced else ("optimal" if proven else "feasible")
    stats = dataclasses.replace(stats, wall_s=round(time.monotonic() - start, 3))
    plan = Plan(scenario=scenario, status=status_text, placed=placements, unplaced_reasons=unplaced, stats=stats)
    violations = check_plan(plan)
    if violations:
        lines = "\n".join(f"  [{v.rule}] {v.message}" for v in violations[:20])
        raise PlanBug(f"the plan breaks {len(violations)} hard rule(s); it was not written:\n{lines}")
    return plan
