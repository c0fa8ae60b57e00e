"""Commands for real hosts and deployed guests, registered on the ``vplan`` app by ``planner.cli.main``:

* ``vplan host import FILE... [-o models/NAME.yaml]``  a host capture → a scenario-v1 host model (``planner.hostimport.capture``)
* ``vplan check [SCENARIO] --domains DIR``                  audit deployed domain XML (``planner.verify.audit``)
* ``vplan apply PLAN --domains DIR -o OUT``                 merge a plan into full domain XMLs (``planner.libvirt.apply``);
  ``--live``: virsh commands for the running guests and what needs a restart (``planner.libvirt.live``)
* ``vplan hugepages PLAN``                                  hugepage pools a plan needs and their settings

Exit status: 0 success / clean, 1 findings (``check``) or a catalogue file out of date (``host import --check``),
2 bad input (one line per problem, naming the file and what is wrong; nothing written).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import List, Optional

import typer

from planner.cli.common import EXIT_FINDINGS, EXIT_INPUT, EXIT_OK

host_app = typer.Typer(add_completion=False, no_args_is_help=True,
                       help="Real hosts: import a host's topology capture as a host model.")


def _fail(lines) -> None:
    for line in lines:
        print(line, file=sys.stderr)
    raise typer.Exit(EXIT_INPUT)


# ---------------------------------------------------------------------------------------------------------------
# vplan host import


def _parse_memory_overrides(values: list[str]) -> int | dict[int, int] | None:
    from planner.model.units import parse_memory_kib

    single: int | None = None
    per_node: dict[int, int] = {}
    for value in values:
        try:
            if "=" in value:
                node, size = value.split("=", 1)
                per_node[int(node)] = parse_memory_kib(size.strip(), allow_zero=True)
            else:
                single = parse_memory_kib(value.strip())
        except ValueError as exc:
            _fail([f"--memory {value}: {exc} (expected SIZE for every node without memory, or NODE=SIZE)"])
    if single is not None and per_node:
        _fail(["--memory: give either one SIZE (every node the capture gives no memory for) or NODE=SIZE values"])
    return per_node or single


def _parse_hugepage_overrides(values: list[str]) -> dict[int, dict[int, int]]:
    from planner.model.units import parse_page_kib

    result: dict[int, dict[int, int]] = {}
    for value in values:
        try:
            node_text, rest = value.split(":", 1)
            size_text, count_text = rest.split("=", 1)
            node, size, count = int(node_text), parse_page_kib(size_text.strip()), int(count_text)
            if node < 0 or count < 0:
                raise ValueError("negative")
        except ValueError:
            _fail([f"--hugepages {value}: expected NODE:SIZE=PAGES, e.g. 0:1G=8"])
        result.setdefault(node, {})[size] = count
    return result


def _command_line(files: list[str], options: list[tuple[str, str | None]]) -> str:
    parts = ["vplan", "host", "import", *files]
    for flag, value in options:
        parts.append(flag)
        if value is not None:
            parts.append(value)
    return " ".join(shlex.quote(p) for p in parts)


@host_app.command("import", epilog="Examples:\n\n  vplan host import host.xml --reserved-cpus 0,72 --reserved-memory 2GiB -o models/hosts/r650.yaml\n\n  vplan host import host.txt host.txt.lscpu")
def host_import(
    files: List[Path] = typer.Argument(..., metavar="CAPTURE [LSCPU]", help="one capture (virsh capabilities XML, numactl --hardware output, or a "
                                                 "sysfs snapshot directory/tarball), optionally with an lscpu -p file"),
    out: Optional[Path] = typer.Option(None, "-o", "--out", metavar="FILE.yaml", help="host model file to write (default: print it)"),
    name: Optional[str] = typer.Option(None, "--name", help="model name (default: the output or capture file stem)"),
    threads_per_core: Optional[int] = typer.Option(None, "--threads-per-core",
                                                   help="SMT threads per core where the capture has no siblings"),
    lscpu: Optional[Path] = typer.Option(None, "--lscpu", help="an lscpu -p file giving the siblings"),
    memory: List[str] = typer.Option([], "--memory", help="SIZE for every node the capture gives no memory for, or "
                                                          "NODE=SIZE (repeatable)"),
    hugepages: List[str] = typer.Option([], "--hugepages", help="pool override NODE:SIZE=PAGES, e.g. 0:1G=8 "
                                                                "(repeatable)"),
    reserved_cpus: Optional[str] = typer.Option(None, "--reserved-cpus", help="CPUs kept for the host, e.g. 0,72"),
    reserved_memory: Optional[str] = typer.Option(None, "--reserved-memory",
                                                  help="memory kept free per node with memory, e.g. 2GiB"),
    arch: Optional[str] = typer.Option(None, "--arch", help="architecture where the capture does not say"),
    source: Optional[str] = typer.Option(None, "--source", help="where the capture comes from (for the header)"),
    note: List[str] = typer.Option([], "--note", help="a header line of your own (repeatable)"),
    check: bool = typer.Option(False, "--check", help="do not write: exit 1 if the -o file differs from the import"),
    force: bool = typer.Option(False, "--force", help="an -o file vplan did not write is renamed aside to FILE.old "
                                                      "instead of refused"),
) -> None:
    """Import a host's NUMA topology from a capture and write a scenario-v1 host model with a header naming its
    source. Capture commands: `virsh capabilities > host.xml`, `numactl --hardware > host.txt` (plus
    `lscpu -p > host.txt.lscpu` for the siblings), or the sysfs snapshot of the README."""
    from planner.hostimport import capture as hostimport

    capture_file, lscpu_path = _capture_and_lscpu(files, lscpu)
    options, overrides = _host_import_options(
        name=name, threads_per_core=threads_per_core, lscpu=lscpu, memory=memory, hugepages=hugepages,
        reserved_cpus=reserved_cpus, reserved_memory=reserved_memory, arch=arch, source=source, note=note, out=out)
    inputs = [*files, *([lscpu] if lscpu else [])]
    if out is not None and not check:
        from planner.files.atomic import OutputError, check_output_file

        try:
            check_output_file(out, inputs=inputs, force=force)
        except OutputError as exc:
            _fail(exc.problems)
    try:
        imported = hostimport.import_host(
            str(capture_file), name=name or (out.stem if out is not None else None), lscpu=lscpu_path,
            threads_per_core=threads_per_core, memory=_parse_memory_overrides(memory),
            hugepages=_parse_hugepage_overrides(hugepages), arch=arch, style="cli", **overrides)
    except hostimport.CaptureError as exc:
        _fail([str(exc)])
    command = _command_line([str(f) for f in files], options)
    text = imported.yaml_text(source=source, command=command, extra=note)
    for warning in imported.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    model = imported.model
    summary = (f"{capture_file}: {len(model.nodes)} node{'s' if len(model.nodes) != 1 else ''}, {model.cpu_count} "
               f"CPUs, {len(model.cores)} cores, {model.arch}")
    if check:
        _check_host_model(out, text, command, summary, capture_file)
    _write_host_model(out, text, summary, inputs, force)


def _capture_and_lscpu(files: List[Path], lscpu: Optional[Path]) -> tuple[Path, str | None]:
    """The one capture among ``files`` (each told by its content) and the lscpu -p file, if any (``--lscpu`` or
    a file argument, not both)."""
    from planner.hostimport import capture as hostimport

    captures, lscpu_files = [], []
    for f in files:
        try:
            kind = hostimport.detect_kind(str(f))
        except hostimport.CaptureError as exc:
            _fail([str(exc)])
        (lscpu_files if kind == "lscpu" else captures).append(f)
    if len(captures) != 1:
        _fail([f"give exactly one capture (got {len(captures)}: {', '.join(map(str, captures)) or 'none'}); an "
               "lscpu -p file may come with it"])
    if len(lscpu_files) + (lscpu is not None) > 1:
        _fail(["give at most one lscpu -p file"])
    lscpu_path = str(lscpu) if lscpu is not None else (str(lscpu_files[0]) if lscpu_files else None)
    return captures[0], lscpu_path


def _host_import_options(*, name: Optional[str], threads_per_core: Optional[int], lscpu: Optional[Path],
                         memory: List[str], hugepages: List[str], reserved_cpus: Optional[str],
                         reserved_memory: Optional[str], arch: Optional[str], source: Optional[str],
                         note: List[str], out: Optional[Path]) -> tuple[list[tuple[str, str | None]], dict]:
    """The options as given (for the header's regenerate command, in this order) and the reserved CPUs/memory
    parsed into ``build_model`` overrides."""
    from planner.model.units import parse_cpulist, parse_memory_kib

    options: list[tuple[str, str | None]] = []
    if name:
        options.append(("--name", name))
    if threads_per_core is not None:
        options.append(("--threads-per-core", str(threads_per_core)))
    if lscpu is not None:
        options.append(("--lscpu", str(lscpu)))
    options += [("--memory", value) for value in memory]
    options += [("--hugepages", value) for value in hugepages]
    overrides: dict = {}
    if reserved_cpus is not None:
        try:
            overrides["reserved_cpus"] = parse_cpulist(reserved_cpus)
        except ValueError as exc:
            _fail([f"--reserved-cpus: {exc}"])
        options.append(("--reserved-cpus", reserved_cpus))
    if reserved_memory is not None:
        try:
            overrides["reserved_memory_kib"] = parse_memory_kib(reserved_memory, allow_zero=True)
        except ValueError as exc:
            _fail([f"--reserved-memory: {exc}"])
        options.append(("--reserved-memory", reserved_memory))
    if arch is not None:
        options.append(("--arch", arch))
    if source is not None:
        options.append(("--source", source))
    options += [("--note", value) for value in note]
    if out is not None:
        options.append(("-o", str(out)))
    return options, overrides


def _check_host_model(out: Optional[Path], text: str, command: str, summary: str, capture_file: Path) -> None:
    """``--check``: exit 0 when the -o file holds ``text``, else 1 with the command that regenerates it."""
    if out is None:
        _fail(["--check needs -o FILE (the file to compare)"])
    current = out.read_text(encoding="utf-8") if out.is_file() else None
    if current == text:
        print(f"{out}: up to date ({summary})", file=sys.stderr)
        raise typer.Exit(EXIT_OK)
    print(f"{out}: differs from the import of {capture_file}: regenerate with: {command}", file=sys.stderr)
    raise typer.Exit(EXIT_FINDINGS)


def _write_host_model(out: Optional[Path], text: str, summary: str, inputs: list, force: bool) -> None:
    """The model to standard output, or written atomically to ``out`` (a file vplan did not write is refused, or
    renamed aside with ``force``)."""
    if out is None:
        sys.stdout.write(text)
        return
    from planner.files.atomic import OutputError, write_file_atomically

    try:
        written = write_file_atomically(out, text, inputs=inputs, force=force)
    except OutputError as exc:
        _fail(exc.problems)
    if written.moved_aside is not None:
        print(f"{out}: was not written by vplan: renamed it to {written.moved_aside} (--force)", file=sys.stderr)
    print(f"wrote {out} ({summary})", file=sys.stderr)


# ---------------------------------------------------------------------------------------------------------------
# vplan check


def check(
    scenario: Optional[Path] = typer.Argument(None, metavar="[SCENARIO.yaml]", help="scenario whose host_models/hosts describe the hosts (its "
                                                         "guests, if any, give policies the XML cannot say)"),
    domains: List[Path] = typer.Option([], "--domains", "-d", metavar="DIR", help="DIR/HOST/*.xml, a vplan solve output dir, a "
                                                                   "directory of *.xml or a file (repeatable)"),
    host: List[str] = typer.Option([], "--host", metavar="NAME=PATH", help="NAME=PATH: a host from a host model YAML or a capture "
                                                      "(repeatable; instead of or beside SCENARIO)"),
    maps: List[str] = typer.Option([], "--map", metavar="GUEST=HOST", help="GUEST=HOST for domain files outside a host directory"),
    map_file: Optional[Path] = typer.Option(None, "--map-file", help="guest → host mapping file (YAML or lines)"),
    loads: Optional[Path] = typer.Option(None, "--loads", help="guest → expected load file (YAML or lines)"),
    as_json: bool = typer.Option(False, "--json", help="findings as JSON"),
    to_scenario: Optional[Path] = typer.Option(None, "--to-scenario", help="write the found placement as a "
                                                                          "scenario (guests fixed with host:)"),
    force: bool = typer.Option(False, "--force", help="a --to-scenario file vplan did not write is renamed aside "
                                                      "to FILE.old instead of refused"),
) -> None:
    """Audit deployed guests: every breach of the hard rules in their domain XML, with guest, host, node and
    numbers. Exit 0 clean, 1 findings, 2 bad input."""
    from planner.verify import audit as audit_mod

    inputs = [p for p in (scenario, map_file, loads, *domains) if p is not None]
    inputs += [item.split("=", 1)[1].strip() for item in host if "=" in item]
    if to_scenario is not None:
        from planner.files.atomic import OutputError, check_output_file

        try:
            check_output_file(to_scenario, inputs=inputs, force=force)
        except OutputError as exc:
            _fail(exc.problems)
    sc = _hosts_scenario(scenario, host)
    mapping: dict[str, str] = {}
    try:
        if map_file is not None:
            mapping.update(audit_mod.read_mapping(str(map_file)))
        for item in maps:
            if "=" not in item:
                _fail([f"--map {item}: expected GUEST=HOST"])
            guest, host_name = item.split("=", 1)
            mapping[guest.strip()] = host_name.strip()
        if not domains:
            _fail(["give the domain XML with --domains DIR (DIR/HOST/*.xml) or files with --map GUEST=HOST"])
        found = audit_mod.read_domains([str(d) for d in domains], mapping)
        load_map = audit_mod.read_loads(str(loads)) if loads is not None else None
        result = audit_mod.audit(sc, found, load_map)
    except audit_mod.AuditInputError as exc:
        _fail(exc.problems)
    _check_evacuations(result, domains)
    if as_json:
        sys.stdout.write(json.dumps(result.document(), indent=2) + "\n")
    else:
        sys.stdout.write(result.text())
    if to_scenario is not None:
        from planner.files.atomic import OutputError, write_file_atomically

        try:
            written = write_file_atomically(to_scenario, result.scenario_yaml(), inputs=inputs, force=force)
        except OutputError as exc:
            _fail(exc.problems)
        if written.moved_aside is not None:
            print(f"{to_scenario}: was not written by vplan: renamed it to {written.moved_aside} (--force)",
                  file=sys.stderr)
        print(f"wrote {to_scenario}", file=sys.stderr)
    raise typer.Exit(EXIT_OK if result.clean else EXIT_FINDINGS)


def _check_evacuations(result, domains: List[Path]) -> None:
    """A --domains DIR that is a vplan solve output with evacuations (policy.survive): each failure's evacuated
    fleet is judged too (findings named after the failure)."""
    from planner.files.planfile import PlanFileError
    from planner.verify.audit import Finding
    from planner.verify.evaccheck import EvacuationFileError, check_plan_evacuations

    for d in domains:
        if not (d.is_dir() and (d / "plan.json").is_file()):
            continue
        try:
            found = check_plan_evacuations(result.plan, d)
        except (EvacuationFileError, PlanFileError) as exc:
            _fail([str(exc)])
        result.findings.extend(Finding(v.rule, v.guest, v.host, v.node, v.message) for v in found)


def _hosts_scenario(scenario: Optional[Path], hosts: list[str]):
    """The scenario of the hosts: SCENARIO, plus --host NAME=PATH hosts (a model YAML or a capture)."""
    import tempfile

    import yaml

    from planner.io.loader import ScenarioError, load_scenario, load_scenario_text
    from planner.model.scenario import Scenario

    if scenario is None and not hosts:
        _fail(["give the hosts: a SCENARIO file (host_models and hosts) or --host NAME=PATH"])
    try:
        base = load_scenario(scenario) if scenario is not None else None
    except ScenarioError as exc:
        _fail(exc.problems)
    if not hosts:
        return base
    models: dict = {}
    entries = []
    for item in hosts:
        if "=" not in item:
            _fail([f"--host {item}: expected NAME=PATH (a host model YAML or a capture)"])
        host_name, path = (x.strip() for x in item.split("=", 1))
        absolute = os.path.abspath(path)
        if path.endswith((".yaml", ".yml")):
            models[f"m-{host_name}"] = {"include": absolute}
        else:
            from planner.hostimport.capture import CaptureError, detect_kind

            try:
                kind = detect_kind(absolute)
            except CaptureError as exc:
                _fail([str(exc)])
            models[f"m-{host_name}"] = {kind: absolute}
        entries.append({"name": host_name, "model": f"m-{host_name}"})
    text = yaml.safe_dump({"version": 1, "name": "hosts", "host_models": models, "hosts": entries, "guests": []})
    try:
        extra = load_scenario_text(text, filename="--host", base_dir=tempfile.gettempdir())
    except ScenarioError as exc:
        _fail(exc.problems)
    if base is None:
        return extra
    clash = sorted(set(base.host_by_name) & set(extra.host_by_name))
    if clash:
        _fail([f"--host {', '.join(clash)}: already a host of {scenario}"])
    return Scenario(name=base.name, policy=base.policy, host_models={**base.host_models, **extra.host_models},
                    hosts=base.hosts + extra.hosts, guests=base.guests, path=base.path)


# ---------------------------------------------------------------------------------------------------------------
# vplan apply


def _plan_dir(plan: Path) -> Path:
    """PLAN may be vplan solve's output directory or its plan.json."""
    from planner.libvirt.live import plan_files

    if plan.is_file() and plan.name != "plan.json":
        _fail([f"{plan}: PLAN is vplan solve's output directory or its plan.json"])
    return plan_files(plan)[0]


def _live(plan: Path, domains: Path, out: Optional[Path], host: Optional[str], as_json: bool) -> None:
    """``vplan apply --live``: the virsh commands for the running guests, and what needs a restart."""
    from planner.libvirt.live import LiveError, live_changes

    try:
        live = live_changes(plan, [domains], host=host)
    except LiveError as exc:
        _fail(exc.problems)
    text = json.dumps(live.document(), indent=2) + "\n" if as_json else live.script()
    if out is None:
        sys.stdout.write(text)
    else:
        if out.is_dir():
            _fail([f"{out}: is a directory (with --live, -o names the script file to write)"])
        tmp = out.with_name(f".{out.name}.vplan-tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(0o755)
        os.replace(tmp, out)
        print(f"wrote {out}", file=sys.stderr)
    print(f"{len(live.steps)} live commands for {len({s.guest for s in live.steps})} guests; "
          f"{len(live.restarts)} changes need a restart or a migration"
          + "".join(f"\n  {r.guest} on {r.host}: {r.what}: {r.why}" for r in live.restarts), file=sys.stderr)


def apply(
    plan: Path = typer.Argument(..., metavar="PLAN", help="vplan solve's output directory (plan.json, "
                                "hosts/HOST/GUEST.xml) or its plan.json"),
    domains: Path = typer.Option(..., "--domains", "-d", help="directory of the existing domain XMLs (searched "
                                                              "recursively, matched by <name>); with --live: the "
                                                              "running guests' virsh dumpxml"),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="directory for the merged XMLs (same relative "
                                                                 "paths; replaced atomically); with --live: the "
                                                                 "script file (default: print it)"),
    in_place: bool = typer.Option(False, "--in-place", help="edit the files in DIR, keeping FILE.xml.bak (or "
                                                            "FILE.xml.bak.N: a backup is never overwritten)"),
    force: bool = typer.Option(False, "--force", help="an OUT vplan did not write is renamed aside to OUT.old "
                                                      "instead of refused"),
    live: bool = typer.Option(False, "--live", help="print the virsh commands that bring the running guests "
                                                    "(DIR: their dumpxml) to the plan without a restart, and list "
                                                    "what needs a restart or a migration"),
    host: Optional[str] = typer.Option(None, "--host", help="with --live: only the guests the plan puts on HOST"),
    as_json: bool = typer.Option(False, "--json", help="with --live: the commands and restarts as JSON"),
) -> None:
    """Merge a plan into existing full domain XMLs: replace exactly <vcpu>, the pins in <cputune>, <numatune>,
    <cpu><topology>/<numa> and <memoryBacking><hugepages>; keep everything else byte for byte. With --live:
    the virsh commands for the running guests instead (vcpupin, emulatorpin, numatune --live)."""
    from planner.libvirt.apply import ApplyError, apply_plan

    if live:
        if in_place:
            _fail(["--live changes running guests; it does not edit files (drop --in-place)"])
        _live(plan, domains, out, host, as_json)
        return
    if host is not None or as_json:
        _fail(["--host and --json go with --live"])
    plan = _plan_dir(plan)
    if in_place == (out is not None):
        _fail(["give either -o OUT (write merged copies) or --in-place (edit DIR, keeping .bak files)"])
    try:
        result = apply_plan(plan, domains, out, in_place=in_place, force=force)
    except ApplyError as exc:
        _fail(exc.problems)
    for guest, path in sorted(result.written.items()):
        backup = result.backups.get(guest)
        print(f"{guest}: {path}" + (f" (backup {backup})" if backup else ""))
    if result.moved_aside:
        print(f"{out}: was not written by vplan: renamed it to {result.moved_aside} (--force)", file=sys.stderr)
    print(f"merged {len(result.written)} domains" + (f" into {out}" if out is not None else " in place"),
          file=sys.stderr)
    if result.unchanged:
        print(f"{len(result.unchanged)} domains already as planned (not rewritten, no backup): "
              f"{', '.join(result.unchanged)}", file=sys.stderr)
    if result.missing:
        print(f"{len(result.missing)} planned guests have no domain XML in {domains}: {', '.join(result.missing)}",
              file=sys.stderr)
    if result.not_in_plan:
        print(f"{len(result.not_in_plan)} domain files are not in the plan (not written): "
              f"{', '.join(result.not_in_plan)}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------------------------
# vplan hugepages


def hugepages(
    plan: Path = typer.Argument(..., metavar="PLAN", help="vplan solve's output directory or its plan.json"),
    as_json: bool = typer.Option(False, "--json", help="as JSON"),
) -> None:
    """Hugepages each host node needs per page size, with the kernel command line for boot-time gigantic pages
    and the per-node /sys/devices/system/node/nodeN/hugepages/hugepages-SIZEkB/nr_hugepages values."""
    from planner.libvirt.hugepages import HugepageError, read_plan_pages

    try:
        pages = read_plan_pages(_plan_dir(plan))
    except HugepageError as exc:
        _fail([str(exc)])
    if as_json:
        sys.stdout.write(json.dumps(pages.document(), indent=2) + "\n")
    else:
        sys.stdout.write(pages.text())


def register(app: typer.Typer) -> None:
    """Add ``host import``, ``check``, ``apply`` and ``hugepages`` to the ``vplan`` app."""
    app.add_typer(host_app, name="host")
    app.command("check", epilog="Examples:\n\n  vplan check scenarios/quickstart.yaml --domains out/\n\n"
                "  vplan check --host kvm1=host.xml --domains /etc/libvirt/qemu --map-file map.txt --json")(check)
    app.command("apply", epilog="Example:\n\n  vplan apply out/ --domains /etc/libvirt/qemu -o merged/")(apply)
    app.command("hugepages", epilog="Example:\n\n  vplan hugepages out/ --json")(hugepages)
