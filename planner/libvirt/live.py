"""Live changes: the ``virsh`` commands that bring running guests to a plan without a restart, and what cannot.

Input: a plan (``vplan solve``'s output directory or its ``plan.json``) and the running guests' domain XML
(``virsh dumpxml GUEST`` of each, as ``DIR/HOST/GUEST.xml`` or any ``*.xml`` under DIR; matched by ``<name>``).
For each guest of the plan that has a domain there:

* what libvirt changes on a running guest: a vCPU's pinning (``virsh vcpupin GUEST VCPU CPUSET --live``), the
  emulator threads' pinning (``virsh emulatorpin GUEST CPUSET --live``) and, in ``restrictive`` memory mode
  only, the memory nodes of a one-cell guest (``virsh numatune GUEST --nodeset NODES --live``; libvirt refuses a
  nodeset change of a running guest in any other mode);
* what needs a restart (or a migration, which starts a new QEMU from the plan's XML): another host, the vCPU
  count or memory size, the guest NUMA cells (vCPUs and memory per cell), the hugepage backing, the memory mode,
  and the memory nodes of a guest whose mode is not ``restrictive`` or that has several cells (libvirt binds each
  cell's memory when QEMU starts). Each is listed with what differs.

A domain XML without ``id`` on ``<domain>`` is not running (``dumpxml`` of an inactive domain): it is listed,
nothing is changed live; define the plan's XML (``vplan apply``) and start it.

The commands change the running guests only (``--live``); the persistent definitions are updated by
``vplan apply`` and ``virsh define``. Public API: ``live_changes(plan, domains) -> LivePlan``;
``LivePlan.script()``, ``LivePlan.document()``, ``plan_files(path) -> (plan_dir, plan_json)``.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from planner.libvirt.elements import Cputune, Memory, MemoryBacking, Numa, Numatune, Vcpu, read_part
from planner.model.errors import VplanError
from planner.model.units import format_cpulist

__all__ = ["LiveError", "LiveStep", "Restart", "LivePlan", "live_changes", "plan_files"]

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=True)


class LiveError(VplanError):
    """Input that cannot be used: one line per problem, each naming the file."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def plan_files(path: str | Path) -> tuple[Path, Path]:
    """(plan directory, plan.json) from either: ``vplan solve``'s output directory or its ``plan.json``."""
    path = Path(path)
    if path.is_dir():
        return path, path / "plan.json"
    return path.parent, path


@dataclass(frozen=True)
class LiveStep:
    guest: str
    host: str
    argv: tuple[str, ...]  # virsh's arguments (without "virsh")
    what: str  # for the comment above the command

    def line(self) -> str:
        return "$VIRSH " + " ".join(shlex.quote(a) for a in self.argv)


@dataclass(frozen=True)
class Restart:
    guest: str
    host: str
    what: str  # what differs, with the values
    why: str  # why libvirt cannot change it on a running guest


@dataclass
class LivePlan:
    plan: str
    steps: list[LiveStep] = field(default_factory=list)
    restarts: list[Restart] = field(default_factory=list)
    not_running: list[str] = field(default_factory=list)  # guests whose domain XML is of an inactive domain
    missing: list[str] = field(default_factory=list)  # planned guests without a domain XML
    unchanged: list[str] = field(default_factory=list)  # running guests already as planned

    def script(self) -> str:
        lines = [
            "#!/bin/sh",
            f"# vplan: live changes that bring the running guests to the plan {self.plan} (virsh --live only:",
            "# `vplan apply` + `virsh define` update the persistent definitions). Run it on the guests' host, or",
            "# set VIRSH, e.g. VIRSH='virsh -c qemu+ssh://HOST/system' sh live.sh",
            "set -eu",
            'VIRSH=${VIRSH:-virsh}',
        ]
        host = None
        for step in self.steps:
            if step.host != host:
                host = step.host
                lines += ["", f"# host {host}"]
            lines += [f"# {step.guest}: {step.what}", step.line()]
        if self.restarts:
            lines += ["", "# Not changed here: these need a restart of the guest (or a migration) with the plan's "
                          "XML:"]
            lines += [f"#   {r.guest} on {r.host}: {r.what}: {r.why}" for r in self.restarts]
        if self.not_running:
            lines += ["", f"# Not running (define the plan's XML and start them): {', '.join(self.not_running)}"]
        if self.missing:
            lines += ["", f"# No domain XML given for: {', '.join(self.missing)}"]
        if not self.steps:
            lines += ["", "true  # nothing to change live"]
        return "\n".join(lines) + "\n"

    def document(self) -> dict:
        return {
            "plan": self.plan,
            "commands": [{"guest": s.guest, "host": s.host, "argv": ["virsh", *s.argv], "what": s.what}
                         for s in self.steps],
            "restart": [{"guest": r.guest, "host": r.host, "what": r.what, "why": r.why} for r in self.restarts],
            "not_running": self.not_running,
            "missing": self.missing,
            "unchanged": self.unchanged,
        }


# ---------------------------------------------------------------------------------------------------------------
# Reading


