"""Tenant isolation (``tenant:``, ``policy.tenant_isolation``) and ``page_sharing`` (issue 13 item 2)."""

from __future__ import annotations

import dataclasses

import pytest
from lxml import etree
from ortools.sat.python import cp_model

from planner.engine import cpsat_model as m
from planner.verify.check import check_plan
from planner.engine.greedy import greedy
from planner.libvirt.domain import domain_xml
from planner.io.loader import ScenarioError, load_scenario_text
from planner.model.plan import CellPlacement, GuestPlacement, Plan
from planner.engine.problem import compile_problem
from planner.engine.solver import solve
from tests.builders import dedicated, host_model, placed_by_families, scenario, shared


def isolated(sc, level: str):
    return dataclasses.replace(sc, policy=dataclasses.replace(sc.policy, tenant_isolation=level))


placed = placed_by_families


def three_tenants(hosts: int):
    model = host_model()  # 2 nodes of 8 CPUs, 16 GiB each
    guests = [shared(f"{t}{i}", 2, tenant=t) for t in ("a", "b", "c") for i in range(2)]
    return scenario([model], {f"h{k}": "m" for k in range(1, hosts + 1)}, guests)


# ------------------------------------------------------------------------------------ model family micro-tests
@pytest.mark.parametrize("level, hosts, expected", [
    ("none", 1, 6),   # no isolation: everything shares one host
    ("host", 1, 2),   # one host serves one tenant: 2 guests of one tenant
    ("host", 3, 6),   # one host per tenant
    ("node", 1, 4),   # two nodes: two tenants
    ("core", 1, 4),   # core is enforced per node
    ("node", 2, 6),
])
def test_tenant_isolation_family(level, hosts, expected):
    sc = isolated(three_tenants(hosts), level)
    assert placed(sc, m.define_tenant_isolation) == expected


def test_tenant_isolation_constraints_are_named_after_tenants_and_hosts():
    build = m.build_model(compile_problem(isolated(three_tenants(1), "node")),
                          (m.define_assignment, m.define_tenant_isolation))
    names = {c.name for c in build.model.proto.constraints}
    assert "tenant_isolation[node|h1/0]" in names and "tenant_serves[b|h1/1]" in names


def test_guests_without_tenant_are_one_default_tenant():
    model = host_model()
    guests = [shared("x", 2), shared("y", 2), shared("a", 2, tenant="a")]
    sc = isolated(scenario([model], {"h1": "m"}, guests), "host")
    assert placed(sc, m.define_tenant_isolation) == 2  # x and y share the host; a does not join them


# ------------------------------------------------------------------------------------ solver, greedy, explain
@pytest.mark.parametrize("level", ["host", "node", "core"])
def test_solved_plan_isolates_tenants_and_checks(level):
    sc = isolated(three_tenants(3), level)
    plan = solve(sc, time_limit_s=5, workers=1)
    assert check_plan(plan) == []
    assert len(plan.placed) == 6
    seen: dict = {}
    for name, p in plan.placed.items():
        tenant = sc.guest_by_name[name].tenant
        units = [p.host] if level == "host" else [(p.host, c.node_id) for c in p.cells]
        for unit in units:
            assert seen.setdefault(unit, tenant) == tenant
    if level == "host":
        assert len(plan.hosts_used) == 3
    else:
        assert len(plan.hosts_used) == 2  # three tenants need three nodes: two hosts of two nodes


def test_greedy_respects_host_isolation_and_explains_the_refusal():
    sc = isolated(three_tenants(2), "host")
    plan = solve(sc, time_limit_s=3, workers=1, method="greedy")
    assert check_plan(plan) == []
    assert len(plan.placed) == 4 and len(plan.unplaced_reasons) == 2
    reason = next(iter(plan.unplaced_reasons.values()))
    assert "tenant isolation (host)" in reason and "serves tenant" in reason and "tenant isolation on 2" in reason
    state = greedy(compile_problem(sc))
    tenants = {h: t for h, t in state.host_tenants.items() if t}
    assert all(len(t) == 1 for t in tenants.values())


def test_node_refusal_names_the_tenant_on_the_node():
    model = host_model(nodes=1, cpus_per_node=8)
    sc = isolated(scenario([model], {"h1": "m"}, [shared("a1", 2, tenant="acme"), shared("b1", 2, tenant="beta")]),
                  "node")
    plan = solve(sc, time_limit_s=3, workers=1)
    assert check_plan(plan) == []
    assert len(plan.placed) == 1
    (name, reason), = plan.unplaced_reasons.items()
    other = "acme" if name == "b1" else "beta"
    assert f"serves tenant '{other}'" in reason


def test_patterns_keep_tenants_apart():
    model = host_model()
    guests = [shared(f"{t}{i}", 1, tenant=t) for t in ("a", "b", "c", "d") for i in range(6)]
    sc = isolated(scenario([model], {f"h{k}": "m" for k in range(6)}, guests), "host")
    plan = solve(sc, time_limit_s=5, workers=1, method="patterns")
    assert check_plan(plan) == []
    assert len(plan.placed) == 24 and len(plan.hosts_used) == 4


