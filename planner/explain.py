"""Why a guest is unplaced: what is missing, where, and by how much — never a bare "infeasible".

Two cases. A guest that fits no empty host of any model is explained against the best node of an empty host
(it can never be placed without a change of scenario). A guest that would fit an empty host is explained against
the plan: for every host it may use, the closest option (fewest, smallest shortfalls) is evaluated on what the plan
left free, and the message names the closest host and node, plus what blocks the other hosts.
"""

from __future__ import annotations

from collections import Counter

from planner.problem import (
    CellDemand,
    FleetState,
    GuestClass,
    NodeTotals,
    Problem,
    Shortfall,
    cell_demands,
    node_shortfalls,
    split_cells,
)
from planner.units import format_memory


def _amount(value: float, unit: str) -> str:
    if unit == "KiB":
        return format_memory(int(value))
    text = f"{value:.2f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)
    return f"{text} {unit}"


def _need_text(cls: GuestClass, cell: CellDemand, cells: int) -> str:
    g = cls.guest
    where = "in one cell" if cells == 1 else f"per cell ({cells} cells)"
    if g.dedicated:
        return f"needs {len(cell.vcpus)} dedicated vCPUs (threads={g.threads}) {where}"
    return f"needs {len(cell.vcpus)} shared vCPUs at load {float(g.load):g} {where}"


def _shortfall_text(s: Shortfall, host: str, node: int) -> str:
    return (
        f"{s.resource}: needs {_amount(s.needed, s.unit)}, {host} node {node} has {_amount(max(s.free, 0), s.unit)} "
        f"free (short by {_amount(s.missing, s.unit)})"
    )


def _severity(shortfalls: list[tuple[int, Shortfall]]) -> tuple[int, float]:
    return (len(shortfalls), sum(s.missing / max(s.needed, 1e-9) for _, s in shortfalls))


def explain_never_fits(problem: Problem, cls: GuestClass) -> str:
    """The guest fits no empty host: name the best node of the best model and what it lacks."""
    g = cls.guest
    if not cls.options:
        return "no host model is available to it"
    best: tuple | None = None
    for model_name in cls.options:
        cap = problem.caps[model_name]
        if g.vcpus > cap.vcpu_cap:
            text = (
                f"{g.vcpus} vCPUs exceed the {problem.policy.cpu_overcommit_max}x cap of host model {model_name} "
                f"({cap.host_cores} cores → {cap.vcpu_cap} vCPUs)"
            )
            candidate = ((0, 1e9), text)
        else:
            cells = g.numa or 1
            split = split_cells(g, cells)
            if split is None:
                text = f"cannot be split into {cells} cells"
                candidate = ((0, 1e9), text)
            else:
                demands = cell_demands(g, split, cap)
                nodes = [n for n in cap.nodes if n.holds_cells]
                if len(nodes) < cells:
                    candidate = ((0, 1e9), f"needs {cells} NUMA nodes, model {model_name} has {len(nodes)} usable")
                else:
                    # the largest cell against each node, best node first
                    scored = []
                    for node in nodes:
                        sf = node_shortfalls(node, NodeTotals(), demands[0], problem.policy)
                        scored.append((_severity([(node.node_id, s) for s in sf]), node.node_id, sf))
                    scored.sort(key=lambda t: t[0])
                    severity, node_id, sf = scored[0]
                    detail = "; ".join(
                        f"{s.resource}: the most a node of {model_name} offers is {_amount(max(s.free, 0), s.unit)} "
                        f"(node {node_id}), short by {_amount(s.missing, s.unit)}"
                        for s in sf
                    )
                    text = f"{_need_text(cls, demands[0], cells)}; {detail}"
                    candidate = (severity, text)
        if best is None or candidate[0] < best[0]:
            best = candidate
    assert best is not None
    suffix = "" if g.numa else " (numa: auto found no cell count that fits; allow more cells with numa: N)"
    return f"fits no host even when empty: {best[1]}{suffix}"


def explain_unplaced(problem: Problem, state: FleetState, cls: GuestClass) -> str:
    """The guest would fit an empty host but not the plan: the closest host/node and what blocks the rest."""
    if not any(cls.options.values()):
        return explain_never_fits(problem, cls)
    blockers: Counter[str] = Counter()
    best: tuple | None = None  # (severity, host, option, shortfalls | host-wide reason)
    for host in cls.allowed_hosts:
        options = cls.options.get(problem.host_model[host], ())
        if not options:
            blockers["host model too small"] += 1
            continue
        blocker = state.host_blocker(cls, host)
        if blocker:
            blockers["anti-affinity" if blocker.startswith("anti-affinity") else "host vCPU cap"] += 1
            if best is None:
                best = ((99, 0.0), host, None, blocker)
            continue
        scored = [(_severity(sf), o, sf) for o in options if (sf := state.option_shortfalls(cls, host, o))]
        if len(scored) < len(options):
            continue  # fits now: only a solver stopped early leaves it out
        severity, option, sf = min(scored, key=lambda t: (t[0], t[1].nodes))
        for kind in sorted({s.resource for _, s in sf}):
            blockers[kind] += 1
        if best is None or severity < best[0]:
            best = (severity, host, option, sf)
    if best is None:
        return "it fits the plan as it is; the solver stopped before placing it (raise policy.time_limit)"
    _, host, option, detail = best
    if option is None:
        head = detail
    else:
        node_id = detail[0][0]
        cell = option.cells[option.nodes.index(node_id)]
        head = f"{_need_text(cls, cell, len(option.cells))}; closest: " + "; ".join(
            _shortfall_text(s, host, n) for n, s in detail
        )
    hosts = len(cls.allowed_hosts)
    summary = ", ".join(f"{kind} on {count}" for kind, count in blockers.most_common())
    return f"{head} [of {hosts} host{'s' if hosts != 1 else ''}, blocked by: {summary}]"


def explain_all(problem: Problem, state: FleetState, unplaced: list[str]) -> dict[str, str]:
    cls_of = {name: cls for cls in problem.classes for name in cls.members}
    cache: dict[int, str] = {}
    out = {}
    for name in unplaced:
        cls = cls_of[name]
        if cls.index not in cache:
            cache[cls.index] = explain_unplaced(problem, state, cls)
        out[name] = cache[cls.index]
    return out
