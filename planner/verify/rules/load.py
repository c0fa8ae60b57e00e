"""``load``: the expected load of each shared pool against the load target."""

from __future__ import annotations

from planner.model.plan import Plan
from planner.verify.rules.text import cpus, num
from planner.verify.usage import PlanUsage
from planner.verify.violation import Violation


def load(plan: Plan, usage: PlanUsage) -> list[Violation]:
    """Per node: Σ vCPUs × load over the node's shared cells ≤ cpu_load_target × the CPUs of its shared pool."""
    target = plan.scenario.policy.cpu_load_target
    out: list[Violation] = []
    for host, hu in usage.hosts.items():
        for node, nu in hu.nodes.items():
            n = len(nu.pool_cpus)
            if nu.shared_load > target * n:
                out.append(Violation("load", None, host, node,
                                     f"{host} node {node}: shared pool {cpus(nu.pool_cpus)} ({n} CPUs) carries a load "
                                     f"of {num(nu.shared_load)} (Σ vCPUs × load), above {num(target)} x {n} = "
                                     f"{num(target * n)}"))
    return out
