"""vplan: NUMA-aware capacity and placement planner for KVM/libvirt fleets.

The package-level API, imported lazily (``import planner`` loads nothing heavy; ``planner.verify.check`` and
``planner.model.units`` stay free of the solver, pandas and OR-Tools)::

    from planner import load_scenario, solve, write_report
    plan = solve(load_scenario("scenarios/quickstart.yaml"), time_limit_s=10)
    plan.write("out/"); write_report(plan, "out/report.html")

Functions: ``load_scenario``, ``load_scenario_text``, ``solve``, ``write_plan``, ``read_plan_document``,
``write_report``, ``report_html``, ``compare_plans`` (``planner.analysis.compare.compare``), ``hosts_needed``,
``fewest_hosts``, ``growth_curve``, ``lower_bound`` (``planner.analysis.capacity``), ``headline``, ``fleet_use``;
types ``Plan``, ``Scenario``, ``ScenarioError``, ``PlanBug``; modules ``variants``, ``capacity``, ``plots``,
``report``, ``compare``, ``frames``, ``replan``. See docs/api.md.
"""

from __future__ import annotations

import importlib

from planner.model.version import __version__

_EXPORTS = {
    "load_scenario": ("planner.io.loader", "load_scenario"),
    "load_scenario_text": ("planner.io.loader", "load_scenario_text"),
    "ScenarioError": ("planner.io.loader", "ScenarioError"),
    "solve": ("planner.engine.solver", "solve"),
    "PlanBug": ("planner.engine.solver", "PlanBug"),
    "Plan": ("planner.model.plan", "Plan"),
    "Scenario": ("planner.model.scenario", "Scenario"),
    "write_plan": ("planner.analysis.output", "write_plan"),
    "read_plan_document": ("planner.files.planfile", "read_plan_document"),
    "write_report": ("planner.analysis.report", "write_report"),
    "report_html": ("planner.analysis.report", "report_html"),
    "compare_plans": ("planner.analysis.compare", "compare"),
    "hosts_needed": ("planner.analysis.capacity", "hosts_needed"),
    "fewest_hosts": ("planner.analysis.capacity", "fewest_hosts"),
    "growth_curve": ("planner.analysis.capacity", "growth_curve"),
    "lower_bound": ("planner.analysis.capacity", "lower_bound"),
    "headline": ("planner.analysis.headline", "headline"),
    "fleet_use": ("planner.analysis.headline", "fleet_use"),
}
_MODULES = {name: f"planner.analysis.{name}" for name in ("variants", "capacity", "plots", "report", "compare", "frames")}
_MODULES["replan"] = "planner.engine.replan"

__all__ = ["__version__", *_EXPORTS, *_MODULES]


def _frames_module():
    """The plan's DataFrame views and writer (``planner.analysis.frames``), loaded on first use."""
    from planner.analysis import frames

    return frames


def _register_plan_views() -> None:
    from planner.model.plan import PLAN_VIEWS

    if not PLAN_VIEWS:
        PLAN_VIEWS.append(_frames_module)


_register_plan_views()


def __getattr__(name: str):
    if name in _EXPORTS:
        module, attr = _EXPORTS[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    if name in _MODULES:
        return importlib.import_module(_MODULES[name])
    raise AttributeError(f"module 'planner' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
