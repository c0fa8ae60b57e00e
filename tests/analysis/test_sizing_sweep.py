"""vplan size / headroom / growth and sweeps on an Executor (local process pool, Dask LocalCluster), on
scenarios sized by hand (scenarios/sizing-small.yaml: a 2 x 16 GiB host holds 8 guests of 4 GiB)."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from planner.analysis import capacity
from planner.cli.main import app
from planner.analysis.compare import compare
from planner.io.loader import load_scenario
from planner.engine.solver import solve
from planner.analysis.sweep import SchedulerError, executor_for, sweep
from planner.analysis.variants import add_guests, set_policy

REPO = Path(__file__).resolve().parents[2]
SMALL = REPO / "scenarios" / "sizing-small.yaml"
runner = CliRunner()


@pytest.fixture(scope="module")
def small():
    return load_scenario(SMALL)


@pytest.fixture(scope="module")
def small_plan(small):
    return solve(small, time_limit_s=5)


# ----------------------------------------------------------------------------------------------- grow, totals
def test_grow_is_nested_and_about_the_factor(small):
    counts, previous = [], set()
    for m in range(13):
        names = {g.name for g in capacity.grow(small, capacity.Fraction(11, 10) ** m).guests}
        assert previous <= names  # a later month only adds guests
        previous = names
        counts.append(len(names))
    assert counts[:10] == [4, 4, 4, 5, 5, 6, 7, 7, 8, 9]
    assert all(g.host is None for g in capacity.grow(small, 2).guests if "-s" in g.name)


def test_demand_and_capacity_totals(small):
    cap = capacity.compile_problem(small).caps["box"]
    assert capacity.capacity_totals(cap) == {"cpus": 16, "vcpu_cap": 128, "memory_4k": 32 * 1024**2}
    demand = capacity.demand_totals(small, 1)
    assert demand["vcpu_cap"] == 8 and demand["memory_4k"] == 16 * 1024**2
    assert demand["cpus"] == capacity.Fraction(8 * 3, 7)  # 8 vCPUs x 0.3 / 0.7


# ----------------------------------------------------------------------------------------------- size
def test_fewest_to_add_one_more_host(small):
    bigger = add_guests(small, [{"name": f"x{i}", "vcpus": 2, "memory": "4GiB", "load": 0.3} for i in range(8)])
    sizing = capacity.fewest_to_add(bigger, "box", time_limit_s=5)  # 12 guests, 8 per host
    assert (sizing.hosts, sizing.lower_bound, sizing.proven) == (1, 1, True)
    assert sizing.bounds["memory_4k"] == 1 and not sizing.plan.unplaced_reasons
    assert len(sizing.plan.hosts_used) == 2 and "box-new-01" in sizing.plan.hosts_used
    assert capacity.fewest_to_add(small, "box", time_limit_s=5).hosts == 0
    assert capacity.fewest_hosts(bigger, "box", time_limit_s=5).hosts == 2


def test_cli_size_json_and_errors(small):
    r = runner.invoke(app, ["size", str(SMALL), "--model", "box", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert (doc["hosts"], doc["lower_bound_hosts"], doc["proven"], doc["placed"]) == (1, 1, True, 4)
    assert doc["lower_bound_by_resource"]["memory_4k"] == 1 and isinstance(doc["search_s"], float)
    r = runner.invoke(app, ["size", str(SMALL), "--model", "amd-nps4", "--add"])
    assert r.exit_code == 0 and "add no amd-nps4 host" in r.stdout
    r = runner.invoke(app, ["size", str(SMALL), "--model", "nope"])
    assert r.exit_code == 2 and "--model nope: no such host model" in r.stderr and "amd-nps4" in r.stderr
    r = runner.invoke(app, ["size", str(SMALL), "--model", "box", "--scheduler", "sched:8786"])
    assert r.exit_code == 2 and "--scheduler sched:8786: expected a Dask scheduler address" in r.stderr


# ----------------------------------------------------------------------------------------------- headroom
def test_headroom_matches_the_solver(small, small_plan):
    hr = capacity.plan_headroom(small_plan, "medium")  # medium: 2 vCPUs, 4 GiB, load 0.3
    row = hr.frame.iloc[0]
    assert (hr.total, hr.exact, row["guests"], row["binding"]) == (4, True, 4, "4K memory")
    # the solver agrees: 4 more medium guests fixed to h1 are all placed, a 5th is not
    for extra, unplaced in ((4, 0), (5, 1)):
        sc = add_guests(small, flavour="medium", count=extra, host="h1")
        assert len(solve(sc, time_limit_s=5).unplaced_reasons) == unplaced
    # a host-wide binding: a tight vCPU cap (16 cores x 1 = 16 vCPUs, 8 used) leaves room for 4 mediums, which
    # also fill the memory: the host-wide limit is named
    tight = set_policy(small, cpu_overcommit_max=1)
    plan = solve(tight, time_limit_s=5)
    hr = capacity.plan_headroom(plan, "medium")
    assert (hr.total, hr.frame.iloc[0]["binding"]) == (4, "vCPU cap (host-wide)")
    hr = capacity.plan_headroom(plan, "c-xlarge")  # 8 vCPUs, 8 GiB: two by memory, one by the 16-vCPU cap
    assert (hr.total, hr.frame.iloc[0]["binding"]) == (1, "vCPU cap (host-wide)")
    doc = json.loads(json.dumps(hr.document(), allow_nan=False))
    assert doc["hosts"][0]["binding_node"] is None and doc["binding_hosts"] == {"vCPU cap (host-wide)": 1}


def test_cli_headroom(small, tmp_path):
    out = tmp_path / "out"
    assert runner.invoke(app, ["solve", str(SMALL), "-o", str(out), "-q"]).exit_code == 0
    r = runner.invoke(app, ["headroom", str(out), "--flavour", "small", "-s", str(SMALL), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)  # small: 1 vCPU, 2 GiB: 16 GiB left -> 8
    assert (doc["total"], doc["exact"], doc["binding_hosts"]) == (8, True, {"4K memory": 1})
    assert doc["hosts"][0]["host"] == "h1" and doc["hosts"][0]["fits"] == 8
    r = runner.invoke(app, ["headroom", str(out), "--flavour", "huge", "-s", str(SMALL)])
    assert r.exit_code == 2 and "--flavour huge: unknown flavour 'huge'" in r.stderr
    r = runner.invoke(app, ["headroom", str(out), "--flavour", "small", "-s", str(REPO / "scenarios/quickstart.yaml")])
    assert r.exit_code == 2 and "a plan of scenario 'sizing-small', but" in r.stderr
    r = runner.invoke(app, ["headroom", str(tmp_path / "none"), "--flavour", "small", "-s", str(SMALL)])
    assert r.exit_code == 2 and "plan.json: not found" in r.stderr


# ----------------------------------------------------------------------------------------------- growth
def test_runway_by_hand(small):
    result = capacity.runway(small, "10%/month", 12, model="box", time_limit_s=5)
    assert result.resource_months["memory_4k"] == 9 and result.resource_months["cpus"] is None
    assert result.fleet_month == 9 and result.solved[8] is True and result.solved.get(9, False) is False
    assert list(result.frame["guests"][:10]) == [4, 4, 4, 5, 5, 6, 7, 7, 8, 9]
    assert result.frame["fits"].tolist() == [True] * 9 + [False] * 4
    assert result.add_at_horizon.hosts == 1  # month 12: 4 x 1.1^12 = 12.6 -> 12 guests, 8 per host


def test_cli_growth_json_plot_and_errors(tmp_path):
    png = tmp_path / "g.png"
    r = runner.invoke(app, ["growth", str(SMALL), "--rate", "10%/month", "--months", "12", "--plot", str(png),
                            "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert (doc["runs_out_month"], doc["resource_runs_out_month"]["memory_4k"], doc["rate_fraction"]) == (9, 9, 0.1)
    assert doc["table"][9]["memory_4k_used_fraction"] == pytest.approx(9 / 8)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = runner.invoke(app, ["growth", str(SMALL), "--rate", "10%", "--months", "3", "--plot", str(png)])
    assert r.exit_code == 0 and "lasts the 3 months" in r.stdout  # its own plot is replaced
    (tmp_path / "mine.png").write_bytes(b"not vplan's")
    r = runner.invoke(app, ["growth", str(SMALL), "--rate", "10%", "--plot", str(tmp_path / "mine.png")])
    assert r.exit_code == 2 and "was not written by vplan" in r.stderr
    for bad in ("fast", "-5%", "0"):
        r = runner.invoke(app, ["growth", str(SMALL), "--rate", bad])
        assert r.exit_code == 2 and f"--rate {bad}:" in r.stderr


# ----------------------------------------------------------------------------------------------- sweeps
def _variants(small):
    fleet = capacity.add_hosts(small, "box", 2)  # 3 hosts of 8 guests each
    return {f"+{n}": add_guests(fleet, flavour="medium", count=n) for n in (0, 4, 8, 12)}


def _key(plans):
    return {label: sorted((g, p.host, p.nodes, p.vcpu_pins) for g, p in plan.placed.items())
            for label, plan in plans.items()}


def test_sweep_local_pool_and_dask_cluster_agree(small):
    distributed = pytest.importorskip("distributed")
    variants = _variants(small)
    options = dict(time_limit_s=5, deterministic=True, seed=1, workers=1)
    began = time.monotonic()
    local = sweep(variants, **options)  # a local process pool
    local_s = time.monotonic() - began
    assert local["variant"].tolist() == ["+0", "+4", "+8", "+12"]
    assert local["hosts_used"].tolist() == [1, 1, 2, 2] and local["unplaced"].tolist() == [0, 0, 0, 0]
    assert local["bound_hosts"].tolist() == [1, 1, 2, 2]
    from planner.analysis.sweep import solve_all

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl, \
            distributed.Client(cl) as client:
        executor = client.get_executor()
        began = time.monotonic()
        remote = sweep(variants, executor=executor, **options)
        dask_s = time.monotonic() - began
        plans_dask = solve_all(variants, executor=executor, **options)
        curve_dask = capacity.growth_curve(small, "box", (1.0, 2.0, 3.0), time_limit_s=5, executor=executor,
                                           deterministic=True)
        compared = compare(variants["+0"], variants["+12"], executor=executor, time_limit_s=5, deterministic=True,
                           seed=1, workers=1)
    print(f"sweep of {len(variants)} variants: local pool {local_s:.2f} s, Dask LocalCluster {dask_s:.2f} s")
    cols = ["variant", "hosts_used", "placed", "bound_hosts", "cpu_used_fraction", "memory_4k_used_fraction"]
    assert remote[cols].equals(local[cols])
    with executor_for(None, jobs=2) as pool:
        plans_local = solve_all(variants, executor=pool, **options)
    assert _key(plans_dask) == _key(plans_local)
    curve = capacity.growth_curve(small, "box", (1.0, 2.0, 3.0), time_limit_s=5, deterministic=True)
    assert curve_dask["hosts_needed"].tolist() == curve["hosts_needed"].tolist() == [1, 1, 2]
    here = compare(variants["+0"], variants["+12"], time_limit_s=5, deterministic=True, seed=1, workers=1)
    assert compared.hosts.equals(here.hosts) and compared.guests.equals(here.guests)
    assert len(compared.guests[compared.guests["change"] == "added"]) == 12


def test_scheduler_nobody_listens():
    pytest.importorskip("distributed")
    began = time.monotonic()
    with pytest.raises(SchedulerError, match="no Dask scheduler answers"):
        with executor_for("tcp://127.0.0.1:9", timeout_s=2):
            pass
    assert time.monotonic() - began < 60
