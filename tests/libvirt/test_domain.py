"""Scenario ``domain:`` settings, complete bootable domains with a stable uuid, and domain templates merged as
``vplan apply`` merges."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from lxml import etree

from planner.libvirt.apply import apply_plan
from planner.libvirt.domain import domain_uuid, domain_xml
from planner.io.loader import ScenarioError, load_scenario
from planner.analysis.output import write_plan
from planner.engine.solver import solve
from tests.libvirt_validate import domain_errors

HEAD = """version: 1
name: dom
host_models:
  m:
    nodes: [{id: 0, cpus: "0-3", memory: 8GiB, hugepages: {2M: 512}}, {id: 1, cpus: "4-7", memory: 8GiB}]
    reserved: {cpus: "0"}
hosts: [{name: h1, model: m}]
"""

TEMPLATE = """<?xml version="1.0"?>
<!-- the site's base domain -->
<domain type="kvm">
  <name>base</name>
  <memory unit="GiB">2</memory>
  <vcpu>2</vcpu>
  <os>
    <type arch="x86_64" machine="pc-q35-7.2">hvm</type>
    <boot dev="hd"/>
  </os>
  <features>
    <acpi/>
  </features>
  <cpu mode="host-model"/>
  <devices>
    <disk type="file" device="disk">
      <source file="/var/lib/images/base.qcow2"/>
      <target dev="vda" bus="virtio"/>
    </disk>
    <interface type="network"><source network="default"/></interface>
  </devices>
</domain>
"""


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # messages name the files as given: s.yaml, t.xml


def _scenario(tmp_path: Path, body: str, name: str = "s.yaml"):
    (tmp_path / name).write_text(HEAD + body)
    return load_scenario(name)


def _problems(tmp_path: Path, body: str) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        _scenario(tmp_path, body)
    return info.value.problems


def _root(plan, guest: str) -> etree._Element:
    return etree.fromstring(domain_xml(plan, guest).encode())


# --------------------------------------------------------------------------------------------------------------
# Settings


def test_defaults_make_a_complete_kvm_domain(tmp_path: Path) -> None:
    plan = solve(_scenario(tmp_path, "guests: [{name: a, vcpus: 1, memory: 256MiB}]\n"), time_limit_s=5)
    root = _root(plan, "a")
    assert root.get("type") == "kvm"
    assert root.find("cpu").get("mode") == "host-passthrough"
    assert root.find("os/type").get("machine") == "q35"
    assert [c.tag for c in root] == ["name", "uuid", "memory", "currentMemory", "vcpu", "cputune", "numatune", "os",
                                     "features", "cpu", "on_poweroff", "on_reboot", "on_crash", "devices"]
    assert [root.findtext(t) for t in ("on_poweroff", "on_reboot", "on_crash")] == ["destroy", "restart", "destroy"]
    assert root.find("devices/serial").get("type") == "pty"
    assert root.find("devices/console/target").get("type") == "serial"
    assert root.find("devices/disk") is None  # boots to its firmware


def test_uuid_is_version_5_of_scenario_and_guest(tmp_path: Path) -> None:
    plan = solve(_scenario(tmp_path, "guests: [{name: a, vcpus: 1, memory: 256MiB}]\n"), time_limit_s=5)
    value = _root(plan, "a").findtext("uuid")
    assert uuid.UUID(value).version == 5
    assert value == domain_uuid("dom", "a") != domain_uuid("dom", "b") != domain_uuid("other", "a")
    again = solve(_scenario(tmp_path, "guests: [{name: a, vcpus: 1, memory: 256MiB}]\n", "t.yaml"), time_limit_s=5)
    assert _root(again, "a").findtext("uuid") == value  # stable: re-defining updates the domain in place


def test_scenario_defaults_and_guest_overrides(tmp_path: Path) -> None:
    body = """domain: {type: qemu, machine: pc-q35-7.2}
guests:
  - {name: a, vcpus: 1, memory: 256MiB}
  - {name: b, vcpus: 1, memory: 256MiB, domain: {cpu_mode: custom, cpu_model: qemu64}}
  - {name: c, vcpus: 1, memory: 256MiB, domain: {type: kvm, cpu_mode: host-model, machine: q35}}
