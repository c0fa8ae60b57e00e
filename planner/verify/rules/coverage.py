"""``coverage`` and ``status``: every guest is accounted for once, and the plan's status says whether all are placed."""

from __future__ import annotations

from planner.model.plan import Plan
from planner.verify.usage import PlanUsage
from planner.verify.violation import Violation

STATUSES = ("optimal", "feasible", "partial")


def coverage(plan: Plan, usage: PlanUsage) -> list[Violation]:
    """Every guest is placed or unplaced (not both, not neither); unplaced reasons are non-empty strings;
    placements name known guests (under their own name) and known hosts."""
    guests = plan.scenario.guest_by_name
    hosts = plan.scenario.host_by_name
    unplaced = plan.unplaced_reasons
    out: list[Violation] = []

    def add(guest: str, host: str | None, message: str) -> None:
        out.append(Violation("coverage", guest, host, None, message))

    for name, p in plan.placed.items():
        if name not in guests:
            add(name, p.host, f"{name} is placed on {p.host} but is not a guest of the scenario")
            continue
        if p.guest != name:
            add(name, p.host, f"the placement filed under {name} names guest {p.guest!r}")
        if p.host not in hosts:
            add(name, p.host, f"{name} is placed on {p.host}, which is not a host of the scenario")
            continue
        if name in unplaced:
            add(name, p.host, f"{name} is both placed on {p.host} and listed unplaced")
    for name, reason in unplaced.items():
        if name not in guests:
            add(name, None, f"{name} is listed unplaced but is not a guest of the scenario")
        elif not isinstance(reason, str) or not reason.strip():
            add(name, None, f"{name} is unplaced without a reason")
    for g in plan.scenario.guests:
        if g.name not in plan.placed and g.name not in unplaced:
            add(g.name, None, f"{g.name} is neither placed nor listed unplaced")
    return out


def status(plan: Plan, usage: PlanUsage) -> list[Violation]:
    """The status is one of optimal, feasible, partial; ``partial`` exactly when some guest of the scenario is not
    placed."""
    missing = sum(1 for g in plan.scenario.guests if g.name not in plan.placed)
    text = plan.status
    if text not in STATUSES:
        message = f"plan status {text!r} is not one of optimal, feasible, partial"
    elif missing and text != "partial":
        message = f"plan status is {text!r} but {missing} guest(s) are not placed: it must be 'partial'"
    elif not missing and text == "partial":
        message = "plan status is 'partial' but every guest is placed: it must be 'optimal' or 'feasible'"
    else:
        return []
    return [Violation("status", None, None, None, message)]
