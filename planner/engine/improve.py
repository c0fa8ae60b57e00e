"""Improvement rounds (large-neighbourhood search) over the worst hosts of a plan.

Each round frees a few hosts' worth of guests — the least utilised hosts plus a few random others — and re-solves
just those hosts and guests with the whole-fleet CP-SAT model (``planner.engine.cpsat_model``, same families), hinted
with the current placement so a round never makes the plan worse. Everything outside the neighbourhood stays put, so
anti-affinity with guests elsewhere cannot break (guests only move between hosts of the neighbourhood).
"""

from __future__ import annotations

import dataclasses
import random
from collections import defaultdict

from ortools.sat.python import cp_model

from planner.engine.clock import clock
from planner.engine.cpsat_model import add_hint, build_model, read_assignment
from planner.engine.problem import LOAD_SCALE, Assignment, GuestClass, Problem, busy_units, score


def utilisation(problem: Problem, assignment: Assignment) -> dict[str, float]:
    cpu: dict[str, float] = defaultdict(float)
    mem: dict[str, float] = defaultdict(float)
    for (c, h, _o), n in assignment.items():
        g = problem.classes[c].guest
        cpu[h] += n * busy_units(g) / LOAD_SCALE
        mem[h] += n * g.memory_kib
    out = {}
    for h in cpu:
        cap = problem.cap_of(h)
        total_mem = sum(x.memory_4k_kib for x in cap.nodes) + sum(k * v for x in cap.nodes for k, v in x.pages.items())
        out[h] = max(cpu[h] / max(cap.usable_cpus, 1), mem[h] / max(total_mem, 1))
    return out


def _unplaced(problem: Problem, assignment: Assignment) -> dict[int, int]:
    """Class index -> guests of the class the assignment leaves out."""
    placed: dict[int, int] = defaultdict(int)
    for (c, _h, _o), n in assignment.items():
        placed[c] += n
    return {cls.index: cls.size - placed[cls.index] for cls in problem.classes if cls.size > placed[cls.index]}


def subproblem(problem: Problem, assignment: Assignment, hosts: list[str]) -> tuple[Problem, list[int], Assignment]:
    """The neighbourhood's hosts with their guests, plus the guests the plan leaves out that may go there."""
    chosen = set(hosts)
    counts: dict[int, int] = defaultdict(int)
    for (c, h, _o), n in assignment.items():
        if h in chosen:
            counts[c] += n
    for c, n in _unplaced(problem, assignment).items():
        if any(h in chosen for h in problem.classes[c].allowed_hosts):
            counts[c] += n
    classes: list[GuestClass] = []
    back: list[int] = []
    for c, n in sorted(counts.items()):
        cls = problem.classes[c]
        allowed = tuple(h for h in cls.allowed_hosts if h in chosen)
        classes.append(dataclasses.replace(cls, index=len(classes), members=cls.members[:n], allowed_hosts=allowed))
        back.append(c)
    host_objs = tuple(h for h in problem.scenario.hosts if h.name in chosen)
    sub = dataclasses.replace(
        problem, scenario=dataclasses.replace(problem.scenario, hosts=host_objs), classes=tuple(classes)
    )
    sub_index = {c: i for i, c in enumerate(back)}
    hint = {(sub_index[c], h, o): n for (c, h, o), n in assignment.items() if h in chosen}
    return sub, back, hint


def improve(problem: Problem, assignment: Assignment, deadline: float, seed: int = 0, workers: int = 2,
            neighbourhood: int = 8, round_s: float = 3.0, stop_at: int | None = None,
            stall_s: float | None = None) -> tuple[Assignment, int]:
    """Returns the improved assignment and the number of rounds that improved it. Stops at the deadline, after 4
    rounds in a row without improvement, or when nothing improved for ``stall_s``."""
    rng = random.Random(seed)
    current = dict(assignment)
    improved = 0
    stale = 0
    last = clock().now()
    while clock().now() + 0.5 < deadline and stale < 4 and not (stop_at and -score(problem, current)[1] <= stop_at):
        if stall_s is not None and clock().now() - last >= stall_s:
            break
        util = utilisation(problem, current)
        used = sorted(util, key=lambda h: (util[h], h))
        if len(used) < 2:
            break
        worst = used[: max(2, neighbourhood // 3)]
        # hosts of unplaced fixed guests join the neighbourhood, so those guests get a chance too
        fixed_hosts = {problem.classes[c].guest.host for c in _unplaced(problem, current)}
        wanted = sorted({h for h in fixed_hosts if h is not None} - set(worst))
        others = [h for h in used if h not in worst and h not in wanted]
        rng.shuffle(others)
        hosts = worst + wanted[:neighbourhood] + others[: max(neighbourhood - len(worst) - len(wanted), 0)]
        sub, back, hint = subproblem(problem, current, hosts)
        if not sub.classes:
            break
        build = build_model(sub)
        add_hint(build, hint)
        solver = cp_model.CpSolver()
        clock().limit(solver.parameters, max(min(round_s, deadline - clock().now()), 0.2), workers)
        solver.parameters.random_seed = rng.randrange(1 << 30)
        status = clock().solve(solver, build.model)
        clock().charge(solver)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            stale += 1
            continue
        new_sub = read_assignment(build, solver)
        candidate = {k: v for k, v in current.items() if k[1] not in set(hosts)}
        for (c, h, o), n in new_sub.items():
            key = (back[c], h, o)
            candidate[key] = candidate.get(key, 0) + n
        if score(problem, candidate) > score(problem, current):
            current = candidate
            improved += 1
            stale = 0
            last = clock().now()
        else:
            stale += 1
    return current, improved
