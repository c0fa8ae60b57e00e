"""From a previous plan to a new one: the moves as actions, and an order of live migrations that is safe.

* ``previous_from_document`` / ``previous_from_plan``: what a previous plan placed where (host, host nodes, the
  pCPUs of each cell, emulator pCPUs) and each guest's demands, from its plan.json (format_version 2, read through
  ``planner.files.planfile.read_plan_document``) or from a ``Plan``.
* ``actions``: one action per guest that changes: ``live-migrate`` (another host), ``re-pin`` (same host, other
  nodes or other pCPUs), ``start`` (new, or changed guests with their new definition), ``stop`` (removed, now
  unplaced, or changed guests on their old place). A *move* is a guest placed before and after whose host or
  nodes change.
* ``migration_order``: the moves in an order in which every intermediate state obeys the hard rules. Stops come
  first (they only free resources), starts last. A networkx graph has an edge a → b when b's target host is a's
  source, they share a node (or a host-wide limit), and b does not fit on its target before a left; moves are
  taken in topological order, each only when it fits the state at that point (the fit test is the model's own,
  ``planner.engine.problem.FleetState``). Where no pending move fits (a cycle: a waits for b and b for a), one guest of
  the cycle goes to a named spare host — a host empty now and in the new plan where it fits — and on to its
  target later; without such a host the cycle is reported and its moves are left unordered. Every step is pinned
  (keeping each guest's pCPUs where they are free) and checked by ``planner.verify.check`` on the hosts it touches.
* ``plan_diff``: moves, re-pins and freed hosts between two plan.json documents (``vplan diff``).
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from planner.files.planfile import PlanFileError, plan_json_path, read_plan_document
from planner.model.stats import ActionKind, MigrationOrder, MigrationStep, MoveAction
from planner.model.units import format_cpulist, format_page, parse_cpulist


# ---------------------------------------------------------------------------------------------- previous plan
@dataclass(frozen=True)
class PreviousGuest:
    """One placed guest of a previous plan: where it ran and what it needed."""

    name: str
    host: str
    model: str | None
    nodes: tuple[int, ...]
    cell_pcpus: tuple[tuple[int, ...], ...]  # pCPUs of each cell (its vCPUs' pins)
    emulator_pcpus: tuple[int, ...]
    vcpus: int
    memory_kib: int
    cpu: str
    page_size: str  # "4K", "2M", "1G"


@dataclass(frozen=True)
class Previous:
    """A previous plan as a re-plan needs it: placed guests, the guests it left out, the hosts it used."""

    guests: Mapping[str, PreviousGuest]
    unplaced: frozenset[str] = frozenset()
    host_models: Mapping[str, str | None] = field(default_factory=dict)  # None: a host entry without a model
    source: str = "<plan>"

    @property
    def hosts_used(self) -> list[str]:
        used = {g.host for g in self.guests.values()}
        return [h for h in self.host_models if h in used] + sorted(used - set(self.host_models))


def demands(vcpus: int, memory_kib: int, cpu: str, hugepage_kib: int | None) -> tuple:
    """What a previous guest is compared on: a guest whose demands differ is changed (stopped and started)."""
    return (vcpus, memory_kib, cpu, format_page(hugepage_kib) if hugepage_kib else "4K")


def guest_demands(guest) -> tuple:
    return demands(guest.vcpus, guest.memory_kib, guest.cpu, guest.hugepage_kib)


def previous_demands(p: PreviousGuest) -> tuple:
    return (p.vcpus, p.memory_kib, p.cpu, p.page_size)


def previous_from_plan(plan) -> Previous:
    """The previous plan as a ``Plan`` object (its scenario gives the demands)."""
    out = {}
    for name, p in plan.placed.items():
        g = plan.scenario.guest_by_name[name]
        cells = tuple(tuple(sorted({c for v in cell.vcpus for c in p.vcpu_pins[v]})) for cell in p.cells)
        vcpus, memory_kib, cpu, page = guest_demands(g)
        out[name] = PreviousGuest(name, p.host, plan.scenario.host_by_name[p.host].model, p.nodes, cells,
                                  tuple(p.emulator_pins), vcpus, memory_kib, cpu, page)
    return Previous(out, frozenset(plan.unplaced_reasons), {h.name: h.model for h in plan.scenario.hosts})


def previous_from_document(plan_dir: str | Path) -> Previous:
    """The previous plan from OUT/plan.json (``planner.files.planfile.read_plan_document``); a malformed guest entry is
    one ``PlanFileError`` naming the file, the key and the guest."""
    document = read_plan_document(plan_dir)
    path = plan_json_path(plan_dir)
    hosts = {name: str(h.get("model")) if isinstance(h, dict) else None for name, h in document["hosts"].items()}
    guests: dict[str, PreviousGuest] = {}
    unplaced = set()
    problems = []
    for name, g in document["guests"].items():
        try:
            if not isinstance(g, dict):
                raise ValueError("not a mapping")
            if g.get("host") is None:
                unplaced.add(name)
                continue
            cells = g["cells"]
            guests[name] = PreviousGuest(
                name=name, host=str(g["host"]), model=hosts.get(str(g["host"])),
                nodes=tuple(int(c["node"]) for c in cells),
                cell_pcpus=tuple(parse_cpulist(str(c["pcpus"])) for c in cells),
                emulator_pcpus=parse_cpulist(str(g.get("emulator_pcpus", ""))) if g.get("emulator_pcpus") else (),
                vcpus=int(g["vcpus"]), memory_kib=int(g["memory_kib"]), cpu=str(g["cpu"]),
                page_size=str(g.get("page_size", "4K")))
        except (KeyError, TypeError, ValueError) as exc:
            what = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
            problems.append(f"{path}: guests.{name}: {what[:80]}")
    if problems:
        raise PlanFileError("\n".join(problems[:20]))
    return Previous(guests, frozenset(unplaced), hosts, str(path))


def keep_pins(previous: Previous) -> dict[str, tuple[tuple[int, ...], tuple[tuple[int, ...], ...], tuple[int, ...]]]:
    """``planner.engine.pinning`` ``keep``: guest -> (nodes, cell pCPUs, emulator pCPUs) of the previous plan."""
    return {n: (p.nodes, p.cell_pcpus, p.emulator_pcpus) for n, p in previous.guests.items()}


# ---------------------------------------------------------------------------------------------- actions
def _cpus_of(p) -> tuple[int, ...]:
    return tuple(sorted({c for cell in p.cell_pcpus for c in cell}))


def _now(plan, name):
    """(host, nodes, cell pCPUs, emulator pCPUs) of a guest in a Plan."""
    p = plan.placed[name]
    cells = tuple(tuple(sorted({c for v in cell.vcpus for c in p.vcpu_pins[v]})) for cell in p.cells)
    return p.host, p.nodes, cells, tuple(p.emulator_pins)


def actions(previous: Previous, plan) -> list[MoveAction]:
    """Every guest that changes from ``previous`` to ``plan`` (plan.json ``moves``): kind (``live-migrate``,
    ``re-pin``, ``start``, ``stop``), from/to host and nodes, move (host or nodes change), and for re-pins the pCPUs
    before and after (``from_cpulist``, ``to_cpulist``)."""
    out: list[MoveAction] = []
    scenario = plan.scenario
    for name in sorted(set(previous.guests) | set(plan.placed)):
        old = previous.guests.get(name)
        guest = scenario.guest_by_name.get(name)
        changed = old is not None and guest is not None and previous_demands(old) != guest_demands(guest)
        if old is not None and (name not in plan.placed or changed):
            why = "removed from the scenario" if guest is None else ("changed" if changed else "not placed")
            out.append(MoveAction(name, "stop", old.host, tuple(old.nodes), None, (), False, why=why))
        if name in plan.placed and (old is None or changed):
            host, nodes, _cells, _emu = _now(plan, name)
            out.append(MoveAction(name, "start", None, (), host, tuple(nodes), False,
                                  why="changed" if changed else "new"))
        if old is None or changed or name not in plan.placed:
            continue
        host, nodes, cells, emulator = _now(plan, name)
        if host != old.host:
            out.append(MoveAction(name, "live-migrate", old.host, tuple(old.nodes), host, tuple(nodes), True))
        elif tuple(nodes) != tuple(old.nodes) or cells != old.cell_pcpus or emulator != old.emulator_pcpus:
            out.append(MoveAction(name, "re-pin", old.host, tuple(old.nodes), host, tuple(nodes),
                                  tuple(nodes) != tuple(old.nodes), from_cpulist=format_cpulist(_cpus_of(old)),
                                  to_cpulist=format_cpulist({c for cell in cells for c in cell})))
    return out


# ---------------------------------------------------------------------------------------------- order
class _State:
    """A FleetState that can also take guests away (node totals, vCPUs, anti-affinity tags counted)."""

    def __init__(self, problem):
        from planner.engine.problem import FleetState

        self.problem = problem
        self.fleet = FleetState(problem)
        self.tags: dict[str, Counter] = defaultdict(Counter)

    def _option(self, c: int, host: str, o: int):
        return self.problem.classes[c].options[self.problem.host_model[host]][o]

    def place(self, c: int, host: str, o: int) -> None:
        self.fleet.place(self.problem.classes[c], host, o)
        self.tags[host].update(self.problem.classes[c].guest.anti_affinity)

    def remove(self, c: int, host: str, o: int) -> None:
        from planner.engine.problem import busy_units

        cls = self.problem.classes[c]
        for node_id, cell in zip(self._option(c, host, o).nodes, self._option(c, host, o).cells, strict=False):
            self.fleet.nodes[host][node_id].add(cell, -1)
        self.fleet.host_vcpus[host] -= cls.guest.vcpus
        self.fleet.host_load[host] -= busy_units(cls.guest)
        self.fleet.host_guests[host] -= 1
        self.tags[host].subtract(cls.guest.anti_affinity)
        self.fleet.host_tags[host] = {t for t, n in self.tags[host].items() if n > 0}
        self.fleet.assignment[(c, host, o)] -= 1

    def fits(self, c: int, host: str, o: int) -> bool:
        return self.fleet.fits(self.problem.classes[c], host, self._option(c, host, o))


@dataclass
class _Move:
    guest: str
    c: int
    src: tuple[str, int] | None  # (host, option) now, None: outside the fleet (a host that is gone)
    dst: tuple[str, int]
    src_nodes: tuple[int, ...] = ()
    dst_nodes: tuple[int, ...] = ()


def _option_index(problem, c: int, host: str, nodes: tuple[int, ...]) -> int | None:
    model = problem.host_model.get(host)
    if model is None:
        return None
    for i, option in enumerate(problem.classes[c].options.get(model, ())):
        if tuple(option.nodes) == tuple(nodes):
            return i
    return None


def migration_order(previous: Previous, plan, problem=None, verify: bool = True) -> MigrationOrder:
    """An order of the moves from ``previous`` to ``plan`` in which every intermediate state obeys the hard rules
    (see the module docstring). ``verify``: pin and check every step on the hosts it touches."""
    from planner.engine.problem import compile_problem

    problem = problem or compile_problem(plan.scenario)
    state = _State(problem)
    stops, starts, moves = _changes(previous, plan, problem, state)
    steps = _Steps()
    for old in stops:  # first: they only free resources (their guests are not in the state)
        steps.add("stop", old.name, old.host, old.nodes, None, ())
    spare_used, cycles, unordered = _order_moves(problem, previous, plan, state, moves, steps)
    if not unordered:
        for name in starts:
            p = plan.placed[name]
            steps.add("start", name, None, (), p.host, p.nodes)
    verified, violations, initial = 0, (), ()
    if verify:
        verified, violations, initial = _verify_steps(problem, plan, previous, tuple(steps.items))
    return MigrationOrder(tuple(steps.items), tuple(spare_used), tuple(tuple(c) for c in cycles), tuple(unordered),
                          verified, tuple(violations), tuple(initial))


class _Steps:
    """The order being written: each step numbered from 1."""

    def __init__(self) -> None:
        self.items: list[MigrationStep] = []

    def add(self, kind: ActionKind, name: str, from_host, from_nodes, to_host, to_nodes, via_spare: str | None = None):
        self.items.append(MigrationStep(len(self.items) + 1, name, kind, from_host, tuple(from_nodes), to_host,
                                        tuple(to_nodes), via_spare))


def _changes(previous: Previous, plan, problem, state: _State):
    """(stops, starts, moves): guests that stop (removed, changed or unplaced), start (new or changed) and move;
    ``state`` gets every unchanged guest at its previous place."""
    scenario = plan.scenario
    class_of = _class_index(problem)
    stops: list[PreviousGuest] = []
    starts: list[str] = []
    moves: list[_Move] = []
    for name in sorted(set(previous.guests) | set(plan.placed)):
        old = previous.guests.get(name)
        guest = scenario.guest_by_name.get(name)
        changed = old is not None and guest is not None and previous_demands(old) != guest_demands(guest)
        if old is not None and (guest is None or changed or name not in plan.placed):
            stops.append(old)
        if name in plan.placed and (old is None or changed):
            starts.append(name)
        if old is None or guest is None or changed or name not in plan.placed:
            continue
        src = _source(problem, previous, class_of[name], old)
        p = plan.placed[name]
        dst_option = _option_index(problem, class_of[name], p.host, p.nodes)
        assert dst_option is not None, f"{name}: the plan places it on nodes no option of its class has"
        dst = (p.host, dst_option)
        if src is not None:
            state.place(class_of[name], *src)
        if src != dst:
            moves.append(_Move(name, class_of[name], src, dst, tuple(old.nodes), tuple(p.nodes)))
    return stops, starts, moves


def _wait_graph(moves: list[_Move], state: _State) -> nx.DiGraph:
    """a -> b when a leaves the host b goes to and b does not fit there before that."""
    graph = nx.DiGraph()
    graph.add_nodes_from(m.guest for m in moves)
    by_src: dict[str, list[_Move]] = defaultdict(list)
    for m in moves:
        if m.src is not None:
            by_src[m.src[0]].append(m)
    for b in moves:
        if (b.src is not None and b.src[0] == b.dst[0]) or state.fits(b.c, *b.dst):
            continue
        for a in by_src.get(b.dst[0], ()):
            if a.guest != b.guest:
                graph.add_edge(a.guest, b.guest)
    return graph


def _first_fitting(state: _State, graph: nx.DiGraph, pending: dict[str, _Move], departed: set[str]) -> _Move | None:
    """The first pending move, in topological order, that fits the state once its guest left its source."""
    for name in _topological(graph, pending, departed):
        m = pending[name]
        if m.src is not None:
            state.remove(m.c, *m.src)
        if state.fits(m.c, *m.dst):
            return m
        if m.src is not None:
            state.place(m.c, *m.src)
    return None


def _order_moves(problem, previous: Previous, plan, state: _State, moves: list[_Move], steps: _Steps):
    """Every move as a step, each when it fits; a cycle broken through a spare host. Returns (spare hosts used,
    cycles no spare host breaks, moves left unordered)."""
    graph = _wait_graph(moves, state)
    pending = {m.guest: m for m in moves}
    departed: set[str] = set()
    final_hosts = set(plan.hosts_used)
    spare_used: list[str] = []
    while pending:
        m = _first_fitting(state, graph, pending, departed)
        if m is not None:
            state.place(m.c, *m.dst)
            kind: ActionKind = "re-pin" if m.src is not None and m.src[0] == m.dst[0] else "live-migrate"
            from_host = m.src[0] if m.src is not None else previous.guests[m.guest].host
            steps.add(kind, m.guest, from_host, m.src_nodes, m.dst[0], m.dst_nodes)
            departed.add(m.guest)
            del pending[m.guest]
            continue
        # stuck: moves waiting for each other (a cycle), or for room nobody frees in time
        try:
            cycle = [edge[0] for edge in nx.find_cycle(graph.subgraph(pending))]
        except nx.NetworkXNoCycle:
            cycle = sorted(pending)
        spare = None
        for name in cycle:
            m = pending[name]
            if m.src is not None:
                state.remove(m.c, *m.src)
            spare = _spare_for(problem, state, m.c, final_hosts)
            if spare is not None:
                break
            if m.src is not None:
                state.place(m.c, *m.src)
        if spare is None:
            return spare_used, [cycle], sorted(pending)
        assert m is not None  # the cycle is not empty (pending is not) and the loop stopped on the move with a spare
        state.place(m.c, *spare)
        spare_nodes = _opt_nodes(problem, m.c, *spare)
        from_host = m.src[0] if m.src is not None else previous.guests[m.guest].host
        steps.add("live-migrate", m.guest, from_host, m.src_nodes, spare[0], spare_nodes, via_spare=spare[0])
        if spare[0] not in spare_used:
            spare_used.append(spare[0])
        m.src, m.src_nodes = spare, spare_nodes
        departed.add(m.guest)
    return spare_used, [], []


def _source(problem, previous: Previous, c: int, old: PreviousGuest) -> tuple[str, int] | None:
    """An unchanged guest's previous place as (host, option) of the new problem; None if its host is gone or of
    another model (it then arrives from outside the fleet)."""
    model = problem.host_model.get(old.host)
    if model is None or (old.model is not None and old.model != model):
        return None
    o = _option_index(problem, c, old.host, old.nodes)
    return None if o is None else (old.host, o)


def _opt_nodes(problem, c: int, host: str, o: int) -> tuple[int, ...]:
    return tuple(problem.classes[c].options[problem.host_model[host]][o].nodes)


def _topological(graph: nx.DiGraph, pending: dict[str, _Move], departed: set[str]) -> list[str]:
    """Pending moves in a topological order of the graph: those whose predecessors all departed first (by name),
    then the rest (a move that fits the current state is safe whatever the graph says)."""
    ready = sorted(n for n in pending if all(p in departed or p not in pending for p in graph.predecessors(n)))
    return ready + sorted(set(pending) - set(ready))


def _spare_for(problem, state: _State, c: int, final_hosts: set[str]) -> tuple[str, int] | None:
    """A host empty now and unused in the new plan where a guest of class c fits (hosts in scenario order)."""
    cls = problem.classes[c]
    for host in cls.allowed_hosts:
        if host in final_hosts or state.fleet.host_guests[host] > 0:
            continue
        for o, _option in enumerate(cls.options.get(problem.host_model[host], ())):
            if state.fits(c, host, o):
                return host, o
    return None


def _class_index(problem) -> dict[str, int]:
    return {name: cls.index for cls in problem.classes for name in cls.members}


def check_state(problem, scenario, where: Mapping[str, tuple[str, tuple[int, ...]]], hosts,
                keep=None) -> list[str]:
    """The checker's findings (``planner.verify.check``) on ``hosts`` in the state ``where`` (guest -> (host, nodes)):
    each host's guests are pinned (keeping ``keep`` pCPUs where free) and checked as a plan of those hosts."""
    from planner.engine.pinning import pin_host
    from planner.model.plan import Plan
    from planner.verify.check import check_plan

    per_host: dict[str, list] = defaultdict(list)
    for name, (host, nodes) in where.items():
        if host in hosts:
            per_host[host].append((scenario.guest_by_name[name], tuple(nodes)))
    placed = {}
    for host, guests in per_host.items():
        for p in pin_host(problem, host, guests, keep):
            placed[p.guest] = p
    sub = dataclasses.replace(scenario, hosts=tuple(h for h in scenario.hosts if h.name in hosts),
                              guests=tuple(g for g in scenario.guests if g.name in placed))
    return [v.message for v in check_plan(Plan(scenario=sub, status="feasible", placed=placed, unplaced_reasons={}))]