# ------------------------------------------------------------------------------------ the checker (mutations)
def _plan(sc, placements):
    return Plan(sc, "feasible", {p.guest: p for p in placements}, {})


def _shared_on(name, host, node, cpus):
    return GuestPlacement(name, host, (CellPlacement(0, node, (0,), 1024**2),), (tuple(cpus),), tuple(cpus))


def test_checker_tenancy_rule_per_level():
    model = host_model(nodes=2, cpus_per_node=8, threads=2)  # node 0: CPUs 0-3, 8-11 (siblings c, c+8)
    guests = [shared("a1", 1, tenant="a"), dedicated("b1", 1, tenant="b"), shared("c1", 1)]
    base = scenario([model], {"h1": "m", "h2": "m"}, guests)
    pins = [
        GuestPlacement("a1", "h1", (CellPlacement(0, 0, (0,), 1024**2),), ((2, 3, 10, 11),), (2, 3, 10, 11)),
        GuestPlacement("b1", "h1", (CellPlacement(0, 0, (0,), 1024**2),), ((0,),), (1,)),
        GuestPlacement("c1", "h1", (CellPlacement(0, 1, (0,), 1024**2),), ((4, 5, 6, 7, 12, 13, 14, 15),),
                       (4, 5, 6, 7, 12, 13, 14, 15)),
    ]
    assert [v for v in check_plan(_plan(base, pins)) if v.rule == "tenancy"] == []
    host = [v for v in check_plan(_plan(isolated(base, "host"), pins)) if v.rule == "tenancy"]
    assert [(v.guest, v.host) for v in host] == [("b1", "h1"), ("c1", "h1")]
    assert "tenant isolation (host): h1 serves a1 of tenant 'a' and b1 of tenant 'b'" in host[0].message
    node = [v for v in check_plan(_plan(isolated(base, "node"), pins)) if v.rule == "tenancy"]
    assert [(v.guest, v.node) for v in node] == [("b1", 0)]
    core = [v for v in check_plan(_plan(isolated(base, "core"), pins)) if v.rule == "tenancy"]
    assert core == []  # b1's CPU 0 is core (0,8); a1 uses cores (2,10) and (3,11) only
    moved = [pins[0], dataclasses.replace(pins[1], vcpu_pins=((10,),), emulator_pins=(1,)), pins[2]]
    core = [v for v in check_plan(_plan(isolated(base, "core"), moved)) if v.rule == "tenancy"]
    assert [(v.guest, v.host) for v in core] == [("b1", "h1")] and "core 2,10 of h1" in core[0].message.replace("-", ",")


# ------------------------------------------------------------------------------------ loader
BASE = """
version: 1
name: t
host_models:
  m: {nodes: [{id: 0, cpus: 0-7, memory: 16GiB}], threads_per_core: 2}
hosts: [{name: h1, model: m}]
"""


def test_loader_reads_tenants_isolation_and_page_sharing():
    sc = load_scenario_text(BASE + """
policy: {tenant_isolation: node, page_sharing: false}
guests:
  - {name: a1, vcpus: 2, memory: 1GiB, tenant: acme, page_sharing: true}
  - {name: x1, vcpus: 2, memory: 1GiB}
""")
    assert sc.policy.tenant_isolation == "node" and sc.policy.page_sharing is False
    a1, x1 = sc.guest_by_name["a1"], sc.guest_by_name["x1"]
    assert (a1.tenant, a1.page_sharing, a1.tenant_name) == ("acme", True, "acme")
    assert (x1.tenant, x1.page_sharing, x1.tenant_name) == (None, None, "")


@pytest.mark.parametrize("snippet, message", [
    ("policy: {tenant_isolation: rack}", "policy.tenant_isolation: 'rack' is not one of: none, core, node, host"),
    ("policy: {page_sharing: 'no'}", "policy.page_sharing: 'no' is not true or false"),
    ("guests: [{name: a, vcpus: 1, memory: 1GiB, tenant: 'a b'}]", "tenant"),
])
def test_loader_refuses_bad_tenant_keys(snippet, message):
    text = BASE + snippet + ("\nguests: [{name: g, vcpus: 1, memory: 1GiB}]\n" if "guests" not in snippet else "\n")
    with pytest.raises(ScenarioError) as exc:
        load_scenario_text(text, filename="s.yaml")
    assert message in str(exc.value)


