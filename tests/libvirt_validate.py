"""Validate a domain XML file with libvirt's own tools (for tests).

    schema_errors(path) -> str | None   # libvirt's RelaxNG schema:  virt-xml-validate PATH domain
    define_errors(path) -> str | None   # libvirt's parser:          virsh -q -c test:///default define --validate PATH
    topology_errors(path) -> str | None # what only the QEMU driver checks (see below), re-implemented
    domain_errors(path) -> str | None   # all three; None when the file passes every check

Each returns ``None`` when the file is accepted, else the tool's message. When a tool is missing, the calling test
is skipped with the install command, or failed naming the tool when the environment has ``CI=true``.

What was found out on this machine (Debian 12, libvirt 9.0.0):

* ``virt-xml-validate`` (package libvirt-clients) is a shell script around ``xmllint --relaxng`` (package
  libxml2-utils) with the schemas of libvirt0 under /usr/share/libvirt/schemas. It checks structure only: a
  missing required attribute, an unknown element or an invalid arch fails; value relations (a vcpupin for a vCPU
  that does not exist) do not.
* ``virsh -c test:///default define --validate`` works without any daemon: the test driver runs inside virsh,
  each invocation starts from the built-in default state, and nothing is persisted (no cleanup needed).
  ``--validate`` (VIR_DOMAIN_DEFINE_VALIDATE) first validates against the same RelaxNG schema, then runs
  libvirt's domain parser and its generic post-parse/validation. The test driver accepts ``type='kvm'`` and the
  arches x86_64/q35, aarch64/virt, ppc64le/pseries and s390x/s390-ccw-virtio although its capabilities list only
  i686/x86_64 ``test`` guests: it does not match domain type or arch against capabilities (an unknown arch
  name is still refused by the parser). It catches e.g. a duplicate vcpupin, a memnode cellid without a cell,
  a hugepage nodeset naming a missing cell, more ``<numa>`` CPUs than vCPUs, a memnode mode that is not
  ``restrictive`` under a ``restrictive`` memory mode.
* Some mistakes libvirt's parser only *warns* about and drops: ``vcpupin`` for a vCPU beyond the count ("Ignoring
  vcpupin for missing vcpus"). ``define_errors`` therefore also reports any ``warning``/``error`` line that
  libvirt logs on stderr with its default log settings (the caller's LIBVIRT_* variables are removed so the
  result does not depend on them; LIBVIRT_DEBUG=3 would add a harmless virConnectSetKeepAlive error line).
* libvirt-python (``pip install libvirt-python==9.0.0``, builds against libvirt-dev + pkg-config, works here)
  calls the very same ``virDomainDefineXMLFlags`` in the same libvirt0: with or without
  ``VIR_DOMAIN_DEFINE_VALIDATE`` on ``test:///default`` it gave exactly virsh's results (warnings included), so
  it adds nothing and is not used.
* Checks that live only in the QEMU driver (qemu_validate.c) are skipped by the test driver, and a QEMU driver
  needs a daemon and a qemu binary. The ones that matter for vplan's output are re-implemented, clearly labelled,
  in ``topology_errors``: sockets×dies×cores×threads must equal the vCPU count ("CPU topology doesn't match
  maximum vcpu count"), the ``<numa>`` cells must cover exactly vCPUs 0..n−1, every vCPU has exactly one vcpupin,
  each cell's distances name every cell, and ``<memory>`` equals the sum of the cells (the test driver keeps a
  ``<memory>`` that disagrees with its cells without a word).
* Also accepted by the test driver, for the record: ``preferred`` with a multi-node nodeset (refused when the QEMU
  guest starts on libvirt < 9.3 without numactl's preferred-many: "NUMA memory tuning in 'preferred' mode only
  supports single node"), host node ids or CPUs it does not have (nodeset '0,8', cpuset 200), memory sizes that
  are not whole MiB (per libvirt's source the QEMU driver rounds each cell up to 1 MiB, 256 MiB on ppc64,
  rather than refusing), missing siblings.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

INSTALL = {
    "virt-xml-validate": "apt-get install libvirt-clients libxml2-utils",
    "xmllint": "apt-get install libxml2-utils",
    "virsh": "apt-get install libvirt-clients",
}

SCHEMA = Path("/usr/share/libvirt/schemas/domain.rng")
TIMEOUT_S = 60
#: libvirt log lines that say nothing about the XML (virsh asks every driver for keepalive).
BENIGN_LOG = ("virConnectSetKeepAlive",)


def require_tool(name: str) -> str:
    """The path of a tool; a missing tool skips the test (fails it under CI=true)."""
    path = shutil.which(name)
    if path is None:
        message = f"libvirt validation needs '{name}', which is not installed (install: {INSTALL.get(name, name)})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIBVIRT_") and k != "VIRSH_DEFAULT_CONNECT_URI"}
    env.update(LC_ALL="C", LANG="C")
    return env


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT_S, env=_env(), check=False)


def schema_errors(xml_path: str | os.PathLike[str]) -> str | None:
    """``virt-xml-validate FILE domain``: None when libvirt's RelaxNG schema accepts the file."""
    tool = require_tool("virt-xml-validate")
    require_tool("xmllint")
    if not SCHEMA.exists():
        message = f"libvirt's schema {SCHEMA} is missing (install: apt-get install libvirt0)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    result = _run([tool, str(xml_path), "domain"])
    if result.returncode == 0:
        return None
    return (result.stderr + result.stdout).strip() or f"virt-xml-validate exited with {result.returncode}"


