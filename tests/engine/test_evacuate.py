"""Failure headroom (issue 13 item 1): rack/zone labels, policy.survive with a checked evacuation per failure,
anti_affinity_scope host | rack | zone in the model, the planners and the checker, and `vplan evacuate`."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from ortools.sat.python import cp_model

from planner.engine import cpsat_model as m
from planner.verify.check import check_evacuations, check_plan
from planner.engine.evacuate import evacuate, failure_of, failures, plan_from_document, with_evacuations
from planner.engine.greedy import greedy
from planner.io.loader import ScenarioError, load_scenario, load_scenario_text
from planner.analysis.output import write_plan
from planner.files.planfile import read_plan_document
from planner.model.plan import Evacuation
from planner.engine.problem import compile_problem
from planner.model.scenario import Host
from planner.engine.solver import solve
from tests.builders import host_model, scenario, shared

REPO = Path(__file__).resolve().parents[2]
SURVIVE = REPO / "scenarios" / "survive-racks.yaml"


@pytest.fixture(scope="module")
def survive_plan():
    return solve(load_scenario(SURVIVE), time_limit_s=10, method="greedy")


# ------------------------------------------------------------------------------------------------ loader
def _yaml(hosts: str, policy: str = "", guests: str = "  - {name: a, vcpus: 1, memory: 1GiB}") -> str:
    return (f"version: 1\nname: t\npolicy: {{{policy}}}\nhost_models:\n  m:\n    nodes:\n"
            "      - {id: 0, cpus: 0-3, memory: 8GiB}\n"
            f"hosts:\n{hosts}\nguests:\n{guests}\n")


def test_loader_reads_rack_zone_on_patterns_survive_and_scope():
    sc = load_scenario_text(_yaml("  - {name: 'h[1-2]', model: m, rack: r1, zone: z1}\n  - {name: h3, model: m}",
                                  "survive: {racks: 1}, anti_affinity_scope: zone",
                                  "  - {name: a, vcpus: 1, memory: 1GiB, anti_affinity: x, anti_affinity_scope: rack}"))
    assert [(h.name, h.rack, h.zone) for h in sc.hosts] == [("h1", "r1", "z1"), ("h2", "r1", "z1"), ("h3", None, None)]
    assert (sc.policy.survive_racks, sc.policy.survive_hosts, sc.policy.anti_affinity_scope) == (1, 0, "zone")
    assert sc.guests[0].anti_affinity_scope == "rack" and sc.scope_of(sc.guests[0]) == "rack"
    assert sc.host_by_name["h1"].domain("rack") == "rack r1" and sc.host_by_name["h3"].domain("rack") == "host h3"


@pytest.mark.parametrize("hosts, policy, guests, expected", [
    ("  - {name: h1, model: m, rack: [1]}", "", None, "t.yaml: hosts[0] (h1).rack: a list is not a rack label"),
    ("  - {name: h1, model: m}", "survive: {hosts: 2}", None, "policy.survive: hosts: 2 is not supported"),
    ("  - {name: h1, model: m}", "survive: {disks: 1}", None, "policy.survive: 'disks' is not a failure to survive"),
    ("  - {name: h1, model: m}", "anti_affinity_scope: row", None, "policy.anti_affinity_scope"),
    ("  - {name: h1, model: m}", "", "  - {name: a, vcpus: 1, memory: 1GiB, anti_affinity: x}\n"
     "  - {name: b, vcpus: 1, memory: 1GiB, anti_affinity: x, anti_affinity_scope: rack}",
     "anti-affinity tag 'x' has scope rack here but host on guest a"),
])
def test_loader_rejects_bad_headroom_keys(hosts, policy, guests, expected):
    text = _yaml(hosts, policy) if guests is None else _yaml(hosts, policy, guests)
    with pytest.raises(ScenarioError) as info:
        load_scenario_text(text, "t.yaml")
    assert expected in str(info.value)


# ------------------------------------------------------------------------------------------------ anti-affinity scope
def _racked(hosts: dict[str, str | None], scope: str, count: int = 2):
    """Hosts of one small model with racks; ``count`` guests sharing tag db in ``scope``."""
    model = host_model()
    sc = scenario([model], {h: "m" for h in hosts}, [shared(f"g{i}", 1, anti_affinity=("db",)) for i in range(count)])
    return dataclasses.replace(
        sc, policy=dataclasses.replace(sc.policy, anti_affinity_scope=scope),
        hosts=tuple(Host(h, "m", rack=r) for h, r in hosts.items()))


def _cpsat_placed(sc) -> int:
    build = m.build_model(compile_problem(sc), (m.define_assignment, m.define_anti_affinity))
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    assert solver.solve(build.model) == cp_model.OPTIMAL
    names = {c.name for c in build.model.proto.constraints if c.name.startswith("anti_affinity[")}
    return sum(solver.value(v) for v in build.x.values()), names


@pytest.mark.parametrize("racks, scope, expected, names", [
    ({"h1": "r1", "h2": "r2"}, "rack", 2, {"anti_affinity[db|rack r1]", "anti_affinity[db|rack r2]"}),  # feasible
    ({"h1": "r1", "h2": "r1"}, "rack", 1, {"anti_affinity[db|rack r1]"}),  # infeasible: one rack, two guests
    ({"h1": "r1", "h2": "r1"}, "host", 2, {"anti_affinity[db|host h1]", "anti_affinity[db|host h2]"}),
    ({"h1": None, "h2": None}, "rack", 2, {"anti_affinity[db|host h1]", "anti_affinity[db|host h2]"}),  # unlabelled
])
def test_anti_affinity_family_per_scope(racks, scope, expected, names):
    placed, constraint_names = _cpsat_placed(_racked(racks, scope))
    assert placed == expected
    assert constraint_names == names


def test_greedy_and_solve_honour_rack_scope_and_checker_catches_a_breach():
    sc = _racked({"h1": "r1", "h2": "r1", "h3": "r2", "h4": "r2"}, "rack", count=3)
    state = greedy(compile_problem(sc))
    racks = sorted(sc.host_by_name[h].rack for (_c, h, _o), n in state.assignment.items() for _ in range(n))
    assert racks == ["r1", "r2"]  # the third guest has no rack left
    plan = solve(sc, time_limit_s=5)
    assert sorted(sc.host_by_name[p.host].rack for p in plan.placed.values()) == ["r1", "r2"]
    assert len(plan.unplaced_reasons) == 1 and "already in rack r" in next(iter(plan.unplaced_reasons.values()))
    # the same placement judged with host scope is fine; both guests in rack r1 breaks the rack rule
    a, b = sorted(plan.placed)
    moved = dataclasses.replace(plan.placed[b], host="h2" if plan.placed[a].host == "h1" else "h1")
    bad = dataclasses.replace(plan, placed={**plan.placed, b: moved}) if plan.placed[a].host in ("h1", "h2") else None
    if bad is None:  # a is in r2: move b to r2's other host
        other = "h4" if plan.placed[a].host == "h3" else "h3"
        bad = dataclasses.replace(plan, placed={**plan.placed, b: dataclasses.replace(plan.placed[b], host=other)})
    found = [v for v in check_plan(bad) if v.rule == "placement"]
    assert len(found) == 1 and "anti-affinity tag 'db'" in found[0].message and "(rack r" in found[0].message


# ------------------------------------------------------------------------------------------------ survive
def test_survive_racks_every_evacuation_is_complete_and_checker_clean(survive_plan):
    plan = survive_plan
    sc = plan.scenario
    assert plan.placed["db1"].host != plan.placed["db2"].host
    assert sc.host_by_name[plan.placed["db1"].host].rack != sc.host_by_name[plan.placed["db2"].host].rack
    used_racks = {sc.host_by_name[h].rack for h in plan.hosts_used}
    assert {e.name for e in plan.evacuations} == used_racks and all(e.kind == "rack" for e in plan.evacuations)
    for e in plan.evacuations:
        assert e.complete and not e.stranded
        on_failed = {n for n, p in plan.placed.items() if p.host in e.failed_hosts}
        assert set(e.moved) == on_failed and on_failed
        assert all(p.host not in e.failed_hosts for p in e.moved.values())
        after = plan.evacuated(e)
        assert len(after.placed) == 31 and check_plan(after) == []
        # the db that moves never lands in the rack of the other db
        for db, other in (("db1", "db2"), ("db2", "db1")):
            if db in e.moved:
                assert sc.host_by_name[e.moved[db].host].rack != sc.host_by_name[after.placed[other].host].rack
    assert check_evacuations(plan) == []
    h = plan.stats.headroom
    assert h.hosts_used == len(plan.hosts_used)
    assert h.hosts_with_headroom == len(plan.hosts_used) + len(h.spare_hosts)
    assert set(h.spare_hosts) == {s for e in plan.evacuations for s in e.spare_hosts}
    assert not set(h.spare_hosts) & set(plan.hosts_used) and h.complete == h.failures == len(used_racks)


def test_plan_without_headroom_fails_evacuation():
    # only two guide hosts: the 176 GiB of 4K memory needs both, so losing either strands guests
    text = SURVIVE.read_text().replace('  - {name: "kvm[4-6]", model: suse-guide-4n, rack: r2, zone: z1}\n', "")
    text = text.replace('  - {name: "kvm[7-9]", model: suse-guide-4n, rack: r3, zone: z2}\n', "")
    text = text.replace('  - {name: "sb[1-2]", model: intel-sandybridge-2s, rack: r4, zone: z2}\n', "")
    text = text.replace('"kvm[1-3]", model: suse-guide-4n, rack: r1', '"kvm[1-2]", model: suse-guide-4n')
    text = text.replace("survive: {racks: 1}", "survive: {hosts: 1}").replace(", anti_affinity_scope: rack}", "}")
    sc = load_scenario_text(text, str(SURVIVE), str(SURVIVE.parent))
    plan = solve(sc, time_limit_s=10, method="greedy")
    assert plan.hosts_used == ["kvm1", "kvm2"] and not plan.unplaced_reasons
    assert [e.name for e in plan.evacuations] == ["kvm1", "kvm2"]
    for e in plan.evacuations:
        assert not e.complete and e.stranded and not e.spare_hosts
        assert all("fits none of the 1 surviving hosts" in r for r in e.stranded.values())
        assert len(e.moved) + len(e.stranded) == len(plan.guests_on(e.name))
        assert plan.evacuated(e).status == "partial" and check_plan(plan.evacuated(e)) == []
    assert check_evacuations(plan) == []  # stranded guests are unplaced, not a broken rule
    assert plan.stats.headroom.complete == 0


def test_checker_rejects_a_tampered_evacuation(survive_plan):
    plan = survive_plan
    e = next(e for e in plan.evacuations if len(e.moved) >= 2)
    first, second = list(e.moved)[:2]
    # two moved guests swapped onto one failed host, and one guest forgotten
    onto_failed = dataclasses.replace(e.moved[first], host=e.failed_hosts[0])
    bad = dataclasses.replace(e, moved={**{k: v for k, v in e.moved.items() if k != second}, first: onto_failed})
    found = check_evacuations(dataclasses.replace(plan, evacuations=(bad,)))
    messages = " | ".join(v.message for v in found)
    assert f"{second} was on" in messages and "neither moved nor stranded" in messages
    assert f"{first} is moved onto the failed host {e.failed_hosts[0]}" in messages
    # a moved dedicated guest pinned onto a CPU of a surviving dedicated guest breaks the cpus rule after the failure
    moved_ded = [n for n in e.moved if plan.scenario.guest_by_name[n].dedicated and any(
        plan.scenario.guest_by_name[p.guest].dedicated for p in plan.guests_on(e.moved[n].host))]
    assert moved_ded  # ded1 moves next to db2 (greedy is deterministic)
    name = moved_ded[0]
    target = e.moved[name]
    survivor = next(p for p in plan.guests_on(target.host) if plan.scenario.guest_by_name[p.guest].dedicated)
    clash = dataclasses.replace(target, vcpu_pins=(survivor.vcpu_pins[0],) + target.vcpu_pins[1:])
    found = check_evacuations(dataclasses.replace(plan, evacuations=(
        dataclasses.replace(e, moved={**e.moved, name: clash}),)))
    assert found and all(v.message.startswith(f"after rack {e.name} fails: ") for v in found)
    assert any(v.rule == "cpus" and v.host == target.host for v in found)
    assert check_evacuations(plan) == []


def test_survive_hosts_fixed_guest_on_failed_host_moves(tmp_path):
    sc = _racked({"h1": None, "h2": None, "h3": None}, "host", count=2)
    guests = (dataclasses.replace(sc.guests[0], host="h1"), sc.guests[1])
    sc = dataclasses.replace(sc, guests=guests, policy=dataclasses.replace(sc.policy, survive_hosts=1))
    plan = solve(sc, time_limit_s=5)
    assert plan.placed["g0"].host == "h1"
    e = next(e for e in plan.evacuations if e.name == "h1")
    assert e.complete and e.moved["g0"].host not in ("h1", plan.placed["g1"].host)
    assert check_evacuations(plan) == [] and check_plan(plan.evacuated(e)) == []


def test_plan_json_holds_evacuations_and_evacuate_cli(survive_plan, tmp_path, plan_validator):
    out = write_plan(survive_plan, tmp_path / "out")
    doc = read_plan_document(out)
    plan_validator.validate(doc)
    assert len(doc["evacuations"]) == len(survive_plan.evacuations)
    first = doc["evacuations"][0]
    e = survive_plan.evacuations[0]
    assert first["failure"] == {"kind": "rack", "name": e.name, "hosts": list(e.failed_hosts)}
    assert first["complete"] is True and set(first["moved"]) == set(e.moved)
    guest, p = next(iter(e.moved.items()))
    assert first["moved"][guest]["host"] == p.host and len(first["moved"][guest]["vcpu_pins"]) == len(p.vcpu_pins)
    assert doc["solver"]["headroom"]["hosts_with_headroom"] == survive_plan.stats.headroom.hosts_with_headroom
    # the plan rebuilt from plan.json is the plan, and its evacuation the same
    rebuilt = plan_from_document(survive_plan.scenario, doc)
    assert rebuilt.placed == survive_plan.placed
    assert evacuate(rebuilt, failure_of(rebuilt, rack=e.name)) == e
    # vplan evacuate: prints, checks, writes the fleet after the failure
    after = tmp_path / "after"
    run = subprocess.run([sys.executable, "-m", "planner.cli.main", "evacuate", str(SURVIVE), str(out), "--rack", e.name,
                          "-o", str(after), "--json"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["checked"] is True and result["evacuation"]["moved"] == first["moved"]
    written = read_plan_document(after)
    plan_validator.validate(written)
    assert {g: written["guests"][g]["host"] for g in e.moved} == {g: p.host for g, p in e.moved.items()}
    assert all((after / written["guests"][g]["xml"]).is_file() for g in e.moved)
    bad = subprocess.run([sys.executable, "-m", "planner.cli.main", "evacuate", str(SURVIVE), str(out), "--rack", "r9"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--rack r9: no such rack (racks: r1, r2, r3, r4)" in bad.stderr


def test_vplan_check_verifies_the_evacuations_in_plan_json(survive_plan, tmp_path):
    import shutil

    out = write_plan(survive_plan, tmp_path / "out")
    run = [sys.executable, "-m", "planner.cli.main", "check", str(SURVIVE), "--domains"]
    clean = subprocess.run(run + [str(out)], capture_output=True, text=True, timeout=120)
    hosts = len(survive_plan.hosts_used)
    assert clean.returncode == 0 and f"31 guests on {hosts} hosts: no findings" in clean.stdout, clean.stderr
    # a copy whose first evacuation puts db1 into the rack of db2 (rack anti-affinity) is caught
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    doc = json.loads((copy / "plan.json").read_text())
    e = next(e for e in doc["evacuations"] if "db1" in e["moved"])
    db2_host = doc["guests"]["db2"]["host"]
    rack_mate = next(h.name for h in survive_plan.scenario.hosts
                     if h.rack == survive_plan.scenario.host_by_name[db2_host].rack and h.name != db2_host)
    e["moved"]["db1"]["host"] = rack_mate
    (copy / "plan.json").write_text(json.dumps(doc))
    bad = subprocess.run(run + [str(copy), "--json"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1, bad.stderr
    findings = json.loads(bad.stdout)["findings"]
    assert any(f["rule"] == "placement" and f["guest"] in ("db1", "db2") and "anti-affinity tag 'db'" in f["message"]
               and f["message"].startswith(f"after rack {e['failure']['name']} fails: ") for f in findings), findings


@pytest.mark.parametrize("method", ["greedy", "patterns", "direct"])
def test_every_method_honours_rack_scope(method):
    sc = _racked({"h1": "r1", "h2": "r1", "h3": "r2", "h4": "r2", "h5": "r3"}, "rack", count=4)
    plan = solve(sc, time_limit_s=5, method=method)  # strict mode: a plan breaking the rule raises PlanBug
    racks = sorted(sc.host_by_name[p.host].rack for p in plan.placed.values())
    assert racks == ["r1", "r2", "r3"] and len(plan.unplaced_reasons) == 1
    assert check_plan(plan) == []


def test_solve_summary_says_what_headroom_costs(tmp_path):
    run = subprocess.run([sys.executable, "-m", "planner.cli.main", "solve", str(SURVIVE), "-o", str(tmp_path / "out"),
                          "--time-limit", "10", "--method", "greedy"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    h = read_plan_document(tmp_path / "out")["solver"]["headroom"]
    flat = " ".join(run.stdout.split())
    spare = h["spare_hosts"]
    assert (f"headroom: survives 1 failed rack: {h['hosts_used']} hosts used + {len(spare)} spare kept empty = "
            f"{h['hosts_used'] + len(spare)} hosts ({', '.join(spare)}); 2 of 2 failures evacuate completely") in flat
    as_json = subprocess.run([sys.executable, "-m", "planner.cli.main", "solve", str(SURVIVE), "-o", str(tmp_path / "o2"),
                              "--time-limit", "10", "--method", "greedy", "--json"], capture_output=True, text=True,
                             timeout=120)
    assert json.loads(as_json.stdout)["headroom"]["hosts_with_headroom"] == h["hosts_with_headroom"] == 4  # (the two rack failures share one spare)
