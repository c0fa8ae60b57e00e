"""The scenario file (format v1) as pydantic v2 models: one declaration of every key, its type, its rule and its
documentation, serving two purposes.

* **Validation.** Every model forbids unknown keys (``extra="forbid"``); every field's value goes through a
  validator that calls the loader's own value parser (``planner.io.values``, units via ``planner.model.units``),
  so a wrong value gives the loader's message. :func:`check_mapping` runs a model over one YAML mapping and
  returns the valid values and the problems as ``(key path, message)`` pairs, in the loader's order (unknown keys,
  missing keys, then values in key order); the loader turns them into ``FILE: key.path: message`` lines and builds
  the ``planner.model.scenario`` dataclasses from the values (the model layer stays pure dataclasses).
* **JSON Schema.** :func:`json_schema` gives the JSON Schema (draft 2020-12) of a scenario file, a host model
  file (``models/hosts/*.yaml``) or the flavour catalogue (``models/flavours.yaml``), with titles and
  descriptions from the documentation, so that editors validate and complete scenario YAML (``vplan schema``).
  The schema checks structure, types, ranges and value syntax; rules between keys or files (cross references,
  CPU sets that must fit a host model, cells that must add up, ...) are the loader's.

The loader validates ``policy``, ``domain``, ``hosts[]`` and ``guests[]`` items and the top level through these
models; host models (``host_models.*``, their ``nodes``, ``reserved``, captures and includes) are described here
for the schema and checked by the loader's own functions (their key lists are these models' fields).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
)

from planner.io.values import (
    SCOPES,
    _bool,
    _choice,
    _cpus,
    _duration,
    _int,
    _memory,
    _name,
    _pattern,
    _ranged,
    _show,
    _survive,
    _tags,
    _xml_token,
)
from planner.model.units import MAX_NODE_ID, parse_page_kib

__all__ = [
    "SCHEMA_KINDS",
    "CheckResult",
    "DomainSpec",
    "GuestSpec",
    "HostModelSpec",
    "HostSpec",
    "NodeSpec",
    "PolicySpec",
    "ScenarioSpec",
    "check_mapping",
    "field_value",
    "json_schema",
]

SCHEMA_ID = "https://vplan.invalid/schemas/{kind}.schema.json"
SCHEMA_KINDS = ("scenario", "host-model", "flavours")
ARCHES = ("x86_64", "aarch64", "ppc64le", "s390x")
DOMAIN_TYPES = ("kvm", "qemu")
DOMAIN_CPU_MODES = ("host-passthrough", "host-model", "maximum", "custom")

# ---------------------------------------------------------------------------------------------------------------
# JSON Schema fragments of the value syntaxes (what planner.model.units parses)

MEMORY_UNITS = "KiB|MiB|GiB|TiB|K|M|G|T|KB|MB|GB|TB"
MEMORY = {"type": "string", "pattern": rf"^\s*[0-9]+(\.[0-9]+)?\s*({MEMORY_UNITS})\s*$",
          "description": "a size with a unit, e.g. 32GiB, 1.5GiB, 512MiB (K M G T are binary, as in libvirt)"}
MEMORY_OR_ZERO = {"anyOf": [MEMORY, {"const": 0}, {"const": "0"}],
                  "description": "a size with a unit, e.g. 32GiB; 0 for none"}
PAGE = {"type": "string", "pattern": r"^\s*[0-9]{1,12}(K|KiB|M|MiB|G|GiB)\s*$",
        "description": "a hugepage size, a power of two from 4K to 16G: 2M, 2MiB, 1G, 1GiB"}
CPULIST = {"anyOf": [{"type": "string", "pattern": r"^[0-9,\-^\s]*$"},
                     {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 65535}}],
           "description": "a CPU list: '0-17,72-89' with exclusions '^N' or '^N-M', or a list of integers; '' for none"}
DURATION = {"anyOf": [{"type": "number", "exclusiveMinimum": 0},
                      {"type": "string", "pattern": r"^\s*[0-9]+(\.[0-9]+)?\s*(s|m)?\s*$"}],
            "description": "seconds as a number, or a string with s or m: 60s, 2m"}
NAME_RE_TEXT = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
NAME = {"type": "string", "pattern": NAME_RE_TEXT,
        "description": "letters, digits, '.', '_', '-', starting with a letter or digit, at most 63 characters"}
NAME_OR_PATTERN = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[0-9]+-[0-9]+\][A-Za-z0-9._-]*)?$",
                   "description": "a name, or a pattern like web[01-40] (zero-padded to the width of the first "
                                  "number)"}
REF = "x-vplan-ref"
NODE_ID_KEY = {"type": "string", "pattern": "^[0-9]+$"}  # YAML's integer keys, as JSON property names
PAGE_POOLS = {"type": "object", "propertyNames": PAGE, "additionalProperties": {"type": "integer", "minimum": 0},
              "description": "hugepages preallocated, by page size: {1G: 16, 2M: 512}"}


def _ref(name: str) -> dict[str, str]:
    """A reference to another model's schema (made a ``$ref`` by :func:`_defs`; pydantic resolves only its own)."""
    return {REF: name}


