"""Read a scenario file (format v1, see the spec ``scenario-v1.md``) into a frozen :class:`planner.model.scenario.Scenario`.

Everything a user can get wrong is reported, all at once, as one :class:`ScenarioError` whose ``problems`` are
complete lines of the form::

    FILE: key.path: what is wrong
    quick.yaml: host_models.r650.nodes[1].cpus: '8-15,^9x' is not a CPU list (expected e.g. '0-3,8,^2')
    quick.yaml: guests[2] (db1).threads: only a dedicated guest has threads (this guest is cpu: shared)

FILE is the path as the user gave it (for an included host model, the included file and the key path inside it);
list items that carry a name show it in brackets. No traceback and no library error text reaches the user.

The work goes in stages, one function per section of the spec:

1. YAML: a ``yaml.SafeLoader`` subclass (no tags that construct objects); the composed node tree is walked once
   to find duplicate keys and refused tags with their key path and line, then constructed.
2. ``_policy``, ``_host_model`` (with ``_nodes``, ``_distances``, ``_cores``, ``_reserved`` and includes),
   ``_hosts``, ``_guests``: structure, unknown and missing keys, values, units and per-item rules. Each mapping
   of the file is a pydantic model of ``planner.io.schema`` (``extra="forbid"``; its field validators are the value
   parsers of ``planner.io.values``), run by ``_checked``, which turns pydantic's error locations into key paths
   with the same messages. What the models leave to this module: rules between keys and items (cells that add up,
   threads only for dedicated guests, whole pages, node ids and CPUs used once, the free memory of a node,
   distances and SMT siblings against the nodes, reserved CPUs in the model), references (a host's model, a
   guest's fixed host, page sizes some model lists), files (includes, host captures, domain templates) and the
   values of ``distances``, ``cores``, ``threads_per_core``, ``arch`` and hugepage pools (which depend on the
   nodes, or whose messages come in the order of those checks).
3. ``_cross_checks``: unique names, the input errors of hard rules 1 and 7 (too many vCPUs for any host or for the
   fixed host, fixed guests sharing an anti-affinity tag on one host, fixed guests above their host's vCPU cap).

Host captures (``_capture_model``): a host model may name a capture of a real host instead of giving ``nodes``,
``distances`` and ``cores``::

    host_models:
      r650: {capabilities: caps/r650.xml, reserved: {cpus: "0,72", memory: 2GiB}, hugepages: {0: {1G: 8}}}
      old:  {capabilities: caps/old.xml, memory: 64GiB}          # older libvirt: no <memory> in the cells
      e7:   {numactl: e7.txt, threads_per_core: 2}                # numactl has no SMT siblings
      box:  {sysfs: box-sysfs.tgz, arch: aarch64}

* exactly one of ``capabilities`` (``virsh capabilities`` XML), ``numactl`` (``numactl --hardware`` output) or
  ``sysfs`` (a snapshot directory or tarball); the path is relative to the file that names it (the scenario, or the
  included host model file); the file's content must be of that kind;
* ``nodes``, ``distances`` and ``cores`` come from the capture and are refused beside it;
* optional overrides: ``reserved`` (as for any model), ``hugepages`` (per node id and page size, replacing the
  capture's count of that size: ``{0: {1G: 8}}``), ``memory`` (one size for every node the capture gives no memory
  for, or per node id ``{0: 64GiB}``, which also replaces a value the capture has), ``threads_per_core`` (where the
  capture has no siblings; must agree with them where it has), ``lscpu`` (an ``lscpu -p`` file for the siblings of
  a numactl capture; ``FILE.lscpu`` beside the capture is found without it) and ``arch`` (where the capture does
  not say; must agree where it does);
* everything else follows ``planner.hostimport.capture`` (pools include empty ones of every size the host lists, default
  distances 10/20 when the capture has none, sibling groups inside one node, ...). Its errors are reported at the
  capture key (or at the override they are about) and name the capture file and what to add, e.g.
  ``s.yaml: host_models.old.capabilities: caps/old.xml: no memory for nodes 0-3 (...): give the node memory,
  memory: 64GiB (every node without one) or memory: {0: 64GiB} (per node) in this host model``.

``hugepages``, ``memory`` and ``lscpu`` are refused in a model without a capture (nodes carry their own).

A stage goes on after a problem wherever it can, and a later check skips what an earlier problem already made
unknowable, so that one mistake gives one message, not a cascade.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import yaml

from planner.files.safeio import InputFileError, read_input_text
from planner.io import schema
from planner.io.values import (
    _cpus,
    _cpus_text,
    _int,
    _memory,
    _num,
    _pattern,
    _show,
)
from planner.model.errors import VplanError
from planner.model.scenario import (
    DomainSettings,
    DomainTemplate,
    Guest,
    GuestCell,
    Host,
    HostModel,
    Node,
    Policy,
    Scenario,
)
from planner.model.units import (
    format_cpulist,
    format_memory,
    format_page,
    parse_page_kib,
    shorten,
)

__all__ = ["ScenarioError", "load_guest", "load_scenario", "load_scenario_text"]

MAX_PROBLEM_LINES = 200  # problems shown; the rest are counted

# The keys of each mapping are declared once, by the pydantic models of planner.io.schema.
TOP_KEYS = schema.keys(schema.ScenarioSpec)
POLICY_KEYS = schema.keys(schema.PolicySpec)
MODEL_KEYS = schema.keys(schema.HostModelSpec)
CAPTURE_KEYS = ("capabilities", "numactl", "sysfs")  # a host capture in place of nodes/distances/cores
CAPTURE_ONLY_KEYS = ("hugepages", "memory", "lscpu")  # overrides that only make sense with a capture
FROM_CAPTURE_KEYS = ("nodes", "distances", "cores")  # what a capture gives (not allowed beside one)
HOST_KEYS = schema.keys(schema.HostSpec)
GUEST_KEYS = schema.keys(schema.GuestSpec)
CELL_KEYS = schema.keys(schema.CellSpec)
DOMAIN_TYPES = schema.DOMAIN_TYPES
DOMAIN_CPU_MODES = schema.DOMAIN_CPU_MODES
MAX_TEMPLATE_BYTES = 1 << 20  # a domain XML is a few KiB; anything beyond 1 MiB is not one


class ScenarioError(VplanError):
    """A scenario that cannot be used. ``problems``: one complete line each, ``FILE: key.path: what is wrong``."""

    def __init__(self, problems: Iterable[str]):
        self.problems: list[str] = list(problems)
        super().__init__("\n".join(self.problems))


# --------------------------------------------------------------------------------------------------------------
# Where a value sits, and the problems found so far


@dataclass(frozen=True)
class Where:
    file: str
    path: str = ""

    def key(self, key: object) -> Where:
        text = key if isinstance(key, str) and re.fullmatch(r"[^\s.\[\]'\"]{1,40}", key) else _show(key, 40)
        return Where(self.file, f"{self.path}.{text}" if self.path else text)

    def item(self, index: int, label: object = None) -> Where:
        suffix = f" ({shorten(str(label))})" if label is not None else ""
        return Where(self.file, f"{self.path}[{index}]{suffix}")

    def line(self, message: str) -> str:
        return f"{self.file}: {self.path}: {message}" if self.path else f"{self.file}: {message}"


@dataclass
class Problems:
    lines: list[str] = field(default_factory=list)
    refused: set[Where] = field(default_factory=set)  # values already reported (refused tags): no follow-ups
    found: int = 0  # every problem found, also those not shown again (duplicates, follow-ups of refused values)
    hidden: int = 0  # problems past MAX_PROBLEM_LINES (counted, not shown)
    # files this load has read and parsed (an included host model file named twice is read once): path -> data
    included: dict[str, Any] = field(default_factory=dict)

    def shown(self) -> list[str]:
        more = [f"... and {self.hidden} more problems (the first {MAX_PROBLEM_LINES} are shown)"] if self.hidden else []
        return self.lines + more

    def add(self, where: Where, message: str) -> None:
        self.found += 1
        if len(self.lines) >= MAX_PROBLEM_LINES:
            self.hidden += 1
            return
        if "<refused>" in where.path:  # a key under a refused tag: reported already
            return
        for bad in self.refused:
            if bad.file == where.file and (where.path == bad.path or where.path.startswith(bad.path + ".")
                                           or where.path.startswith(bad.path + "[")):
                return
        line = where.line(message).replace("\r", "\\r").replace("\n", "\\n")  # one problem, one line
        if line not in self.lines:
            self.lines.append(line)

    def count(self) -> int:
        """Grows with every problem found: compare before/after a check to know whether it found any."""
        return self.found


class _Invalid:
    """Marks a value that was reported as wrong (so later checks skip it)."""

    def __repr__(self) -> str:
        return "<refused>"


INVALID: Any = _Invalid()
_DEFAULT: Any = object()  # a key left out




def _check(problems: Problems, where: Where, parse: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a value parser; a ``ValueError`` becomes a problem at ``where`` and the result is ``INVALID``."""
    try:
        return parse(*args, **kwargs)
    except ValueError as exc:
        problems.add(where, str(exc))
        return INVALID