def _read_plan(path: str | Path) -> tuple[Path, dict[str, tuple[str, etree._Element]]]:
    """(plan.json, guest -> (host, planned domain)): read as ``vplan apply`` reads a plan (format version checked,
    every domain file inside the plan directory)."""
    from planner.files.planfile import PlanFileError, read_plan_document
    from planner.libvirt.apply import ApplyError, plan_domains

    plan_dir, plan_json = plan_files(path)
    try:
        guests = read_plan_document(plan_dir)["guests"]
        roots = plan_domains(plan_dir)
    except PlanFileError as exc:
        raise LiveError([str(exc)]) from None
    except ApplyError as exc:
        raise LiveError(exc.problems) from None
    return plan_json, {name: (str(guests[name]["host"]), root) for name, root in roots.items()}


def _read_domains(paths: list[str | Path], hosts: set[str]) -> dict[str, tuple[str | None, etree._Element, Path]]:
    """name -> (host from the directory layout DIR/HOST/, or None; root; file)."""
    found: dict[str, tuple[str | None, etree._Element, Path]] = {}
    problems = []
    for given in map(Path, paths):
        if given.is_dir():
            files = sorted(p for p in given.rglob("*.xml") if p.is_file())
        elif given.is_file():
            files = [given]
        else:
            problems.append(f"{given}: not found (a directory of domain XML files, or one file)")
            continue
        for path in files:
            try:
                root = etree.parse(str(path), _PARSER).getroot()
            except (OSError, etree.XMLSyntaxError) as exc:
                problems.append(f"{path}: cannot read ({exc})")
                continue
            if root.tag != "domain":
                continue
            name = (root.findtext("name") or "").strip()
            if not name:
                problems.append(f"{path}: the domain has no <name>")
                continue
            if name in found:
                problems.append(f"{path}: domain {name} is also in {found[name][2]}")
                continue
            host = path.parent.name if path.parent.name in hosts else None
            found[name] = (host, root, path)
    if problems:
        raise LiveError(problems)
    return found


# ---------------------------------------------------------------------------------------------------------------
# Comparing


def _part(part: type, root: etree._Element):
    """The declared part (planner.libvirt.elements) at its path; None when missing or unreadable (a running
    domain's XML is libvirt's own: an unreadable part just compares as missing)."""
    try:
        return read_part(part, root)
    except ValueError:
        return None


@dataclass(frozen=True)
class _Domain:
    """What ``live`` compares of one domain, read through the same declarations ``vplan solve`` writes with."""

    vcpu: Vcpu | None
    memory: Memory | None
    numa: Numa | None
    backing: MemoryBacking | None
    numatune: Numatune | None
    cputune: Cputune | None

    @classmethod
    def read(cls, root: etree._Element) -> _Domain:
        return cls(*(_part(part, root) for part in (Vcpu, Memory, Numa, MemoryBacking, Numatune, Cputune)))

    @property
    def vcpus(self) -> int | None:
        return self.vcpu.count if self.vcpu is not None else None

    @property
    def memory_kib(self) -> int | None:
        return self.memory.kib if self.memory is not None else None

    def cells(self) -> list[tuple[int, tuple[int, ...], int]]:
        """(cell id, vCPUs, KiB) per guest cell, by id (-1: a cell without one)."""
        cells = self.numa.cells if self.numa is not None else ()
        return sorted((c.id if c.id is not None else -1, c.cpus, c.memory_kib) for c in cells)

    def pages(self) -> list[tuple[int | None, tuple[int, ...]]]:
        """(page KiB, guest cells) per ``<page>``; (None, ()) for ``<hugepages/>`` (the default size)."""
        hugepages = self.backing.hugepages if self.backing is not None else None
        if hugepages is None:
            return []
        out: list[tuple[int | None, tuple[int, ...]]] = [(p.size_kib, p.nodeset or ()) for p in hugepages.pages]
        out = out or [(None, ())]
        return sorted(out, key=repr)

    def pins(self, vcpus: int) -> dict[int, tuple[int, ...]]:
        """vCPU -> pinned CPUs (a vCPU without a vcpupin runs on <vcpu cpuset>, else anywhere: ())."""
        default = (self.vcpu.cpuset or ()) if self.vcpu is not None else ()
        pins = {v: default for v in range(vcpus)}
        for pin in self.cputune.vcpupins if self.cputune is not None else ():
            pins[pin.vcpu] = pin.cpuset or ()
        return pins

    @property
    def emulator(self) -> tuple[int, ...]:
        emulator = self.cputune.emulatorpin if self.cputune is not None else None
        return (emulator.cpuset or ()) if emulator is not None else ()

    def mode(self, default: str | None) -> str | None:
        """``<numatune><memory mode>`` (``default`` when it has none), None without a ``<numatune><memory>``."""
        memory = self.numatune.memory if self.numatune is not None else None
        if memory is None:
            return None
        return memory.mode if memory.mode is not None else default

    @property
    def nodes(self) -> tuple[int, ...]:
        return (self.numatune.nodeset or ()) if self.numatune is not None else ()

    def memnodes(self) -> dict[int, tuple[str | None, tuple[int, ...]]]:
        memnodes = self.numatune.memnodes if self.numatune is not None else ()
        return {m.cellid: (m.mode, m.nodeset or ()) for m in memnodes}


