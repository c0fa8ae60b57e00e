"""What-if variants of a scenario, without editing YAML: every function returns a NEW ``Scenario``.

The scenario given is never changed (``Scenario``, ``Guest``, ``Host``, ``HostModel`` and ``Node`` are frozen;
new objects are made with ``dataclasses.replace``). The result is plain scenario data, ready for
``planner.engine.solver.solve``.

* ``add_guests``      new guests: ``Guest`` objects, guest-key mappings as in a scenario file, or ``count`` guests
                      of a catalogue flavour (``models/flavours.yaml``) named by a pattern;
* ``remove_guests``   by name, name pattern (``web[01-05]``), glob (``web*``) or predicate;
* ``scale_demand``    ``by="count"`` (copies of guests, the default), ``"size"`` (vCPUs and memory of each guest)
                      or ``"load"`` (the load of shared guests);
* ``swap_host_model`` hosts get another host model (an object, a model of the scenario, or a catalogue name);
* ``with_hosts``      the fleet replaced by N hosts of one model (what capacity questions use);
* ``set_policy``      policy values;
* ``switch_page_size`` hugepage guests move to another page size, host pools re-carved in the new size;
* ``smt_off``         host models with one thread per core.

Catalogues: ``read_flavours()`` reads ``models/flavours.yaml``; ``catalogue_model(name)`` reads a host model of
``models/hosts/`` through the scenario loader (with all its checks).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields, replace
from fractions import Fraction
from typing import Any, Literal, cast

from planner.io.catalogue import (  # noqa: E402,F401 - the catalogue, re-exported for notebooks
    FLAVOURS_FILE,
    MODELS_DIR,
    REPO,
    available_models,
    catalogue_model,
    read_flavours,
)
from planner.io.schema import PolicySpec, field_value
from planner.model.scenario import Guest, GuestCell, Host, HostModel, Policy, Scenario
from planner.model.units import (
    NAME_RE,
    expand_name,
    format_page,
    parse_duration_s,
    parse_page_kib,
    to_fraction,
)

MIB_KIB = 1024

GuestSelector = Callable[[Guest], bool]

__all__ = [
    "add_guests",
    "available_models",
    "catalogue_model",
    "flavour_guest",
    "guest_from_spec",
    "read_flavours",
    "remove_guests",
    "scale_demand",
    "set_policy",
    "smt_off",
    "swap_host_model",
    "switch_page_size",
    "with_hosts",
]


# --------------------------------------------------------------------------------------------------- catalogues
# read once per file version by planner.io.catalogue (read_flavours, available_models, catalogue_model)


def resolve_model(scenario: Scenario, model: HostModel | str) -> HostModel:
    """A HostModel; a model name of the scenario; or a catalogue name."""
    if isinstance(model, HostModel):
        return model
    if model in scenario.host_models:
        return scenario.host_models[model]
    return catalogue_model(model)


# --------------------------------------------------------------------------------------------------- guests
def _choice(key: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{key}: {value!r} is not one of {', '.join(choices)}")
    return str(value)


def _as_yaml_keys(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Guest keys as a scenario file writes them: keys set to None are left out, ``GuestCell`` items of ``numa``
    become ``{vcpus, memory}`` mappings and an integer ``hugepages`` (KiB) a page size, so that the loader's
    parser reads Python-made specs too."""
    item = {key: value for key, value in spec.items() if value is not None}
    if isinstance(item.get("numa"), (list, tuple)):
        item["numa"] = [{"vcpus": c.vcpus, "memory": f"{c.memory_kib}KiB"} if isinstance(c, GuestCell) else c
                        for c in item["numa"]]
    page = item.get("hugepages")
    if isinstance(page, int) and not isinstance(page, bool):
        item["hugepages"] = format_page(page)
    return item