def _foreign(data: object, known: tuple[str, ...], where: Where, what: str, problems: Problems,
             by: str = "") -> bool:
    """A file that is not ``what`` at all (not a mapping, or a mapping without one known key) gets one problem
    that shows none of its content (it may be any file: ``include: /etc/shadow``)."""
    if isinstance(data, dict) and any(isinstance(key, str) and key in known for key in data):
        return False
    if isinstance(data, dict):
        got = f"a mapping of {len(data)} keys, none of them known"
    else:
        got = "a list" if isinstance(data, list) else "text" if isinstance(data, str) else f"a {type(data).__name__}"
    problems.add(where, f"not {what}: the file holds {got} (expected a mapping with keys {', '.join(known[:6])}, "
                        f"...){by}")
    return True


def _list(problems: Problems, where: Where, raw: object, example: str) -> list:
    if not isinstance(raw, list):
        problems.add(where, f"expected a list, e.g. {example}, got {_show(raw)}")
        return []
    return raw


def _label(item: object) -> str | None:
    if isinstance(item, dict) and "name" in item and isinstance(item["name"], (str, int, float)):
        if not isinstance(item["name"], bool):
            return str(item["name"])
    return None




def _at(where: Where, loc: tuple) -> Where:
    """The place of an error location of ``schema.check_mapping`` (the keys of a mapping) below ``where``."""
    for part in loc:
        where = where.key(part)
    return where


def _checked(model: type, raw: object, where: Where, problems: Problems, *, required: tuple[str, ...] | None = None,
             context: dict | None = None, order: tuple[str, ...] | None = None,
             incomplete: bool = True, judge_values: bool = True) -> schema.CheckResult:
    """Validate a mapping with a model of ``planner.io.schema`` (unknown keys, missing keys, values) and add its
    problems at their key paths below ``where``."""
    result = schema.check_mapping(model, raw, required=required, context=context, order=order,
                                  incomplete=incomplete, judge_values=judge_values)
    for loc, message in result.problems:
        problems.add(_at(where, loc), message)
    return result


# --------------------------------------------------------------------------------------------------------------
# YAML


SAFE_TAGS = frozenset(tag for tag in yaml.SafeLoader.yaml_constructors if tag is not None)
MERGE_TAG = "tag:yaml.org,2002:merge"  # the '<<' key of a mapping, flattened by the loader


_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when PyYAML has it (fast)

MAX_SCENARIO_BYTES = 32 * 1024 * 1024  # a scenario or included model file; 150,000 guests take about 12 MiB
MAX_YAML_DEPTH = 64  # nesting of lists and mappings (a scenario needs about 6)
MAX_ALIAS_VALUES = 1_000_000  # values that aliases may add beyond twice the values written out


class _SafeLoader(_BaseLoader):
    """Safe loading (tags that construct objects are refused), plus a walk over the composed nodes that reports
    duplicate keys and refused tags with their key path and line."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        """The resolver's tag for a plain scalar, remembered per text (keys and values repeat in a scenario)."""
        if kind is not yaml.ScalarNode or not implicit[0]:
            return super().resolve(kind, value, implicit)
        cache = self.__dict__.setdefault("_tag_cache", {})
        key = (value, implicit[1])
        tag = cache.get(key)
        if tag is None:
            tag = cache[key] = super().resolve(kind, value, implicit)
        return tag

    def load_checked(self, problems: Problems, root: Where) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        if not _shape_ok(node, root.file, problems):
            return INVALID
        self._walk(node, root, problems, set())
        return self.construct_document(node)

    def _walk(self, node: yaml.Node, where: Where, problems: Problems, seen: set[int]) -> None:
        if id(node) in seen:  # an alias seen on this path: recursive data
            return
        if node.tag not in SAFE_TAGS:
            self._refuse(node, where, problems)
            return
        seen = seen | {id(node)}
        if isinstance(node, yaml.MappingNode):
            self._walk_mapping(node, where, problems, seen)
        elif isinstance(node, yaml.SequenceNode):
            for index, child in enumerate(node.value):
                if isinstance(child, yaml.ScalarNode) and child.tag in SAFE_TAGS:
                    continue
                self._walk(child, where.item(index, self._node_label(child)), problems, seen)

    def _walk_mapping(self, node: yaml.MappingNode, where: Where, problems: Problems, seen: set[int]) -> None:
        first_seen: dict[str, str] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
            mark = key_node.start_mark
            place = f"line {mark.line + 1}, column {mark.column + 1}"
            if key_node.tag not in SAFE_TAGS and key_node.tag != MERGE_TAG:
                self._refuse(key_node, where.key(key), problems)
                continue
            if key != "<<" and key in first_seen:
                problems.add(where.key(key), f"duplicate key '{key}' at {place} (first at {first_seen[key]})")
            first_seen.setdefault(key, place)
            if isinstance(value_node, yaml.ScalarNode) and value_node.tag in SAFE_TAGS:
                continue  # a plain value: nothing below it to check
            self._walk(value_node, where.key(key), problems, seen)

    @staticmethod
    def _refuse(node: yaml.Node, where: Where, problems: Problems) -> None:
        tag = node.tag
        shown = "!!" + tag[len("tag:yaml.org,2002:"):] if tag.startswith("tag:yaml.org,2002:") else tag
        problems.add(where, f"line {node.start_mark.line + 1}: YAML tag '{shown}' is not allowed (only plain YAML "
                            "data; tags that construct objects are refused)")
        problems.refused.add(where)

    @staticmethod
    def _node_label(node: yaml.Node) -> str | None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if getattr(key_node, "value", None) == "name" and isinstance(value_node, yaml.ScalarNode):
                    return value_node.value
        return None


# Tags other than the safe ones fall through to the ``None`` constructor; the walk reports them first.
_SafeLoader.add_constructor(None, lambda loader, node: INVALID)


def _parse_yaml(text: str, file: str, problems: Problems) -> Any:
    """The YAML data of ``text`` (``INVALID`` after a syntax error, which becomes a problem with its line)."""
    loader = None
    try:
        loader = _SafeLoader(text)
        return loader.load_checked(problems, Where(file))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = exc.problem or exc.context or "invalid YAML"
        if exc.problem and exc.context:
            what = f"{exc.problem} ({exc.context})"
        problems.add(Where(file), f"{where}YAML syntax error: {what}")
    except ValueError:  # PyYAML's int(): Python refuses to convert a very long digit string
        problems.add(Where(file), "a number in the file has too many digits")
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        problems.add(Where(file), f"line {line}: character #x{exc.character:04x} is not allowed in YAML "
                                   "(a control character)")
    except yaml.YAMLError as exc:  # pragma: no cover - every PyYAML error is one of the above
        problems.add(Where(file), f"YAML error: {exc}")
    finally:
        if loader is not None:
            loader.dispose()
    return INVALID


def _shape_ok(root: yaml.Node, file: str, problems: Problems) -> bool:
    """The composed node graph (an alias is the node it names, shared) before anything walks or builds it: nesting
    at most ``MAX_YAML_DEPTH`` deep, no alias inside the node it names, and aliases adding at most ``2 x written +
    MAX_ALIAS_VALUES`` values (a "billion laughs" document is refused here). One pass over the distinct nodes,
    without recursion; each node's size with aliases expanded is summed from its children's."""
    sizes: dict[int, int] = {}  # collections only (a scalar counts 1)
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, int, list | None]] = [(root, 1, None)]
    written = 0
    scalar = yaml.ScalarNode
    while stack:
        node, depth, children = stack.pop()
        key = id(node)
        if children is not None:  # all children done
            open_nodes.discard(key)
            size = 1 + sum(1 if type(child) is scalar else sizes[id(child)] for child in children)
            sizes[key] = size
            if size > 2 * written + MAX_ALIAS_VALUES:
                problems.add(Where(file), f"line {node.start_mark.line + 1}: aliases expand this node to {size:,} "
                                           f"values (aliases may add at most {MAX_ALIAS_VALUES:,} values beyond twice "
                                           "those written out): write the values out")
                return False
            continue
        if type(node) is scalar:
            written += 1
            continue
        if key in sizes:
            continue
        line = node.start_mark.line + 1
        if key in open_nodes:
            problems.add(Where(file), f"line {line}: an alias is inside the node it names (recursive data)")
            return False
        if depth > MAX_YAML_DEPTH:
            problems.add(Where(file), f"line {line}: lists and mappings nested more than {MAX_YAML_DEPTH} deep (a "
                                       "scenario needs a few levels)")
            return False
        kids = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else list(node.value)
        written += 1 + sum(1 for child in kids if type(child) is scalar)
        open_nodes.add(key)
        stack.append((node, depth, kids))
        stack.extend((child, depth + 1, None) for child in kids if type(child) is not scalar and id(child) not in sizes)
    return True


