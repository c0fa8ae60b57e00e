"""Construction heuristics: the portfolio of first plans, each a complete assignment, the best one kept.

* ``first-fit`` and ``first-fit-decreasing``: ``planner.engine.greedy`` (guest by guest, first host that fits);
* ``dot-product``: host-centric. Hosts are opened one at a time — hosts that running guests (``host:``) already
  occupy first, then by model, biggest first (or, ``dot-product-lp``, the model mix of the LP relaxation first) —
  and each open host is filled by repeatedly taking the guest whose demand vector has the largest dot product
  with the host's remaining capacity vector, every resource normalised by the host model's capacity;
* ``best-fit``: guest-centric, largest first; each guest goes to the open host that is left with the least
  normalised capacity after it, a new host (biggest model first) only when no open host takes it.

The vectors are host-level sums (CPUs at the load target, CPUs under the vCPU cap, host vCPU cap, 4K memory, pages
of each size): a necessary condition used to rank and to skip hosts quickly. Whether a guest really fits is decided
node by node by ``planner.engine.problem.FleetState`` — the same counting as the model and the checker — so every plan
here is valid. Fixed guests are placed on their host before anything else; one that does not fit stays unplaced.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from planner.engine.greedy import first_fitting_option
from planner.engine.problem import LOAD_SCALE, Assignment, FleetState, GuestClass, ModelCap, Problem, shape_key
from planner.engine.resources import host_totals, pages_key

EPS = 1e-9


@dataclass(frozen=True)
class HeuristicPlan:
    name: str
    assignment: Assignment
    seconds: float


def _resources(problem: Problem) -> list[str]:
    sizes = sorted({cls.guest.hugepage_kib for cls in problem.classes if cls.guest.hugepage_kib})
    return ["cpu_load", "cpu_cap", "vcpus", "memory_4k"] + [f"pages{s}" for s in sizes]


_TOTAL_OF = {"cpu_load": "cpus", "cpu_cap": "cpus", "vcpus": "vcpu_cap", "memory_4k": "memory_4k"}


def _capacity(cap: ModelCap, resources: list[str]) -> np.ndarray:
    """One host's capacity per vector entry: the fleet totals of ``planner.engine.resources.host_totals`` (both
    CPU entries against the usable CPUs; pages of each size)."""
    totals = host_totals(cap, cells_only=True)
    return np.array([totals.get(_TOTAL_OF.get(r) or pages_key(int(r[5:])), 0) for r in resources], dtype=float)


def _demand(problem: Problem, cls: GuestClass, cap: ModelCap, resources: list[str]) -> np.ndarray:
    """Host-level demand of one guest of ``cls`` on a host of ``cap``'s model (its first option's cells)."""
    options = cls.options.get(cap.model.name, ())
    if not options:
        return np.full(len(resources), np.inf)
    policy = problem.policy
    threads = max((n.threads_per_core for n in cap.nodes if n.holds_cells), default=1)
    dedicated = shared_vcpus = load = memory = 0
    pages: dict[int, int] = {}
    for cell in options[0].cells:
        dedicated += threads * cell.iso + 2 * cell.pairs + cell.singles
        shared_vcpus += cell.shared_vcpus
        load += cell.shared_load
        memory += cell.memory_4k_kib
        if cell.page_kib:
            pages[cell.page_kib] = pages.get(cell.page_kib, 0) + cell.pages
    out = []
    for r in resources:
        if r == "cpu_load":
            out.append(dedicated + load / LOAD_SCALE / float(policy.cpu_load_target))
        elif r == "cpu_cap":
            out.append(dedicated + shared_vcpus * threads / float(policy.cpu_overcommit_max))
        elif r == "vcpus":
            out.append(cls.guest.vcpus)
        elif r == "memory_4k":
            out.append(memory)
        else:
            out.append(pages.get(int(r[5:]), 0))
    return np.array(out, dtype=float)


class _Tables:
    """Normalised demand per (model, class) and capacity per model, as arrays."""

    def __init__(self, problem: Problem):
        self.problem = problem
        self.resources = _resources(problem)
        self.models = sorted({h.model for h in problem.scenario.hosts})
        self.caps = {m: _capacity(problem.caps[m], self.resources) for m in self.models}
        self.norm: dict[str, np.ndarray] = {}
        for m in self.models:
            cap = self.caps[m]
            rows = [_demand(problem, cls, problem.caps[m], self.resources) for cls in problem.classes]
            demand = np.array(rows, dtype=float).reshape(len(problem.classes), len(self.resources))
            with np.errstate(divide="ignore", invalid="ignore"):
                norm = np.where(cap > 0, demand / np.where(cap > 0, cap, 1), np.where(demand > 0, np.inf, 0.0))
            self.norm[m] = norm

    def size(self, m: str) -> float:
        cap = self.problem.caps[m]
        return float(cap.usable_cpus) + sum(n.memory_4k_kib for n in cap.nodes) / 2**20


def _place_fixed(problem: Problem, state: FleetState) -> dict[int, int]:
    """Fixed guests on their host first; returns how many of each non-fixed class are left to place."""
    left: dict[int, int] = {}
    for cls in problem.classes:
        if cls.guest.host:
            host = cls.guest.host
            options = cls.options.get(problem.host_model[host], ())
            for _ in cls.members:
                o = next((i for i, opt in enumerate(options) if state.fits(cls, host, opt)), None)
                if o is not None:
                    state.place(cls, host, o)
        else:
            left[cls.index] = cls.size
    return left


def _host_order(problem: Problem, state: FleetState, model_rank: Mapping[str, float]) -> list[str]:
    """Hosts running fixed guests first, then by the models' rank (largest first), then in scenario order."""
    position = {h.name: i for i, h in enumerate(problem.scenario.hosts)}
    return sorted(position, key=lambda h: (not state.host_guests[h], -model_rank[problem.host_model[h]],
                                           position[h]))


