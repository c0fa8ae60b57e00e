"""Fixed guests (``host:`` set, running guests) through every method: greedy, patterns, direct, auto, re-plan."""

from __future__ import annotations

import pytest

from planner.verify.check import check_plan
from planner.engine.replan import replan
from planner.engine.solver import solve
from planner.model.stats import Failure
from tests.builders import dedicated, host_model, scenario, shared


def _fleet():
    small = host_model("small", nodes=2, cpus_per_node=8, memory_gib=16)
    big = host_model("big", nodes=2, cpus_per_node=16, memory_gib=32, reserved=(0,))
    hosts = {f"s{i}": "small" for i in range(1, 4)} | {f"b{i}": "big" for i in range(1, 4)}
    guests = [shared(f"web{i:02d}", 2, 2, load="0.3") for i in range(24)]
    guests += [dedicated(f"db{i}", 4, 4) for i in range(4)]
    # running guests on the last hosts listed: the planner must keep them there and count those hosts as used
    guests += [
        shared("run-a", 2, 4, load="0.5", host="b3"),
        dedicated("run-b", 4, 8, host="s3"),
        shared("run-c", 2, 2, load="0.2", host="s3", anti_affinity=("x",)),
        shared("run-d", 1, 1, load="0.2", host="b2", anti_affinity=("x",)),
    ]
    return scenario([small, big], hosts, guests)


@pytest.mark.parametrize("method", ["greedy", "patterns", "direct", "auto"])
def test_fixed_guests_every_method(method):
    sc = _fleet()
    plan = solve(sc, time_limit_s=3, method=method, workers=2)
    assert check_plan(plan) == []
    assert not plan.unplaced_reasons
    for name, host in (("run-a", "b3"), ("run-b", "s3"), ("run-c", "s3"), ("run-d", "b2")):
        assert plan.placed[name].host == host
    # the three fixed hosts are used in any plan; the rest fits on one more host at most
    assert {"b2", "b3", "s3"} <= set(plan.hosts_used)
    if method != "greedy":
        assert len(plan.hosts_used) <= 4


def test_fixed_guest_that_does_not_fit_its_host_is_unplaced_with_reason():
    sc = _fleet()
    sc = scenario(list(sc.host_models.values()), {h.name: h.model for h in sc.hosts},
                  list(sc.guests) + [dedicated("too-big", 4, 40, host="s1")])
    for method in ("greedy", "patterns", "direct"):
        plan = solve(sc, time_limit_s=2, method=method, workers=2)
        assert check_plan(plan) == []
        assert "too-big" in plan.unplaced_reasons
        assert "4K memory" in plan.unplaced_reasons["too-big"], plan.unplaced_reasons["too-big"]


def test_replan_with_fixed_guests():
    sc = _fleet()
    first = solve(sc, time_limit_s=2, method="greedy")
    grown = scenario(list(sc.host_models.values()), {h.name: h.model for h in sc.hosts},
                     list(sc.guests) + [shared("run-e", 2, 2, load="0.3", host="s2")])
    plan = replan(grown, first, time_limit_s=2)
    assert check_plan(plan) == []
    assert plan.placed["run-e"].host == "s2"
    assert plan.placed["run-a"].host == "b3"


# ------------------------------------------------------------------------------------------ never lose a search
def _boom(*_args, **_kwargs):
    raise ValueError("boom in a later phase")


def test_failing_phase_keeps_the_best_checked_plan(monkeypatch, tmp_path):
    import json

    import planner.engine.solver as solver_mod

    monkeypatch.setattr(solver_mod, "decompose", _boom)
    sc = _fleet()
    with pytest.raises(ValueError, match="boom"):
        solve(sc, time_limit_s=2, method="patterns", strict=True)
    plan = solve(sc, time_limit_s=2, method="patterns", strict=False)
    assert check_plan(plan) == []
    assert not plan.unplaced_reasons
    assert plan.stats.failures == (Failure("patterns", "ValueError: boom in a later phase"),)
    plan.write(tmp_path / "out")
    report = (tmp_path / "out" / "vplan-error.txt").read_text()
    assert "phase 'patterns' failed" in report and "Traceback" in report and "boom in a later phase" in report
    document = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert document["solver"]["failures"][0]["phase"] == "patterns"
    assert "error_report" not in document["solver"]


def test_failing_pinning_falls_back_to_the_next_candidate(monkeypatch):
    import planner.engine.solver as solver_mod

    real = solver_mod.finish_plan
    calls = []

    def finish_once_failing(problem, chosen, stats, *args, **kwargs):
        calls.append(stats.solver)
        if len(calls) == 1:
            raise RuntimeError("pinning failed")
        return real(problem, chosen, stats, *args, **kwargs)

    monkeypatch.setattr(solver_mod, "finish_plan", finish_once_failing)
    plan = solve(_fleet(), time_limit_s=2, method="direct", strict=False)
    assert calls[0] == "cp-sat" and len(calls) == 2 and calls[1] != "cp-sat"  # the next candidate by score
    assert plan.stats.solver == calls[1] and check_plan(plan) == []
    assert plan.stats.failures[0].phase == "pinning the cp-sat plan"