def _value(parse: Callable[..., Any], schema: dict, description: str, title: str | None = None, **field: Any) -> Any:
    """A field whose YAML value goes through ``parse`` (the loader's parser: a ValueError is the message) and whose
    JSON Schema is ``schema``. The pydantic type stays ``Any``: the parser is the one judge of the value."""
    shown = {**schema, "description": description}
    if title:
        shown["title"] = title
    return Annotated[Any, BeforeValidator(parse), WithJsonSchema(shown), Field(description=description, **field)]


def _context_value(parse: Callable[[object, dict], Any], schema: dict, description: str) -> Any:
    """Like :func:`_value` for a parser that needs what the loader knows beyond this mapping (``context``)."""
    def validate(value: object, info: ValidationInfo) -> Any:
        return parse(value, info.context or {})
    return Annotated[Any, BeforeValidator(validate), WithJsonSchema({**schema, "description": description}),
                     Field(description=description)]


def _passthrough(schema: dict, description: str) -> Any:
    """A value the loader checks itself after this model (kept as written); documented by ``schema``."""
    return Annotated[Any, WithJsonSchema({**schema, "description": description}), Field(description=description)]


def _example(model: type[BaseModel]) -> str:
    return getattr(model, "EXAMPLE", "")


# ---------------------------------------------------------------------------------------------------------------
# policy


def _policy_number(low: int, high: int | None, low_open: bool, text: str) -> Callable[[object], Any]:
    return lambda value: _ranged(value, low, high, low_open=low_open, text=text)


