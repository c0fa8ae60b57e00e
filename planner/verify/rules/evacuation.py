"""``evacuation``: the bookkeeping of one failure of ``policy.survive`` (the evacuated fleet itself is judged by
every other rule, ``planner.verify.check.check_evacuations``)."""

from __future__ import annotations

from planner.model.plan import Evacuation, Plan
from planner.verify.violation import Violation


def failure_text(e: Evacuation) -> str:
    """The prefix of every message about the evacuation: ``after host kvm1 fails``."""
    return f"after {e.kind} {e.name} fails"


def bookkeeping(plan: Plan, e: Evacuation) -> list[Violation]:
    """The failed hosts are hosts of the scenario; every guest of a failed host is moved or stranded (not both, with
    a reason when stranded) and nothing else is; none moves onto a failed host; re-pinned guests are surviving
    guests that keep their host."""
    failed = set(e.failed_hosts)
    what = failure_text(e)
    out: list[Violation] = []

    def add(guest: str | None, host: str | None, message: str) -> None:
        out.append(Violation("evacuation", guest, host, None, f"{what}: {message}"))

    for host in sorted(failed - set(plan.scenario.host_by_name)):
        add(None, host, f"{host} is not a host of the scenario")
    on_failed = {n for n, p in plan.placed.items() if p.host in failed}
    for name in sorted(on_failed - set(e.moved) - set(e.stranded)):
        add(name, plan.placed[name].host, f"{name} was on {plan.placed[name].host} but is neither moved nor stranded")
    for name in sorted((set(e.moved) | set(e.stranded)) - on_failed):
        add(name, None, f"{name} is moved or stranded but was not on a failed host")
    for name in sorted(set(e.moved) & set(e.stranded)):
        add(name, None, f"{name} is both moved and stranded")
    for name, reason in e.stranded.items():
        if not str(reason).strip():
            add(name, None, f"{name} is stranded without a reason")
    for name, p in e.moved.items():
        if p.host in failed:
            add(name, p.host, f"{name} is moved onto the failed host {p.host}")
    for name, p in e.repinned.items():
        before = plan.placed.get(name)
        if before is None or before.host != p.host or before.host in failed:
            add(name, p.host, f"{name} is re-pinned on {p.host} but was not a surviving guest there")
    return out