def test_cli_warns_once_and_writes_the_error_file(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    import planner.engine.solver as solver_mod
    from planner.cli.main import app

    monkeypatch.setattr(solver_mod, "decompose", _boom)
    monkeypatch.setenv("VPLAN_STRICT", "0")
    scenario_file = tmp_path / "s.yaml"
    scenario_file.write_text(
        "version: 1\nname: s\nhost_models:\n  m:\n    nodes: [{id: 0, cpus: '0-7', memory: 16GiB}]\n"
        "    threads_per_core: 2\nhosts: [{name: 'h[1-4]', model: m}]\n"
        "guests:\n  - {name: 'g[1-9]', vcpus: 2, memory: 4GiB, load: 0.5}\n  - {name: r, vcpus: 1, memory: 1GiB, host: h4}\n"
    )
    result = CliRunner().invoke(app, ["solve", str(scenario_file), "-o", str(tmp_path / "out"), "--time-limit", "2", "-q",
                                        "--method", "patterns"])
    assert result.exit_code == 0, result.output
    err = getattr(result, "stderr", "") or result.output
    assert err.count("warning: the patterns phase failed (ValueError: boom in a later phase)") == 1
    assert (tmp_path / "out" / "vplan-error.txt").is_file()


# ------------------------------------------------------------------------------------------ emulator fallback note
def test_emulator_host_without_reserved_cpus_is_noted_per_guest(tmp_path):
    import json

    from typer.testing import CliRunner

    from planner.cli.main import app

    scenario_file = tmp_path / "emu.yaml"
    scenario_file.write_text(
        "version: 1\nname: emu\nhost_models:\n"
        "  bare: {nodes: [{id: 0, cpus: '0-7', memory: 16GiB}], threads_per_core: 2}\n"
        "  res: {nodes: [{id: 0, cpus: '0-7', memory: 16GiB}], threads_per_core: 2, reserved: {cpus: '0,4'}}\n"
        "hosts: [{name: bare1, model: bare}, {name: res1, model: res}]\n"
        "guests:\n"
        "  - {name: a, vcpus: 2, memory: 4GiB, load: 0.3, host: bare1}\n"
        "  - {name: b, vcpus: 2, memory: 4GiB, load: 0.3, host: res1}\n"
        "  - {name: c, vcpus: 2, memory: 4GiB, cpu: dedicated, host: bare1}\n"
        "  - {name: d, vcpus: 2, memory: 4GiB, emulator: shared, host: bare1}\n"
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["solve", str(scenario_file), "-o", str(out), "--time-limit", "2"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # (the console wraps long lines)
    assert text.count("note: ") == 1
    assert ("note: 2 guests with emulator: host run their emulator threads on the shared pool of their nodes, "
            "on hosts that reserve no CPUs: bare1 (plan.json guests.NAME.note)") in text
    guests = json.loads((out / "plan.json").read_text())["guests"]
    assert {name for name, g in guests.items() if g.get("note")} == {"a", "c"}
    assert guests["a"]["note"].startswith("emulator: host, but bare1 (model bare) reserves no CPUs")


def test_cli_method_option(tmp_path):
    import json

    from typer.testing import CliRunner

    from planner.cli.main import app

    scenario_file = tmp_path / "s.yaml"
    scenario_file.write_text(
        "version: 1\nname: s\nhost_models:\n  m: {nodes: [{id: 0, cpus: '0-7', memory: 16GiB}], threads_per_core: 2}\n"
        "hosts: [{name: 'h[1-3]', model: m}]\n"
        "guests:\n  - {name: 'g[1-6]', vcpus: 2, memory: 4GiB, load: 0.5}\n  - {name: r, vcpus: 1, memory: 1GiB, host: h3}\n"
    )
    runner = CliRunner()
    bad = runner.invoke(app, ["solve", str(scenario_file), "-o", str(tmp_path / "bad"), "--method", "fast"])
    assert bad.exit_code == 2 and not (tmp_path / "bad").exists()
    for method in ("greedy", "direct"):
        out = tmp_path / method
        result = runner.invoke(app, ["solve", str(scenario_file), "-o", str(out), "--method", method, "--time-limit", "2", "-q"])
        assert result.exit_code == 0, result.output
        solver = json.loads((out / "plan.json").read_text())["solver"]
        assert solver["method"] == ("greedy" if method == "greedy" else "cp-sat")
        assert solver["hosts_used"] == (3 if method == "greedy" else 2)  # r fixes h3; the rest fits one more host