def yaml_shape_ok(text: str, file: str, problems: Problems) -> bool:
    """One pass over the YAML events (no tree built) before composing: nesting at most ``MAX_YAML_DEPTH`` deep,
    no alias inside the node it names, and aliases adding at most ``2 x written + MAX_ALIAS_VALUES`` values (a
    "billion laughs" document is refused at the alias that crosses the limit, in time linear in the file).
    A syntax error raises the parser's error, as the parse would."""
    loader = _BaseLoader(text)
    sizes: dict[str, int] = {}  # anchor -> values of the node it names (aliases expanded)
    stack: list[list] = []  # open collections: [anchor, values so far]
    written = expanded = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                if len(stack) >= MAX_YAML_DEPTH:
                    problems.add(Where(file), f"line {event.start_mark.line + 1}: lists and mappings nested more "
                                               f"than {MAX_YAML_DEPTH} deep (a scenario needs a few levels)")
                    return False
                written += 1
                expanded += 1
                stack.append([event.anchor, 1])
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                anchor, size = stack.pop()
                if anchor is not None:
                    sizes[anchor] = size
                if stack:
                    stack[-1][1] += size
            elif isinstance(event, yaml.ScalarEvent):
                written += 1
                expanded += 1
                if event.anchor is not None:
                    sizes[event.anchor] = 1
                if stack:
                    stack[-1][1] += 1
            elif isinstance(event, yaml.AliasEvent):
                line = event.start_mark.line + 1
                if event.anchor not in sizes:
                    if any(anchor == event.anchor for anchor, _ in stack):
                        problems.add(Where(file), f"line {line}: alias *{shorten(str(event.anchor))} is inside the "
                                                   "node it names (recursive data)")
                        return False
                    continue  # an undefined alias: the parse reports it
                size = sizes[event.anchor]
                expanded += size
                if stack:
                    stack[-1][1] += size
                if expanded > 2 * written + MAX_ALIAS_VALUES:
                    problems.add(Where(file), f"line {line}: alias *{shorten(str(event.anchor))} expands the document "
                                               f"to {expanded:,} values or more (aliases may add at most "
                                               f"{MAX_ALIAS_VALUES:,} values beyond twice those written out): write "
                                               "the values out")
                    return False
    finally:
        loader.dispose()
    return True


def _read(path: str) -> str:
    try:
        return read_input_text(path, MAX_SCENARIO_BYTES)
    except InputFileError as exc:
        raise ValueError(str(exc)) from None


# --------------------------------------------------------------------------------------------------------------
# Public API


def load_scenario(path: str | os.PathLike) -> Scenario:
    """Read and check the scenario file at ``path``; raise :class:`ScenarioError` with every problem found."""
    file = os.fspath(path)
    try:
        text = _read(file)
    except ValueError as exc:
        raise ScenarioError([f"{file}: {exc}"]) from None
    return load_scenario_text(text, filename=file, base_dir=os.path.dirname(file))


def load_scenario_text(text: str, filename: str = "<string>", base_dir: str | None = None) -> Scenario:
    """Like :func:`load_scenario` for YAML text. ``filename`` names it in messages; includes are relative to
    ``base_dir`` (default: the directory of ``filename``, or the current directory)."""
    if base_dir is None:
        base_dir = "" if filename.startswith("<") else os.path.dirname(filename)
    problems = Problems()
    data = _parse_yaml(text, filename, problems)
    scenario = None if data is INVALID else _scenario(data, Where(filename), base_dir, problems)
    if problems.count() or scenario is None:
        raise ScenarioError(problems.shown() or [f"{filename}: not a valid scenario"])
    return scenario


def load_guest(spec: dict[str, Any], policy: Policy | None = None, *, name: str | None = None,
               base_dir: str = "") -> Guest:
    """One guest from scenario guest keys, judged by the loader's one guest parser exactly as a guest item of a
    scenario (defaults, per-guest rules, ``vcpus: auto`` from ``policy``), outside a scenario: any fixed ``host``
    is taken (the caller's scenario judges it) and page sizes are not compared with host models. ``name``
    overrides ``spec["name"]``; a domain ``template`` is relative to ``base_dir``. Raises ``ValueError`` with
    every problem, ``guest NAME: key.path: what is wrong``, joined by ``; ``."""
    item = dict(spec) if name is None else {**spec, "name": name}
    shown = item.get("name") if isinstance(item.get("name"), str) else "?"
    problems = Problems()
    context = _GuestContext(policy=policy or Policy(), host_names=set(), pages={"pages_known": False},
                            templates=Templates(base_dir), any_host=True)
    _, guests = _guest(item, Where(f"guest {shorten(shown)}"), context, _Hosts(), problems)
    if problems.count() or len(guests) != 1:
        many = f"guest {shorten(shown)}: name: a pattern names {len(guests)} guests (give one name)"
        raise ValueError("; ".join(problems.shown()) or many)
    return guests[0]


# --------------------------------------------------------------------------------------------------------------
# Top level


@dataclass
class _Hosts:
    """Hosts as read, with what the cross-checks need."""

    hosts: list[Host] = field(default_factory=list)
    names: list[tuple[str, Where]] = field(default_factory=list)  # every host name, also of hosts with problems
    unresolved: bool = False  # some host or its model had a problem: skip checks that need every host


def _scenario(data: object, top: Where, base_dir: str, problems: Problems) -> Scenario | None:
    if data is None:
        problems.add(top, "the file is empty (expected a scenario: version, name, host_models, hosts, guests)")
        return None
    if isinstance(data, (dict, str)) and _foreign(data, TOP_KEYS, top, "a scenario", problems):
        return None
    checked = _checked(schema.ScenarioSpec, data, top, problems)
    if not checked.mapping:
        return None
    raw, name = data, checked.values.get("name", INVALID)
    policy = _policy(raw.get("policy", {}), top.key("policy"), problems)
    models, declared = _host_models(raw.get("host_models", {}), top.key("host_models"), base_dir, problems)
    hosts = _hosts(raw.get("hosts", []), top.key("hosts"), models, declared, problems)
    templates = Templates(base_dir)
    domain = read_domain_settings(raw["domain"], top.key("domain"), DomainSettings(), templates, problems) if "domain" in raw \
        else DomainSettings()
    guests, guest_names = _guests(raw.get("guests", []), top.key("guests"), policy, models, declared, hosts,
                                  problems, domain=DomainSettings() if domain is INVALID else domain,
                                  templates=templates)
    _unique(hosts.names, "host", problems)
    _unique(guest_names, "guest", problems)
    _cross_checks(policy, models, hosts, guests, problems)
    templates.check_uuids(guests, problems)
    if problems.count():
        return None
    return Scenario(name=name, policy=policy, host_models=models, hosts=tuple(hosts.hosts),
                    guests=tuple(g for g, _ in guests), path=None if top.file.startswith("<") else top.file)


# --------------------------------------------------------------------------------------------------------------
# policy


def _policy(raw: object, where: Where, problems: Problems) -> Policy:
    """The policy mapping (``schema.PolicySpec``); a wrong value is reported and its default used (so later checks
    can go on).

    ``time_limit`` and ``stall`` are durations (``60s``, ``2m``, a number of seconds): the solver's budget, and how
    long it goes on without improving before it stops (default 10 s), e.g. ``FILE: policy.stall: '-1': ...``."""
    order = tuple(key for key in POLICY_KEYS if key != "survive") + ("survive",)  # survive is judged last
    result = _checked(schema.PolicySpec, raw, where, problems, order=order)
    values: dict[str, Any] = {}
    for key, value in result.values.items():
        if key == "survive":
            values["survive_" + value[0]] = value[1]
        else:
            values[schema.POLICY_ATTRS.get(key, key)] = value
    return Policy(**values)


# --------------------------------------------------------------------------------------------------------------
# host_models


def _mapping_any(problems: Problems, where: Where, raw: object, example: str) -> dict | None:
    if not isinstance(raw, dict):
        problems.add(where, f"expected a mapping, e.g. {example}, got {_show(raw)}")
        return None
    return raw


def _resolve_models(raw: dict, where: Where, base_dir: str, problems: Problems,
                    models: dict[str, HostModel]) -> set[str]:
    declared: set[str] = set()
    for name, spec in raw.items():
        if not isinstance(name, str) or not name:
            problems.add(where.key(name), f"{_show(name)} is not a host model name (expected a string)")
            continue
        declared.add(name)
        model = _host_model(name, spec, where.key(name), base_dir, problems)
        if model is not None:
            models[name] = model
    return declared


