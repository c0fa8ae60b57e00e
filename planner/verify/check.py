"""The independent checker: every plan passes it before it is written.

It recomputes everything from the plan's concrete facts (guest NUMA cells, vCPU pins, emulator pins) and the
scenario's raw fields, and shares no code with the solver (every module of ``planner.verify`` but the file readers
imports only ``planner.model``): a bug in the solver's counting cannot hide itself here.

``check_plan`` computes the plan's usage once (``planner.verify.usage``: per host and node CPUs, shared pools,
vCPUs, expected load, 4K memory, hugepages) and runs every rule of ``planner.verify.rules.RULES`` on it:

* ``coverage``   every guest is placed or unplaced (not both, not neither), unplaced reasons are non-empty,
  placements name known guests and hosts;
* ``status``     ``partial`` iff some guest is not placed;
* ``placement``  fixed hosts and anti-affinity tags (per host, rack or zone: ``anti_affinity_scope``);
* ``tenancy``    ``policy.tenant_isolation``: no host, host node or physical core serves guests of two tenants;
* ``cells``      guest NUMA cells: ids, distinct usable nodes, contiguous balanced vCPU ranges, memory split (explicit
  ``numa:`` cells: exactly the listed vCPU counts and memory, in order);
* ``cpus``       vCPU pins: on the cell's node, never reserved, dedicated 1:1, shared within the node's pool;
* ``threads``    ``isolate`` (whole idle cores) and ``require`` (sibling pairs);
* ``emulator``   emulator pins by the guest's ``emulator`` policy, never on a dedicated pCPU;
* ``memory``     4K memory per node (dedicated guests 1:1, shared guests' memory ÷ memory_overcommit, against the
  free 4K memory) and per cell (never above the node's free 4K memory);
* ``overcommit`` vCPUs per physical core, host-wide and per node shared pool;
* ``load``       Σ vCPUs × load per node shared pool against the load target;
* ``hugepages``  pool pages per node and size;
* ``evacuation`` (``check_evacuations``) each failure of ``policy.survive``: the failed hosts' guests all moved or
  stranded (with a reason), nothing left on a failed host, survivors keep their host; the evacuated fleet obeys
  every rule above.

A solve runs the checker once: ``check`` remembers its result for the plan's facts (scenario, status, placements,
unplaced guests: a plan is immutable), so ``node_usage`` — plan.json, the DataFrames, the CLI summary — reuses the
usage of the check the solver made, also for a copy of the plan that only adds evacuations or statistics.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Mapping
from dataclasses import dataclass

from planner.model.plan import GuestPlacement, Plan
from planner.model.scenario import Scenario
from planner.verify.rules import RULE_NAMES, RULES, Rule
from planner.verify.rules.evacuation import bookkeeping, failure_text
from planner.verify.usage import NodeUsage, PlanUsage, plan_usage
from planner.verify.violation import Violation

__all__ = [
    "RULES",
    "RULE_NAMES",
    "NodeUsage",
    "PlanCheck",
    "PlanUsage",
    "Rule",
    "Violation",
    "analyse",
    "check",
    "check_evacuations",
    "check_plan",
    "checked",
    "explain",
    "node_usage",
]


@dataclass(frozen=True)
class PlanCheck:
    """One run of the checker on a plan: its violations (empty: the plan may be written) and its usage."""

    violations: tuple[Violation, ...]
    usage: PlanUsage

    @property
    def ok(self) -> bool:
        return not self.violations


@dataclass(frozen=True, eq=False)
class _Remembered:
    """The facts a check judged (held to compare by identity) and its result."""

    status: str
    placed: Mapping[str, GuestPlacement]
    unplaced_reasons: Mapping[str, str]
    result: PlanCheck

    def judged(self, plan: Plan) -> bool:
        return (plan.status == self.status and plan.placed is self.placed
                and plan.unplaced_reasons is self.unplaced_reasons)


# scenario -> the last check of a plan of that scenario (the scenario is held weakly: nothing outlives it)
_REMEMBERED: weakref.WeakKeyDictionary[Scenario, _Remembered] = weakref.WeakKeyDictionary()


def run_rules(plan: Plan, usage: PlanUsage) -> list[Violation]:
    """Every rule of ``RULES`` on ``plan`` and its usage, in order."""
    out: list[Violation] = []
    for rule in RULES:
        out += rule.check(plan, usage)
    return out


def check(plan: Plan) -> PlanCheck:
    """Check ``plan``: its usage computed once, every rule run on it. The result is remembered for the plan's facts
    (see ``checked``)."""
    usage = plan_usage(plan)
    result = PlanCheck(tuple(run_rules(plan, usage)), usage)
    _REMEMBERED[plan.scenario] = _Remembered(plan.status, plan.placed, plan.unplaced_reasons, result)
    return result


def checked(plan: Plan) -> PlanCheck:
    """The last check of a plan with the same facts as ``plan`` (the same scenario, status, placements and unplaced
    guests objects), else a new ``check``."""
    remembered = _REMEMBERED.get(plan.scenario)
    if remembered is not None and remembered.judged(plan):
        return remembered.result
    return check(plan)


def check_plan(plan: Plan) -> list[Violation]:
    """Every breach of a hard rule in ``plan``; ``[]`` for a plan that may be written."""
    return list(check(plan).violations)


def node_usage(plan: Plan) -> dict[str, dict[int, NodeUsage]]:
    """Per host (every host of the scenario, in scenario order), per node id: what the plan takes from the node
    (from the plan's last check, ``checked``)."""
    return checked(plan).usage.node_usage()


def analyse(plan: Plan) -> tuple[list[Violation], dict[str, dict[int, NodeUsage]]]:
    """``check_plan`` and ``node_usage`` in one pass (for writers that need both)."""
    result = check(plan)
    return list(result.violations), result.usage.node_usage()


def explain(violations: list[Violation]) -> str:
    """The violations as lines of text (for error messages and logs)."""
    return "\n".join(str(v) for v in violations)


def check_evacuations(plan: Plan) -> list[Violation]:
    """Every breach in the plan's evacuations (``policy.survive``): per failure, the bookkeeping (every guest of a
    failed host moved or stranded, none moved onto a failed host, re-pinned guests keep their host) and every hard
    rule of the evacuated fleet (``Plan.evacuated``), each message prefixed with the failure."""
    out: list[Violation] = []
    for e in plan.evacuations:
        out += bookkeeping(plan, e)
        evacuated = plan.evacuated(e)
        what = failure_text(e)
        for v in run_rules(evacuated, plan_usage(evacuated)):
            out.append(dataclasses.replace(v, message=f"{what}: {v.message}"))
    return out
