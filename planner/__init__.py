"""vplan: NUMA-aware capacity and placement planner for KVM/libvirt fleets.

The package-level API, imported lazily (``import planner`` loads nothing heavy; ``planner.check`` and
``planner.units`` stay free of the solver, pandas and OR-Tools)::

    from planner import load_scenario, solve, write_report
    plan = solve(load_scenario("scenarios/quickstart.yaml"), time_limit_s=10)
    plan.write("out/"); write_report(plan, "out/report.html")

Functions: ``load_scenario``, ``load_scenario_text``, ``solve``, ``write_plan``, ``read_plan_document``,
``write_report``, ``report_html``, ``compare_plans`` (``planner.compare.compare``), ``hosts_needed``,
``fewest_hosts``, ``growth_curve``, ``lower_bound`` (``planner.capacity``), ``headline``, ``fleet_use``;
types ``Plan``, ``Scenario``, ``ScenarioError``, ``PlanBug``; modules ``variants``, ``capacity``, ``plots``,
``report``, ``compare``, ``frames``, ``replan``. See docs/api.md.
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"

_EXPORTS = {
    "load_scenario": ("planner.loader", "load_scenario"),
    "load_scenario_text": ("planner.loader", "load_scenario_text"),
    "ScenarioError": ("planner.loader", "ScenarioError"),
    "solve": ("planner.solver", "solve"),
    "PlanBug": ("planner.solver", "PlanBug"),
    "Plan": ("planner.plan", "Plan"),
    "Scenario": ("planner.scenario", "Scenario"),
    "write_plan": ("planner.output", "write_plan"),
    "read_plan_document": ("planner.planfile", "read_plan_document"),
    "write_report": ("planner.report", "write_report"),
    "report_html": ("planner.report", "report_html"),
    "compare_plans": ("planner.compare", "compare"),
    "hosts_needed": ("planner.capacity", "hosts_needed"),
    "fewest_hosts": ("planner.capacity", "fewest_hosts"),
    "growth_curve": ("planner.capacity", "growth_curve"),
    "lower_bound": ("planner.capacity", "lower_bound"),
    "headline": ("planner.headline", "headline"),
    "fleet_use": ("planner.headline", "fleet_use"),
}
_MODULES = ("variants", "capacity", "plots", "report", "compare", "frames", "replan")

__all__ = ["__version__", *_EXPORTS, *_MODULES]


def __getattr__(name: str):
    if name in _EXPORTS:
        module, attr = _EXPORTS[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    if name in _MODULES:
        return importlib.import_module(f"planner.{name}")
    raise AttributeError(f"module 'planner' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
