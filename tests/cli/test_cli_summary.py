"""`vplan solve`'s terminal summary, --json, --version, durations on the command line, help examples."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from planner.cli.main import app, print_summary
from planner.io.loader import load_scenario
from planner.engine.solver import solve

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parents[1] / "fixtures" / "cli"


@pytest.fixture(scope="module")
def partial():
    return solve(load_scenario(FIXTURES / "unplaced.yaml"), time_limit_s=5)


def render(plan, **kw) -> str:
    console = Console(width=100, record=True, file=open("/dev/null", "w"))
    print_summary(plan, console, Path("out"), **kw)
    return console.export_text()


def test_headline_first_unplaced_before_the_tables_with_full_reasons(partial):
    text = render(partial)
    lines = text.splitlines()
    assert lines[0] == "unplaced: 4 of 5 guests placed on 1 of 1 hosts"
    assert lines[1].startswith("status  partial (1 guest unplaced), plan by ")
    assert text.index("1 unplaced guest") < text.index("per host used") < text.index("use over the 1 host used")
    # the reason in full, its [..] not eaten as markup, wrapped at spaces only
    reason = partial.unplaced_reasons["db7"]
    assert " ".join(text[text.index("db7 "):text.index("per host used")].split()[1:]) == " ".join(reason.split())


def test_markup_in_a_reason_is_shown_as_is(partial):
    import dataclasses

    plan = dataclasses.replace(partial, unplaced_reasons={"db7": "no room [of 4 hosts, blocked by: cpus]"})
    assert "[of 4 hosts, blocked by: cpus]" in render(plan)


def test_one_row_per_host_fits_100_columns_without_cutting_a_value(quickstart_plan):
    text = render(quickstart_plan)
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 100
    hosts = quickstart_plan.host_usage().set_index("host")
    rows = [line for line in text.splitlines() if re.match(r"^kvm\d ", line)]
    assert [r.split()[0] for r in rows] == quickstart_plan.hosts_used  # one row per host used, none per node
    for row in rows:
        h = hosts.loc[row.split()[0]]
        assert f"{100 * h['cpu_used_fraction']:.0f}%" in row.split()
        assert f"{h['hugepages_1G_used']}/{h['hugepages_1G_pages']}" in row.split()
    assert re.search(r"4K memory\s+\d+%\s+[\d,.]+ of [\d,.]+ GiB", text)
    nodes_text = render(quickstart_plan, nodes=True)
    node_rows = [line for line in nodes_text.splitlines() if re.match(r"^kvm\d +\d ", line)]
    assert len(node_rows) == sum(len(quickstart_plan.scenario.model_of(h).nodes) for h in quickstart_plan.hosts_used)
    assert "…" not in nodes_text and max(len(line) for line in nodes_text.splitlines()) <= 100


def test_solve_json_summary_and_duration_with_unit(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["solve", str(FIXTURES / "unplaced.yaml"), "-o", str(out), "--time-limit", "5s",
                                      "--json"])
    assert result.exit_code == 3, result.output
    doc = json.loads(result.stdout)
    h = doc["headline"]
    assert (h["placed"], h["guests"], h["hosts_used"], h["hosts"], h["status"]) == (4, 5, 1, 1, "partial")
    assert set(doc["unplaced"]) == {"db7"} and doc["unplaced"]["db7"]
    assert doc["hosts"][0]["host"] == "kvm03" and doc["hosts"][0]["memory_4k_used_kib"] == 4 * 2 * 1024**2
    assert doc["written"]["domains"] == 4 and doc["total_s"] >= doc["headline"]["solve_s"]
    plan_doc = json.loads((out / "plan.json").read_text())
    assert plan_doc["headline"] == doc["headline"] and plan_doc["use"] == doc["use"]


def test_bad_duration_is_one_message_exit_2(tmp_path):
    result = CliRunner().invoke(app, ["solve", str(FIXTURES / "unplaced.yaml"), "-o", str(tmp_path / "o"),
                                      "--time-limit", "20x"])
    assert result.exit_code == 2 and "--time-limit 20x: '20x' is not a duration" in result.stderr
    assert not (tmp_path / "o").exists()


def test_version_and_an_example_in_every_help():
    from planner import __version__

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"vplan {__version__}"
    commands = [["solve"], ["validate"], ["compare"], ["generate"], ["check"], ["apply"], ["hugepages"],
                ["host", "import"]]
    for command in commands:
        text = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "100"}).stdout
        assert "Example" in text and f"vplan {' '.join(command)} " in text, command
        assert not re.search(r"<(bool|list|int|str|path|float)|\{[a-z_]+\}|list\[", text, re.I), command  # metavars


def test_compare_headline_first_pp_and_moves_last(quickstart_plan):
    from planner import compare_plans
    from planner.analysis import variants

    other = solve(variants.smt_off(quickstart_plan.scenario), time_limit_s=5, method="greedy")
    result = compare_plans(quickstart_plan, other)
    text = result.text(max_guests=3)
    lines = text.splitlines()
    assert lines[0] == "A = quickstart (A)" and lines[1].startswith("B = quickstart (B: SMT off on ")
    assert lines[3].startswith(f"A: 31 of 31 guests placed on {len(quickstart_plan.hosts_used)} of 4 hosts")
    assert re.search(r"cpu_used_fraction .* [+-]\d+\.\d pp", text) and "percentage points" in text
    assert text.index("hosts used: A") < text.index("guests: ") and "more (all of them" in lines[-1]
    bigger = variants.set_policy(variants.add_guests(quickstart_plan.scenario, flavour="small", count=3, name="x[1-3]"),
                                 cpu_load_target=0.8)
    from planner.analysis.compare import scenario_difference

    assert scenario_difference(quickstart_plan.scenario, bigger) == "cpu_load_target 0.7 → 0.8, 3 guests added"
    doc = json.loads(json.dumps(result.document()))
    assert len(doc["guests"]) == len(result.guests) and doc["headline"]["a"]["hosts_used"] == len(quickstart_plan.hosts_used)


def test_live_progress_text():
    from planner.cli.progress import LiveStatus
    from planner.engine.solver import Progress

    status = LiveStatus(start=100.0, limit_s=20, guests=1500)
    assert status.text(now=100.5).endswith("0.5 s of 20 s · compiling the scenario")
    status.update(Progress("bounds", 0.3, 1500, 44, 0, 28))
    status.update(Progress("patterns", 0.4))
    assert status.text(now=105.0).endswith("5.0 s of 20 s · pattern decomposition · best so far 44 hosts (lower bound 28)")
    status.update(Progress("improve", 9.0, 1500, 31, 0, 28))
    status.update(Progress("improve", 9.5, 1400, 30, 0, 28))  # places fewer: not better
    assert "best so far 31 hosts (lower bound 28)" in status.text(now=110.0)
    status.writing("writing", 700, 1501)
    assert status.text(now=121.0).endswith("21.0 s · writing 700 of 1,501 files")