def _host_models(raw: object, where: Where, base_dir: str, problems: Problems
                 ) -> tuple[dict[str, HostModel], set[str]]:
    """Resolved models (those without problems) and every declared model name (a host naming a declared model
    with problems gets no second message)."""
    models: dict[str, HostModel] = {}
    if _mapping_any(problems, where, raw, "{r650: {nodes: [...]}}") is None:
        return models, set()
    return models, _resolve_models(raw, where, base_dir, problems, models)


def _host_model(name: str, raw: object, where: Where, base_dir: str, problems: Problems) -> HostModel | None:
    """One host model, inline or ``{include: PATH}``; None if it has a problem."""
    before = problems.count()
    source = where.file
    included = False
    if isinstance(raw, dict) and "include" in raw:
        loaded = _include(raw, where, base_dir, problems)
        if loaded is None:
            return None
        by = f"; included by {where.file}: {where.key('include').path}"
        raw, where = loaded
        source = where.file
        included = True
        if _foreign(raw, MODEL_KEYS, where, "a host model", problems, by):
            return None
    if not _checked(schema.HostModelSpec, raw, where, problems, judge_values=False).mapping:  # values: below
        return None
    spec = raw
    if "include" in spec:
        problems.add(where.key("include"), "nested include is not supported (an included file holds one host "
                                           "model mapping itself)")
        return None
    capture = [key for key in CAPTURE_KEYS if key in spec]
    if capture:
        capture_dir = os.path.dirname(where.file) if included else base_dir
        model = _capture_model(name, spec, where, capture, capture_dir, problems)
        return model if problems.count() == before else None
    for key in CAPTURE_ONLY_KEYS:
        if key in spec:
            problems.add(where.key(key), "only with a capture (capabilities:, numactl: or sysfs:); "
                                         + ("give hugepages per node in nodes[]" if key == "hugepages" else
                                            "give memory per node in nodes[]" if key == "memory" else
                                            "lscpu: gives the siblings of a numactl: capture"))
    if "nodes" not in spec:
        problems.add(where.key("nodes"), "required key is missing")
        return None
    model = _model_body(name, spec, where, source, problems)
    return model if problems.count() == before else None


def _capture_model(name: str, spec: dict, where: Where, capture: list[str], capture_dir: str,
                   problems: Problems) -> HostModel | None:
    """A host model made from a host capture (``capabilities:``, ``numactl:`` or ``sysfs:``, a path relative to the
    file that names it), with the overrides ``reserved``, ``hugepages: {NODE: {SIZE: PAGES}}``, ``memory`` (one
    size for every node the capture gives none for, or ``{NODE: SIZE}``), ``threads_per_core`` and ``lscpu`` where
    the capture has no siblings, and ``arch``. ``nodes``, ``distances`` and ``cores`` come from the capture. The
    rules are those of ``planner.hostimport.capture``; its errors name the capture file and what to add."""
    from planner.hostimport import capture as hostimport

    if len(capture) > 1:
        problems.add(where.key(capture[1]), f"give one capture per host model (also {capture[0]}:)")
        return None
    key = capture[0]
    for other in FROM_CAPTURE_KEYS:
        if other in spec:
            problems.add(where.key(other), f"comes from the capture ({key}:); remove it, or drop {key}: and give "
                                           "the model inline")
    path = _model_value(spec, key, where, problems)
    if path is INVALID:
        return None
    overrides: dict[str, Any] = {key: _model_value(spec, key, where, problems)
                                 for key in ("threads_per_core", "arch") if key in spec}
    if "reserved" in spec:
        cpus, memory = _reserved_values(spec["reserved"], where.key("reserved"), problems)
        overrides["reserved_cpus"] = cpus
        if cpus is not INVALID or memory is not INVALID:
            overrides["reserved_memory_kib"] = memory
    if "hugepages" in spec:
        overrides["hugepages"] = _capture_pools(spec["hugepages"], where.key("hugepages"), problems)
    if "memory" in spec:
        overrides["memory"] = _capture_memory(spec["memory"], where.key("memory"), problems)
    lscpu = None
    if "lscpu" in spec:
        lscpu = _model_value(spec, "lscpu", where, problems)
        if lscpu is INVALID:
            return None
        lscpu = os.path.normpath(os.path.join(capture_dir, lscpu))
    if INVALID in overrides.values():
        return None
    shown = os.path.normpath(os.path.join(capture_dir, path))
    try:
        parsed = hostimport.read_capture(shown)
        if parsed.kind != key:
            problems.add(where.key(key), f"{shown} is a {parsed.kind} capture, not {key} (use {parsed.kind}: "
                                         f"{path})")
            return None
        return hostimport.build_model(parsed, name=name, lscpu=lscpu, style="yaml", **overrides).model
    except hostimport.CaptureError as exc:
        at = where.key(exc.key) if exc.key in spec else where.key(key)
        problems.add(at, str(exc))
        return None


def _model_value(spec: dict, key: str, where: Where, problems: Problems) -> Any:
    """``spec[key]`` of a host model judged by its field of ``schema.HostModelSpec`` (INVALID when wrong)."""
    return _check(problems, where.key(key), schema.field_value, schema.HostModelSpec, key, spec[key])


def _capture_pools(raw: object, where: Where, problems: Problems) -> dict[int, dict[int, int]]:
    """``{0: {1G: 8}, 1: {2M: 512}}`` → {0: {1048576: 8}, 1: {2048: 512}}."""
    if not isinstance(raw, dict):
        problems.add(where, f"expected a mapping of node id to pools, e.g. {{0: {{1G: 8}}}}, got {_show(raw)}")
        return INVALID
    result: dict[int, dict[int, int]] = {}
    bad = False
    for node, pools in raw.items():
        node_id = _check(problems, where.key(node), _int, node, 0)
        parsed = _hugepage_pools(pools, where.key(node), problems)
        if INVALID in (node_id, parsed):
            bad = True
            continue
        result[node_id] = parsed
    return INVALID if bad else result


def _capture_memory(raw: object, where: Where, problems: Problems) -> int | dict[int, int]:
    """``64GiB`` (every node the capture gives no memory for) or ``{0: 64GiB, 1: 0}`` (per node id)."""
    if isinstance(raw, dict):
        result: dict[int, int] = {}
        bad = False
        for node, size in raw.items():
            node_id = _check(problems, where.key(node), _int, node, 0)
            kib = _check(problems, where.key(node), _memory, size, allow_zero=True)
            if INVALID in (node_id, kib):
                bad = True
                continue
            result[node_id] = kib
        return INVALID if bad else result
    return _check(problems, where, _memory, raw)


def _include(raw: dict, where: Where, base_dir: str, problems: Problems) -> tuple[object, Where] | None:
    """``{include: PATH}`` alone → (the included file's data, its root location)."""
    extra = [key for key in raw if key != "include"]
    for key in extra:
        problems.add(where.key(key), "an include must stand alone ({include: PATH}); put this key in the "
                                     "included file")
    path = _model_value(raw, "include", where, problems)
    if path is INVALID:
        return None
    if extra:
        return None
    target = os.path.join(base_dir, path)
    shown = os.path.normpath(target)
    data = problems.included.get(shown, _DEFAULT)
    if data is _DEFAULT:  # not read yet in this load
        try:
            text = _read(target)
        except ValueError as exc:
            problems.add(where.key("include"), f"'{path}' ({shown}): {exc}")
            return None
        data = problems.included[shown] = _parse_yaml(text, shown, problems)
    if data is INVALID:
        return None
    if data is None:
        problems.add(Where(shown), f"the file is empty (included as host model by {where.line('include')})")
        return None
    return data, Where(shown)


def _model_body(name: str, spec: dict, where: Where, source: str, problems: Problems) -> HostModel | None:
    nodes = _nodes(spec["nodes"], where.key("nodes"), problems)
    arch = _model_value(spec, "arch", where, problems) if "arch" in spec else "x86_64"
    if nodes is None:
        return None
    distances = _distances(spec.get("distances", _DEFAULT), len(nodes), where.key("distances"), problems)
    cores = _cores(spec, nodes, where, problems)
    reserved_cpus, reserved_kib = _reserved(spec.get("reserved", {}), nodes, where.key("reserved"), problems)
    if reserved_kib is not INVALID:
        _free_memory(nodes, reserved_kib, where.key("nodes"), problems)
    if INVALID in (distances, cores, reserved_cpus, reserved_kib, arch):
        return None
    return HostModel(name=name, nodes=tuple(nodes), distances=distances, cores=cores,
                     reserved_cpus=frozenset(reserved_cpus), reserved_memory_kib=reserved_kib, arch=arch,
                     source=source)