def guest_from_spec(spec: Mapping[str, Any], policy: Policy | None = None, *, name: str | None = None) -> Guest:
    """A ``Guest`` from scenario-v1 guest keys (``{"name": "web01", "vcpus": 2, "memory": "4GiB", ...}``), read by
    the scenario loader's own guest parser (``planner.io.loader.load_guest``): the same keys, defaults, per-guest
    rules and messages as a guest item of a scenario file (threads only for dedicated guests, load only for shared
    ones, ``vcpus: auto`` from ``cpu_demand`` and the policy's load target, explicit cells that add up, memory a
    whole number of pages, ...). ``name`` overrides ``spec["name"]``. Raises ``ValueError`` naming the guest and
    the key, e.g. ``guest y: vcpus: 8 vCPUs, but the numa cells hold 2 + 4 = 6 (...)``."""
    from planner.io.loader import load_guest

    return load_guest(_as_yaml_keys(spec), policy, name=name)


def _scale_cells(g: Guest, vcpus: int, memory_kib: int, unit: int) -> tuple[GuestCell, ...]:
    """Explicit cells resized to new totals: each cell's share kept (largest remainders), whole pairs/units, >= 1."""
    step = 2 if g.threads == "require" else 1

    def share(parts: list[int], total: int, each: int) -> list[int]:
        whole, old = total // each, sum(parts)
        raw = [Fraction(p * whole, old) for p in parts]
        out = [max(int(r), 1) for r in raw]
        order = sorted(range(len(parts)), key=lambda i: raw[i] - int(raw[i]), reverse=True)
        i = 0
        while sum(out) < whole:
            out[order[i % len(out)]] += 1
            i += 1
        while sum(out) > whole and max(out) > 1:
            out[out.index(max(out))] -= 1
        return [n * each for n in out]

    vs = share([c.vcpus for c in g.numa_cells], vcpus, step)
    ms = share([c.memory_kib for c in g.numa_cells], memory_kib - memory_kib % unit, unit)
    ms[-1] += memory_kib % unit
    return tuple(GuestCell(vcpus=v, memory_kib=m) for v, m in zip(vs, ms, strict=False))


def flavour_guest(flavour: str | Mapping[str, Any], name: str, policy: Policy | None = None, **overrides: Any) -> Guest:
    """One guest of a catalogue flavour (by name) or of a mapping of guest keys, with ``overrides`` (guest keys,
    e.g. ``load=0.4``, ``anti_affinity="db"``, ``priority=5``)."""
    spec = dict(read_flavours()[flavour]) if isinstance(flavour, str) else dict(flavour)
    spec.update(overrides)
    spec.pop("name", None)
    return guest_from_spec(spec, policy, name=name)


def _names_for(pattern: str | None, count: int | None, default_prefix: str, taken: set[str], start: int) -> list[str]:
    """``count`` names from a pattern: ``web[001-200]`` (its own count), ``web-{i:03d}`` (format string, i from
    ``start``), or None: ``PREFIX-001``... skipping names already taken."""
    if pattern is not None and "[" in pattern:
        names = expand_name(pattern)
        if count is not None and count != len(names):
            raise ValueError(f"pattern {pattern!r} gives {len(names)} names, count is {count}")
        return names
    if count is None:
        if pattern is None or "{" not in pattern:
            return [pattern] if pattern else []
        raise ValueError("a name format needs a count")
    if pattern is None:
        width = max(3, len(str(count)))
        names, i = [], start
        while len(names) < count:
            candidate = f"{default_prefix}-{i:0{width}d}"
            if candidate.lower() not in taken:
                names.append(candidate)
            i += 1
        return names
    if "{" not in pattern:
        raise ValueError(f"name {pattern!r} for {count} guests needs a pattern (web[001-{count:03d}]) or a format "
                         "string (web-{i:03d})")
    return [pattern.format(i=i) for i in range(start, start + count)]


def _check_names(names: Iterable[str]) -> None:
    seen: dict[str, str] = {}
    for name in names:
        if not NAME_RE.match(name):
            raise ValueError(f"{name!r} is not a valid name (letters, digits, '.', '_', '-', at most 63 characters)")
        if name.lower() in seen:
            raise ValueError(f"guest name {name!r} is already used (as {seen[name.lower()]!r}); names must be unique, "
                             "also ignoring case")
        seen[name.lower()] = name