# ------------------------------------------------------------------------------------ page_sharing in the XML
def test_page_sharing_false_emits_nosharepages_after_hugepages(tmp_path):
    model = host_model(pages={2048: 2048})
    guests = [shared("a", 2, page_sharing=False), shared("b", 2), shared("c", 2, hugepage_kib=2048)]
    sc = scenario([model], {"h1": "m"}, guests)
    sc = dataclasses.replace(sc, policy=dataclasses.replace(sc.policy, page_sharing=False))
    sc = dataclasses.replace(sc, guests=(guests[0], dataclasses.replace(guests[1], page_sharing=True), guests[2]))
    plan = solve(sc, time_limit_s=3, workers=1)
    assert len(plan.placed) == 3
    roots = {g: etree.fromstring(domain_xml(plan, g).encode()) for g in "abc"}
    assert [c.tag for c in roots["a"].find("memoryBacking")] == ["nosharepages"]
    assert roots["b"].find("memoryBacking") is None  # the guest's page_sharing: true wins over the policy
    assert [c.tag for c in roots["c"].find("memoryBacking")] == ["hugepages", "nosharepages"]
    tags = [c.tag for c in roots["c"]]
    assert tags.index("currentMemory") + 1 == tags.index("memoryBacking") == tags.index("vcpu") - 1
    from tests.libvirt_validate import schema_errors
    for g, root in roots.items():
        path = tmp_path / f"{g}.xml"
        path.write_text(domain_xml(plan, g))
        assert schema_errors(path) is None


# ------------------------------------------------------------------------------------ vplan check (audit)
def test_audit_reports_tenant_conflicts_and_reads_nosharepages(tmp_path):
    from pathlib import Path

    from planner.verify.audit import audit, read_domains
    from planner.io.loader import load_scenario
    from planner.analysis.output import write_plan

    example = load_scenario(Path(__file__).parents[2] / "scenarios" / "multi-tenant.yaml")
    assert example.policy.tenant_isolation == "node"
    mixed = isolated(example, "none")
    plan = solve(mixed, time_limit_s=5, workers=1, method="greedy")
    assert len(plan.placed) == 26
    write_plan(plan, tmp_path / "out")
    clean = audit(mixed, read_domains([str(tmp_path / "out")]), None)
    assert [f for f in clean.findings if f.rule == "tenancy"] == []
    result = audit(example, read_domains([str(tmp_path / "out")]), None)
    tenancy = [f for f in result.findings if f.rule == "tenancy"]
    assert tenancy and all("tenant isolation (node)" in f.message for f in tenancy)
    assert {result.scenario.guest_by_name[f.guest].tenant_name for f in tenancy} <= {"acme", "bank", "chem", ""}
    bank = result.scenario.guest_by_name["bank-app1"]
    assert bank.page_sharing is False and result.scenario.guest_by_name["acme-web01"].page_sharing is None
    text = result.scenario_yaml()
    assert "tenant: bank, page_sharing: false" in text and "tenant_isolation: node" in text


def test_greedy_keeps_hosts_open_to_their_own_tenant():
    # a1 first (priority 3) takes h1; b1 (priority 2, same shape) is refused h1 and goes to h2; a2 (priority 1,
    # same shape) must still find h1: a host closed to one tenant stays open to its own
    model = host_model()
    guests = [shared("a1", 2, tenant="a", priority=3), shared("b1", 2, tenant="b", priority=2),
              shared("a2", 2, tenant="a", priority=1)]
    sc = isolated(scenario([model], {"h1": "m", "h2": "m"}, guests), "host")
    state = greedy(compile_problem(sc))
    assert sum(state.assignment.values()) == 3
    assert dict(state.host_tenants) == {"h1": {"a"}, "h2": {"b"}}


def test_variants_add_guests_of_a_tenant():
    from planner.analysis.variants import guest_from_spec

    g = guest_from_spec({"name": "x1", "vcpus": 2, "memory": "2GiB", "tenant": "acme", "page_sharing": False})
    assert (g.tenant, g.page_sharing) == ("acme", False)
    with pytest.raises(ValueError, match="tenant"):
        guest_from_spec({"name": "x1", "vcpus": 2, "memory": "2GiB", "tenant": "a b"})


def test_page_sharing_false_with_a_template_and_apply_round_trip(tmp_path):
    from pathlib import Path

    from planner.libvirt.apply import apply_plan
    from planner.analysis.output import write_plan

    (tmp_path / "t.xml").write_text(
        '<domain type="kvm">\n  <name>base</name>\n  <memory unit="GiB">2</memory>\n  <vcpu>2</vcpu>\n'
        '  <os>\n    <type arch="x86_64" machine="q35">hvm</type>\n  </os>\n</domain>\n')
    (tmp_path / "s.yaml").write_text(BASE + """
policy: {page_sharing: false}
domain: {template: t.xml}
guests:
  - {name: a, vcpus: 2, memory: 1GiB}
  - {name: b, vcpus: 2, memory: 1GiB, page_sharing: true}
""")
    from planner.io.loader import load_scenario
    plan = solve(load_scenario(tmp_path / "s.yaml"), time_limit_s=3, workers=1)
    root = etree.fromstring(domain_xml(plan, "a").encode())
    assert [c.tag for c in root.find("memoryBacking")] == ["nosharepages"]
    assert etree.fromstring(domain_xml(plan, "b").encode()).find("memoryBacking") is None
    out = tmp_path / "out"
    write_plan(plan, out)
    merged = apply_plan(out, out / "hosts", tmp_path / "applied")
    for guest, path in merged.written.items():  # applying the plan to its own output changes nothing
        assert Path(path).read_text() == (out / "hosts" / "h1" / f"{guest}.xml").read_text()