def _nodes(raw: object, where: Where, problems: Problems) -> list[Node] | None:
    """The node list; None if any node has a problem."""
    before = problems.count()
    items = _list(problems, where, raw, "[{id: 0, cpus: '0-7', memory: 64GiB}]")
    if isinstance(raw, list) and not items:
        problems.add(where, "a host model needs at least one node")
    nodes: list[Node] = []
    ids: dict[int, int] = {}
    owner: dict[int, int] = {}  # cpu -> index of its node
    for index, item in enumerate(items):
        node = _node(item, where.item(index), problems)
        if node is None:
            continue
        if node.id in ids:
            problems.add(where.item(index).key("id"), f"node id {node.id} is used twice (also nodes[{ids[node.id]}])")
        ids.setdefault(node.id, index)
        twice = [cpu for cpu in node.cpus if cpu in owner]
        if twice:
            others = sorted({f"nodes[{owner[cpu]}]" for cpu in twice})
            problems.add(where.item(index).key("cpus"),
                         f"{_cpus_text(twice)} also in {', '.join(others)} (a CPU belongs to one node)")
        owner.update({cpu: index for cpu in node.cpus if cpu not in owner})
        nodes.append(node)
    return nodes if problems.count() == before else None


def _node(raw: object, where: Where, problems: Problems) -> Node | None:
    checked = _checked(schema.NodeSpec, raw, where, problems)
    if not checked.mapping:
        return None
    spec, values = raw, checked.values
    node_id, cpus, memory = (values.get(key, INVALID) for key in ("id", "cpus", "memory"))
    pages = _hugepage_pools(spec.get("hugepages", {}), where.key("hugepages"), problems)
    if INVALID in (node_id, cpus, memory, pages):
        return None
    return Node(id=node_id, cpus=tuple(sorted(cpus)), memory_kib=memory, hugepages=pages)


def _hugepage_pools(raw: object, where: Where, problems: Problems) -> dict[int, int]:
    """``{1G: 16, 2M: 0}`` → {1048576: 16, 2048: 0}."""
    if raw is None or not isinstance(raw, dict):
        problems.add(where, f"expected a mapping of page size to pages, e.g. {{1G: 16, 2M: 512}}, got {_show(raw)}")
        return INVALID
    pools: dict[int, int] = {}
    seen: dict[int, object] = {}
    bad = False
    for key, count in raw.items():
        size = _check(problems, where.key(key), parse_page_kib, key)
        number = _check(problems, where.key(key), _int, count, 0)
        if INVALID in (size, number):
            bad = True
            continue
        if size in seen:
            problems.add(where.key(key), f"page size {format_page(size)} is given twice (also as {seen[size]})")
            bad = True
        seen[size] = key
        pools[size] = number
    return INVALID if bad else pools


def _distances(raw: object, size: int, where: Where, problems: Problems) -> tuple[tuple[int, ...], ...]:
    """Square matrix by node position: 10 on the diagonal, 11..254 elsewhere. Default: 10 / 20."""
    if raw is _DEFAULT:
        return tuple(tuple(10 if i == j else 20 for j in range(size)) for i in range(size))
    before = problems.count()
    rows = _list(problems, where, raw, "[[10,21],[21,10]]")
    if isinstance(raw, list) and len(rows) != size:
        problems.add(where, f"{len(rows)} rows for {size} nodes (the matrix is square, one row per node)")
        return INVALID
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != size:
            shown = f"{len(row)} values" if isinstance(row, list) else _show(row)
            problems.add(where.item(i), f"{shown} for {size} nodes (expected a list of {size} integers)")
            continue
        for j, value in enumerate(row):
            low, high = (10, 10) if i == j else (11, 254)
            text = "the diagonal is 10" if i == j else "off the diagonal 11..254"
            try:
                _int(value, low, high)
            except ValueError:
                problems.add(where.item(i).item(j), f"{_show(value)} is not a valid distance ({text})")
    if problems.count() != before:
        return INVALID
    return tuple(tuple(row) for row in rows)


def _cores(spec: dict, nodes: list[Node], where: Where, problems: Problems) -> tuple[tuple[int, ...], ...]:
    """SMT sibling groups from ``cores:`` or ``threads_per_core:`` (default 1), sorted."""
    if "cores" in spec and "threads_per_core" in spec:
        problems.add(where.key("threads_per_core"), "give either cores: or threads_per_core:, not both")
        return INVALID
    if "cores" in spec:
        return _explicit_cores(spec["cores"], nodes, where.key("cores"), problems)
    threads = _model_value(spec, "threads_per_core", where, problems) if "threads_per_core" in spec else 1
    if threads is INVALID:
        return INVALID
    return _derived_cores(threads, nodes, where.key("threads_per_core"), problems)


def _node_of(nodes: list[Node]) -> dict[int, int]:
    return {cpu: node.id for node in nodes for cpu in node.cpus}


def _explicit_cores(raw: object, nodes: list[Node], where: Where, problems: Problems
                    ) -> tuple[tuple[int, ...], ...]:
    before = problems.count()
    node_of = _node_of(nodes)
    owner: dict[int, int] = {}
    groups: list[tuple[int, ...]] = []
    for index, item in enumerate(_list(problems, where, raw, "[[0,72],[1,73]]")):
        at = where.item(index)
        group = _check(problems, at, _cpus, item)
        if group is INVALID:
            continue
        if not group:
            problems.add(at, "an empty core (a core lists its sibling CPUs)")
            continue
        unknown = [cpu for cpu in group if cpu not in node_of]
        if unknown:
            problems.add(at, f"{_cpus_text(unknown)} not in any node of this host model")
            continue
        spanned = sorted({node_of[cpu] for cpu in group})
        if len(spanned) > 1:
            problems.add(at, f"core {format_cpulist(group)} spans nodes {', '.join(map(str, spanned))} "
                             "(a core sits in one node)")
        twice = [cpu for cpu in group if cpu in owner]
        if twice:
            problems.add(at, f"{_cpus_text(twice)} also in cores[{owner[twice[0]]}] (every CPU in exactly one core)")
        owner.update({cpu: index for cpu in group if cpu not in owner})
        groups.append(group)
    missing = [cpu for cpu in sorted(node_of) if cpu not in owner]
    if missing and problems.count() == before:
        problems.add(where, f"{_cpus_text(missing)} in no core (every CPU of the model in exactly one core)")
    if problems.count() != before:
        return INVALID
    return tuple(sorted(groups))


def _derived_cores(threads: int, nodes: list[Node], where: Where, problems: Problems
                   ) -> tuple[tuple[int, ...], ...]:
    """threads_per_core T: siblings of c are c + k*N/T (Linux's usual enumeration)."""
    cpus = sorted(cpu for node in nodes for cpu in node.cpus)
    if threads == 1:
        return tuple((cpu,) for cpu in cpus)
    count = len(cpus)
    if cpus != list(range(count)):
        problems.add(where, f"threads_per_core: {threads} needs CPU ids 0..N-1 without gaps (this model has "
                            f"{format_cpulist(cpus) or 'no CPUs'}); list the sibling groups with cores: instead")
        return INVALID
    if count % threads:
        problems.add(where, f"{count} CPUs do not divide into cores of {threads} threads; list the sibling "
                            "groups with cores: instead")
        return INVALID
    step = count // threads
    groups = tuple(tuple(c + k * step for k in range(threads)) for c in range(step))
    node_of = _node_of(nodes)
    split = [g for g in groups if len({node_of[cpu] for cpu in g}) > 1]
    if split:
        problems.add(where, f"with threads_per_core: {threads} the siblings of CPU {split[0][0]} "
                            f"({format_cpulist(split[0])}) would span nodes, and {len(split)} such core(s) in all; "
                            "list the sibling groups with cores: instead")
        return INVALID
    return groups


def _reserved(raw: object, nodes: list[Node], where: Where, problems: Problems) -> tuple[frozenset[int], int]:
    """reserved: {cpus, memory} → (CPUs, KiB per node with memory)."""
    cpus, memory = _reserved_values(raw, where, problems)
    if cpus is not INVALID:
        known = _node_of(nodes)
        unknown = [cpu for cpu in cpus if cpu not in known]
        if unknown:
            problems.add(where.key("cpus"), f"{_cpus_text(unknown)} not in any node of this host model")
            cpus = INVALID
    return (INVALID if cpus is INVALID else frozenset(cpus)), memory