def intermediate_states(previous: Previous, plan, order: MigrationOrder):
    """Yield (step number, guest -> (host, host nodes)) for the state after each step; step 0 is the state after
    the stops, i.e. the unchanged guests at their previous places (stops only free resources)."""
    current: dict[str, tuple[str | None, tuple[int, ...]]] = {
        n: (g.host, tuple(g.nodes)) for n, g in previous.guests.items()
    }
    started = False
    for s in order.steps:
        if s.kind == "stop":
            current.pop(s.guest, None)
            continue
        if not started:
            started = True
            yield 0, dict(current)
        current[s.guest] = (s.to_host, tuple(s.to_nodes))
        yield s.step, dict(current)
    if not started:
        yield 0, dict(current)


def _verify_steps(problem, plan, previous: Previous, steps: tuple[MigrationStep, ...]):
    """Pin and check the state after the stops (all hosts) and after each other step (the hosts it touched).
    Returns (steps clean, findings per step, findings in the state after the stops)."""
    scenario = plan.scenario
    keep = keep_pins(previous)
    order = MigrationOrder(steps)
    fleet = set(problem.host_model)
    clean = 0
    findings: list[str] = []
    initial: list[str] = []
    by_step = {s.step: s for s in steps}
    for number, where in intermediate_states(previous, plan, order):
        where = {n: hn for n, hn in where.items() if hn[0] in fleet}
        if number == 0:
            initial = check_state(problem, scenario, where, fleet, keep)[:20]
            continue
        s = by_step[number]
        found = check_state(problem, scenario, where, {h for h in (s.from_host, s.to_host) if h in fleet}, keep)
        if found:
            findings.extend(f"step {number} ({s.kind} {s.guest}): {f}" for f in found[:3])
        else:
            clean += 1
    return clean + sum(1 for s in steps if s.kind == "stop"), findings, initial


