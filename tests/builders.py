"""Small scenarios built directly from the dataclasses, for solver micro-tests (no YAML involved)."""

from __future__ import annotations

from fractions import Fraction

from planner.model.scenario import Guest, Host, HostModel, Node, Policy, Scenario

GIB = 1024**2


def host_model(
    name: str = "m",
    nodes: int = 2,
    cpus_per_node: int = 8,
    threads: int = 2,
    memory_gib: int = 16,
    reserved: tuple[int, ...] = (),
    reserved_gib: int = 0,
    pages: dict[int, int] | None = None,
    distance: int = 21,
) -> HostModel:
    """``nodes`` nodes of ``cpus_per_node`` CPUs numbered Linux-style (siblings c and c + N/T)."""
    total = nodes * cpus_per_node
    step = total // threads
    per_node_cores = cpus_per_node // threads
    node_list = []
    for n in range(nodes):
        cpus = tuple(sorted(c + k * step for c in range(n * per_node_cores, (n + 1) * per_node_cores) for k in range(threads)))
        node_list.append(Node(n, cpus, memory_gib * GIB, dict(pages or {})))
    cores = tuple(tuple(c + k * step for k in range(threads)) for c in range(step))
    d = tuple(tuple(10 if i == j else distance for j in range(nodes)) for i in range(nodes))
    return HostModel(name, tuple(node_list), d, cores, frozenset(reserved), reserved_gib * GIB)


def scenario(models: list[HostModel], hosts: dict[str, str], guests: list[Guest], **policy) -> Scenario:
    pol = Policy(**{k: (Fraction(v) if isinstance(v, (int, float, str)) and k != "objective" and k != "time_limit_s" else v) for k, v in policy.items()})
    return Scenario("t", pol, {m.name: m for m in models}, tuple(Host(h, m) for h, m in hosts.items()), tuple(guests))


def shared(name: str, vcpus: int, memory_gib: float = 1, load: str = "1", **kw) -> Guest:
    return Guest(name, vcpus, int(memory_gib * GIB), load=Fraction(load), **kw)


def dedicated(name: str, vcpus: int, memory_gib: float = 1, threads: str = "prefer", **kw) -> Guest:
    return Guest(name, vcpus, int(memory_gib * GIB), cpu="dedicated", threads=threads, **kw)


def placed_by_families(scenario: Scenario, *families) -> int:
    """Guests the CP-SAT model places (solved to optimality) with the assignment family and ``families`` only."""
    from ortools.sat.python import cp_model

    from planner.engine import cpsat_model
    from planner.engine.problem import compile_problem

    build = cpsat_model.build_model(compile_problem(scenario), (cpsat_model.define_assignment, *families))
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.max_time_in_seconds = 10
    assert solver.solve(build.model) == cp_model.OPTIMAL
    return sum(solver.value(v) for v in build.x.values())
