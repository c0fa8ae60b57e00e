"""Failure headroom (``policy.survive``): where every guest of a failed host or rack goes, with pins.

Design (practical and verifiable): the fleet is planned as usual (fewest hosts); then, for each failure — every
used host (``survive: {hosts: 1}``) or every rack holding a used host (``survive: {racks: 1}``; a host without a
``rack:`` label is a rack of its own) — the failed hosts' guests are re-placed on the surviving hosts, first into
the free room of the hosts in use, then onto hosts the plan left empty (in fleet order), largest first, with the
same counting and fit test as every other planner step (``planner.engine.problem.FleetState``: every hard rule,
anti-affinity in its scope). Guests fixed with ``host:`` stay where they are, except those on a failed host, which
may go to any host. The receiving hosts are pinned again (``planner.engine.pinning.pin_host``) and every evacuated fleet
is judged by the independent checker (``planner.verify.check.check_evacuations``) like any plan.

The headroom is the set of empty hosts some evacuation needs (``spare_hosts``): keeping them empty is what makes
the plan survive any one failure; hosts needed with headroom = hosts used + spare hosts. A failure whose guests do
not all fit even with every empty host is reported with ``complete: false`` and the stranded guests' reasons.
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

from planner.engine.greedy import average_host, size_key
from planner.engine.pinning import pin_host
from planner.engine.problem import FleetState, GuestClass, Problem, compile_problem, shape_key
from planner.model.errors import VplanError
from planner.model.plan import Evacuation, GuestPlacement, Plan, PlanStatus
from planner.model.scenario import Scenario
from planner.model.stats import Headroom


class EvacuateError(VplanError, ValueError):
    """A failure that names no host or rack of the plan (the CLI prints it, exit 2)."""


@dataclass(frozen=True)
class Failure:
    kind: str  # "host" or "rack"
    name: str
    hosts: tuple[str, ...]


def rack_of(scenario: Scenario, host: str) -> str:
    """The rack label of a host; a host without one is a rack of its own (named after it)."""
    return scenario.host_by_name[host].rack or host


def failures(plan: Plan) -> list[Failure]:
    """The failures ``policy.survive`` asks for: every used host, or every rack holding a used host."""
    scenario, policy = plan.scenario, plan.scenario.policy
    used = set(plan.hosts_used)
    out: list[Failure] = []
    if policy.survive_hosts:
        out += [Failure("host", h, (h,)) for h in plan.hosts_used]
    if policy.survive_racks:
        racks: dict[str, list[str]] = defaultdict(list)
        for h in scenario.hosts:
            racks[rack_of(scenario, h.name)].append(h.name)
        out += [Failure("rack", r, tuple(hs)) for r, hs in racks.items() if used.intersection(hs)]
    return out


def failure_of(plan: Plan, host: str | None = None, rack: str | None = None) -> Failure:
    """The failure of one named host or rack (``vplan evacuate --host H`` / ``--rack R``)."""
    scenario = plan.scenario
    if host is not None:
        if host not in scenario.host_by_name:
            raise EvacuateError(f"--host {host}: no such host in scenario {scenario.name}")
        return Failure("host", host, (host,))
    racks: dict[str, list[str]] = defaultdict(list)
    for h in scenario.hosts:
        racks[rack_of(scenario, h.name)].append(h.name)
    if rack not in racks:
        known = ", ".join(sorted(r for r in racks if scenario.host_by_name.get(r) is None)) or "none labelled"
        raise EvacuateError(f"--rack {rack}: no such rack (racks: {known})")
    return Failure("rack", rack, tuple(racks[rack]))


def _problem_for(plan: Plan, failed: set[str], base: Problem | None) -> Problem:
    """The compiled problem of the evacuation: guests fixed on a failed host are free to go anywhere."""
    unfix = [g for g in plan.scenario.guests if g.host in failed]
    if not unfix and base is not None:
        return base
    guests = tuple(dataclasses.replace(g, host=None) if g.host in failed else g for g in plan.scenario.guests)
    return compile_problem(dataclasses.replace(plan.scenario, guests=guests))


def _slot(problem: Problem, cls: GuestClass, host: str, nodes: tuple[int, ...]) -> int:
    for index, option in enumerate(cls.options.get(problem.host_model[host], ())):
        if option.nodes == nodes:
            return index
    raise ValueError(f"no option of {cls.members[0]} on {host} has nodes {nodes}")


def evacuate(plan: Plan, failure: Failure, base: Problem | None = None, prefer: Iterable[str] = ()) -> Evacuation:
    """Re-place every guest of the failed hosts on the surviving ones (see the module doc). Empty hosts are tried
    in this order: ``prefer`` (spare hosts other failures already need: sharing them keeps the headroom small),
    then hosts in racks that hold no used host (no single rack failure takes them), then the rest in fleet order."""
    failed = set(failure.hosts)
    problem = _problem_for(plan, failed, base)
    class_of = {name: cls for cls in problem.classes for name in cls.members}
    state = FleetState(problem)
    evacuees: list[str] = []
    for name, p in sorted(plan.placed.items(), key=lambda kv: (kv[1].host, kv[0])):
        if p.host in failed:
            evacuees.append(name)
            continue
        cls = class_of[name]
        state.place(cls, p.host, _slot(problem, cls, p.host, p.nodes))
    used = set(plan.hosts_used)
    survivors = [h.name for h in plan.scenario.hosts if h.name not in failed]
    preferred = set(prefer)
    used_racks = {rack_of(plan.scenario, h) for h in used}
    empty = sorted((h for h in survivors if h not in used),
                   key=lambda h: (h not in preferred, rack_of(plan.scenario, h) in used_racks))  # stable: fleet order
    order = [h for h in survivors if h in used] + empty
    average = average_host(problem)
    evacuees.sort(key=lambda n: (-class_of[n].guest.priority, -size_key(problem, class_of[n], average), n))
    moved_to: dict[str, tuple[str, tuple[int, ...]]] = {}
    stranded: dict[str, str] = {}
    full: dict[tuple, set[str]] = defaultdict(set)  # shape -> hosts it no longer fits (hosts only fill up)
    for name in evacuees:
        cls = class_of[name]
        allowed = set(cls.allowed_hosts)
        dead = full[shape_key(cls)]
        slot = None
        why: list[str] = []
        for host in order:
            if host not in allowed or (host in dead and len(why) >= 2):
                continue
            options = cls.options.get(problem.host_model[host], ())
            blocker = state.host_blocker(cls, host) if options else f"{name} fits no empty {problem.host_model[host]}"
            if blocker:
                why.append(blocker)
                if not options or not state.tag_clash(cls.guest, host):
                    dead.add(host)
                continue
            index = next((i for i, o in enumerate(options) if state.option_fits(cls, host, o)), None)
            if index is not None:
                slot = (host, index)
                break
            dead.add(host)
            node, short = state.option_shortfalls(cls, host, options[0])[0]
            why.append(f"{host} node {node} lacks {short.resource}")
        if slot is None:
            first = "; ".join(why[:2]) if why else "no surviving host may take it"
            stranded[name] = (f"{name} fits none of the {len(order)} surviving hosts after {failure.kind} "
                              f"{failure.name} fails (e.g. {first})")
            continue
        state.place(cls, slot[0], slot[1])
        moved_to[name] = (slot[0], cls.options[problem.host_model[slot[0]]][slot[1]].nodes)
    receiving = sorted({h for h, _ in moved_to.values()}, key=order.index)
    moved: dict[str, GuestPlacement] = {}
    repinned: dict[str, GuestPlacement] = {}
    guest_by_name = problem.scenario.guest_by_name
    for host in receiving:
        entries = [(guest_by_name[p.guest], p.nodes) for p in plan.guests_on(host)]
        entries += [(guest_by_name[n], nodes) for n, (h, nodes) in moved_to.items() if h == host]
        for placement in pin_host(problem, host, entries):
            if placement.guest in moved_to:
                moved[placement.guest] = placement
            elif placement != plan.placed[placement.guest]:
                repinned[placement.guest] = placement
    spare = tuple(h for h in receiving if h not in used)
    return Evacuation(kind=failure.kind, name=failure.name, failed_hosts=failure.hosts,
                      moved=dict(sorted(moved.items())), repinned=dict(sorted(repinned.items())),
                      stranded=stranded, spare_hosts=spare)


def with_evacuations(plan: Plan, problem: Problem | None = None) -> Plan:
    """The plan with its evacuations for ``policy.survive`` (the plan itself when survive asks for nothing).

    ``plan.stats.headroom`` (``planner.model.stats.Headroom``) gets the figures: hosts used, spare hosts kept empty
    for the evacuations, hosts needed with headroom, failures and how many evacuate completely, and the seconds it
    took."""
    policy = plan.scenario.policy
    if not (policy.survive_hosts or policy.survive_racks):
        return plan
    start = time.monotonic()
    base = problem if problem is not None else compile_problem(plan.scenario)
    evacuations: list[Evacuation] = []
    chosen: list[str] = []  # spare hosts so far: later failures reuse them first
    for failure in failures(plan):
        evacuation = evacuate(plan, failure, base, prefer=chosen)
        chosen += [h for h in evacuation.spare_hosts if h not in chosen]
        evacuations.append(evacuation)
    spare = sorted({h for e in evacuations for h in e.spare_hosts},
                   key=[h.name for h in plan.scenario.hosts].index)
    headroom = Headroom(
        survive={"hosts": policy.survive_hosts} if policy.survive_hosts else {"racks": policy.survive_racks},
        hosts_used=len(plan.hosts_used), spare_hosts=tuple(spare),
        hosts_with_headroom=len(plan.hosts_used) + len(spare),
        failures=len(evacuations), complete=sum(e.complete for e in evacuations),
        evacuation_s=round(time.monotonic() - start, 3))
    stats = dataclasses.replace(plan.stats, headroom=headroom)
    return dataclasses.replace(plan, evacuations=tuple(evacuations), stats=stats)


def plan_from_document(scenario: Scenario, document: dict, path: str = "plan.json") -> Plan:
    """The Plan of a plan.json of ``scenario``: every guest on its host and nodes, pinned again exactly as vplan
    solve pinned it (pinning is deterministic per host) and compared with the CPUs plan.json lists."""
    from planner.model.units import format_cpulist

    problem = compile_problem(scenario)
    per_host: dict[str, list] = defaultdict(list)
    unplaced: dict[str, str] = {}
    guests = document.get("guests", {})
    for g in scenario.guests:
        entry = guests.get(g.name)
        if not isinstance(entry, dict):
            raise EvacuateError(f"{path}: guests: {g.name}: missing (is this the plan of {scenario.name}?)")
        host = entry.get("host")
        if host is None:
            unplaced[g.name] = entry.get("reason") or "not placed"
            continue
        if host not in scenario.host_by_name:
            raise EvacuateError(f"{path}: guests: {g.name}: host {host!r} is not a host of the scenario")
        per_host[host].append((g, tuple(entry.get("nodes", ()))))
    placed: dict[str, GuestPlacement] = {}
    for host, entries in per_host.items():
        for p in pin_host(problem, host, entries):
            listed = [c.get("pcpus") for c in guests[p.guest].get("cells", [])]
            mine = [format_cpulist({cpu for v in c.vcpus for cpu in p.vcpu_pins[v]}) for c in p.cells]
            if listed != mine:
                raise EvacuateError(f"{path}: guests: {p.guest}: its pins do not match the scenario (was the plan "
                                    "made from another scenario or edited?)")
            placed[p.guest] = p
    status: PlanStatus = (
        cast(PlanStatus, document.get("status")) if document.get("status") in ("optimal", "feasible", "partial")
        else "feasible"
    )
    return Plan(scenario=scenario, status=status, placed=dict(sorted(placed.items())), unplaced_reasons=unplaced)
