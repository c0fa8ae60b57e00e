"""Why a guest is unplaced: what is missing, where, and by how much — never a bare "infeasible".

Two cases. A guest that fits no empty host of any model is explained against the best node of an empty host
(it can never be placed without a change of scenario). A guest that would fit an empty host is explained against
the plan: for every host it may use, the closest option (fewest, smallest shortfalls) is evaluated on what the plan
left free, and the message names the closest host and node, plus what blocks the other hosts.
"""

from __future__ import annotations

import itertools
from collections import Counter

from planner.engine.problem import (
    CellDemand,
    FleetState,
    GuestClass,
    NodeTotals,
    Problem,
    Shortfall,
    cell_demands,
    node_orders,
    node_shortfalls,
    split_cells,
)
from planner.model.units import format_memory, format_page


def _amount(value: float, unit: str) -> str:
    if unit == "KiB":
        return format_memory(int(value))
    text = f"{value:.2f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)
    return f"{text} {unit}"


def _need_text(cls: GuestClass, cell: CellDemand, cells: int, index: int = 0) -> str:
    g = cls.guest
    where = "in one cell" if cells == 1 else f"per cell ({cells} cells)"
    if g.numa_cells and cells > 1:  # explicit cells have sizes of their own: name the one that lacks room
        where = f"in cell {index} (of {cells} explicit cells: {'+'.join(str(c.vcpus) for c in g.numa_cells)} vCPUs)"
    kind = '4K memory' if not cell.page_kib else format_page(cell.page_kib) + ' pages'
    memory = f"{format_memory(cell.memory_kib)} of {kind}"
    if g.dedicated:
        return f"needs {len(cell.vcpus)} dedicated vCPUs (threads={g.threads}) {where}, {memory}"
    return f"needs {len(cell.vcpus)} shared vCPUs at load {float(g.load):g} {where}, {memory}"


def _shortfall_text(s: Shortfall, host: str, node: int) -> str:
    return (
        f"{s.resource}: needs {_amount(s.needed, s.unit)}, {host} node {node} has {_amount(max(s.free, 0), s.unit)} "
        f"free (short by {_amount(s.missing, s.unit)})"
    )


def _severity(shortfalls: list[tuple[int, Shortfall]]) -> tuple[int, float]:
    return (len(shortfalls), sum(s.missing / max(s.needed, 1e-9) for _, s in shortfalls))


MAX_NODE_SETS = 2000  # node sets tried per model and cell count when explaining a guest that fits nowhere


def _best_node_set(
    problem: Problem, cap, demands, guest
) -> tuple[tuple, tuple[int, ...], list[tuple[int, int, Shortfall]]]:
    """The set of empty nodes (one per cell, in cell order) with the fewest, smallest shortfalls:
    (severity, node ids, [(cell, node id, shortfall)])."""
    nodes = [n for n in cap.nodes if n.holds_cells]
    best = None
    for combo in itertools.islice(node_orders(nodes, guest, len(demands)), MAX_NODE_SETS):
        found = [
            (i, node.node_id, sf)
            for i, (node, cell) in enumerate(zip(combo, demands, strict=False))
            for sf in node_shortfalls(node, NodeTotals(), cell, problem.policy)
        ]
        severity = _severity([(n, sf) for _i, n, sf in found])
        if best is None or severity < best[0]:
            best = (severity, tuple(n.node_id for n in combo), found)
            if not found:
                break
    assert best is not None
    return best


def _never_fits_on(problem: Problem, cls: GuestClass, model_name: str) -> tuple[tuple, str]:
    """(severity, text): why the guest fits no empty host of this model."""
    g = cls.guest
    cap = problem.caps[model_name]
    if g.vcpus > cap.vcpu_cap:
        return (0, 1e9), (
            f"{g.vcpus} vCPUs exceed the {problem.policy.cpu_overcommit_max}x cap of host model {model_name} "
            f"({cap.host_cores} cores → {cap.vcpu_cap} vCPUs)"
        )
    usable = [n for n in cap.nodes if n.holds_cells]
    if not usable:
        return ((0, 1e9), f"no node of model {model_name} holds guest cells (every node lacks unreserved CPUs or "
                          "memory)")
    counts = [g.numa] if g.numa else range(1, len(usable) + 1)
    best: tuple[tuple, str] | None = None
    for cells in counts:
        split = split_cells(g, cells)
        if split is None:
            candidate = (
                (0, 1e9), f"cannot be split into {cells} cells ({g.vcpus} vCPUs, {format_memory(g.memory_kib)})"
            )
        elif len(usable) < cells:
            candidate = ((0, 1e9), f"needs {cells} NUMA nodes, model {model_name} has {len(usable)} that hold cells")
        else:
            demands = cell_demands(g, split, cap)
            severity, node_ids, found = _best_node_set(problem, cap, demands, g)
            first = found[0][0] if found else 0
            need = _need_text(cls, demands[first], cells, first)
            if not found:  # every cell fits its node alone: the options were cut elsewhere (should not happen)
                detail = f"nodes {', '.join(map(str, node_ids))} of {model_name} take each cell alone"
            elif cells == 1:
                detail = "; ".join(
                    f"{s.resource}: needs {_amount(s.needed, s.unit)}, the most a node of {model_name} offers is "
                    f"{_amount(max(s.free, 0), s.unit)} (node {n}), short by {_amount(s.missing, s.unit)}"
                    for _i, n, s in found
                )
            else:
                detail = f"best nodes of {model_name}: {', '.join(map(str, node_ids))}: " + "; ".join(
                    f"cell {i} ({len(demands[i].vcpus)} vCPUs, {format_memory(demands[i].memory_kib)}) on node {n}: "
                    f"{s.resource}: needs {_amount(s.needed, s.unit)}, node {n} has {_amount(max(s.free, 0), s.unit)} "
                    f"when empty, short by {_amount(s.missing, s.unit)}"
                    for i, n, s in found
                )
            candidate = (severity, f"{need}; {detail}")
        if best is None or candidate[0] < best[0]:
            best = candidate
    assert best is not None
    return best


def explain_never_fits(problem: Problem, cls: GuestClass) -> str:
    """The guest fits no empty host: for the closest model, the best set of nodes and what each cell lacks there."""
    g = cls.guest
    if not cls.options:
        return "no host model is available to it"
    best = min((_never_fits_on(problem, cls, model_name) for model_name in sorted(cls.options)), key=lambda t: t[0])
    suffix = "" if g.numa else " (numa: auto found no cell count that fits; allow more cells with numa: N)"
    if g.host:
        model = problem.host_model.get(g.host, "?")
        return f"fixed to host {g.host} (model {model}), which it does not fit even when empty: {best[1]}{suffix}"
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
            kind = "host vCPU cap"
            if blocker.startswith("anti-affinity"):
                kind = "anti-affinity"
            elif blocker.startswith("tenant isolation"):
                kind = "tenant isolation"
            blockers[kind] += 1
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
        index = option.nodes.index(node_id)
        head = f"{_need_text(cls, option.cells[index], len(option.cells), index)}; closest: " + "; ".join(
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