def _reserved_values(raw: object, where: Where, problems: Problems) -> tuple[Any, Any]:
    """``reserved: {cpus, memory}`` (``schema.ReservedSpec``) → (CPUs, KiB), each INVALID when wrong."""
    checked = _checked(schema.ReservedSpec, raw, where, problems)
    if not checked.mapping:
        return INVALID, INVALID
    cpus = INVALID if "cpus" in checked.bad_keys else checked.values.get("cpus", ())
    memory = INVALID if "memory" in checked.bad_keys else checked.values.get("memory", 0)
    return cpus, memory


def _free_memory(nodes: list[Node], reserved_kib: int, where: Where, problems: Problems) -> None:
    """free 4K memory = memory − reserved.memory − Σ pools must not be negative (memory-less nodes: no reserve)."""
    for index, node in enumerate(nodes):
        reserve = reserved_kib if node.memory_kib > 0 else 0
        free = node.memory_kib - reserve - node.pool_kib()
        if free < 0:
            problems.add(where.item(index), f"free 4K memory is negative: memory {format_memory(node.memory_kib)} "
                                            f"- reserved.memory {format_memory(reserve)} - hugepage pools "
                                            f"{format_memory(node.pool_kib())} = {format_memory(free)}")


# --------------------------------------------------------------------------------------------------------------
# hosts


def _hosts(raw: object, where: Where, models: dict[str, HostModel], declared: set[str],
           problems: Problems) -> _Hosts:
    """The hosts list: each item a ``schema.HostSpec`` (its model one of the declared host models)."""
    result = _Hosts()
    context = {"declared": declared}
    for index, item in enumerate(_list(problems, where, raw, "[{name: 'kvm[01-08]', model: r650}]")):
        at = where.item(index, _label(item))
        checked = _checked(schema.HostSpec, item, at, problems, context=context)
        if not checked.mapping:
            result.unresolved = True
            continue
        values = checked.values
        names, model = values.get("name", INVALID), values.get("model", INVALID)
        if INVALID in (names, model) or model not in models:
            result.unresolved = True
        if names is INVALID:
            continue
        result.names.extend((name, at) for name in names)
        if model is INVALID:
            continue
        labels = {key: values[key] for key in ("rack", "zone") if key in values}
        for name in names:
            result.hosts.append(Host(name=name, model=model, **labels))
    return result


# --------------------------------------------------------------------------------------------------------------
# guests


@dataclass
class _GuestContext:
    policy: Policy
    host_names: set[str]
    domain: DomainSettings = DomainSettings()  # the scenario's domain: settings (a guest's own override them)
    # for schema.GuestSpec's hugepages check: page_sizes (some host model lists them in a node's pools) and
    # pages_known (False when some host model could not be read: then page sizes are not judged)
    pages: dict[str, Any] = field(default_factory=dict)
    templates: "Templates | None" = None
    valid: dict[tuple, dict[str, Any]] = field(default_factory=dict)  # guest keys (no name) -> valid values
    any_host: bool = False  # a guest outside a scenario (load_guest): its fixed host is judged by the caller


def _guests(raw: object, where: Where, policy: Policy, models: dict[str, HostModel], declared: set[str],
            hosts: _Hosts, problems: Problems, domain: DomainSettings = DomainSettings(),
            templates: "Templates | None" = None) -> tuple[list[tuple[Guest, Where]], list[tuple[str, Where]]]:
    """Guests without problems, each with its item; and every guest name (for the uniqueness check)."""
    context = _GuestContext(
        policy=policy,
        host_names={h.name for h in hosts.hosts},
        domain=domain,
        pages={"page_sizes": {size for model in models.values() for node in model.nodes for size in node.hugepages},
               "pages_known": set(models) == declared},
        templates=templates,
    )
    guests: list[tuple[Guest, Where]] = []
    names: list[tuple[str, Where]] = []
    for index, item in enumerate(_list(problems, where, raw, "[{name: web01, vcpus: 2, memory: 4GiB}]")):
        at = where.item(index, _label(item))
        item_names, item_guests = _guest(item, at, context, hosts, problems)
        names.extend((name, at) for name in item_names)
        guests.extend((guest, at) for guest in item_guests)
    return guests, names


def _guest(raw: object, at: Where, context: _GuestContext, hosts: _Hosts, problems: Problems
           ) -> tuple[list[str], list[Guest]]:
    """One guest item (a name or a pattern, ``schema.GuestSpec``) → its names, and its guests ([] if it has a
    problem). An item with the same keys (other than the name) as one already judged valid is not judged again."""
    key = _spec_key(raw) if isinstance(raw, dict) and "name" in raw and set(raw) <= set(GUEST_KEYS) else None
    if key is not None and key in context.valid:  # the same keys as a guest already judged valid
        names = _check(problems, at.key("name"), _pattern, raw["name"])
        return ([], []) if names is INVALID else (names, [Guest(name=name, **context.valid[key]) for name in names])
    totals = () if isinstance(raw, dict) and isinstance(raw.get("numa"), list) else ("vcpus", "memory")  # cells sum
    checked = _checked(schema.GuestSpec, raw, at, problems, required=("name",) + totals, context=context.pages)
    if not checked.mapping:
        return [], []
    before = problems.count() - checked.value_problems  # unknown or missing keys do not stop the guest's checks
    spec = raw
    names = checked.values.get("name", INVALID)
    values = _guest_values(spec, checked, at, problems)
    values["domain"] = context.domain
    if "domain" in spec:
        templates = context.templates if context.templates is not None else Templates("")
        values["domain"] = read_domain_settings(spec["domain"], at.key("domain"), context.domain, templates, problems)
    _guest_host(spec, at, context, hosts, problems, values)
    _guest_rules(values, at, context.policy, problems)
    if names is INVALID:
        return [], []
    if problems.count() != before or INVALID in values.values():
        return names, []
    if key is not None:
        context.valid[key] = values
    return names, [Guest(name=name, **values) for name in names]


def _spec_key(spec: dict) -> tuple | None:
    """A guest item's keys other than its name, as a hashable value (type included: 1 is not true), so that
    identical guests are judged once; None when some value is not plain data."""
    def freeze(value: object) -> object:
        if isinstance(value, dict):
            return ("map",) + tuple((freeze(k), freeze(v)) for k, v in value.items())
        if isinstance(value, list):
            return ("list",) + tuple(freeze(v) for v in value)
        if value is None or isinstance(value, (str, int, float, bool)):
            return (type(value).__name__, value)
        raise TypeError
    try:
        return tuple(sorted((k, freeze(v)) for k, v in spec.items() if k != "name"))
    except TypeError:
        return None


def _guest_values(spec: dict, checked: schema.CheckResult, at: Where, problems: Problems) -> dict[str, Any]:
    """The per-key values of a guest (INVALID where wrong), with the shared/dedicated defaults applied."""
    own = ("name", "host", "domain")  # judged apart: names, the fixed host (a cross reference), domain settings
    values: dict[str, Any] = {key: INVALID for key in checked.bad_keys if key not in own}
    values.update((key, value) for key, value in checked.values.items() if key not in own)
    if isinstance(values.get("numa"), list):
        del values["numa"]
    if isinstance(spec.get("numa"), list):
        values["numa_cells"] = _numa_cells(spec["numa"], at.key("numa"), problems)
        values["numa"] = len(values["numa_cells"]) if values["numa_cells"] is not INVALID else INVALID
    cpu = values.setdefault("cpu", "shared")
    if cpu == "shared" and "threads" in values:
        problems.add(at.key("threads"), "only a dedicated guest has threads (this guest is cpu: shared)")
    if cpu == "dedicated" and "load" in values:
        problems.add(at.key("load"), "only a shared guest has a load (a dedicated vCPU has a pCPU of its own)")
    if cpu == "dedicated":
        values.setdefault("threads", "prefer")
    hugepages = values.pop("hugepages", None)
    values["hugepage_kib"] = hugepages
    values.setdefault("numa", None)
    values.setdefault("numa_cells", ())
    return values


def _numa_cells(raw: list, at: Where, problems: Problems) -> tuple[GuestCell, ...] | Any:
    """``numa: [{vcpus: 1, memory: 1GiB}, ...]``: explicit cells in order (INVALID when any is wrong)."""
    before = problems.count()
    if not raw:
        problems.add(at, "an empty list of cells (give auto, a number of cells, or cells like [{vcpus: 2, "
                         "memory: 4GiB}, ...])")
        return INVALID
    cells = []
    for i, item in enumerate(raw):
        where = at.item(i)
        checked = _checked(schema.CellSpec, item, where, problems, incomplete=False)
        if not checked.mapping or not all(k in item for k in CELL_KEYS):
            continue
        vcpus, memory = (checked.values.get(key, INVALID) for key in CELL_KEYS)
        if memory is not INVALID and memory < 1024:
            problems.add(where.key("memory"), f"{format_memory(memory)} is too small (a cell needs >= 1MiB)")
        cells.append(GuestCell(vcpus=vcpus, memory_kib=memory))
    return INVALID if problems.count() != before else tuple(cells)


