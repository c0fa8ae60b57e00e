"""``overcommit``: vCPUs per physical core, host-wide and per node shared pool."""

from __future__ import annotations

from planner.model.plan import Plan
from planner.verify.rules.text import cpus, num
from planner.verify.usage import PlanUsage
from planner.verify.violation import Violation


def overcommit(plan: Plan, usage: PlanUsage) -> list[Violation]:
    """Host-wide: Σ vCPUs of a host's guests (dedicated and shared) ≤ cpu_overcommit_max × the host's physical
    cores. Per node: Σ vCPUs of shared cells ≤ cpu_overcommit_max × the physical cores of the node's shared pool."""
    cap = plan.scenario.policy.cpu_overcommit_max
    out: list[Violation] = []
    for host, hu in usage.hosts.items():
        host_cores = hu.facts.physical_cores
        if hu.vcpus > cap * host_cores:
            out.append(Violation("overcommit", None, host, None,
                                 f"{host}: {hu.vcpus} vCPUs on {host_cores} physical cores, above "
                                 f"{num(cap)} x {host_cores} = {num(cap * host_cores)}"))
        for node, nu in hu.nodes.items():
            cores = nu.pool_cores
            if nu.shared_vcpus > cap * cores:
                out.append(Violation("overcommit", None, host, node,
                                     f"{host} node {node}: shared pool {cpus(nu.pool_cpus)} ({num(cores)} cores) "
                                     "carries "
                                     f"{nu.shared_vcpus} shared vCPUs, above {num(cap)} x {num(cores)} = "
                                     f"{num(cap * cores)}"))
    return out
