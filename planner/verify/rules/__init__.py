"""The checker's rules, one module per family, each rule a function ``(plan, usage) -> list[Violation]`` whose
docstring states it. ``RULES`` lists every rule once, in the order ``check_plan`` runs them; ``Rule.name`` is the
``Violation.rule`` it reports (after the "Hard rules every plan obeys" of scenario format v1). The evacuations of
``policy.survive`` are judged apart (``planner.verify.check.check_evacuations``, rule ``evacuation``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from planner.model.plan import Plan
from planner.verify.rules import (
    cells,
    coverage,
    emulator,
    hugepages,
    load,
    memory,
    overcommit,
    pinning,
    placement,
    smt,
    tenancy,
)
from planner.verify.usage import PlanUsage
from planner.verify.violation import Violation

RuleCheck = Callable[[Plan, PlanUsage], list[Violation]]


@dataclass(frozen=True)
class Rule:
    """A rule: the ``Violation.rule`` name it reports and the function that judges a plan."""

    name: str
    check: RuleCheck

    @property
    def text(self) -> str:
        """The rule, as its function's docstring states it."""
        return " ".join((self.check.__doc__ or "").split())


RULES: tuple[Rule, ...] = (
    Rule("coverage", coverage.coverage),
    Rule("status", coverage.status),
    Rule("placement", placement.fixed_host),
    Rule("placement", placement.anti_affinity),
    Rule("tenancy", tenancy.tenancy),
    Rule("cells", cells.cells),
    Rule("cpus", pinning.cpus_rule),
    Rule("threads", smt.threads),
    Rule("emulator", emulator.emulator),
    Rule("memory", memory.memory),
    Rule("memory_target", memory.memory_target),
    Rule("overcommit", overcommit.overcommit),
    Rule("load", load.load),
    Rule("hugepages", hugepages.hugepages),
)
RULE_NAMES: tuple[str, ...] = (*dict.fromkeys(r.name for r in RULES), "evacuation")