def _guest_cells(values: dict[str, Any], at: Where, problems: Problems) -> None:
    """Explicit cells: the guest's vcpus/memory are their sums (given: must be equal; left out: filled in); with
    hugepages each cell holds whole pages, with ``threads: require`` each cell whole sibling pairs."""
    cells = values.get("numa_cells", ())
    if not cells or cells is INVALID:
        return
    total_vcpus = sum(c.vcpus for c in cells)
    total_kib = sum(c.memory_kib for c in cells)
    sizes = " + ".join(str(c.vcpus) for c in cells)
    vcpus = values.setdefault("vcpus", total_vcpus)
    if vcpus == "auto":
        problems.add(at.key("vcpus"), "auto cannot go with explicit numa cells (the cells give the vCPU count: "
                                      "leave vcpus out)")
        values["vcpus"] = INVALID
    elif isinstance(vcpus, int) and vcpus != total_vcpus:
        problems.add(at.key("vcpus"), f"{vcpus} vCPUs, but the numa cells hold {sizes} = {total_vcpus} (the cells "
                                      "must add up to vcpus; or leave vcpus out)")
        values["vcpus"] = INVALID
    memory = values.setdefault("memory", total_kib)
    if isinstance(memory, int) and memory != total_kib:
        problems.add(at.key("memory"), f"{format_memory(memory)}, but the numa cells hold "
                                       f"{' + '.join(format_memory(c.memory_kib) for c in cells)} = "
                                       f"{format_memory(total_kib)} (the cells must add up to memory; or leave "
                                       "memory out)")
        values["memory"] = INVALID
    page = values.get("hugepage_kib")
    for i, cell in enumerate(cells):
        if isinstance(page, int) and cell.memory_kib % page:
            problems.add(at.key("numa").item(i).key("memory"),
                         f"{format_memory(cell.memory_kib)} is not a whole number of {format_page(page)} pages "
                         f"(hugepages: {format_page(page)}: each cell takes whole pages)")
        if values.get("threads") == "require" and cell.vcpus % 2:
            problems.add(at.key("numa").item(i).key("vcpus"),
                         f"{cell.vcpus} vCPUs with threads: require (each cell holds whole sibling pairs: give "
                         "an even number)")