def define_errors(xml_path: str | os.PathLike[str]) -> str | None:
    """``virsh -q -c test:///default define --validate FILE``: None when libvirt's parser accepts the file
    without an error or a logged warning."""
    tool = require_tool("virsh")
    result = _run([tool, "-q", "-c", "test:///default", "define", "--validate", str(xml_path)])
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    if result.returncode != 0:
        return "\n".join(line for line in lines if ": info :" not in line) or f"virsh exited with {result.returncode}"
    logged = [
        line
        for line in lines
        if (": warning :" in line or ": error :" in line) and not any(benign in line for benign in BENIGN_LOG)
    ]
    return "\n".join(logged) or None


def _ids(text: str) -> list[int]:
    from planner.model.units import parse_cpulist

    return list(parse_cpulist(text))


def topology_errors(xml_path: str | os.PathLike[str]) -> str | None:
    """Checks the QEMU driver makes but the test driver does not (see the module docstring)."""
    from lxml import etree

    root = etree.parse(str(xml_path)).getroot()
    errors: list[str] = []
    vcpus = int(root.findtext("vcpu"))
    topology = root.find("cpu/topology")
    if topology is not None:
        product = 1
        for key in ("sockets", "dies", "cores", "threads"):
            product *= int(topology.get(key, "1"))
        if product != vcpus:
            errors.append(f"CPU topology doesn't match maximum vcpu count ({product} != {vcpus})")
    pinned = [int(pin.get("vcpu")) for pin in root.findall("cputune/vcpupin")]
    if sorted(pinned) != list(range(vcpus)):
        errors.append(f"vcpupin vCPUs {sorted(pinned)} are not exactly 0..{vcpus - 1}")
    cells = root.findall("cpu/numa/cell")
    if cells:
        cell_cpus = sorted(c for cell in cells for c in _ids(cell.get("cpus")))
        if cell_cpus != list(range(vcpus)):
            errors.append(f"<numa> cells hold vCPUs {cell_cpus}, not exactly 0..{vcpus - 1}")
        cell_ids = sorted(int(cell.get("id")) for cell in cells)
        for cell in cells:
            siblings = sorted(int(s.get("id")) for s in cell.findall("distances/sibling"))
            if siblings and siblings != cell_ids:
                errors.append(f"cell {cell.get('id')} has distances to cells {siblings}, not {cell_ids}")
        total = sum(_kib(cell.get("memory"), cell.get("unit")) for cell in cells)
        # libvirt counts memory devices (DIMM, NVDIMM, virtio-mem/-pmem; not SGX EPC) in <memory> beside the cells
        total += sum(_kib(d.findtext("target/size"), d.find("target/size").get("unit"))
                     for d in root.findall("devices/memory") if d.get("model") != "sgx-epc")
        memory = root.find("memory")
        if memory is not None and _kib(memory.text, memory.get("unit")) != total:
            errors.append(f"<memory> {memory.text} {memory.get('unit', 'KiB')} differs from the cells' total "
                          f"{total} KiB (memory devices included)")
    return "\n".join(errors) or None


_UNITS_KIB = {"b": 1 / 1024, "bytes": 1 / 1024, "k": 1, "kib": 1, "m": 1024, "mib": 1024, "g": 1024 ** 2,
              "gib": 1024 ** 2, "t": 1024 ** 3, "tib": 1024 ** 3}


def _kib(value, unit) -> int:
    return int(int(value.strip()) * _UNITS_KIB[(unit or "KiB").lower()])


def domain_errors(xml_path: str | os.PathLike[str]) -> str | None:
    """Every check above; None when all pass."""
    found = [
        f"{name}: {message}"
        for name, check in (("schema", schema_errors), ("define", define_errors), ("topology", topology_errors))
        if (message := check(xml_path))
    ]
    return "\n".join(found) or None
