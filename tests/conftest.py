"""Test-wide settings: strict mode, so a solve phase that fails raises instead of falling back (planner.solver)."""

import os

os.environ.setdefault("VPLAN_STRICT", "1")