"""
    plan = solve(_scenario(tmp_path, body), time_limit_s=5)
    a, b, c = (_root(plan, g) for g in "abc")
    assert (a.get("type"), a.find("cpu").get("mode"), a.find("os/type").get("machine")) == \
        ("qemu", "maximum", "pc-q35-7.2")  # type qemu: maximum (host-passthrough needs KVM)
    assert (b.get("type"), b.find("cpu").get("mode"), b.find("cpu").get("match")) == ("qemu", "custom", "exact")
    assert b.find("cpu/model").text == "qemu64" and b.find("cpu/model").get("fallback") == "forbid"
    assert [x.tag for x in b.find("cpu")] == ["model", "topology", "numa"]
    assert (c.get("type"), c.find("cpu").get("mode"), c.find("os/type").get("machine")) == ("kvm", "host-model", "q35")
    for guest in "abc":
        path = tmp_path / f"{guest}.xml"
        path.write_text(domain_xml(plan, guest))
        assert domain_errors(path) is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("domain: {type: xen}\n", "s.yaml: domain.type: 'xen' is not one of: kvm, qemu"),
        ("domain: {cpu_mode: passthrough}\n", "s.yaml: domain.cpu_mode: 'passthrough' is not one of: "
                                              "host-passthrough, host-model, maximum, custom; did you mean "
                                              "'host-passthrough'?"),
        ("domain: {cpu_mode: custom}\n", "s.yaml: domain.cpu_mode: cpu_mode custom needs cpu_model"),
        ("domain: {cpu_model: qemu64}\n", "s.yaml: domain.cpu_model: cpu_model 'qemu64' needs cpu_mode: custom"),
        ("domain: {type: qemu, cpu_mode: host-passthrough}\n",
         "s.yaml: domain.cpu_mode: host-passthrough needs type: kvm"),
        ("domain: {machine: 'q35 --x'}\n", "s.yaml: domain.machine: 'q35 --x' is not a machine type"),
        ("domain: {cpu_mode: custom, cpu_model: [a]}\n", "s.yaml: domain.cpu_model: a list is not a CPU model name"),
        ("domain: {typ: kvm}\n", "s.yaml: domain.typ: unknown key (did you mean 'type'?"),
        ("domain: kvm\n", "s.yaml: domain: expected a mapping, e.g. {type: qemu, cpu_mode: maximum}"),
        ("domain: {template: missing.xml}\n", "s.yaml: domain.template: 'missing.xml': file not found"),
        ("domain: {template: 7}\n", "s.yaml: domain.template: 7 is not a file path"),
        ("domain: {template: .}\n", "s.yaml: domain.template: '.': not a regular file (expected a domain XML)"),
    ],
)
def test_bad_scenario_domain(tmp_path: Path, body: str, expected: str) -> None:
    problems = _problems(tmp_path, body + "guests: [{name: a, vcpus: 1, memory: 256MiB}]\n")
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_bad_guest_domain_names_the_guest(tmp_path: Path) -> None:
    body = """domain: {type: qemu}
guests:
  - {name: a, vcpus: 1, memory: 256MiB, domain: {cpu_mode: host-passthrough}}
  - {name: b, vcpus: 1, memory: 256MiB, domain: {cpu_mode: custom}}
  - {name: c, vcpus: 1, memory: 256MiB, domain: {type: kvm, cpu_mode: host-passthrough}}
"""
    assert _problems(tmp_path, body) == [
        "s.yaml: guests[0] (a).domain.cpu_mode: host-passthrough needs type: kvm (QEMU without KVM cannot pass the "
        "host CPU through; use cpu_mode: maximum, host-model or custom)",
        "s.yaml: guests[1] (b).domain.cpu_mode: cpu_mode custom needs cpu_model (e.g. cpu_model: qemu64)",
    ]


# --------------------------------------------------------------------------------------------------------------
# Templates


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<domain><name>x</name>", "not well-formed XML"),
        ("<network><name>x</name></network>", "not a domain XML (the root element is <network>)"),
        ("<domain type='xen'><name>x</name><memory>1</memory><vcpu>1</vcpu></domain>",
         "the template's domain type 'xen' is not one of: kvm, qemu"),
    ],
)
def test_bad_template(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "t.xml").write_text(text)
    problems = _problems(tmp_path, "domain: {template: t.xml}\nguests: [{name: a, vcpus: 1, memory: 256MiB}]\n")
    assert len(problems) == 1 and problems[0].startswith("s.yaml: domain.template: ") and expected in problems[0]


def test_template_with_a_uuid_serves_one_guest(tmp_path: Path) -> None:
    (tmp_path / "t.xml").write_text(TEMPLATE.replace("<name>base</name>",
                                                     "<name>base</name><uuid>6f1b3f1e-0000-4000-8000-000000000001"
                                                     "</uuid>"))
    problems = _problems(tmp_path, "domain: {template: t.xml}\nguests: [{name: 'a[1-2]', vcpus: 1, "
                                   "memory: 256MiB}]\n")
    assert problems == ["s.yaml: domain.template: t.xml has its own <uuid>, which names one "
                        "domain, but serves 2 guests (a1, a2): remove the <uuid> (vplan gives each guest a stable "
                        "one) or give each guest its own template"]
    plan = solve(_scenario(tmp_path, "guests: [{name: a, vcpus: 1, memory: 256MiB, domain: {template: t.xml}}]\n"),
                 time_limit_s=5)
    assert _root(plan, "a").findtext("uuid") == "6f1b3f1e-0000-4000-8000-000000000001"  # the template's own


def test_template_keeps_what_vplan_does_not_own(tmp_path: Path) -> None:
    (tmp_path / "t.xml").write_text(TEMPLATE)
    body = """domain: {template: t.xml, type: qemu}