class PolicySpec(BaseModel):
    """How guests are packed: caps on CPU overcommit, load and memory, the objective, the solver's time and the
    failures the plan must survive."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="policy")
    EXAMPLE: ClassVar[str] = "{cpu_overcommit_max: 4}"

    cpu_overcommit_max: _value(
        _policy_number(1, 8, False, "1 <= x <= 8"), {"type": "number", "minimum": 1, "maximum": 8},
        "hard cap on vCPUs per physical core, 1 <= x <= 8 (default 8): host-wide and per node shared pool") = None
    cpu_load_target: _value(
        _policy_number(0, 1, True, "0 < x <= 1"), {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "0 < x <= 1 (default 0.70): per node shared pool, sum of vCPUs x load <= target x pool CPUs; also the "
        "right-sizing rule vcpus = ceil(cpu_demand / target)") = None
    memory_overcommit: _value(
        _policy_number(1, None, False, ">= 1.0"), {"type": "number", "minimum": 1},
        ">= 1.0 (default 1.0): divides shared guests' non-hugepage memory (hugepages and dedicated guests never "
        "overcommit)") = None
    node_memory_target: _value(
        _policy_number(0, 1, True, "0 < x <= 1"), {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "0 < x <= 1 (default 1.0): per node, the physical 4K memory committed to guests (dedicated 1:1, shared "
        "divided by memory_overcommit) stays at or under this share of the node's free 4K memory (headroom kept "
        "for the host's page cache and QEMU's own memory)") = None
    objective: _value(lambda v: _choice(v, ("pack", "spread")), {"enum": ["pack", "spread"]},
                      "pack (default): fewest hosts; spread: lowest maximum host CPU load") = None
    time_limit: _value(_duration, DURATION, "the solver's budget (default 60s)") = None
    stall: _value(_duration, DURATION, "stop after this long without a better plan (default 10s)") = None
    survive: _value(_survive, {"oneOf": [
        {"type": "object", "properties": {"hosts": {"enum": [0, 1]}}, "required": ["hosts"],
         "additionalProperties": False},
        {"type": "object", "properties": {"racks": {"enum": [0, 1]}}, "required": ["racks"],
         "additionalProperties": False}]},
        "failures the plan must survive: {hosts: 1} or {racks: 1} (spare capacity for every evacuation)") = None
    anti_affinity_scope: _value(lambda v: _choice(v, SCOPES), {"enum": list(SCOPES)},
                                "where guests sharing an anti-affinity tag must differ: host (default), rack or zone"
                                ) = None
    tenant_isolation: _value(lambda v: _choice(v, ("none", "core", "node", "host")),
                             {"enum": ["none", "core", "node", "host"]},
                             "what two tenants never share: none (default), core, node or host") = None
    page_sharing: _value(_bool, {"type": "boolean"},
                         "false: no KSM page sharing for any guest (<nosharepages/>); default true") = None


#: policy key -> the Policy dataclass field it sets (survive sets survive_hosts or survive_racks)
POLICY_ATTRS = {"time_limit": "time_limit_s", "stall": "stall_s"}


# ---------------------------------------------------------------------------------------------------------------
# domain


class DomainSpec(BaseModel):
    """How the domain XML is made (scenario level; a guest's own ``domain:`` overrides it key by key)."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="domain")
    EXAMPLE: ClassVar[str] = "{type: qemu, cpu_mode: maximum}"

    type: _value(lambda v: _choice(v, DOMAIN_TYPES), {"enum": list(DOMAIN_TYPES)},
                 "domain type: kvm (default) or qemu (TCG, no KVM)") = None
    cpu_mode: _value(lambda v: _choice(v, DOMAIN_CPU_MODES), {"enum": list(DOMAIN_CPU_MODES)},
                     "host-passthrough (default with kvm), host-model, maximum (default with qemu) or custom "
                     "(needs cpu_model)") = None
    cpu_model: _value(lambda v: _xml_token(v, "a CPU model name, e.g. qemu64 or Skylake-Server"),
                      {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$"},
                      "CPU model with cpu_mode: custom, e.g. qemu64 or Skylake-Server") = None
    machine: _value(lambda v: _xml_token(v, "a machine type, e.g. q35 or pc-q35-7.2"),
                    {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$"},
                    "machine type, e.g. q35 or pc-q35-7.2") = None
    template: _passthrough({"type": "string", "minLength": 1},
                           "a domain XML (relative to the scenario) that vplan's settings are merged into; none "
                           "drops the scenario's template for a guest") = None


# ---------------------------------------------------------------------------------------------------------------
# host models (the mappings here; rules against the nodes, includes and captures in the loader's functions)


def _file_path(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{_show(value)} is not a file path")
    return value


class NodeSpec(BaseModel):
    """One host NUMA node: its CPUs, memory and hugepage pools."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="node")
    EXAMPLE: ClassVar[str] = "{id: 0, cpus: '0-7', memory: 64GiB}"

    id: _value(lambda v: _int(v, 0, MAX_NODE_ID), {"type": "integer", "minimum": 0, "maximum": MAX_NODE_ID},
               "node id (non-negative, unique; may be sparse, e.g. 0,1,16,17)")
    cpus: _value(_cpus, CPULIST, "the node's CPUs (no CPU in two nodes; may be empty: a CPU-less node)")
    memory: _value(lambda v: _memory(v, allow_zero=True), MEMORY_OR_ZERO, "the node's memory (0: a memory-less node)")
    hugepages: _passthrough(PAGE_POOLS, "pages preallocated in this node's pools, by size: {1G: 16, 2M: 0}; "
                                        "carved out of the node's memory") = None


class ReservedSpec(BaseModel):
    """What the host keeps for itself."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="reserved")
    EXAMPLE: ClassVar[str] = "{cpus: '0,72', memory: 2GiB}"

    cpus: _value(_cpus, CPULIST, "CPUs that never serve a guest vCPU (default none)") = ()
    memory: _value(lambda v: _memory(v, allow_zero=True), MEMORY_OR_ZERO,
                   "memory kept free on every node that has memory (default 0)") = 0


class HostModelSpec(BaseModel):
    """A host model: nodes, distances and SMT siblings inline; or ``{include: PATH}``; or a capture of a real host
    (``capabilities``, ``numactl`` or ``sysfs``) with overrides."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="host model")
    EXAMPLE: ClassVar[str] = "{nodes: [{id: 0, cpus: '0-7', memory: 64GiB}]}"

    nodes: _passthrough({"type": "array", "minItems": 1, "items": _ref("NodeSpec")},
                        "the host's NUMA nodes") = None
    distances: _passthrough({"type": "array", "items": {"type": "array", "items": {
        "type": "integer", "minimum": 10, "maximum": 254}}},
        "square matrix by node position: 10 on the diagonal, 11..254 elsewhere (default 10/20)") = None
    cores: _passthrough({"type": "array", "items": CPULIST},
                        "SMT sibling groups, e.g. [[0,72],[1,73]] (a core sits in one node; every CPU in one core)"
                        ) = None
    threads_per_core: _value(lambda v: _int(v, 1), {"type": "integer", "minimum": 1},
                             "SMT threads per core (default 1); siblings of c are c + k*N/T") = None
    reserved: _passthrough(_ref("ReservedSpec"), "CPUs and memory the host keeps for itself") = None
    arch: _value(lambda v: _choice(v, ARCHES), {"enum": list(ARCHES)}, "CPU architecture (default x86_64)") = None
    include: _value(_file_path, {"type": "string", "minLength": 1},
                          "a file holding this host model (relative to the file naming it); stands alone") = None
    capabilities: _value(_file_path, {"type": "string", "minLength": 1},
                               "a `virsh capabilities` XML of the host, in place of nodes/distances/cores") = None
    numactl: _value(_file_path, {"type": "string", "minLength": 1},
                          "a `numactl --hardware` output of the host, in place of nodes/distances/cores") = None
    sysfs: _value(_file_path, {"type": "string", "minLength": 1},
                        "a sysfs snapshot (directory or tarball) of the host, in place of nodes/distances/cores"
                        ) = None
    hugepages: _passthrough({"type": "object", "propertyNames": NODE_ID_KEY, "additionalProperties": PAGE_POOLS},
                            "with a capture: pools per node id, replacing the capture's: {0: {1G: 8}}") = None
    memory: _passthrough({"anyOf": [MEMORY, {"type": "object", "propertyNames": NODE_ID_KEY,
                                             "additionalProperties": MEMORY_OR_ZERO}]},
                         "with a capture: memory of every node it gives none for (64GiB) or per node id "
                         "({0: 64GiB})") = None
    lscpu: _value(_file_path, {"type": "string", "minLength": 1},
                        "with a numactl capture: an `lscpu -p` file giving the SMT siblings") = None


# ---------------------------------------------------------------------------------------------------------------
# hosts


def _label(key: str) -> Callable[[object], str]:
    def parse(value: object) -> str:
        if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
            raise ValueError(f"{_show(value)} is not a {key} label (expected a name, e.g. r1)")
        return str(value)
    return parse


def _host_model_name(value: object, context: dict) -> str:
    declared = context.get("declared", set())
    if not isinstance(value, str) or value not in declared:
        known = ", ".join(sorted(declared)) or "none declared"
        raise ValueError(f"unknown host model {_show(value)} (known: {known})")
    return value


class HostSpec(BaseModel):
    """Hosts of one model: a name or a pattern (``kvm[01-08]``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="host")
    EXAMPLE: ClassVar[str] = "{name: kvm01, model: r650}"

    name: _value(_pattern, NAME_OR_PATTERN, "host name or pattern, e.g. kvm[01-08]")
    model: _context_value(_host_model_name, {"type": "string"}, "a host model of host_models")
    rack: _value(_label("rack"), {"type": ["string", "integer"]}, "the host's rack (failure domain)") = None
    zone: _value(_label("zone"), {"type": ["string", "integer"]}, "the host's zone (failure domain)") = None


# ---------------------------------------------------------------------------------------------------------------
# guests


def _vcpus(value: object) -> int | str:
    return "auto" if value == "auto" and isinstance(value, str) else _int(value, 1)


def _numa(value: object) -> Any:
    if isinstance(value, list):
        return value  # explicit cells: the loader reads them (sums and pages are rules between keys)
    return None if value == "auto" and isinstance(value, str) else _int(value, 1)


def _guest_page(value: object, context: dict) -> int | None:
    """``none`` or a page size some host model lists (when every host model could be read)."""
    from planner.model.units import format_page

    if value == "none" and isinstance(value, str):
        return None
    if value is None or isinstance(value, (bool, dict, list)):
        raise ValueError(f"{_show(value)} is not a page size (expected none or e.g. 2M, 1G)")
    size = parse_page_kib(value)
    sizes = context.get("page_sizes")
    if context.get("pages_known") and sizes is not None and size not in sizes:
        listed = ", ".join(format_page(s) for s in sorted(sizes)) or "none"
        raise ValueError(f"no host model lists {format_page(size)} pages in a node's hugepages (listed: {listed})")
    return size


class CellSpec(BaseModel):
    """One explicit guest NUMA cell."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="guest NUMA cell")
    EXAMPLE: ClassVar[str] = "{vcpus: 2, memory: 4GiB}"

    vcpus: _value(lambda v: _int(v, 1), {"type": "integer", "minimum": 1}, "vCPUs of this cell")
    memory: _value(_memory, MEMORY, "memory of this cell (>= 1MiB)")


class GuestSpec(BaseModel):
    """A guest, or guests of one kind named by a pattern (``web[01-40]``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="guest", json_schema_extra={
        "if": {"properties": {"numa": {"type": "array"}}, "required": ["numa"]},
        "else": {"required": ["vcpus", "memory"]}})
    EXAMPLE: ClassVar[str] = "{name: web01, vcpus: 2, memory: 4GiB}"

    name: _value(_pattern, NAME_OR_PATTERN, "guest name or pattern, e.g. web[01-40]")
    vcpus: _value(_vcpus, {"anyOf": [{"type": "integer", "minimum": 1}, {"const": "auto"}]},
                  "integer >= 1, or auto (needs cpu_demand: ceil(cpu_demand / cpu_load_target)); may be left out "
                  "with explicit numa cells") = None
    memory: _value(_memory, MEMORY, "the guest's memory, e.g. 4GiB (>= 1MiB); may be left out with explicit numa "
                                    "cells") = None
    cpu: _value(lambda v: _choice(v, ("shared", "dedicated")), {"enum": ["shared", "dedicated"]},
                "shared (default): vCPUs float on their node's shared pool; dedicated: each vCPU pinned to a pCPU of "
                "its own") = None
    threads: _value(lambda v: _choice(v, ("prefer", "isolate", "require")),
                    {"enum": ["prefer", "isolate", "require"]},
                    "dedicated only: prefer (default) packs sibling threads, isolate keeps each vCPU's core to "
                    "itself, require gives sibling pairs (even vcpus)") = None
    load: _value(lambda v: _ranged(v, 0, 1, low_open=True, text="0 < load <= 1"),
                 {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                 "shared only: expected average load of each vCPU, 0 < load <= 1 (default 1.0)") = None
    cpu_demand: _value(lambda v: _ranged(v, 0, None, low_open=True, text="> 0 cores"),
                       {"type": "number", "exclusiveMinimum": 0},
                       "measured demand in cores (> 0): drives vcpus: auto and right-sizing") = None
    hugepages: _context_value(_guest_page, {"anyOf": [{"const": "none"}, PAGE]},
                              "none (default) or a page size a host model lists; memory a whole number of pages"
                              ) = None
    numa: _value(_numa, {"anyOf": [{"const": "auto"}, {"type": "integer", "minimum": 1},
                                   {"type": "array", "minItems": 1, "items": _ref("CellSpec")}]},
                 "auto (default): the fewest cells that fit; N cells (1 <= N <= vcpus); or the cells listed: "
                 "[{vcpus: 2, memory: 4GiB}, ...]") = None
    memory_mode: _value(lambda v: _choice(v, ("strict", "preferred", "interleave", "restrictive")),
                        {"enum": ["strict", "preferred", "interleave", "restrictive"]},
                        "numatune mode (default strict)") = None
    emulator: _value(lambda v: _choice(v, ("host", "isolate", "shared")), {"enum": ["host", "isolate", "shared"]},
                     "emulator threads: host (default: the reserved CPUs), isolate (a pCPU of their own) or shared"
                     ) = None
    anti_affinity: _value(_tags, {"anyOf": [{"type": "string", "minLength": 1},
                                            {"type": "array", "items": {"type": "string", "minLength": 1}}]},
                          "a tag or a list of tags: guests sharing a tag go on different hosts (racks, zones)"
                          ) = None
    priority: _value(lambda v: _int(v, 1), {"type": "integer", "minimum": 1},
                     "integer >= 1 (default 1): when not every guest fits, placed priority is maximised first"
                     ) = None
    host: _passthrough({"type": "string"}, "fixed placement (a running guest): a host of hosts") = None
    domain: _passthrough(_ref("DomainSpec"), "this guest's domain settings over the scenario's") = None
    anti_affinity_scope: _value(lambda v: _choice(v, SCOPES), {"enum": list(SCOPES)},
                                "host, rack or zone for this guest's anti-affinity tags") = None
    tenant: _value(_name, NAME, "the guest's tenant (policy.tenant_isolation keeps tenants apart)") = None
    page_sharing: _value(_bool, {"type": "boolean"}, "false: no KSM page sharing (<nosharepages/>)") = None


# ---------------------------------------------------------------------------------------------------------------
# the file


def _version(value: object) -> int:
    if isinstance(value, bool) or value != 1 or not isinstance(value, int):
        raise ValueError(f"{_show(value)} is not supported (only version: 1)")
    return value


class ScenarioSpec(BaseModel):
    """A vplan scenario (format v1): host models, hosts, guests and the policy for placing the guests."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="vplan scenario (format v1)")
    EXAMPLE: ClassVar[str] = "version: 1, name: ..."

    version: _value(_version, {"const": 1}, "the format version; only 1 is supported")
    name: _value(_name, NAME, "the scenario's name")
    policy: _passthrough(_ref("PolicySpec"), "how guests are packed") = None
    domain: _passthrough(_ref("DomainSpec"), "how domain XML is made, for every guest") = None
    host_models: _passthrough({"type": "object", "additionalProperties": _ref("HostModelSpec")},
                              "host model name -> host model (inline, {include: PATH} or a capture)") = None
    hosts: _passthrough({"type": "array", "items": _ref("HostSpec")}, "the hosts") = None
    guests: _passthrough({"type": "array", "items": _ref("GuestSpec")}, "the guests") = None


def keys(model: type[BaseModel]) -> tuple[str, ...]:
    """The keys a mapping of ``model`` may hold, in documentation order."""
    return tuple(model.model_fields)


# ---------------------------------------------------------------------------------------------------------------
# Validation: one mapping, problems in the loader's order and words


Loc = tuple[Any, ...]


class CheckResult:
    """What :func:`check_mapping` found: ``values`` (key -> parsed value, for valid keys given) and ``problems``
    (``(loc, message)``: loc is the key path below the mapping, e.g. ``("vcpus",)``; ``()`` the mapping itself)."""

    __slots__ = ("bad_keys", "mapping", "problems", "value_problems", "values")

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.problems: list[tuple[Loc, str]] = []
        self.bad_keys: set[str] = set()
        self.mapping = True  # False: not a mapping at all
        self.value_problems = 0  # problems with values (not unknown or missing keys)


_ADAPTERS: dict[tuple[type, str], TypeAdapter] = {}


def _adapter(model: type[BaseModel], key: str) -> TypeAdapter:
    """A validator of one field of ``model`` (for the valid keys of a mapping that has problems elsewhere)."""
    found = _ADAPTERS.get((model, key))
    if found is None:
        info = model.model_fields[key]
        found = _ADAPTERS[(model, key)] = TypeAdapter(Annotated[Any, *info.metadata])
    return found


def field_value(model: type[BaseModel], key: str, value: object, context: dict | None = None) -> Any:
    """One key's value judged by its field of ``model`` alone (for a loader check that must come at its place
    among others): the parsed value, or ``ValueError`` with the field's message."""
    try:
        return _adapter(model, key).validate_python(value, context=context)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        cause = (error.get("ctx") or {}).get("error")
        raise ValueError(str(cause) if isinstance(cause, ValueError) else error["msg"]) from None


def _unknown_key(key: object, allowed: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(str(key), allowed, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"unknown key ({hint}known keys: {', '.join(allowed)})"


def check_mapping(model: type[BaseModel], raw: object, *, required: tuple[str, ...] | None = None,
                  context: dict | None = None, order: tuple[str, ...] | None = None,
                  incomplete: bool = True, judge_values: bool = True) -> CheckResult:
    """Validate one YAML mapping with ``model``: its unknown keys (with a did-you-mean), its missing ``required``
    keys (default: the model's required fields) and each value (the loader's parsers). All problems are
    collected, in the loader's order: unknown keys as written, missing keys, then values in the model's key order
    (or ``order``; ``incomplete=False``: values are not judged when a required key is missing;
    ``judge_values=False``: keys only, the caller judges each value with :func:`field_value` in its own order).
    Valid keys' values are returned even when other keys are wrong (so later checks can go on)."""
    result = CheckResult()
    allowed = keys(model)
    if not isinstance(raw, dict):
        example = _example(model)
        hint = f", e.g. {example}" if example else ""
        result.problems.append(((), f"expected a mapping{hint}, got {_show(raw)}"))
        result.mapping = False
        return result
    if required is None:
        required = tuple(name for name, info in model.model_fields.items() if info.is_required())
    for key in raw:
        if key not in allowed:
            result.problems.append(((key,), _unknown_key(key, allowed)))
    for key in required:
        if key not in raw:
            result.problems.append(((key,), "required key is missing"))
            if not incomplete:
                return result
    given = {key: value for key, value in raw.items() if key in allowed}
    if not judge_values:
        result.values = given
        return result
    try:
        validated = model.model_validate(given, context=context)
        result.values = {key: getattr(validated, key) for key in given}
        return result
    except ValidationError as exc:
        errors = [e for e in exc.errors(include_url=False) if e["type"] != "missing"]
    rank = {key: i for i, key in enumerate(order or allowed)}
    errors.sort(key=lambda e: rank.get(e["loc"][0], len(rank)) if e["loc"] else -1)
    for error in errors:
        loc = tuple(error["loc"])
        result.bad_keys.add(loc[0])
        result.value_problems += 1
        cause = (error.get("ctx") or {}).get("error")
        result.problems.append((loc, str(cause) if isinstance(cause, ValueError) else error["msg"]))
    for key, value in given.items():
        if key not in result.bad_keys:
            result.values[key] = _adapter(model, key).validate_python(value, context=context)
    return result


# ---------------------------------------------------------------------------------------------------------------
# JSON Schema


_DEFS = (PolicySpec, DomainSpec, NodeSpec, ReservedSpec, HostModelSpec, HostSpec, CellSpec, GuestSpec)


def _refs(node: Any) -> Any:
    """``{REF: NAME}`` → ``{"$ref": "#/$defs/NAME"}`` everywhere in a schema."""
    if isinstance(node, dict):
        if REF in node:
            return {"$ref": f"#/$defs/{node[REF]}", **{k: _refs(v) for k, v in node.items() if k != REF}}
        return {key: _refs(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_refs(value) for value in node]
    return node


def _model_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A model's schema: properties titled by their key, no ``default: null`` (a key left out takes the default the
    description names)."""
    schema = model.model_json_schema()
    schema.pop("$defs", None)
    for key, prop in schema.get("properties", {}).items():
        prop["title"] = key
        if prop.get("default", 0) is None:
            del prop["default"]
    return _refs(schema)


def _defs() -> dict[str, Any]:
    """Every model's schema under its class name, with ``$ref``s between them as written in the fields."""
    return {model.__name__: _model_schema(model) for model in _DEFS}


def _flavour_schema(guest: dict[str, Any]) -> dict[str, Any]:
    """A flavour: guest keys other than those of one guest (name, anti_affinity, priority, host)."""
    own = ("name", "anti_affinity", "priority", "host")
    flavour = {key: value for key, value in guest.items() if key not in ("required", "if", "then", "else", "title")}
    flavour["properties"] = {k: v for k, v in guest["properties"].items() if k not in own}
    flavour["title"] = "flavour"
    flavour["description"] = "a guest size: scenario guest keys without name, anti_affinity, priority and host"
    return flavour


def json_schema(kind: Literal["scenario", "host-model", "flavours"] = "scenario") -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a scenario file, a host model file or the flavour catalogue. A comment
    names ``vplan schema`` (also the marker by which vplan knows the file as its own output)."""
    defs = _defs()
    head = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID.format(kind=kind),
            "$comment": f"Generated by `vplan schema --kind {kind}` from planner/io/schema.py; do not edit."}
    if kind == "scenario":
        top = _model_schema(ScenarioSpec)
    elif kind == "host-model":
        top = {**defs["HostModelSpec"], "title": "vplan host model file",
               "description": "one host model mapping (models/hosts/*.yaml): " + defs["HostModelSpec"]["description"]}
    elif kind == "flavours":
        defs["FlavourSpec"] = _flavour_schema(defs["GuestSpec"])
        top = {"title": "vplan flavour catalogue", "description": "flavour name -> guest keys (models/flavours.yaml)",
               "type": "object", "additionalProperties": False, "required": ["flavours"],
               "properties": {"flavours": {"type": "object", "additionalProperties": _ref("FlavourSpec"),
                                           "description": "flavour name -> guest keys"}}}
    else:
        raise ValueError(f"unknown schema kind '{kind}' (one of: {', '.join(SCHEMA_KINDS)})")
    return {**head, **top, "$defs": defs}