def _guest_host(spec: dict, at: Where, context: _GuestContext, hosts: _Hosts, problems: Problems,
                values: dict[str, Any]) -> None:
    if "host" not in spec:
        return
    host = spec["host"]
    if not isinstance(host, str):
        problems.add(at.key("host"), f"{_show(host)} is not a host name")
        values["host"] = INVALID
    elif host in context.host_names or context.any_host:
        values["host"] = host
    elif not hosts.unresolved:
        close = [h for h in context.host_names if h.lower() == host.lower()]
        close = close or difflib.get_close_matches(host, sorted(context.host_names), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        problems.add(at.key("host"), f"unknown host '{host}'{hint}")
        values["host"] = INVALID
    else:
        values["host"] = INVALID  # the hosts had problems already: the name may be fine


def _guest_rules(values: dict[str, Any], at: Where, policy: Policy, problems: Problems) -> None:
    """Rules between a guest's keys (each judged only when its inputs are valid): vcpus auto, threads require,
    numa range, memory size and whole hugepages. Fills in vcpus, vcpus_auto and memory_kib."""
    _guest_cells(values, at, problems)
    _guest_vcpus(values, at, policy, problems)
    vcpus, numa = values["vcpus"], values["numa"]
    require = values.get("threads") == "require"
    if isinstance(vcpus, int) and isinstance(numa, int) and not values.get("numa_cells"):  # (cells: told per cell)
        limit = vcpus // 2 if require else vcpus
        if numa > limit:
            why = f"vcpus/2 = {limit} with threads: require" if require else f"vcpus = {vcpus}"
            problems.add(at.key("numa"), f"{numa} NUMA cells is more than allowed (at most {why})")
    memory, page = values.pop("memory", INVALID), values["hugepage_kib"]
    values["memory_kib"] = memory
    if memory is INVALID or page is INVALID:
        return
    if memory < 1024:
        problems.add(at.key("memory"), f"{format_memory(memory)} is too small (a guest needs >= 1MiB)")
    elif page is not None and memory % page and not values.get("numa_cells"):  # (cells: told per cell)
        problems.add(at.key("memory"), f"{format_memory(memory)} is not a whole number of {format_page(page)} "
                                       f"pages (hugepages: {format_page(page)})")


def _guest_vcpus(values: dict[str, Any], at: Where, policy: Policy, problems: Problems) -> None:
    """``vcpus: auto`` → ceil(cpu_demand / cpu_load_target), exactly; ``threads: require`` needs an even count."""
    vcpus = values.setdefault("vcpus", INVALID)
    require = values.get("threads") == "require"
    if vcpus == "auto":
        demand = values.get("cpu_demand")
        if demand is None:
            problems.add(at.key("vcpus"), "auto needs cpu_demand (the measured demand in cores)")
            values["vcpus"] = INVALID
            return
        if demand is INVALID:
            values["vcpus"] = INVALID
            return
        vcpus = math.ceil(demand / policy.cpu_load_target)
        if require and vcpus % 2:
            vcpus += 1  # pairs of sibling threads: round the right-sized count up to even
        values["vcpus"], values["vcpus_auto"] = vcpus, True
    elif require and isinstance(vcpus, int) and vcpus % 2 and not values.get("numa_cells"):
        problems.add(at.key("vcpus"), f"{vcpus} vCPUs with threads: require (vCPUs go in pairs on two threads of "
                                      "one core: give an even number)")


# --------------------------------------------------------------------------------------------------------------
# Cross-checks: unique names, hard rules 1 and 7


def _cross_checks(policy: Policy, models: dict[str, HostModel], hosts: _Hosts,
                  guests: list[tuple[Guest, Where]], problems: Problems) -> None:
    """The input errors of hard rules 1 and 7, judged on the hosts and guests that have no problem."""
    if hosts.unresolved:
        return  # a host whose model is unknown: its CPUs are unknown, so these rules cannot be judged
    _too_many_vcpus(models, hosts, guests, problems)
    _too_many_cells(models, hosts, guests, problems)
    fixed = [(g, at) for g, at in guests if g.host is not None]
    _fixed_anti_affinity(fixed, problems)
    _scope_per_tag(policy, guests, problems)
    _fixed_cap(policy, models, hosts, fixed, problems)


def _unique(names: list[tuple[str, Where]], kind: str, problems: Problems) -> None:
    """Names are unique, also ignoring case (they become file names)."""
    first: dict[str, tuple[str, Where]] = {}
    for name, at in names:
        if name.lower() not in first:
            first[name.lower()] = (name, at)
            continue
        other, other_at = first[name.lower()]
        same = "" if other == name else f" as '{other}'"
        problems.add(at.key("name"), f"{kind} name '{name}' is already used{same} by {other_at.path} (names "
                                     "must be unique, also ignoring case)")


def _too_many_vcpus(models: dict[str, HostModel], hosts: _Hosts, guests: list[tuple[Guest, Where]],
                    problems: Problems) -> None:
    """Hard rule 1: more vCPUs than every host has logical CPUs, or than the fixed host has."""
    if not hosts.hosts:
        return
    cpus = {h.name: models[h.model].cpu_count for h in hosts.hosts}
    largest = max(cpus.values())
    for guest, at in guests:
        if guest.vcpus > largest:
            problems.add(at.key("vcpus"), f"{guest.vcpus} vCPUs is more than any host has logical CPUs (at most "
                                          f"{largest}): always a misconfiguration")
        elif guest.host is not None and guest.vcpus > cpus[guest.host]:
            problems.add(at.key("vcpus"), f"{guest.vcpus} vCPUs is more than its host {guest.host} has logical "
                                          f"CPUs ({cpus[guest.host]}): always a misconfiguration")


def _cell_nodes(model: HostModel) -> int:
    """Nodes of a model that can hold a guest cell (some unreserved CPU and some memory)."""
    return sum(1 for n in model.nodes if n.memory_kib > 0 and set(n.cpus) - model.reserved_cpus)


def _too_many_cells(models: dict[str, HostModel], hosts: _Hosts, guests: list[tuple[Guest, Where]],
                    problems: Problems) -> None:
    """Explicit cells go to distinct nodes: more cells than any host (or the fixed host) has such nodes."""
    if not hosts.hosts:
        return
    nodes = {h.name: _cell_nodes(models[h.model]) for h in hosts.hosts}
    most = max(nodes.values())
    for guest, at in guests:
        count = len(guest.numa_cells)
        if not count:
            continue
        if count > most:
            problems.add(at.key("numa"), f"{count} NUMA cells, but no host has more than {most} nodes that hold "
                                         "guest cells (each cell needs a node of its own)")
        elif guest.host is not None and count > nodes[guest.host]:
            problems.add(at.key("numa"), f"{count} NUMA cells, but its host {guest.host} has {nodes[guest.host]} "
                                         "nodes that hold guest cells (each cell needs a node of its own)")


def _fixed_anti_affinity(fixed: list[tuple[Guest, Where]], problems: Problems) -> None:
    """Hard rule 7: fixed guests sharing an anti-affinity tag on one host."""
    groups: dict[tuple[str, str], list[tuple[Guest, Where]]] = {}
    for guest, at in fixed:
        for tag in guest.anti_affinity:
            groups.setdefault((guest.host, tag), []).append((guest, at))
    for (host, tag), members in groups.items():
        if len(members) > 1:
            names = ", ".join(g.name for g, _ in members)
            problems.add(members[-1][1].key("anti_affinity"),
                         f"guests {names} share anti-affinity tag '{tag}' but are all fixed on host {host}")


def _scope_per_tag(policy: Policy, guests: list[tuple[Guest, Where]], problems: Problems) -> None:
    """Guests sharing an anti-affinity tag share its scope (host, rack or zone): one tag, one meaning."""
    first: dict[str, tuple[str, Guest]] = {}
    for guest, at in guests:
        scope = guest.anti_affinity_scope or policy.anti_affinity_scope
        for tag in guest.anti_affinity:
            if tag not in first:
                first[tag] = (scope, guest)
            elif first[tag][0] != scope:
                other = first[tag][1]
                problems.add(at.key("anti_affinity_scope"),
                             f"anti-affinity tag '{tag}' has scope {scope} here but {first[tag][0]} on guest "
                             f"{other.name} (guests sharing a tag must share its scope)")


def _fixed_cap(policy: Policy, models: dict[str, HostModel], hosts: _Hosts, fixed: list[tuple[Guest, Where]],
               problems: Problems) -> None:
    """Hard rule 7: Σ vCPUs of the fixed guests of a host ≤ cpu_overcommit_max × its physical cores."""
    by_host: dict[str, list[tuple[Guest, Where]]] = {}
    for guest, at in fixed:
        by_host.setdefault(guest.host, []).append((guest, at))
    model_of = {h.name: models[h.model] for h in hosts.hosts}
    for host, members in by_host.items():
        total = sum(g.vcpus for g, _ in members)
        cores = len(model_of[host].cores)
        cap = policy.cpu_overcommit_max * cores
        if total > cap:
            names = ", ".join(g.name for g, _ in members)
            problems.add(members[-1][1].key("host"),
                         f"the guests fixed on host {host} ({names}) have {total} vCPUs together, above its cap of "
                         f"{_num(Fraction(math.floor(cap)))} (cpu_overcommit_max {_num(policy.cpu_overcommit_max)} "
                         f"x {cores} physical cores)")


# --------------------------------------------------------------------------------------------------------------
# domain: how the domain XML is made (scenario level, overridable per guest)


class Templates:
    """Domain templates read once per file, and where each was first named (for the uuid check)."""

    def __init__(self, base_dir: str):
        self.base_dir = base_dir
        self.read: dict[str, DomainTemplate] = {}
        self.named_at: dict[str, Where] = {}

    def load(self, value: object, where: Where) -> DomainTemplate | None:
        if value == "none" and isinstance(value, str):
            return None  # no template (a guest's way to drop the scenario's)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{_show(value)} is not a file path (expected a domain XML, e.g. template: base.xml, or none)")
        shown = os.path.normpath(os.path.join(self.base_dir, value))
        self.named_at.setdefault(shown, where)
        if shown not in self.read:
            self.read[shown] = _read_template(value, shown)
        return self.read[shown]

    def check_uuids(self, guests: list[tuple[Guest, Where]], problems: Problems) -> None:
        """A template with its own <uuid> names one domain: it may serve one guest only."""
        users: dict[str, list[str]] = {}
        for guest, _ in guests:
            template = guest.domain.template
            if template is not None and template.has_uuid:
                users.setdefault(template.path, []).append(guest.name)
        for path, names in users.items():
            if len(names) > 1:
                shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
                problems.add(self.named_at[path], f"{path} has its own <uuid>, which names one domain, but serves "
                                                  f"{len(names)} guests ({shown}): remove the <uuid> (vplan gives "
                                                  "each guest a stable one) or give each guest its own template")


def _read_template(value: str, shown: str) -> DomainTemplate:
    """Read and check a domain template: a regular UTF-8 file of at most 1 MiB holding one <domain>, which
    vplan's merge can edit (checked by merging a one-vCPU plan into it)."""
    from lxml import etree

    from planner.libvirt.domain import check_template

    prefix = f"'{value}' ({shown})" if value != shown else f"'{value}'"
    try:
        info = os.stat(shown)
    except FileNotFoundError:
        raise ValueError(f"{prefix}: file not found") from None
    except OSError as exc:
        raise ValueError(f"{prefix}: cannot read file: {exc.strerror or exc}") from None
    import stat

    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{prefix}: not a regular file (expected a domain XML)")
    if info.st_size > MAX_TEMPLATE_BYTES:
        raise ValueError(f"{prefix}: {info.st_size} bytes is too large for a domain XML (at most "
                         f"{MAX_TEMPLATE_BYTES})")
    try:
        text = _read(shown)
    except ValueError as exc:
        raise ValueError(f"{prefix}: {exc}") from None
    try:
        root = etree.fromstring(text.encode("utf-8"), etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as exc:
        raise ValueError(f"{prefix}: not well-formed XML ({exc.msg})") from None
    if root.tag != "domain":
        raise ValueError(f"{prefix}: not a domain XML (the root element is <{root.tag}>)")
    cpu = root.find("cpu")
    cpu_mode = None
    if cpu is not None:
        cpu_mode = cpu.get("mode") or ("custom" if cpu.find("model") is not None else None)
    os_type = root.find("os/type")
    template = DomainTemplate(
        path=shown,
        text=text,
        has_uuid=root.find("uuid") is not None,
        type=root.get("type"),
        cpu_mode=cpu_mode,
        cpu_model=(cpu.findtext("model") or "").strip() or None if cpu is not None else None,
        machine=os_type.get("machine") if os_type is not None else None,
        arch=os_type.get("arch") if os_type is not None else None,
    )
    try:
        check_template(template)
    except ValueError as exc:
        raise ValueError(f"{prefix}: {exc}") from None
    return template


def read_domain_settings(raw: object, where: Where, inherited: DomainSettings, templates: Templates,
            problems: Problems) -> DomainSettings:
    """A ``domain:`` mapping over the settings it overrides (the scenario's, for a guest); INVALID on a
    problem. Rules: cpu_model only (and always) with cpu_mode custom; host-passthrough needs type kvm."""
    before = problems.count()
    result = _checked(schema.DomainSpec, raw, where, problems)
    if not result.mapping:
        return INVALID
    spec, values = raw, dict(result.values)
    if "template" in values:
        values["template"] = _check(problems, where.key("template"), templates.load, values["template"],
                                    where.key("template"))
    if problems.count() != before:
        return INVALID
    if values.get("cpu_mode") not in (None, "custom") and "cpu_model" not in values:
        values["cpu_model"] = None  # a mode given here drops a model inherited with the scenario's custom mode
    merged = DomainSettings(**{**inherited.__dict__, **values})
    mode, kind = merged.effective_cpu_mode(), merged.effective_type()
    at = where.key("cpu_mode") if "cpu_mode" in spec else where
    if kind not in DOMAIN_TYPES:
        problems.add(where.key("template"), f"the template's domain type {_show(kind)} is not one of: "
                                            f"{', '.join(DOMAIN_TYPES)} (set type: kvm or type: qemu)")
    elif mode == "custom" and merged.effective_cpu_model() is None:
        problems.add(at, "cpu_mode custom needs cpu_model (e.g. cpu_model: qemu64)")
    elif mode not in DOMAIN_CPU_MODES:
        problems.add(where.key("template"), f"the template's CPU mode {_show(mode)} is not one of: "
                                            f"{', '.join(DOMAIN_CPU_MODES)} (set cpu_mode)")
    elif merged.cpu_model is not None and mode != "custom":
        problems.add(where.key("cpu_model") if "cpu_model" in spec else at,
                     f"cpu_model {merged.cpu_model!r} needs cpu_mode: custom (the CPU mode is {mode})")
    elif mode == "host-passthrough" and kind == "qemu":
        problems.add(at, "host-passthrough needs type: kvm (QEMU without KVM cannot pass the host CPU through; "
                         "use cpu_mode: maximum, host-model or custom)")
    return INVALID if problems.count() != before else merged