def _with_guests(scenario: Scenario, guests: Iterable[Guest]) -> Scenario:
    guests = tuple(guests)
    _check_names(g.name for g in guests)
    hosts = {h.name for h in scenario.hosts}
    for g in guests:
        if g.host is not None and g.host not in hosts:
            raise ValueError(f"guest {g.name} is fixed to host {g.host}, which is not a host of the scenario")
    return replace(scenario, guests=guests)


def add_guests(
    scenario: Scenario,
    guests: Guest | Mapping[str, Any] | Iterable[Guest | Mapping[str, Any]] | None = None,
    *,
    flavour: str | Mapping[str, Any] | None = None,
    count: int | None = None,
    name: str | None = None,
    start: int = 1,
    **overrides: Any,
) -> Scenario:
    """A new scenario with guests added after the existing ones.

    Either ``guests``: a ``Guest``, a mapping of scenario guest keys (``name`` may be a pattern such as
    ``web[01-20]``), or a list of them; or ``flavour`` (a catalogue flavour name or a mapping of guest keys) with
    ``count`` guests named by ``name``: a pattern ``'web[001-200]'``, a format string ``'web-{i:03d}'`` (i from
    ``start``), or by default ``FLAVOUR-001``, ``FLAVOUR-002``, ... skipping names already in the scenario.
    ``overrides`` are guest keys applied to every flavour guest (``load=0.4``, ``anti_affinity="db"``).
    A name already in the scenario (also ignoring case) is a ``ValueError``."""
    policy = scenario.policy
    new: list[Guest] = []
    if guests is not None:
        if flavour is not None:
            raise ValueError("give guests or flavour, not both")
        items = [guests] if isinstance(guests, (Guest, Mapping)) else list(guests)
        for item in items:
            if isinstance(item, Guest):
                new.append(item)
                continue
            spec = {**item, **overrides}
            names = expand_name(spec.get("name", ""))
            if names:  # guests of one item differ by name only: parsed once
                first = guest_from_spec(spec, policy, name=names[0])
                new += [first, *(replace(first, name=n) for n in names[1:])]
    elif flavour is not None:
        label = flavour if isinstance(flavour, str) else "guest"
        taken = {g.name.lower() for g in scenario.guests}
        names = _names_for(name, count, label, taken, start)
        if names:  # one flavour guest, parsed once, under every name
            first = flavour_guest(flavour, names[0], policy, **overrides)
            new += [first, *(replace(first, name=n) for n in names[1:])]
    else:
        raise ValueError("give guests, or a flavour and a count")
    return _with_guests(scenario, scenario.guests + tuple(new))


def _selector(names: str | Iterable[str] | GuestSelector | None, where: GuestSelector | None,
              all_names: list[str]) -> Callable[[str, Any], bool]:
    """Turns names (exact, ``web[01-05]`` patterns, ``web*`` globs) and/or a predicate into a test on items."""
    if callable(names) and where is None:
        names, where = None, names
    chosen: set[str] | None = None
    if names is not None:
        chosen = set()
        items = [names] if isinstance(names, str) else list(cast("Iterable[str]", names))
        by_lower = {n.lower(): n for n in all_names}
        for item in items:
            if any(ch in item for ch in "*?"):
                hits = fnmatch.filter(all_names, item)
            else:
                hits = [by_lower[n.lower()] for n in expand_name(item) if n.lower() in by_lower]
                missing = [n for n in expand_name(item) if n.lower() not in by_lower]
                if missing:
                    raise KeyError(f"no such name(s): {', '.join(missing[:10])}")
            if not hits:
                raise KeyError(f"{item!r} matches nothing")
            chosen.update(hits)
    if chosen is None and where is None:
        return lambda name, obj: True
    return lambda name, obj: (chosen is None or name in chosen) and (where is None or bool(where(obj)))


