"""The package-level API: ``from planner import load_scenario, solve, ...``, lazily imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import planner

REPO = Path(__file__).resolve().parent.parent


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True, cwd=REPO)
    return set(out.stdout.split())


def test_entry_points_and_version():
    from planner import compare_plans, load_scenario, solve, write_report
    from planner.analysis import capacity
    from planner.analysis import plots
    from planner.analysis import report
    from planner.analysis import variants

    assert planner.__version__.count(".") == 2
    plan = solve(load_scenario(REPO / "scenarios" / "quickstart.yaml"), time_limit_s=5, method="greedy")
    assert isinstance(plan, planner.Plan) and len(plan.placed) == 31
    assert write_report is report.write_report and compare_plans is planner.analysis.compare.compare
    assert callable(variants.smt_off) and callable(capacity.growth_curve) and callable(plots.pin_map)
    assert set(planner.__all__) <= set(dir(planner))


def test_import_stays_light():
    heavy = {"pandas", "ortools", "matplotlib", "planner.engine.solver", "planner.engine.cpsat_model", "planner.engine.decompose"}
    assert not heavy & _modules_after("import planner; planner.__version__")
    assert not heavy & _modules_after("import planner.verify.check, planner.model.units, planner.files.planfile")