def _guest_changes(live: LivePlan, guest: str, host: str, want_root: etree._Element,
                   have_root: etree._Element) -> None:
    want, have = _Domain.read(want_root), _Domain.read(have_root)

    def restart(what: str, why: str) -> None:
        live.restarts.append(Restart(guest, host, what, why))

    before = (len(live.steps), len(live.restarts))
    want_vcpus, have_vcpus = want.vcpus, have.vcpus
    if want_vcpus != have_vcpus:
        restart(f"vCPU count {have_vcpus} -> {want_vcpus}",
                "the guest's CPU topology and NUMA cells are fixed when QEMU starts (vplan plans no vCPU hot-plug)")
        return
    want_mem, have_mem = want.memory_kib, have.memory_kib
    if want_mem != have_mem:
        restart(f"memory {have_mem} KiB -> {want_mem} KiB", "the guest NUMA cells' memory is fixed when QEMU starts")
        return
    if want.cells() != have.cells():
        def show(cells):
            return "; ".join(f"cell {i}: vCPUs {format_cpulist(c)}, {m} KiB" for i, c, m in cells) or "none"
        restart(f"guest NUMA cells ({show(have.cells())}) -> ({show(want.cells())})",
                "the guest NUMA topology is fixed when QEMU starts")
    if want.pages() != have.pages():
        def show(pages):
            return ", ".join(f"{s} KiB on cells {format_cpulist(n) or 'all'}" for s, n in pages) or "none"
        restart(f"hugepages {show(have.pages())} -> {show(want.pages())}",
                "the memory backing (page size) is chosen when QEMU starts")
    want_mode, have_mode = want.mode(None), have.mode("strict")
    want_nodes = want.nodes if want_mode else ()
    have_nodes = have.nodes if have_mode else ()
    if want_mode != have_mode:
        restart(f"memory mode {have_mode or 'none'} -> {want_mode}",
                "libvirt cannot change the memory mode of a running guest")
    elif want_nodes != have_nodes or want.memnodes() != have.memnodes():
        cells = len(want.numa.cells) if want.numa is not None else 0
        if want_mode == "restrictive" and cells <= 1:
            live.steps.append(LiveStep(guest, host, ("numatune", guest, "--nodeset", format_cpulist(want_nodes),
                                                     "--live"),
                                       f"memory nodes {format_cpulist(have_nodes)} -> {format_cpulist(want_nodes)}"))
        else:
            why = ("libvirt moves the memory of a running guest only in restrictive mode" if want_mode != "restrictive"
                   else "each cell's memory node is bound when QEMU starts (only the whole guest's nodeset can "
                        "change live)")
            restart(f"memory nodes {format_cpulist(have_nodes)} -> {format_cpulist(want_nodes)} ({want_mode})",
                    f"{why}: migrate the guest (its memory is copied to the plan's nodes) or restart it")
    have_pins, want_pins = have.pins(want_vcpus or 0), want.pins(want_vcpus or 0)
    for vcpu in range(want_vcpus or 0):
        if have_pins[vcpu] != want_pins[vcpu]:
            old = format_cpulist(have_pins[vcpu]) or "any CPU"
            live.steps.append(LiveStep(guest, host, ("vcpupin", guest, str(vcpu), format_cpulist(want_pins[vcpu]),
                                                     "--live"),
                                       f"vCPU {vcpu} on {old} -> {format_cpulist(want_pins[vcpu])}"))
    want_emu, have_emu = want.emulator, have.emulator
    if want_emu and want_emu != have_emu:
        live.steps.append(LiveStep(guest, host, ("emulatorpin", guest, format_cpulist(want_emu), "--live"),
                                   f"emulator threads on {format_cpulist(have_emu) or 'any CPU'} -> "
                                   f"{format_cpulist(want_emu)}"))
    if (len(live.steps), len(live.restarts)) == before:
        live.unchanged.append(guest)


def live_changes(plan: str | Path, domains: list[str | Path], host: str | None = None) -> LivePlan:
    """The live commands and the restart list for the guests of ``plan`` whose running domain XML is under
    ``domains`` (only those the plan puts on ``host``, when given)."""
    plan_json, planned = _read_plan(plan)
    hosts = {h for h, _ in planned.values()}
    current = _read_domains(list(domains), hosts)
    live = LivePlan(plan=str(plan_json))
    for guest in sorted(planned, key=lambda g: (planned[g][0], g)):
        plan_host, want = planned[guest]
        if host is not None and plan_host != host:
            continue
        if guest not in current:
            live.missing.append(guest)
            continue
        have_host, have, _ = current[guest]
        if have.get("id") is None:
            live.not_running.append(guest)
            continue
        if have_host is not None and have_host != plan_host:
            live.restarts.append(Restart(guest, plan_host, f"host {have_host} -> {plan_host}",
                                         "another host: migrate it (virsh migrate --live --xml with the plan's "
                                         "XML) or define and start it there"))
            continue
        _guest_changes(live, guest, plan_host, want, have)
    return live