# ---------------------------------------------------------------------------------------------- diff
def plan_diff(old_dir: str | Path, new_dir: str | Path) -> dict[str, Any]:
    """``vplan diff OLD NEW``: moves (host or nodes changed), re-pins (same nodes, other pCPUs), starts, stops,
    hosts freed and newly used, and NEW's migration order if it has one (a re-plan from OLD)."""
    old = previous_from_document(old_dir)
    new_doc = read_plan_document(new_dir)
    new = previous_from_document(new_dir)
    moves, repins, starts, stops = [], [], [], []
    for name in sorted(set(old.guests) | set(new.guests)):
        a, b = old.guests.get(name), new.guests.get(name)
        if a is None:
            assert b is not None  # the name is a guest of old or of new
            starts.append({"guest": name, "to_host": b.host, "to_nodes": list(b.nodes)})
        elif b is None:
            stops.append({"guest": name, "from_host": a.host, "from_nodes": list(a.nodes)})
        elif (a.host, a.nodes) != (b.host, b.nodes):
            moves.append({"guest": name, "kind": "live-migrate" if a.host != b.host else "re-pin",
                          "from_host": a.host, "from_nodes": list(a.nodes), "to_host": b.host,
                          "to_nodes": list(b.nodes)})
        elif (a.cell_pcpus, a.emulator_pcpus) != (b.cell_pcpus, b.emulator_pcpus):
            repins.append({"guest": name, "host": b.host, "nodes": list(b.nodes),
                           "from_cpulist": format_cpulist(_cpus_of(a)), "to_cpulist": format_cpulist(_cpus_of(b))})
    old_used, new_used = old.hosts_used, new.hosts_used
    return {
        "old": str(plan_json_path(old_dir)), "new": str(plan_json_path(new_dir)),
        "moves": moves, "re_pins": repins, "starts": starts, "stops": stops,
        "hosts_freed": [h for h in old_used if h not in set(new_used)],
        "hosts_added": [h for h in new_used if h not in set(old_used)],
        "hosts_used_old": len(old_used), "hosts_used_new": len(new_used),
        "migration": new_doc.get("migration"),
    }