def _priority_key(problem: Problem, tables: _Tables, cls: GuestClass) -> tuple:
    share = max((float(np.max(tables.norm[m][cls.index])) for m in tables.models
                 if np.isfinite(tables.norm[m][cls.index]).all()), default=0.0)
    return (-cls.guest.priority, -share, cls.index)


def dot_product(problem: Problem, model_rank: Mapping[str, float] | None = None,
                tables: _Tables | None = None) -> Assignment:
    """Host-centric fill by the largest dot product of demand and remaining capacity (see the module doc)."""
    tables = tables or _Tables(problem)
    rank = model_rank or {m: tables.size(m) for m in tables.models}
    state = FleetState(problem)
    left = _place_fixed(problem, state)
    counts = np.zeros(len(problem.classes))
    for c, n in left.items():
        counts[c] = n
    # the highest priority first: the dot product only orders guests of the same priority
    priority = np.array([cls.guest.priority for cls in problem.classes], dtype=float)
    used: dict[str, np.ndarray] = {}  # what the fixed guests take
    for (c, h, _o), n in state.assignment.items():
        norm0 = np.nan_to_num(tables.norm[problem.host_model[h]][c], posinf=0.0)
        used[h] = used.get(h, 0) + n * norm0
    shape_index: dict[tuple, int] = {}
    shape_ids = np.array([shape_index.setdefault(shape_key(cls), len(shape_index)) for cls in problem.classes])
    finite = {m: np.isfinite(tables.norm[m]).all(axis=1) for m in tables.models}
    zeroed = {m: np.where(finite[m][:, None], tables.norm[m], 0.0) for m in tables.models}
    for host in _host_order(problem, state, rank):
        if not counts.any():
            break
        m = problem.host_model[host]
        norm = zeroed[m]
        remaining = np.ones(len(tables.resources)) - used.get(host, 0)
        alive = (counts > 0) & finite[m]
        while alive.any():
            fits = alive & (norm <= remaining + EPS).all(axis=1)
            if not fits.any():
                break
            top = priority[fits].max()
            values = np.where(fits & (priority == top), norm @ remaining + 1e-6, -np.inf)
            c = int(np.argmax(values))
            cls = problem.classes[c]
            o = first_fitting_option(problem, state, cls, host)
            if o is None:
                # hosts only fill up: it never fits here again, nor does any guest of its shape (unless only its
                # anti-affinity tag is in the way)
                if cls.guest.anti_affinity and state.tag_clash(cls.guest, host):
                    alive[c] = False
                else:
                    alive &= shape_ids != shape_ids[c]
                continue
            state.place(cls, host, o)
            counts[c] -= 1
            remaining -= norm[c]
            if counts[c] <= 0:
                alive[c] = False
    return dict(state.assignment)