def remove_guests(scenario: Scenario, names: str | Iterable[str] | GuestSelector | None = None, *,
                  where: GuestSelector | None = None) -> Scenario:
    """A new scenario without the guests named (exact names, patterns ``web[01-05]``, globs ``web*``; an unknown
    exact name or a pattern matching nothing is a ``KeyError``) and/or those for which ``where(guest)`` is true
    (a predicate may also be given as ``names``)."""
    if names is None and where is None:
        raise ValueError("give names or a predicate")
    drop = _selector(names, where, [g.name for g in scenario.guests])
    return replace(scenario, guests=tuple(g for g in scenario.guests if not drop(g.name, g)))


def _fraction(value: float | int | str | Fraction, what: str) -> Fraction:
    value = value if isinstance(value, Fraction) else to_fraction(value, what)
    if value <= 0:
        raise ValueError(f"{what} must be > 0")
    return value


def _round_memory(kib: Fraction, unit: int) -> int:
    return max(math.ceil(kib / unit), 1) * unit


def scale_demand(
    scenario: Scenario,
    factor: float | Fraction,
    *,
    by: str = "count",
    where: GuestSelector | None = None,
    anti_affinity: str = "keep",
    suffix: str = "-s{k}",
) -> Scenario:
    """A new scenario with the guests' demand multiplied by ``factor`` (> 0).

    ``by="count"`` (default): the number of guests. Guest i (in scenario order, counting only the guests
    ``where`` selects) gets ``floor(f·(i+1)) − floor(f·i)`` instances, so every tier grows (or shrinks) by the
    factor and the total is ``floor(f·n)``: ×2 doubles every guest, ×1.5 adds a copy of every second guest,
    ×0.5 keeps every second guest. The first instance keeps the guest's name; copies are named
    ``NAME`` + ``suffix`` (``web01-s2``, ``web01-s3``, ...), are not fixed to a host (new guests are not running
    yet) and keep the anti-affinity tags (``anti_affinity="keep"``: the service's replicas stay spread) or get
    tags of their own copy generation (``"new"``: tag ``db`` becomes ``db-s2`` on the copies).

    ``by="size"``: every guest keeps its name and gets ⌈vcpus·f⌉ vCPUs (``threads: require``: rounded up to even;
    ``numa`` capped at what the new size allows) and memory ⌈memory·f⌉ rounded up to whole pages (hugepages) or
    MiB; ``cpu_demand`` scales too.

    ``by="load"``: shared guests' loads are multiplied, capped at 1.0 (a vCPU cannot be busier than a CPU);
    dedicated guests are unchanged."""
    f = _fraction(factor, "factor")
    select = where or (lambda g: True)
    if by == "count":
        if anti_affinity not in ("keep", "new"):
            raise ValueError("anti_affinity is 'keep' or 'new'")
        taken = {g.name.lower() for g in scenario.guests}
        out: list[Guest] = []
        i = 0
        for g in scenario.guests:
            if not select(g):
                out.append(g)
                continue
            n = math.floor(f * (i + 1)) - math.floor(f * i)
            i += 1
            if n >= 1:
                out.append(g)
            k = 2
            for _ in range(n - 1):
                while True:
                    copy_name = g.name + suffix.format(k=k)
                    if copy_name.lower() not in taken:
                        break
                    k += 1
                taken.add(copy_name.lower())
                tags = g.anti_affinity if anti_affinity == "keep" else tuple(t + suffix.format(k=k)
                                                                             for t in g.anti_affinity)
                out.append(replace(g, name=copy_name, host=None, anti_affinity=tags))
                k += 1
        return _with_guests(scenario, out)
    if by == "size":
        out = []
        for g in scenario.guests:
            if not select(g):
                out.append(g)
                continue
            vcpus = max(math.ceil(g.vcpus * f), 1)
            if g.threads == "require" and vcpus % 2:
                vcpus += 1
            unit = g.hugepage_kib or MIB_KIB
            memory = _round_memory(g.memory_kib * f, unit)
            numa = g.numa
            cells = g.numa_cells
            if cells:  # each cell keeps its share; at least one vCPU (pair) and one unit per cell
                step = 2 if g.threads == "require" else 1
                vcpus = max(vcpus, step * len(cells))
                memory = max(memory, unit * len(cells))
                cells = _scale_cells(g, vcpus, memory, unit)
            elif numa is not None:
                limit = vcpus // 2 if g.threads == "require" else vcpus
                numa = max(1, min(numa, limit, memory // unit))
            demand = g.cpu_demand * f if g.cpu_demand is not None else None
            out.append(replace(g, vcpus=vcpus, memory_kib=memory, numa=numa, cpu_demand=demand, numa_cells=cells))
        return replace(scenario, guests=tuple(out))
    if by == "load":
        out = [replace(g, load=min(g.load * f, Fraction(1))) if select(g) and not g.dedicated else g
               for g in scenario.guests]
        return replace(scenario, guests=tuple(out))
    raise ValueError(f"by is 'count', 'size' or 'load', not {by!r}")


# --------------------------------------------------------------------------------------------------- hosts
def _host_selector(hosts, all_names: list[str]) -> Callable[[Host], bool]:
    if hosts is None:
        return lambda h: True
    if callable(hosts):
        return hosts
    test = _selector(hosts, None, all_names)
    return lambda h: test(h.name, h)


def swap_host_model(scenario: Scenario, model: HostModel | str,
                    hosts: str | Iterable[str] | Callable[[Host], bool] | None = None) -> Scenario:
    """A new scenario whose hosts (all, or those named — exact, ``kvm[1-2]`` patterns, ``kvm*`` globs — or those
    for which a predicate on ``Host`` is true) have another host model: a ``HostModel``, the name of a model of the
    scenario, or the name of a catalogue model (``models/hosts/NAME.yaml``). Hosts keep their names, so fixed
    guests stay on them. The model is added to ``host_models`` under its name; a different model already under
    that name is a ``ValueError``."""
    new_model = resolve_model(scenario, model)
    existing = scenario.host_models.get(new_model.name)
    if existing is not None and existing is not new_model:
        raise ValueError(f"the scenario already has another host model named {new_model.name!r}")
    select = _host_selector(hosts, [h.name for h in scenario.hosts])
    new_hosts = tuple(replace(h, model=new_model.name) if select(h) else h for h in scenario.hosts)
    models = {**scenario.host_models, new_model.name: new_model}
    return replace(scenario, host_models=models, hosts=new_hosts)


def with_hosts(scenario: Scenario, model: HostModel | str, count: int, *, prefix: str | None = None) -> Scenario:
    """A new scenario whose fleet is ``count`` hosts of one model (named ``PREFIX01``.. ``PREFIXnn``, default
    prefix ``MODEL-``), and only that model. Guests fixed to a host are no longer fixed (their hosts are gone)."""
    if count < 0:
        raise ValueError("count must be >= 0")
    new_model = resolve_model(scenario, model)
    prefix = f"{new_model.name}-" if prefix is None else prefix
    width = max(2, len(str(count)))
    hosts = tuple(Host(f"{prefix}{i:0{width}d}", new_model.name) for i in range(1, count + 1))
    guests = tuple(replace(g, host=None) if g.host is not None else g for g in scenario.guests)
    return replace(scenario, host_models={new_model.name: new_model}, hosts=hosts, guests=guests)


# --------------------------------------------------------------------------------------------------- policy
_POLICY_FIELDS = {f.name for f in fields(Policy)}


def set_policy(scenario: Scenario, **values: Any) -> Scenario:
    """A new scenario with policy values changed: ``cpu_overcommit_max`` (1..8), ``cpu_load_target`` (0 < x <= 1),
    ``memory_overcommit`` (>= 1), ``node_memory_target`` (0 < x <= 1), ``objective`` (pack or spread),
    ``time_limit_s`` or ``time_limit`` and ``stall_s`` or ``stall`` (seconds or '60s'), ``survive`` ({hosts: 1},
    {racks: 1} or None), ``anti_affinity_scope`` (host, rack or zone), ``tenant_isolation`` (none, core, node, host),
    ``page_sharing`` (bool). Numbers are taken exactly (0.7 is 7/10). Guests with ``vcpus: auto`` are right-sized
    again when the load target changes (⌈cpu_demand ÷ target⌉)."""
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if key in ("time_limit", "stall"):
            key = f"{key}_s"
        if key == "survive":  # {hosts: 1}, {racks: 1}, or None / {} for no headroom
            survive = dict(value or {})
            if set(survive) - {"hosts", "racks"} or len(survive) > 1 or any(v not in (0, 1) for v in survive.values()):
                raise ValueError(f"survive {value!r}: expected {{hosts: 1}}, {{racks: 1}} or None")
            changes["survive_hosts"], changes["survive_racks"] = survive.get("hosts", 0), survive.get("racks", 0)
            continue
        if key not in _POLICY_FIELDS:
            raise ValueError(f"unknown policy key {key!r} (known: survive, {', '.join(sorted(_POLICY_FIELDS))})")
        if key == "objective":
            changes[key] = _choice("objective", value, ("pack", "spread"))
        elif key == "anti_affinity_scope":
            changes[key] = _choice("anti_affinity_scope", value, ("host", "rack", "zone"))
        elif key == "tenant_isolation":
            changes[key] = _choice("tenant_isolation", value, ("none", "core", "node", "host"))
        elif key == "page_sharing":
            if not isinstance(value, bool):
                raise ValueError(f"page_sharing {value!r}: true or false")
            changes[key] = value
        elif key in ("time_limit_s", "stall_s"):
            changes[key] = parse_duration_s(value)
        elif key in ("survive_hosts", "survive_racks"):
            if value not in (0, 1):
                raise ValueError(f"{key} {value!r}: 0 or 1")
            changes[key] = value
        else:
            number = value if isinstance(value, Fraction) else to_fraction(value, key)
            try:  # the range is the scenario file's (planner.io.schema.PolicySpec): declared once
                changes[key] = field_value(PolicySpec, key, number)
            except ValueError as exc:
                raise ValueError(f"{key} {exc}") from None
    policy = replace(scenario.policy, **changes)
    guests = scenario.guests
    if "cpu_load_target" in changes:
        resized = []
        for g in guests:
            if g.vcpus_auto and g.cpu_demand is not None:
                vcpus = math.ceil(g.cpu_demand / policy.cpu_load_target)
                if g.threads == "require" and vcpus % 2:
                    vcpus += 1
                g = replace(g, vcpus=vcpus)
            resized.append(g)
        guests = tuple(resized)
    return replace(scenario, policy=policy, guests=guests)


# --------------------------------------------------------------------------------------------------- hugepages
def _page(value: int | str) -> int:
    return value if isinstance(value, int) else parse_page_kib(value)


def switch_page_size(
    scenario: Scenario,
    page: int | str,
    *,
    from_page: int | str | None = None,
    where: GuestSelector | None = None,
    pools: bool = True,
) -> Scenario:
    """A new scenario where hugepage guests use pages of ``page`` (``'2M'``, ``'1G'`` or KiB).

    Guests: every guest on hugepages (only those on ``from_page`` pages if given, and only those ``where``
    selects) switches to the new size; its memory is rounded UP to a whole number of new pages (a 1.5GiB guest
    on 2M pages needs 2GiB of 1G pages). Guests on ordinary 4K memory are not changed.

    Host pools (``pools=True``): on every node of every host model, the memory of the pools being switched (the
    ``from_page`` pools, or every pool of another size) is carved again in pages of the new size:
    ``new pages += ⌊pool memory ÷ new size⌋``; a remainder smaller than one new page goes back to ordinary 4K
    memory. So the same memory stays in hugepages, in the new size (2048 × 2M = 4GiB → 4 × 1G)."""
    new = _page(page)
    old = _page(from_page) if from_page is not None else None
    select = where or (lambda g: True)
    guests = []
    for g in scenario.guests:
        if g.hugepage_kib and g.hugepage_kib != new and (old is None or g.hugepage_kib == old) and select(g):
            memory = _round_memory(Fraction(g.memory_kib), new)
            numa = g.numa
            if g.numa_cells:  # each cell rounded up to whole pages of the new size
                cells = tuple(GuestCell(c.vcpus, _round_memory(Fraction(c.memory_kib), new)) for c in g.numa_cells)
                memory = sum(c.memory_kib for c in cells)
                g = replace(g, numa_cells=cells)
            elif numa is not None:
                numa = max(1, min(numa, memory // new))
            g = replace(g, hugepage_kib=new, memory_kib=memory, numa=numa)
        guests.append(g)
    models = dict(scenario.host_models)
    if pools:
        for key, model in scenario.host_models.items():
            nodes = []
            for node in model.nodes:
                moved = sum(size * n for size, n in node.hugepages.items()
                            if size != new and (old is None or size == old))
                if not moved:
                    nodes.append(node)
                    continue
                pages = {size: n for size, n in node.hugepages.items()
                         if size == new or (old is not None and size != old)}
                pages[new] = pages.get(new, 0) + moved // new
                nodes.append(replace(node, hugepages=dict(sorted(pages.items()))))
            if nodes != list(model.nodes):
                models[key] = replace(model, nodes=tuple(nodes))
    return replace(scenario, guests=tuple(guests), host_models=models)


# --------------------------------------------------------------------------------------------------- SMT
def smt_off(scenario: Scenario, models: Iterable[str] | None = None, *,
            require: Literal["isolate", "prefer", "keep"] = "isolate") -> Scenario:
    """A new scenario with SMT turned off on the host models (all, or those named): one thread per core, keeping
    the first thread of each sibling group (with Linux's usual numbering the CPUs that stay are 0..N/T−1, as on a
    host booted with SMT off); nodes lose the other threads, reserved CPUs keep only the first threads.
    Memory, pools and distances are unchanged.

    Guests: ``threads: isolate`` stays isolate (each vCPU still has a core of its own, now one CPU instead of T);
    ``threads: prefer`` and shared guests are unchanged. ``threads: require`` needs sibling pairs, which are gone:
    when no host model in use keeps SMT, such guests become ``require`` (default ``"isolate"``: every vCPU keeps a
    whole core, as close as a host without SMT gets; or ``"prefer"``); ``require="keep"`` leaves them (they will
    not be placed on SMT-less hosts)."""
    if require not in ("isolate", "prefer", "keep"):
        raise ValueError("require is 'isolate', 'prefer' or 'keep'")
    names = set(scenario.host_models) if models is None else set(models)
    unknown = names - set(scenario.host_models)
    if unknown:
        raise KeyError(f"no such host model(s): {', '.join(sorted(unknown))}")
    new_models = dict(scenario.host_models)
    for key in sorted(names):
        model = scenario.host_models[key]
        if all(len(core) == 1 for core in model.cores):
            continue
        keep = {core[0] for core in model.cores}
        nodes = tuple(replace(n, cpus=tuple(c for c in n.cpus if c in keep)) for n in model.nodes)
        new_models[key] = replace(
            model,
            nodes=nodes,
            cores=tuple((core[0],) for core in model.cores),
            reserved_cpus=frozenset(model.reserved_cpus & keep),
            source=f"{model.source or model.name} (SMT off)",
        )
    guests = scenario.guests
    in_use = {h.model for h in scenario.hosts}
    smt_left = any(len(core) > 1 for m in in_use for core in new_models[m].cores)
    if require != "keep" and not smt_left:
        guests = tuple(replace(g, threads=require) if g.threads == "require" else g for g in guests)
    return replace(scenario, host_models=new_models, guests=guests)
