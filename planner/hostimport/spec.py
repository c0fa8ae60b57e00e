"""An imported host (:class:`Imported`) and its host model as scenario-v1 YAML: the mapping (:func:`model_spec`),
the catalogue's compact lines (:func:`spec_lines`) and the file with its header (:func:`spec_yaml`)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from planner.hostimport.captured import Capture, mem_text
from planner.hostimport.siblings import derived_groups
from planner.model.scenario import HostModel
from planner.model.units import format_cpulist, format_page


@dataclass
class Imported:
    model: HostModel
    spec: dict  # the host model mapping (scenario v1), values in YAML-ready form
    capture: Capture
    notes: list[str]  # what the model says and where it came from (header lines)
    choices: list[str]  # planning choices given as overrides (header lines)
    warnings: list[str]  # things a user should look at (also printed by the CLI)

    def yaml_text(self, source: str | None = None, command: str | None = None, extra: Iterable[str] = ()) -> str:
        return spec_yaml(self, source=source, command=command, extra=extra)


def model_spec(model: HostModel, distances: bool = True) -> dict:
    """The scenario-v1 mapping of a host model (CPU lists as strings, memory with units, pools by size,
    ``threads_per_core`` where the groups follow the rule, else ``cores``)."""
    spec: dict = {}
    if model.arch != "x86_64":
        spec["arch"] = model.arch
    nodes = []
    for node in model.nodes:
        item: dict = {"id": node.id, "cpus": format_cpulist(node.cpus),
                      "memory": mem_text(node.memory_kib) if node.memory_kib else 0}
        if node.hugepages:
            item["hugepages"] = {format_page(s): c for s, c in sorted(node.hugepages.items(), key=lambda kv: -kv[0])}
        nodes.append(item)
    spec["nodes"] = nodes
    if distances:
        spec["distances"] = [list(row) for row in model.distances]
    cpus = sorted(c for n in model.nodes for c in n.cpus)
    sizes = {len(c) for c in model.cores}
    threads = None
    if len(sizes) <= 1:
        t = sizes.pop() if sizes else 1
        derived = derived_groups(cpus, t)
        if derived is not None and sorted(derived) == sorted(model.cores):
            threads = t
    if threads is not None:
        spec["threads_per_core"] = threads
    else:
        spec["cores"] = [list(c) for c in model.cores]
    if model.reserved_cpus or model.reserved_memory_kib:
        spec["reserved"] = {"cpus": format_cpulist(model.reserved_cpus),
                            "memory": mem_text(model.reserved_memory_kib)}
    return spec


def _flow(value) -> str:
    """A compact YAML flow value (strings quoted)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, str) and (value == "" or re.fullmatch(r"[0-9,\-]+", value)):
        return f'"{value}"'
    return str(value)


def spec_lines(spec: Mapping) -> list[str]:
    """The YAML lines of a host model mapping, in the catalogue's compact style."""
    lines: list[str] = []
    if "arch" in spec:
        lines.append(f"arch: {spec['arch']}")
    lines.append("nodes:")
    for node in spec["nodes"]:
        lines.append(f"  - {_flow(node)}")
    if "distances" in spec:
        rows = spec["distances"]
        if len(rows) <= 4:
            lines.append(f"distances: {_flow(rows)}")
        else:
            lines.append("distances:")
            lines.extend(f"  - {_flow(row)}" for row in rows)
    if "threads_per_core" in spec:
        lines.append(f"threads_per_core: {spec['threads_per_core']}")
    if "cores" in spec:
        lines.extend(_cores_lines(spec["cores"]))
    if "reserved" in spec:
        lines.append(f"reserved: {_flow(spec['reserved'])}")
    return lines


def _cores_lines(cores: list) -> list[str]:
    """``cores: [[0, 1], ...]`` wrapped before 116 characters, continuation lines indented under the bracket."""
    if not cores:
        return ["cores: []"]
    text = [_flow(c) for c in cores]
    out, line = [], "cores: ["
    for i, item in enumerate(text):
        piece = item + (", " if i < len(text) - 1 else "]")
        if len(line) + len(piece) > 116 and line.strip() not in ("cores: [",):
            out.append(line.rstrip())
            line = "        "
        line += piece
    out.append(line)
    return out


def _wrap_comment(text: str, width: int = 116, indent: str = "") -> list[str]:
    """``# text`` wrapped at ``width``; continuation lines indented two more spaces."""
    lines: list[str] = []
    line = indent
    for word in text.split():
        if len(line) + len(word) + 1 > width - 2 and line.strip():
            lines.append(line.rstrip())
            line = indent + "  "
        line += word + " "
    if line.strip():
        lines.append(line.rstrip())
    return ["# " + x for x in lines]


def spec_yaml(imported: Imported, source: str | None = None, command: str | None = None,
              extra: Iterable[str] = ()) -> str:
    """The host model as YAML with a header comment: title, source, what the capture gave, quirks, planning
    choices (the overrides) and the command that regenerates the file."""
    model = imported.model
    capture = imported.capture
    threads = sorted({len(c) for c in model.cores})
    word = "thread" if threads == [1] else "threads"
    title = (f"{model.name}: {len(model.nodes)} node{'s' if len(model.nodes) != 1 else ''}, {model.cpu_count} CPUs, "
             f"{len(model.cores)} cores ({'/'.join(map(str, threads)) or '0'} {word} per core), {model.arch}. "
             "Made by `vplan host import` from a capture: regenerate it rather than edit it.")
    header: list[str] = []
    header += _wrap_comment(title)
    header.append("#")
    if source:
        header += _wrap_comment(f"Source: {source}")
        header += _wrap_comment(f"Capture file: {capture.path}")
    else:
        header += _wrap_comment(f"Source: the capture file {capture.path}")
    for line in imported.notes:
        sub = line.startswith("  ")
        header += _wrap_comment(line.strip(), indent="  " if sub else "")
    for line in extra:
        header += _wrap_comment(line)
    header.append("#")
    if imported.choices:
        header += _wrap_comment("Planning choices (importer overrides, not from the capture): "
                                + "; ".join(imported.choices) + ".")
    else:
        header.append("# Planning choices: none (everything is from the capture).")
    if command:
        header.append("# Regenerate:")
        header += _wrap_comment(command, indent="  ")
    return "\n".join(header + spec_lines(imported.spec)) + "\n"