guests:
  - {name: a, vcpus: 2, memory: 512MiB, cpu: dedicated, numa: 2}
  - {name: b, vcpus: 1, memory: 256MiB, hugepages: 2M, domain: {template: none}}
"""
    plan = solve(_scenario(tmp_path, body), time_limit_s=5)
    text = domain_xml(plan, "a")
    assert text.startswith('<?xml version="1.0"?>\n<!-- the site\'s base domain -->\n<domain type="qemu">\n')
    root = etree.fromstring(text.encode())
    assert root.findtext("name") == "a" and root.findtext("uuid") == domain_uuid("dom", "a")
    assert root.find("memory").text == "524288" and root.find("memory").get("unit") == "KiB"
    assert root.find("os/boot").get("dev") == "hd"  # the template's
    assert root.find("os/type").get("machine") == "pc-q35-7.2"  # the template's (same arch)
    assert root.find("cpu").get("mode") == "host-model"  # the template's (type qemu allows it)
    assert root.find("devices/disk/source").get("file") == "/var/lib/images/base.qcow2"
    assert '<interface type="network"><source network="default"/></interface>' in text  # byte for byte
    assert root.find("devices/serial") is None  # nothing added to the template's devices
    assert len(root.findall("cpu/numa/cell")) == 2 and len(root.findall("cputune/vcpupin")) == 2
    assert _root(plan, "b").find("devices/serial") is not None  # template: none
    # vplan's parts are merged exactly as `vplan apply` does: applying the plan again changes nothing
    out = tmp_path / "out"
    write_plan(plan, out)
    merged = apply_plan(out, out / "hosts", tmp_path / "applied")
    for guest, path in merged.written.items():
        assert Path(path).read_text() == (out / "hosts" / "h1" / f"{guest}.xml").read_text()
    (tmp_path / "a.xml").write_text(text)
    assert domain_errors(tmp_path / "a.xml") is None


# --------------------------------------------------------------------------------------------------------------
# Flavours


def test_a_flavour_carries_domain_settings(tmp_path: Path) -> None:
    from planner.analysis.generate import _guest_line
    from planner.analysis.variants import flavour_guest

    flavour = {"vcpus": 1, "memory": "256MiB", "cpu": "shared", "load": 0.2,
               "domain": {"type": "qemu", "cpu_mode": "custom", "cpu_model": "qemu64"}}
    line = _guest_line("f1", flavour, None, None)
    assert "domain: {type: qemu, cpu_mode: custom, cpu_model: qemu64}" in line
    plan = solve(_scenario(tmp_path, f"guests:\n{line}\n"), time_limit_s=5)
    root = _root(plan, "f1")
    assert (root.get("type"), root.findtext("cpu/model")) == ("qemu", "qemu64")
    guest = flavour_guest(flavour, "f2")
    assert (guest.domain.type, guest.domain.effective_cpu_model()) == ("qemu", "qemu64")
    with pytest.raises(ValueError, match="guest f3: domain.cpu_mode: cpu_mode custom needs cpu_model"):
        flavour_guest({**flavour, "domain": {"cpu_mode": "custom"}}, "f3")


def test_templates_from_virsh_dumpxml_with_vcpu_current_and_a_dimm(tmp_path: Path) -> None:
    """Found in review: a template with ``<vcpu current='2'>4</vcpu>`` or a 2 GiB DIMM was refused at load time by
    the one-vCPU, 1 GiB probe. The planned guest runs all its vCPUs (the template's ``current`` is dropped) and a
    guest big enough for the DIMM is written with the DIMM kept."""
    dimm = ("<memory model='dimm'><target><size unit='GiB'>2</size><node>0</node></target></memory>\n"
            "    <interface")
    (tmp_path / "t.xml").write_text(TEMPLATE.replace("<vcpu>2</vcpu>", "<vcpu current='2'>4</vcpu>")
                                    .replace("<interface", dimm, 1)
                                    .replace('<memory unit="GiB">2</memory>', '<maxMemory slots="4" unit="GiB">16'
                                             '</maxMemory><memory unit="GiB">4</memory>'))
    plan = solve(_scenario(tmp_path, "guests: [{name: a, vcpus: 4, memory: 6GiB, numa: 1, load: 0.5, domain: {template: t.xml}}]\n"),
                 time_limit_s=5)
    root = _root(plan, "a")
    assert root.find("vcpu").text == "4" and root.find("vcpu").get("current") is None
    assert root.find("devices/memory[@model='dimm']") is not None
    assert sum(int(c.get("memory")) for c in root.findall("cpu/numa/cell")) == 4 * 1024 * 1024  # 6 GiB less the DIMM
