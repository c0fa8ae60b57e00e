"""Concrete CPU ids for counted placements: the last step from an assignment (counts) to a Plan's placements.

Per host node, cells take CPUs in a fixed order so the result is exactly what the model counted:
isolate vCPUs take whole free cores (first thread pinned, siblings idle), require pairs take two threads of one
core, prefer vCPUs and emulator-isolate pCPUs take single threads core by core (sibling threads packed), and the
shared pool is what remains. Shared vCPUs are pinned to their node's whole pool; emulator threads go to the host's
reserved CPUs (``host``), their own pCPU (``isolate``) or the pools of the guest's nodes (``shared``, or ``host``
on a host without reserved CPUs). Guests are served in name order, so the result is deterministic.

Re-plans (``keep``): a dedicated guest that stays on the same host nodes first claims the exact pCPUs it had (per
cell, and its own emulator pCPU) where they are still free and of the right kind (whole idle cores for isolate,
sibling pairs for require); if those claims leave a host unable to take its counted guests, that host is pinned
afresh without them, so keeping pins never costs a placement.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from planner.engine.problem import Assignment, Problem, split_cells
from planner.model.plan import CellPlacement, GuestPlacement
from planner.model.scenario import Guest, HostModel


def name_guests(
    problem: Problem, assignment: Assignment, prefer: dict[str, tuple[str, int]] | None = None
) -> dict[str, tuple[str, int, int]]:
    """Guest name -> (host, class index, option index). Members of a class are handed out in name order; with
    ``prefer`` (guest -> (host, option index), e.g. a previous plan) a guest gets its preferred slot first."""
    order = {h.name: i for i, h in enumerate(problem.scenario.hosts)}
    out: dict[str, tuple[str, int, int]] = {}
    by_class: dict[int, list[tuple[str, int, int]]] = defaultdict(list)
    for (c, host, o), n in assignment.items():
        by_class[c].append((host, o, n))
    prefer = prefer or {}
    for c, entries in by_class.items():
        members = list(problem.classes[c].members)
        left: dict[tuple[str, int], int] = {(host, o): n for host, o, n in entries}
        free = []
        for name in members:
            slot = prefer.get(name)
            if slot is not None and left.get(slot, 0) > 0:
                left[slot] -= 1
                out[name] = (slot[0], c, slot[1])
            else:
                free.append(name)
        names = iter(free)
        for (host, o) in sorted(left, key=lambda k: (order[k[0]], k[1])):
            for _ in range(left[(host, o)]):
                out[next(names)] = (host, c, o)
    return out


@dataclass
class _NodeCpus:
    """Free threads of one host node, by sibling group, in CPU order."""

    cores: list[list[int]]  # free threads per core (mutable)
    full: list[bool]  # the core had all its threads free and in this node at the start

    @classmethod
    def of(cls, model: HostModel, node_id: int) -> _NodeCpus:
        cpus = set(model.node_by_id[node_id].cpus)
        cores, full = [], []
        for core in model.cores:
            free = [c for c in core if c in cpus and c not in model.reserved_cpus]
            if free:
                cores.append(free)
                full.append(len(free) == len(core))
        return cls(cores, full)

    def take_isolated(self) -> int:
        for i, core in enumerate(self.cores):
            if self.full[i] and core:
                cpu = core[0]
                self.cores[i] = []  # siblings idle
                self.full[i] = False
                return cpu
        raise RuntimeError("no full core left: the counts were not feasible")

    def take_pair(self) -> tuple[int, int]:
        for i, core in enumerate(self.cores):
            if len(core) >= 2:
                self.full[i] = False
                return core.pop(0), core.pop(0)
        raise RuntimeError("no sibling pair left: the counts were not feasible")

    def take_singles(self, count: int) -> list[int]:
        out: list[int] = []
        # finish cores already started before opening whole ones (packs sibling threads)
        order = sorted(range(len(self.cores)), key=lambda i: (self.full[i], i))
        for i in order:
            while self.cores[i] and len(out) < count:
                out.append(self.cores[i].pop(0))
                self.full[i] = False
            if len(out) == count:
                return out
        raise RuntimeError("not enough free CPUs: the counts were not feasible")

    def pool(self) -> tuple[int, ...]:
        return tuple(sorted(c for core in self.cores for c in core))


KeepPins = dict[str, tuple[tuple[int, ...], tuple[tuple[int, ...], ...], tuple[int, ...]]]
"""guest -> (host nodes of its cells, pCPUs of each cell, emulator pCPUs) it had in a previous plan."""


def _claim(model: HostModel, nodes: dict[int, _NodeCpus], guest: Guest, node_ids: tuple[int, ...],
           split: list[tuple[tuple[int, ...], int]], wanted) -> tuple[dict[int, tuple[int, ...]], int | None] | None:
    """Take a dedicated guest's previous pCPUs (``wanted`` = (nodes, cell pCPUs, emulator pCPUs)) if every one is
    free and of the kind its policy needs; returns (vCPU -> pCPU, emulator pCPU or None), or None (nothing taken)."""
    old_nodes, cell_cpus, emulator = wanted
    if tuple(old_nodes) != tuple(node_ids) or len(cell_cpus) != len(split):
        return None
    core_of = model.core_of_cpu
    chosen: list[tuple[int, tuple[int, ...], list[int]]] = []  # (node, its vCPUs, pCPUs in vCPU order)
    idle: set[int] = set()  # every thread the claim takes out of the free lists
    for (vcpus, _mem), node_id, cpus in zip(split, node_ids, cell_cpus, strict=False):
        free = nodes[node_id]
        if any(c not in core_of for c in cpus) or len(set(cpus)) != len(vcpus):
            return None
        cpus = sorted(set(cpus), key=lambda c: (core_of[c][0], c))
        free_cpus = {c for core in free.cores for c in core}
        if not set(cpus) <= free_cpus:
            return None
        if guest.threads == "isolate":
            full = {core[0] for i, core in enumerate(free.cores) if free.full[i] and core}
            if not set(cpus) <= full:
                return None
            idle.update(c for cpu in cpus for c in core_of[cpu])
        elif guest.threads == "require":
            per_core = Counter(core_of[c] for c in cpus)
            if any(n % 2 for n in per_core.values()):
                return None
            idle.update(cpus)
        else:
            idle.update(cpus)
        chosen.append((node_id, vcpus, cpus))
    emulator_cpu = None
    if guest.emulator == "isolate":
        free0 = {c for core in nodes[node_ids[0]].cores for c in core}
        if len(emulator) != 1 or emulator[0] not in free0 or emulator[0] in idle:
            return None
        emulator_cpu = emulator[0]
        idle.add(emulator_cpu)
    pins: dict[int, tuple[int, ...]] = {}
    for node_id in set(node_ids):
        free = nodes[node_id]
        for i, core in enumerate(free.cores):
            if idle.intersection(core):
                free.cores[i] = [c for c in core if c not in idle]
                free.full[i] = False
    for _node, vcpus, cpus in chosen:
        for v, cpu in zip(vcpus, cpus, strict=False):
            pins[v] = (cpu,)
    return pins, emulator_cpu


def pin_host(problem: Problem, host: str, guests: list[tuple[Guest, tuple[int, ...]]],
             keep: KeepPins | None = None) -> list[GuestPlacement]:
    """Pin every guest of one host; ``guests`` = (guest, host node of each cell), in any order. ``keep``: previous
    pCPUs to claim first (see the module docstring); if the claims leave the counts unpinnable, pinned afresh."""
    if keep:
        try:
            return _pin_host(problem, host, guests, keep)
        except RuntimeError:
            pass
    return _pin_host(problem, host, guests, None)


def _pin_host(problem: Problem, host: str, guests: list[tuple[Guest, tuple[int, ...]]],
              keep: KeepPins | None) -> list[GuestPlacement]:
    model = problem.scenario.model_of(host)
    nodes = {n.id: _NodeCpus.of(model, n.id) for n in model.nodes}
    guests = sorted(guests, key=lambda g: g[0].name)
    cells: dict[str, list[tuple[tuple[int, ...], int]]] = {}

    for guest, node_ids in guests:
        split = split_cells(guest, len(node_ids))
        assert split is not None
        cells[guest.name] = split
    pins: dict[str, list[tuple[int, ...]]] = {g.name: [()] * g.vcpus for g, _ in guests}
    emulator_own: dict[str, int] = {}
    claimed: set[str] = set()
    for guest, node_ids in guests:
        if keep and guest.dedicated and guest.name in keep:
            got = _claim(model, nodes, guest, node_ids, cells[guest.name], keep[guest.name])
            if got is not None:
                for v, cpu in got[0].items():
                    pins[guest.name][v] = cpu
                if got[1] is not None:
                    emulator_own[guest.name] = got[1]
                claimed.add(guest.name)

    def each_cell(policy_match):
        for guest, node_ids in guests:
            if guest.name not in claimed and policy_match(guest):
                for (vcpus, _mem), node_id in zip(cells[guest.name], node_ids, strict=False):
                    yield guest, vcpus, nodes[node_id]

    for guest, vcpus, cpus in each_cell(lambda g: g.dedicated and g.threads == "isolate"):
        for v in vcpus:
            pins[guest.name][v] = (cpus.take_isolated(),)
    for guest, vcpus, cpus in each_cell(lambda g: g.dedicated and g.threads == "require"):
        for v in vcpus[::2]:
            a, b = cpus.take_pair()
            pins[guest.name][v], pins[guest.name][v + 1] = (a,), (b,)
    for guest, vcpus, cpus in each_cell(lambda g: g.dedicated and g.threads == "prefer"):
        for v, cpu in zip(vcpus, cpus.take_singles(len(vcpus)), strict=False):
            pins[guest.name][v] = (cpu,)
    for guest, node_ids in guests:
        if guest.emulator == "isolate" and guest.name not in emulator_own:
            emulator_own[guest.name] = nodes[node_ids[0]].take_singles(1)[0]
    pools = {node_id: cpus.pool() for node_id, cpus in nodes.items()}
    out = []
    for guest, node_ids in guests:
        if not guest.dedicated:
            for (vcpus, _mem), node_id in zip(cells[guest.name], node_ids, strict=False):
                for v in vcpus:
                    pins[guest.name][v] = pools[node_id]
        emulator: tuple[int, ...]
        if guest.emulator == "isolate":
            emulator = (emulator_own[guest.name],)
        elif guest.emulator == "host" and model.reserved_cpus:
            emulator = tuple(sorted(model.reserved_cpus))
        else:
            emulator = tuple(sorted({c for n in node_ids for c in pools[n]}))
        out.append(
            GuestPlacement(
                guest=guest.name,
                host=host,
                cells=tuple(
                    CellPlacement(cell_id=i, node_id=node_id, vcpus=vcpus, memory_kib=memory)
                    for i, ((vcpus, memory), node_id) in enumerate(zip(cells[guest.name], node_ids, strict=False))
                ),
                vcpu_pins=tuple(pins[guest.name]),
                emulator_pins=emulator,
            )
        )
    return out


def pin_assignment(
    problem: Problem, assignment: Assignment, prefer: dict[str, tuple[str, int]] | None = None,
    keep: KeepPins | None = None,
) -> dict[str, GuestPlacement]:
    """Every placed guest with concrete cells and pins (``prefer``: see ``name_guests``; ``keep``: previous pCPUs
    to keep, see ``pin_host``)."""
    named = name_guests(problem, assignment, prefer)
    per_host: dict[str, list[tuple[Guest, tuple[int, ...]]]] = defaultdict(list)
    for name, (host, c, o) in named.items():
        option = problem.classes[c].options[problem.host_model[host]][o]
        per_host[host].append((problem.scenario.guest_by_name[name], option.nodes))
    placements: dict[str, GuestPlacement] = {}
    for h in problem.scenario.hosts:
        for placement in pin_host(problem, h.name, per_host.get(h.name, []), keep):
            placements[placement.guest] = placement
    return dict(sorted(placements.items()))