def best_fit(problem: Problem, tables: _Tables | None = None) -> Assignment:
    """Largest guests first, each to the open host left with the least normalised capacity (see the module doc)."""
    tables = tables or _Tables(problem)
    state = FleetState(problem)
    left = _place_fixed(problem, state)
    hosts = _host_order(problem, state, {m: tables.size(m) for m in tables.models})
    index = {h: i for i, h in enumerate(hosts)}
    model_of = [problem.host_model[h] for h in hosts]
    model_index = {m: i for i, m in enumerate(tables.models)}
    host_model = np.array([model_index[m] for m in model_of])
    stacked = np.stack([tables.norm[m] for m in tables.models])  # model x class x resource
    remaining = np.ones((len(hosts), len(tables.resources)))
    opened = np.zeros(len(hosts), dtype=bool)
    for (c, h, _o), n in state.assignment.items():
        remaining[index[h]] -= n * np.nan_to_num(tables.norm[problem.host_model[h]][c], posinf=0.0)
        opened[index[h]] = True
    dead: dict[tuple, np.ndarray] = {}  # shape -> hosts where it no longer fits (hosts only fill up)
    queue = sorted((problem.classes[c] for c in left), key=lambda cls: _priority_key(problem, tables, cls))
    for cls in queue:
        demand = stacked[:, cls.index, :][host_model]  # host x resource
        shape = shape_key(cls)
        blocked = dead.setdefault(shape, np.zeros(len(hosts), dtype=bool))
        for _ in range(cls.size):
            after = remaining - demand
            ok = np.isfinite(demand).all(axis=1) & (after >= -EPS).all(axis=1) & ~blocked
            placed = False
            for open_ in (True, False):
                candidates = np.flatnonzero(ok & (opened == open_))
                if open_:
                    candidates = candidates[np.argsort(after[candidates].sum(axis=1), kind="stable")]
                for i in candidates:
                    host = hosts[i]
                    o = first_fitting_option(problem, state, cls, host)
                    if o is None:
                        if not cls.guest.anti_affinity:
                            blocked[i] = True
                        continue
                    state.place(cls, host, o)
                    remaining[i] = after[i]
                    opened[i] = True
                    placed = True
                    break
                if placed:
                    break
            if not placed:
                break
    return dict(state.assignment)


def lp_rank(problem: Problem, mix: Mapping[str, float], tables: _Tables) -> dict[str, float]:
    """Model rank from the LP's host counts per model: the share of a model's hosts the LP uses, size second."""
    count: dict[str, int] = {}
    for h in problem.scenario.hosts:
        count[h.model] = count.get(h.model, 0) + 1
    return {m: mix.get(m, 0.0) / count[m] + 1e-6 * tables.size(m) / max(tables.size(x) for x in tables.models)
            for m in tables.models}


def portfolio(problem: Problem, mix: Mapping[str, float] | None = None, deadline: float | None = None,
              on_plan: Callable[[HeuristicPlan], None] | None = None, skip: tuple[str, ...] = (),
              first_s: float | None = None) -> list[HeuristicPlan]:
    """Every heuristic's plan (first-fit-decreasing first: the quickest good start), in the order they ran.

    ``mix``: hosts per model of the LP relaxation (``planner.engine.bounds.lp_bound``), for ``dot-product-lp``.
    ``deadline`` (``time.monotonic()``): heuristics that would not end by then (about 3x the first one's time)
    are skipped. ``first_s``: how long first-fit-decreasing took when it ran elsewhere (with ``skip``)."""
    from planner.engine.greedy import greedy

    out: list[HeuristicPlan] = []

    def run(name: str, fn: Callable[[], Assignment]) -> None:
        # a heuristic takes up to about 3x first-fit-decreasing: skip one that would end after the deadline
        ref = first_s if first_s is not None else (out[0].seconds if out else None)
        if name in skip or (deadline is not None and ref is not None and time.monotonic() + 3 * ref > deadline):
            return
        t0 = time.monotonic()
        plan = HeuristicPlan(name, fn(), time.monotonic() - t0)
        out.append(plan)
        if on_plan:
            on_plan(plan)

    # the order: the quickest good start, then the best on the benchmark's fleets (best-fit, then dot-product)
    run("first-fit-decreasing", lambda: dict(greedy(problem, order="ffd").assignment))
    tables = _Tables(problem)
    run("best-fit", lambda: best_fit(problem, tables=tables))
    run("dot-product", lambda: dot_product(problem, tables=tables))
    run("first-fit", lambda: dict(greedy(problem, order="arrival").assignment))
    if mix:
        run("dot-product-lp", lambda: dot_product(problem, lp_rank(problem, mix, tables), tables=tables))
    return out