def diff_text(diff: Mapping[str, Any], max_rows: int = 40) -> str:
    """The diff for people: counts first, then the moves, re-pins, freed hosts and the migration order."""
    lines = [f"{diff['old']} -> {diff['new']}",
             f"{len(diff['moves'])} moves ({sum(m['kind'] == 'live-migrate' for m in diff['moves'])} live "
             f"migrations, {sum(m['kind'] == 're-pin' for m in diff['moves'])} to other nodes of the same host), "
             f"{len(diff['re_pins'])} re-pins (same nodes, other pCPUs), {len(diff['starts'])} starts, "
             f"{len(diff['stops'])} stops",
             f"hosts used {diff['hosts_used_old']} -> {diff['hosts_used_new']}; freed: "
             f"{', '.join(diff['hosts_freed']) or 'none'}; newly used: {', '.join(diff['hosts_added']) or 'none'}"]

    def nodes(n):
        return ",".join(str(x) for x in n)

    for title, rows, fmt in (
        ("moves", diff["moves"], lambda m: f"  {m['guest']}: {m['from_host']} nodes {nodes(m['from_nodes'])} -> "
                                           f"{m['to_host']} nodes {nodes(m['to_nodes'])} ({m['kind']})"),
        ("re-pins", diff["re_pins"], lambda m: f"  {m['guest']} on {m['host']}: pCPUs {m['from_cpulist']} -> "
                                               f"{m['to_cpulist']}"),
        ("starts", diff["starts"], lambda m: f"  {m['guest']}: on {m['to_host']} nodes {nodes(m['to_nodes'])}"),
        ("stops", diff["stops"], lambda m: f"  {m['guest']}: from {m['from_host']}"),
    ):
        if rows:
            lines.append(f"{title}:")
            lines += [fmt(r) for r in rows[:max_rows]]
            if len(rows) > max_rows:
                lines.append(f"  … {len(rows) - max_rows} more (--json lists all)")
    migration = diff.get("migration")
    if migration and migration.get("steps"):
        lines.append(f"migration order ({len(migration['steps'])} steps, every intermediate state checked):")
        for s in migration["steps"][:max_rows]:
            via = f" (temporarily, spare host {s['via_spare']})" if s.get("via_spare") else ""
            lines.append(f"  {s['step']:>3}. {s['kind']} {s['guest']}: {s['from_host'] or '-'} -> "
                         f"{s['to_host'] or '-'}{via}")
        if len(migration["steps"]) > max_rows:
            lines.append(f"  … {len(migration['steps']) - max_rows} more steps")
    if migration and migration.get("cycles"):
        for cycle in migration["cycles"]:
            lines.append(f"cycle without a spare host: {' -> '.join(cycle)} (moves left unordered)")
    return "\n".join(lines)
