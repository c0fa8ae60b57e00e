"""The HTML report of a partial plan rendered by a real browser (headless Chromium) at 1,400 px: every image
decodes, nothing overflows horizontally, the headline holds hosts used, bound and gap, and the unplaced guests come
before the plots. A screenshot is kept in test-artifacts/report-partial.png (gitignored).

scripts/test installs Debian's chromium when it is missing (as root) and sets VPLAN_BROWSER_TEST=required, so in
CI a missing browser fails this test instead of skipping it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from planner import load_scenario, solve

from planner.analysis import variants
from planner.analysis.report import write_report
from tests.browser import chromium, measure, screenshot

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    if chromium() is None:
        if os.environ.get("VPLAN_BROWSER_TEST") == "required":
            pytest.fail("chromium is not installed (apt-get install chromium)")
        pytest.skip("chromium is not installed (scripts/test installs it as root)")
    sc = load_scenario(REPO / "scenarios" / "quickstart.yaml")
    sc = variants.add_guests(sc, [{"name": "huge[1-2]", "vcpus": 40, "memory": "16GiB", "cpu": "dedicated",
                                   "threads": "isolate", "numa": 1}])
    plan = solve(sc, time_limit_s=5)
    assert plan.status == "partial" and set(plan.unplaced_reasons) == {"huge1", "huge2"}
    path = write_report(plan, tmp_path_factory.mktemp("report") / "report.html")
    return plan, path


def test_report_in_chromium_at_1400px(report):
    plan, path = report
    m = measure(path, width=1400)
    assert m["inner_width"] == 1400
    assert m["images"] >= 4 and m["decoded"] == m["images"]  # every image decoded (naturalWidth > 0)
    assert m["scroll_width"] <= m["inner_width"] and m["wide_tables"] == []  # no horizontal overflow
    assert m["shrunk"] == []  # every plot shows at its own size, labels as drawn
    headline = m["headline"]
    bound = plan.stats.bound.hosts
    assert f"on {len(plan.hosts_used)} of 4 hosts" in headline and f"lower bound {bound} host" in headline
    assert "no gap (not every guest is placed)" in headline  # the gap, said for a partial plan
    assert m["unplaced_top"] is not None and m["plots_top"] is not None and m["unplaced_top"] < m["plots_top"]
    png = screenshot(path, ARTIFACTS / "report-partial.png", width=1400, height=2400)
    assert png.stat().st_size > 10_000
