"""Plots (Axes with the expected artists), the HTML report (embedded images, summary table) and the CLI options."""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from planner.analysis import capacity

from planner.analysis import plots  # noqa: E402
from planner.io.loader import load_scenario  # noqa: E402
from planner.analysis.report import write_report  # noqa: E402
from tests.conftest import vplan_process  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def curve():
    return capacity.growth_curve(load_scenario(REPO / "scenarios" / "overcommit-web.yaml"), factors=(1.0, 2.0))


def axes():
    return Figure().add_subplot()


def test_heatmap(quickstart_plan):
    ax = axes()
    assert plots.utilisation_heatmap(quickstart_plan, "cpu", ax=ax) is ax
    assert len(ax.images) == 1
    used = len(quickstart_plan.hosts_used)
    assert used == 2 and len(ax.texts) == 2 * 4  # two guide hosts x 4 nodes, one label each
    grid = ax.images[0].get_array()
    nodes = quickstart_plan.node_usage()
    kvm_rows = nodes[nodes["host"] == quickstart_plan.hosts_used[0]]
    assert list(grid[0]) == pytest.approx(list(kvm_rows["cpu_used_fraction"]))
    ax = axes()
    plots.utilisation_heatmap(quickstart_plan, "hugepages", ax=ax, hosts="all")
    assert ax.images[0].get_array().shape == (4, 4)  # 4 hosts x node ids 0-3
    assert len(ax.texts) == 4 * 2 + 2 * 2  # guide: 4 nodes with pools; sandybridge: 2 (its node ids 0, 1)


def test_node_bars(quickstart_plan):
    ax = axes()
    assert plots.node_bars(quickstart_plan, ax=ax) is ax
    assert len(ax.patches) == 8 * 8  # 8 bars per node, 8 nodes on the two hosts used
    ax = axes()
    plots.node_bars(quickstart_plan, ax=ax, hosts="all")
    assert len(ax.patches) == 8 * 12
    heights = [p.get_height() for p in ax.patches]
    nodes = quickstart_plan.node_usage()
    assert heights[12 * 4: 12 * 5] == pytest.approx(list(nodes["memory_4k_used_fraction"]))  # 5th bar call: 4K used


def test_pin_map(quickstart_plan):
    for host in quickstart_plan.hosts_used:
        ax = axes()
        assert plots.pin_map(quickstart_plan, host, ax=ax) is ax
        model = quickstart_plan.scenario.model_of(host)
        assert len(ax.patches) == model.cpu_count == 144
        hosts = quickstart_plan.host_usage().set_index("host")
        pool_colour = matplotlib.colors.to_rgba(plots.COLOURS["pool"])
        reserved_colour = matplotlib.colors.to_rgba(plots.COLOURS["reserved"])
        faces = [tuple(p.get_facecolor()) for p in ax.patches]
        assert sum(f == reserved_colour for f in faces) == 2
        assert sum(f == pool_colour for f in faces) == hosts.loc[host, "pool_cpus"]
        hatched = [p for p in ax.patches if p.get_hatch() == "xxx"]
        assert len(hatched) == hosts.loc[host, "idle_cpus"]
        taken = hosts.loc[host, ["dedicated_cpus", "idle_cpus", "emulator_cpus"]].sum()
        assert sum(f not in (pool_colour, reserved_colour) for f in faces) == taken
    with pytest.raises(KeyError):
        plots.pin_map(quickstart_plan, "nosuch", ax=axes())


def test_growth_plot(curve):
    ax = axes()
    assert plots.growth_plot(curve, ax=ax) is ax
    assert len(ax.lines) == 2
    assert list(ax.lines[0].get_ydata()) == [4, 8]
    assert ax.lines[1].get_zorder() > ax.lines[0].get_zorder() and ax.lines[1].get_linestyle() == "--"  # both seen
    assert list(ax.lines[1].get_ydata()) == list(curve["lower_bound_hosts"])


def test_plots_make_their_own_figure(quickstart_plan):
    import matplotlib.pyplot as plt

    ax = plots.node_bars(quickstart_plan)
    assert ax.figure is not None
    plt.close(ax.figure)


def test_report(quickstart_plan, curve, tmp_path):
    path = write_report(quickstart_plan, tmp_path / "r.html")
    text = path.read_text()
    images = IMG.findall(text)
    assert len(images) == 3 + 2  # 2 heatmaps + node bars + a pin map for each of the 2 hosts used
    for data in images:
        assert base64.b64decode(data).startswith(b"\x89PNG\r\n\x1a\n")
    headline = re.search(r"<section id='headline'>(.*?)</section>", text, re.S).group(1)
    assert "31 of 31 guests placed on 2 of 4 hosts" in headline
    bound = quickstart_plan.stats.bound.hosts
    assert re.search(rf"<th>bound</th><td>lower bound {bound} hosts?: [^<]+; gap", headline)
    assert text.index("id='headline'") < text.index("id='plots'")
    hosts = re.search(r"<table class='hosts'>(.*?)</table>", text, re.S).group(1)
    assert "<th class='num'>4K memory used GiB</th>" in hosts and "<th class='num'>CPUs used %</th>" in hosts
    assert "_fraction" not in text and "_mib" not in text and "1048576" not in text  # readable headers and sizes
    csv = (tmp_path / "r.placements.csv").read_text().splitlines()
    assert len(csv) == 1 + len(quickstart_plan.placements()) and csv[0].startswith("guest,host,")
    assert "href='r.placements.csv'" in text
    assert "<script" not in text and "http://" not in text and "https://" not in text and "<link" not in text
    with_growth = write_report(quickstart_plan, tmp_path / "g.html", growth=curve).read_text()
    assert len(IMG.findall(with_growth)) == 6 and "<table class='growth'>" in with_growth


def vplan(*args: str) -> subprocess.CompletedProcess:
    return vplan_process(*args, cwd=REPO)


def test_cli_solve_report(tmp_path):
    report = tmp_path / "report.html"
    result = vplan("solve", "scenarios/quickstart.yaml", "-o", str(tmp_path / "out"), "--time-limit", "10",
                   "--report", str(report))
    assert result.returncode == 0, result.stderr
    text = report.read_text()
    assert len(IMG.findall(text)) == 5 and "quickstart" in text
    assert (tmp_path / "out" / "plan.json").exists()
    assert f"wrote the report {report}" in result.stdout


def test_cli_compare(tmp_path):
    b = tmp_path / "spread.yaml"
    b.write_text((REPO / "scenarios" / "quickstart.yaml").read_text().replace("objective: pack", "objective: spread")
                 .replace("../models/", f"{REPO}/models/"))
    result = vplan("compare", "scenarios/quickstart.yaml", str(b), "--time-limit", "10")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"hosts_used\s+2\s+4\s+\+2", out)
    assert "hosts used: A 2, B 4" in out and "only in B: sb1, sb2" in out
    assert re.search(r"guests: \d+ moved", out)
    bad = vplan("compare", "scenarios/quickstart.yaml", str(tmp_path / "missing.yaml"))
    assert bad.returncode == 2 and "file not found" in bad.stderr
