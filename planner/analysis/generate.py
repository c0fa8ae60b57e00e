"""Seeded fleet generator: scenario-v1 YAML for a mixed fleet of real host models and catalogue flavours.

``generate_fleet(hosts, guests, seed)`` returns the text of a scenario whose hosts are drawn from the host-model
catalogue (``models/hosts/*.yaml``, included by relative path) and whose guests are drawn from the flavour
catalogue (``models/flavours.yaml``): shared guests with loads, dedicated guests with each SMT policy, 1G and 2M
hugepage guests, guests that span nodes on purpose (``numa: 2``) and small anti-affinity groups.

Sizing. The guest *count* is given, so the generator chooses the *sizes*: within each class of guests (web,
compute, dedicated, databases, ...) a size ladder from the catalogue is weighted by ``exp(beta * rung)`` and
``beta`` is found by bisection so that the fleet's demand on its binding resource (CPUs or 4K memory) is
``TARGET`` (75 %) of the hosts' capacity, i.e. the guests fit in roughly 70-85 % of the hosts. Footprints:

* a shared vCPU takes ``load / cpu_load_target`` CPUs of a shared pool (at least 1/8 of a core: the 8x cap);
* a dedicated vCPU takes one CPU (``prefer``/``require``) or a whole core (``isolate``), ``emulator: isolate``
  one CPU more;
* memory comes from the nodes' free 4K memory, or from the pools of its page size, which are kept at or below
  ``HUGEPAGE_MAX`` (80 %) by moving hugepage guests to the web class.

Only flavours that fit an empty host of *every* selected model (with their ``numa`` setting, or ``auto``) are used.
The header comment of the output gives the numbers (capacity, demand, utilisation per resource).

Compactness: identical guests are grouped into one pattern line (``medium-l30-[0001-0412]``, one line per flavour
and load), anti-affinity groups are one line each (``db-small-g0007-[1-2]`` with tag ``db-small-g0007``), every
item is a flow mapping: a 2,000-host / 60,000-guest fleet is about 2,300 lines (300 KB), mostly anti-affinity
groups.

Deterministic: the same arguments give the same text (``random.Random(seed)``, no clock, no set order).

Command line::

    python -m planner.analysis.generate --hosts 50 --guests 1500 --seed 1 -o scenarios/fleet-50x1500.yaml
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import yaml

from planner.io import catalogue  # noqa: E402 - the catalogue, read once per file version
from planner.io.catalogue import FLAVOURS_FILE, MODELS_DIR, REPO  # noqa: E402,F401
from planner.model.units import format_memory, parse_cpulist, parse_memory_kib, parse_page_kib

DEFAULT_OUT_DIR = REPO / "scenarios"  # include paths are relative to this when no output path is given

DEFAULT_MODELS = ("suse-guide-4n", "amd-nps4", "intel-xeon-e7-4870-8s")
TARGET = Fraction(75, 100)  # demand / capacity on the binding resource (aggregate; packing adds a few %)
HUGEPAGE_MAX = Fraction(80, 100)  # at most this share of each page size's pools is asked for
LOAD_TARGET = Fraction(7, 10)  # the policy's cpu_load_target (written into the scenario)
OVERCOMMIT_MAX = 8  # the policy's cpu_overcommit_max (written into the scenario)
LOAD_OFFSETS = (-10, 0, 10)  # shared guests' loads: the flavour's load -0.1 / +0 / +0.1 (hundredths) ...
LOAD_ODDS = (1, 2, 1)  # ... drawn with these odds
LOAD_RANGE = (5, 90)  # clipped to 0.05..0.90


@dataclass(frozen=True)
class GuestMix:
    """A slice of the fleet: its share of the guest count, its size ladder (small → large) and its anti-affinity."""

    name: str
    share: Fraction
    ladder: tuple[str, ...]
    aa_fraction: Fraction = Fraction(0)  # share of its guests that go into anti-affinity groups
    aa_sizes: tuple[int, ...] = (2, 3)  # group sizes drawn from


MIX: tuple[GuestMix, ...] = (
    GuestMix("web", Fraction(50, 100), ("tiny", "small", "medium", "large", "xlarge"), Fraction(1, 25), (2, 3, 4)),
    GuestMix("compute", Fraction(8, 100), ("c-large", "c-xlarge")),
    GuestMix("memory", Fraction(8, 100), ("r-large", "r-xlarge"), Fraction(1, 10)),
    GuestMix("dev", Fraction(10, 100), ("dev",)),
    GuestMix("cache", Fraction(3, 100), ("cache-2m",), Fraction(1, 5)),
    GuestMix("span", Fraction(1, 100), ("span-xlarge",)),
    GuestMix("dedicated", Fraction(8, 100), ("ded-medium", "ded-large", "ded-xlarge"), Fraction(1, 5), (2, 3)),
    GuestMix("smt", Fraction(4, 100), ("iso-medium", "rt-small", "iso-large", "rt-large")),
    GuestMix("db1g", Fraction(4, 100), ("db-small", "db-medium", "db-large"), Fraction(1, 2), (2,)),
    GuestMix("db2m", Fraction(2, 100), ("db2m-small", "db2m-medium"), Fraction(1, 2), (2,)),
    GuestMix("nfv", Fraction(15, 1000), ("nfv-small", "nfv-medium", "nfv-large"), Fraction(1, 2), (2,)),
    GuestMix("hpc", Fraction(5, 1000), ("hpc-span",)),
)
FALLBACK_CLASS = "web"  # receives the shares of classes with no usable flavour and the hugepage overflow


# --------------------------------------------------------------------------------------------------- catalogues

@dataclass(frozen=True)
class NodeOffer:
    """What one node offers guests on an empty host."""

    cpus: int  # usable CPUs (not reserved); 0 on a node that cannot hold a guest cell
    cores: int  # whole usable cores
    free_4k_kib: int
    pools: Mapping[int, int]  # page size KiB -> pages


@dataclass(frozen=True)
class ModelOffer:
    name: str
    path: Path
    nodes: tuple[NodeOffer, ...]
    threads: int  # CPUs per core (largest sibling group)
    arch: str = "x86_64"

    @property
    def cpus(self) -> int:
        return sum(n.cpus for n in self.nodes)

    @property
    def cores(self) -> int:
        return sum(n.cores for n in self.nodes)

    @property
    def free_4k_kib(self) -> int:
        return sum(n.free_4k_kib for n in self.nodes)

    def pool_kib(self, size: int) -> int:
        return sum(n.pools.get(size, 0) * size for n in self.nodes)


def available_models() -> list[str]:
    """Names of the host models in the catalogue (file stems of models/hosts/*.yaml), sorted."""
    return catalogue.available_models()


def read_model(name: str) -> ModelOffer:
    """Capacity summary of one catalogue host model (its YAML read directly; the loader does the full checks)."""
    path = MODELS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown host model '{name}' (catalogue: {', '.join(available_models())})")
    spec = yaml.safe_load(path.read_text())
    reserved = spec.get("reserved", {}) or {}
    reserved_cpus = set(parse_cpulist(reserved.get("cpus", "")))
    reserved_kib = parse_memory_kib(reserved.get("memory", "0"), allow_zero=True)
    if "cores" in spec:
        groups = [tuple(parse_cpulist(g)) for g in spec["cores"]]
    else:
        threads = int(spec.get("threads_per_core", 1))
        all_cpus = sorted(c for n in spec["nodes"] for c in parse_cpulist(n["cpus"]))
        step = len(all_cpus) // threads
        groups = [tuple(c + k * step for k in range(threads)) for c in range(step)] if threads > 1 else \
            [(c,) for c in all_cpus]
    nodes = []
    for raw in spec["nodes"]:
        cpus = set(parse_cpulist(raw["cpus"]))
        memory = parse_memory_kib(raw["memory"], allow_zero=True)
        pools = {parse_page_kib(size): int(count) for size, count in (raw.get("hugepages") or {}).items()}
        if not cpus or memory == 0:
            nodes.append(NodeOffer(0, 0, 0, {}))
            continue
        usable = cpus - reserved_cpus
        cores = sum(1 for g in groups if set(g) <= usable)
        free = memory - reserved_kib - sum(size * count for size, count in pools.items())
        nodes.append(NodeOffer(len(usable), cores, free, {s: c for s, c in pools.items() if c > 0}))
    return ModelOffer(name, path, tuple(nodes), max(len(g) for g in groups), str(spec.get("arch", "x86_64")))


def read_flavours() -> dict[str, dict]:
    """The flavour catalogue: name -> guest keys (scenario v1), in file order."""
    return catalogue.read_flavours()


# --------------------------------------------------------------------------------------------------- footprints

@dataclass(frozen=True)
class Footprint:
    cpus: Fraction  # CPUs of the fleet (shared: pool CPUs at the load target, or the 8x cap's share of a core)
    memory_4k_kib: int
    pages: tuple[int, int] | None  # (page size KiB, KiB of pages) for hugepage guests


def _load_hundredths(spec: Mapping) -> int:
    return int(round(Fraction(str(spec.get("load", 1))) * 100))


def footprint(spec: Mapping, threads: Fraction, load: int | None = None) -> Footprint:
    """Fleet-level demand of one guest of flavour ``spec`` (``load`` in hundredths overrides the flavour's)."""
    vcpus = int(spec["vcpus"])
    memory = parse_memory_kib(spec["memory"])
    if spec.get("cpu", "shared") == "dedicated":
        per_vcpu = threads if spec.get("threads", "prefer") == "isolate" else Fraction(1)
        cpus = vcpus * per_vcpu
    else:
        load = _load_hundredths(spec) if load is None else load
        cpus = max(Fraction(vcpus * load, 100) / LOAD_TARGET, Fraction(vcpus) * threads / OVERCOMMIT_MAX)
    if spec.get("emulator") == "isolate":
        cpus += 1
    page = spec.get("hugepages", "none")
    if page in (None, "none"):
        return Footprint(cpus, memory, None)
    return Footprint(cpus, 0, (parse_page_kib(page), memory))


def fits_empty_host(spec: Mapping, model: ModelOffer) -> bool:
    """Does one guest of this flavour fit an empty host of this model (node by node, with its numa setting)?"""
    vcpus = int(spec["vcpus"])
    memory = parse_memory_kib(spec["memory"])
    dedicated = spec.get("cpu", "shared") == "dedicated"
    policy = spec.get("threads", "prefer")
    page = spec.get("hugepages", "none")
    page_kib = None if page in (None, "none") else parse_page_kib(page)
    unit = page_kib or 1024
    units = -(-memory // unit)
    capable = [n for n in model.nodes if n.cpus > 0]
    numa = spec.get("numa", "auto")
    cells = numa if isinstance(numa, list) else None  # explicit cells: the largest must fit (a node-count test)
    counts = range(1, len(capable) + 1) if numa == "auto" else [len(cells) if cells else int(numa)]
    for k in counts:
        if k > vcpus or k > len(capable):
            break
        cell_vcpus = -(-vcpus // k)
        if dedicated and policy == "require":
            cell_vcpus = 2 * -(-(vcpus // 2) // k)
        cell_units = -(-units // k)
        if cells:
            cell_vcpus = max(int(c["vcpus"]) for c in cells)
            cell_units = max(-(-parse_memory_kib(c["memory"]) // unit) for c in cells)
        good = 0
        for node in capable:
            if dedicated:
                need = cell_vcpus * (model.threads if policy == "isolate" else 1)
                need += 1 if spec.get("emulator") == "isolate" else 0
                cpu_ok = need <= node.cpus
            else:
                load = Fraction(_load_hundredths(spec), 100)
                cpu_ok = (cell_vcpus * load <= LOAD_TARGET * node.cpus
                          and cell_vcpus <= OVERCOMMIT_MAX * max(node.cores, 1))
            if page_kib:
                mem_ok = node.pools.get(page_kib, 0) >= cell_units
            else:
                mem_ok = node.free_4k_kib >= cell_units * unit
            good += cpu_ok and mem_ok
        if good >= k:
            return True
    return False


# --------------------------------------------------------------------------------------------------- sizing

def apportion(total: int, weights: Sequence[Fraction | float]) -> list[int]:
    """Split ``total`` into integers proportional to ``weights`` (largest remainder, ties to the first)."""
    if total <= 0 or not weights:
        return [0] * len(weights)
    whole = sum(weights)
    if whole <= 0:
        return [total] + [0] * (len(weights) - 1)
    quotas = [Fraction(w) * total / Fraction(whole) for w in weights]
    counts = [math.floor(q) for q in quotas]
    order = sorted(range(len(weights)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


@dataclass
class Capacity:
    cpus: int = 0
    cores: int = 0
    free_4k_kib: int = 0
    pools_kib: dict[int, int] = field(default_factory=dict)

    @property
    def threads(self) -> Fraction:
        return Fraction(self.cpus, self.cores) if self.cores else Fraction(1)


@dataclass
class Demand:
    cpus: Fraction = Fraction(0)
    memory_4k_kib: int = 0
    pages_kib: dict[int, int] = field(default_factory=dict)

    def add(self, fp: Footprint, count: int = 1) -> None:
        self.cpus += fp.cpus * count
        self.memory_4k_kib += fp.memory_4k_kib * count
        if fp.pages:
            size, kib = fp.pages
            self.pages_kib[size] = self.pages_kib.get(size, 0) + kib * count

    def utilisation(self, cap: Capacity) -> dict[str, Fraction]:
        util = {"cpu": self.cpus / cap.cpus if cap.cpus else Fraction(0),
                "memory": Fraction(self.memory_4k_kib, cap.free_4k_kib) if cap.free_4k_kib else Fraction(0)}
        for size in sorted(self.pages_kib, reverse=True):
            pool = cap.pools_kib.get(size, 0)
            util[f"pages {_page_name(size)}"] = Fraction(self.pages_kib[size], pool) if pool else Fraction(0)
        return util


def _page_name(size_kib: int) -> str:
    return f"{size_kib // (1024 * 1024)}G" if size_kib % (1024 * 1024) == 0 else f"{size_kib // 1024}M"


def _allocate(guests: int, classes: Sequence[GuestMix], flavours: Mapping[str, dict], cap: Capacity,
              beta: float) -> tuple[dict[str, int], Demand]:
    """Guest counts per flavour for a size bias ``beta`` (typical loads), with the hugepage pools capped."""
    class_counts = dict(zip((c.name for c in classes), apportion(guests, [c.share for c in classes]), strict=True))
    prints = {name: footprint(flavours[name], cap.threads) for c in classes for name in c.ladder}

    def split(cls: GuestMix, count: int) -> dict[str, int]:
        mid = (len(cls.ladder) - 1) / 2
        weights = [math.exp(beta * (i - mid)) for i in range(len(cls.ladder))]
        return dict(zip(cls.ladder, apportion(count, weights), strict=True))

    per_flavour: dict[str, int] = {}
    for cls in classes:
        per_flavour.update(split(cls, class_counts[cls.name]))
    # hugepage pools: ask for at most HUGEPAGE_MAX of each size; the rest of those guests become web guests
    asked: dict[int, int] = {}
    for name, n in per_flavour.items():
        pages = prints[name].pages
        if pages:
            size, kib = pages
            asked[size] = asked.get(size, 0) + kib * n
    moved = 0
    for cls in classes:
        sizes = {pages[0] for pages in (prints[name].pages for name in cls.ladder) if pages}
        if not sizes:
            continue
        size = sizes.pop()
        limit = HUGEPAGE_MAX * cap.pools_kib.get(size, 0)
        if asked.get(size, 0) <= limit:
            continue
        keep = math.floor(class_counts[cls.name] * limit / asked[size])
        moved += class_counts[cls.name] - keep
        per_flavour.update(split(cls, keep))
    if moved:
        web = next(c for c in classes if c.name == FALLBACK_CLASS)
        for name, extra in split(web, class_counts[web.name] + moved).items():
            per_flavour[name] = extra
    demand = Demand()
    for name, n in per_flavour.items():
        demand.add(prints[name], n)
    return per_flavour, demand


def _binding(util: Mapping[str, Fraction]) -> Fraction:
    return max(util["cpu"], util["memory"])


# --------------------------------------------------------------------------------------------------- output

def _fmt_load(hundredths: int) -> str:
    return f"{hundredths // 100}.{hundredths % 100:02d}".rstrip("0").rstrip(".") if hundredths % 100 else \
        str(hundredths // 100)


def _pattern(prefix: str, count: int, width: int | None = None) -> str:
    if count == 1:
        return f"{prefix}1" if width is None else f"{prefix}{1:0{width}d}"
    width = width or max(2, len(str(count)))
    return f"{prefix}[{1:0{width}d}-{count:0{width}d}]"


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    text = str(value)
    plain = text and all(ch.isalnum() or ch in "._-" for ch in text) and text[0] not in "-." \
        and text.lower() not in ("yes", "no", "true", "false", "on", "off", "null", "none", "y", "n", "~")
    return text if plain else '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _flow(value: object) -> str:
    """A scalar, or a flavour's mapping (``domain: {type: qemu}``) in YAML flow style."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_scalar(v)}" for k, v in value.items()) + "}"
    return _scalar(value)


def _guest_line(name: str, spec: Mapping, load: int | None, tag: str | None) -> str:
    items = [("name", name)]
    for key, value in spec.items():
        if key == "cpu" and value == "shared":
            continue  # the default
        if key == "load":
            value = _fmt_load(load if load is not None else _load_hundredths(spec))
        items.append((key, value))
    if tag:
        items.append(("anti_affinity", tag))
    body = ", ".join(f"{k}: {_flow(v) if k != 'load' else v}" for k, v in items)
    return f"  - {{{body}}}"


def _shown_path(path: str | os.PathLike) -> str:
    """The output path for the header: relative to the repository when inside it (stable across checkouts)."""
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(REPO).as_posix()
    except ValueError:
        return Path(path).as_posix()


def _include_path(model: ModelOffer, out_dir: Path) -> str:
    return Path(os.path.relpath(model.path, out_dir)).as_posix()


HOST_ORDERS = ("given", "smallest", "largest")  # how hosts are listed: by model as given, smallest model first, ...


def generate_fleet(hosts: int, guests: int, seed: int = 0, models: list[str] | None = None, *,
                   out_path: str | os.PathLike | None = None, name: str | None = None, order: str = "given",
                   existing: float = 0.0) -> str:
    """Scenario-v1 YAML text for ``hosts`` hosts (mixed catalogue models) and ``guests`` catalogue guests.

    ``models``: catalogue host model names (default ``DEFAULT_MODELS``). ``out_path``: where the text will be
    written; the models' include paths are made relative to its directory (default: the repository's
    ``scenarios/``). ``order``: hosts listed by model in the order given (default), or the smallest model
    (fewest usable CPUs, then least memory) first, or the largest first, as inventories often are.
    ``existing``: the fraction (0..1) of guests already running: they get ``host:`` on a host where they fit
    with the other running guests (counted by ``planner.engine.problem``), spread over a seeded random third as many
    hosts as running guests. Deterministic for a given ``seed``."""
    _check_arguments(hosts, guests, order, existing)
    model_names = list(dict.fromkeys(models or DEFAULT_MODELS))
    caps = _read_models(model_names)
    flavours = read_flavours()
    rng = random.Random(seed)
    per_model = _split_hosts(hosts, len(caps), rng)
    cap = _fleet_capacity(caps, per_model)
    used_models = [m for m, n in zip(caps, per_model, strict=True) if n]
    classes = _usable_classes(flavours, used_models, model_names)
    counts, beta = _choose_sizes(guests, classes, flavours, cap)
    lines, demand = _guest_entries(classes, counts, flavours, cap, min(hosts, 4), rng)
    host_lines = _host_lines(caps, per_model, order)
    time_limit = "60s" if guests <= 2000 else "300s"
    top = ["version: 1", f"name: {name or f'fleet-{hosts}x{guests}-s{seed}'}",
           f"policy: {{cpu_overcommit_max: {OVERCOMMIT_MAX}, cpu_load_target: {float(LOAD_TARGET):.2f}, "
           f"objective: pack, time_limit: {time_limit}}}"]
    running: dict[tuple[int, int], str] = {}
    if existing > 0 and lines:
        running = _running_guests(top + ["host_models:"] + [
            f"  {m.name}: {{include: {_scalar(m.path.as_posix())}}}" for m in used_models] + ["hosts:"] + host_lines,
            lines, existing, rng)
    out_dir = Path(out_path).resolve().parent if out_path is not None else DEFAULT_OUT_DIR
    guests_total = sum(counts.values())
    assert guests_total == guests, (guests_total, guests)
    figures = _Figures(hosts, guests, seed, model_names, cap, demand, beta, order, existing, running)
    out = _header(figures, _reproduce(figures, models, out_path)) + top + ["host_models:"]
    for model in used_models:
        out.append(f"  {model.name}: {{include: {_scalar(_include_path(model, out_dir))}}}")
    out.append("hosts:")
    out.extend(host_lines)
    out.append("guests:" if lines else "guests: []")
    for index, entry in enumerate(lines):
        out.extend(entry.render({k: h for (i, k), h in running.items() if i == index}))
    return "\n".join(out) + "\n"


def _check_arguments(hosts: int, guests: int, order: str, existing: float) -> None:
    """ValueError naming the argument out of range."""
    if hosts < 1:
        raise ValueError("hosts must be at least 1")
    if guests < 0:
        raise ValueError("guests must not be negative")
    if order not in HOST_ORDERS:
        raise ValueError(f"unknown host order '{order}' (one of {', '.join(HOST_ORDERS)})")
    if not 0 <= existing <= 1:
        raise ValueError(f"existing must be a fraction from 0 to 1, not {existing}")


def _read_models(model_names: list[str]) -> list[ModelOffer]:
    """The catalogue models, all of one architecture (guests must run on every host)."""
    caps = [read_model(m) for m in model_names]
    arches = sorted({m.arch for m in caps})
    if len(arches) > 1:
        raise ValueError(f"models of different architectures ({', '.join(arches)}): guests could not run on "
                         "every host; generate one fleet per architecture")
    return caps


def _split_hosts(hosts: int, models: int, rng: random.Random) -> list[int]:
    """Hosts per model: as even a split as the count allows, the remainder to models drawn by the seed."""
    per_model = [hosts // models] * models
    for i in sorted(rng.sample(range(models), hosts % models)):
        per_model[i] += 1
    return per_model


def _fleet_capacity(caps: Sequence[ModelOffer], per_model: Sequence[int]) -> Capacity:
    """The fleet's aggregate: sum over models of (hosts of the model x the model's usable CPUs, cores, free 4K
    memory and pool KiB per page size)."""
    cap = Capacity()
    for model, n in zip(caps, per_model, strict=True):
        cap.cpus += model.cpus * n
        cap.cores += model.cores * n
        cap.free_4k_kib += model.free_4k_kib * n
        for size in {s for node in model.nodes for s in node.pools}:
            cap.pools_kib[size] = cap.pools_kib.get(size, 0) + model.pool_kib(size) * n
    return cap


def _usable_classes(flavours: Mapping[str, dict], used_models: Sequence[ModelOffer],
                    model_names: Sequence[str]) -> list[GuestMix]:
    """The classes of ``MIX`` with only the flavours that fit an empty host of every model in use; the shares of
    classes left empty go to ``FALLBACK_CLASS``."""
    classes: list[GuestMix] = []
    spare = Fraction(0)
    for cls in MIX:
        ladder = tuple(f for f in cls.ladder if all(fits_empty_host(flavours[f], m) for m in used_models))
        if ladder:
            classes.append(GuestMix(cls.name, cls.share, ladder, cls.aa_fraction, cls.aa_sizes))
        else:
            spare += cls.share
    if not any(c.name == FALLBACK_CLASS for c in classes):
        raise ValueError(f"no '{FALLBACK_CLASS}' flavour fits every model of {', '.join(model_names)}")
    return [GuestMix(c.name, c.share + (spare if c.name == FALLBACK_CLASS else 0), c.ladder, c.aa_fraction,
                       c.aa_sizes) for c in classes]


def _choose_sizes(guests: int, classes: Sequence[GuestMix], flavours: Mapping[str, dict],
                  cap: Capacity) -> tuple[dict[str, int], float]:
    """Guest counts per flavour and the size bias ``beta``: bisection on beta in [-6, 6] (60 steps) so that the
    binding resource's utilisation is closest to ``TARGET``; the two ends are tried too, for fleets that cannot
    reach the target either way."""
    lo, hi = -6.0, 6.0
    best: tuple[dict[str, int], Fraction, float] | None = None
    for _ in range(60):
        beta = (lo + hi) / 2
        counts, demand = _allocate(guests, classes, flavours, cap, beta)
        util = _binding(demand.utilisation(cap))
        if best is None or abs(util - TARGET) < abs(best[1] - TARGET):
            best = (counts, util, beta)
        if util < TARGET:
            lo = beta
        else:
            hi = beta
    assert best is not None
    for beta in (-6.0, 6.0):
        counts, demand = _allocate(guests, classes, flavours, cap, beta)
        util = _binding(demand.utilisation(cap))
        if abs(util - TARGET) < abs(best[1] - TARGET):
            best = (counts, util, beta)
    return best[0], best[2]


def _guest_entries(classes: Sequence[GuestMix], counts: Mapping[str, int], flavours: Mapping[str, dict],
                   cap: Capacity, max_group: int, rng: random.Random) -> tuple[list[_Entry], Demand]:
    """The guest lines: per flavour, anti-affinity groups first (sizes drawn, at most ``max_group``), then the rest
    by load (shared guests' loads drawn around the flavour's) in one pattern line each; and their demand."""
    lines: list[_Entry] = []
    demand = Demand()
    groups = 0
    for cls in classes:
        for flavour in cls.ladder:
            n = counts.get(flavour, 0)
            if not n:
                continue
            spec = flavours[flavour]
            draw_load = _load_drawer(spec, rng)
            in_groups = math.floor(n * cls.aa_fraction) if max_group >= 2 else 0
            sizes = [s for s in cls.aa_sizes if s <= max_group]
            while in_groups >= 2 and sizes:
                size = min(rng.choice(sizes), in_groups)
                groups += 1
                tag = f"{flavour}-g{groups:04d}"
                load = draw_load()
                lines.append(_Entry(f"{tag}-", size, 1, spec, load, tag))
                demand.add(footprint(spec, cap.threads, load), size)
                in_groups -= size
                n -= size
            by_load: dict[int | None, int] = {}
            for _ in range(n):
                load = draw_load()
                by_load[load] = by_load.get(load, 0) + 1
            for load in sorted(by_load, key=lambda x: -1 if x is None else x):
                count = by_load[load]
                prefix = f"{flavour}-" if load is None else f"{flavour}-l{load:02d}-"
                lines.append(_Entry(prefix, count, None, spec, load, None))
                demand.add(footprint(spec, cap.threads, load), count)
    return lines, demand


def _load_drawer(spec: Mapping, rng: random.Random) -> Callable[[], int | None]:
    """A shared flavour's load draw (hundredths): its load + an offset of ``LOAD_OFFSETS`` at ``LOAD_ODDS``,
    clipped to ``LOAD_RANGE``; None for a dedicated flavour (no draw)."""
    if spec.get("cpu", "shared") != "shared":
        return lambda: None
    base_load = _load_hundredths(spec)
    return lambda: min(max(base_load + rng.choices(LOAD_OFFSETS, LOAD_ODDS)[0], LOAD_RANGE[0]), LOAD_RANGE[1])


def _host_lines(caps: Sequence[ModelOffer], per_model: Sequence[int], order: str) -> list[str]:
    """One pattern line per model in use, in the given order or by size (usable CPUs, then 4K + 2M + 1G memory)."""
    listed = list(zip(caps, per_model, strict=True))
    if order != "given":
        listed.sort(key=lambda mn: (mn[0].cpus, mn[0].free_4k_kib + sum(mn[0].pool_kib(s) for s in (2048, 1048576))),
                    reverse=order == "largest")
    return [f"  - {{name: {_scalar(_pattern(model.name + '-', n))}, model: {model.name}}}"
            for model, n in listed if n]


@dataclass(frozen=True)
class _Figures:
    """What the header says: the arguments, the fleet's capacity, the guests' demand and the running guests."""

    hosts: int
    guests: int
    seed: int
    model_names: Sequence[str]
    cap: Capacity
    demand: Demand
    beta: float
    order: str
    existing: float
    running: Mapping[tuple[int, int], str]


def _notes(f: _Figures) -> list[str]:
    """The header's paragraphs: origin, catalogues, capacity, demand, utilisation and the warnings."""
    util = f.demand.utilisation(f.cap)
    binding = _binding(util)
    cap, demand = f.cap, f.demand
    notes = [
        f"Generated by planner.analysis.generate (seed {f.seed}): {f.hosts} hosts, {f.guests} guests, models "
        f"{', '.join(f.model_names)}.",
        "Host models are included from models/hosts/ (real topologies, see each file's header); guests are drawn "
        "from models/flavours.yaml: shared guests with loads, dedicated guests (prefer/isolate/require), 1G and 2M "
        "hugepage guests, NUMA-spanning guests (numa: 2) and small anti-affinity groups (tag = line prefix).",
        f"Capacity: {cap.cpus} usable CPUs ({cap.cores} cores), {format_memory(cap.free_4k_kib)} of 4K memory"
        + "".join(f", {format_memory(kib)} of {_page_name(size)} pages" for size, kib in
                  sorted(cap.pools_kib.items(), reverse=True)) + ".",
        f"Demand: {float(demand.cpus):.0f} CPUs (a shared vCPU counts load / {float(LOAD_TARGET):.2f} CPUs, a "
        f"dedicated one 1 CPU, with threads: isolate a whole core), {format_memory(demand.memory_4k_kib)} of 4K "
        "memory" + "".join(f", {format_memory(kib)} of {_page_name(size)} pages" for size, kib in
                           sorted(demand.pages_kib.items(), reverse=True)) + ".",
        "Utilisation: " + ", ".join(f"{k} {float(v) * 100:.0f} %" for k, v in util.items())
        + f": the demand fits in about {math.ceil(binding * f.hosts)} of {f.hosts} hosts "
        f"({float(binding) * 100:.0f} % of the binding resource; size bias {f.beta:+.2f}).",
    ]
    if f.order != "given":
        notes.append(f"Hosts are listed {f.order} model first.")
    if f.existing > 0:
        notes.append(f"Running guests (host: set): {len(f.running)} ({f.existing:.1%} asked, on "
                     f"{len(set(f.running.values()))} hosts).")
    if binding > Fraction(85, 100):
        notes.append("WARNING: more demand than 85 % of the fleet even with the smallest sizes: some guests may "
                     "not fit.")
    elif binding < Fraction(70, 100) and f.guests:
        notes.append("Note: less demand than 70 % of the fleet even with the largest sizes (few guests per host).")
    return notes


def _reproduce(f: _Figures, models: list[str] | None, out_path: str | os.PathLike | None) -> str:
    """The command line that writes the same text."""
    return (f"Reproduce: python -m planner.analysis.generate --hosts {f.hosts} --guests {f.guests} --seed {f.seed}"
            + (f" --models {','.join(f.model_names)}" if models else "")
            + (f" --order {f.order}" if f.order != "given" else "")
            + (f" --existing {f.existing}" if f.existing else "")
            + (f" -o {_shown_path(out_path)}" if out_path is not None else ""))


def _header(f: _Figures, reproduce: str) -> list[str]:
    """The notes wrapped at 116 as comments, the reproduce line (one line, to copy and paste) after the first."""
    def wrap(note: str) -> list[str]:
        return textwrap.wrap(note, 116, initial_indent="# ", subsequent_indent="#   ", break_on_hyphens=False,
                             break_long_words=False)

    notes = _notes(f)
    header = [line for note in notes for line in wrap(note)]
    header.insert(len(wrap(notes[0])), "# " + reproduce)
    return header


@dataclass(frozen=True)
class _Entry:
    """One guest line before rendering: ``count`` guests named ``prefix`` + number (1..count)."""

    prefix: str
    count: int
    width: int | None
    spec: Mapping
    load: int | None
    tag: str | None

    def names(self) -> list[str]:
        if self.count == 1:
            return [_pattern(self.prefix, 1, self.width)]
        width = self.width or max(2, len(str(self.count)))
        return [f"{self.prefix}{i:0{width}d}" for i in range(1, self.count + 1)]

    def render(self, fixed: Mapping[int, str]) -> list[str]:
        """Pattern lines for the guests not in ``fixed`` (member number -> host), one line per fixed guest."""
        if not fixed:
            return [_guest_line(_pattern(self.prefix, self.count, self.width), self.spec, self.load, self.tag)]
        width = self.width or max(2, len(str(self.count)))
        out, start = [], 1
        for k in sorted(fixed) + [self.count + 1]:
            if k > start:  # the free run start..k-1
                run = f"{self.prefix}{start:0{width}d}" if k - 1 == start else \
                    f"{self.prefix}[{start:0{width}d}-{k - 1:0{width}d}]"
                out.append(_guest_line(run, self.spec, self.load, self.tag))
            if k <= self.count:
                line = _guest_line(f"{self.prefix}{k:0{width}d}", self.spec, self.load, self.tag)
                out.append(line[:-1] + f", host: {_scalar(fixed[k])}}}")
            start = k + 1
        return out


def _running_guests(head: list[str], entries: list[_Entry], fraction: float, rng: random.Random
                    ) -> dict[tuple[int, int], str]:
    """(entry index, member number) -> host for the running guests: a seeded sample of ``fraction`` of the guests,
    dealt in turn over a random third as many hosts as running guests, each to the next host where it fits."""
    from planner.engine.problem import FleetState, compile_problem
    from planner.io.loader import load_scenario_text

    lines = list(head) + ["guests:"]
    members: list[tuple[int, int]] = []
    for index, entry in enumerate(entries):
        lines.extend(entry.render({}))
        members.extend((index, k) for k in range(1, entry.count + 1))
    scenario = load_scenario_text("\n".join(lines) + "\n", "<generated>")
    problem = compile_problem(scenario)
    class_of = {name: cls for cls in problem.classes for name in cls.members}
    want = round(fraction * len(members))
    chosen = sorted(rng.sample(range(len(members)), want))
    host_names = [h.name for h in scenario.hosts]
    pool = rng.sample(host_names, min(len(host_names), max(1, math.ceil(want / 3))))
    state = FleetState(problem)
    out: dict[tuple[int, int], str] = {}
    turn = 0
    for i in chosen:
        index, k = members[i]
        cls = class_of[entries[index].names()[k - 1]]
        for step in range(len(pool)):
            host = pool[(turn + step) % len(pool)]
            options = cls.options.get(problem.host_model[host], ())
            fit = next((o for o, option in enumerate(options) if state.fits(cls, host, option)), None)
            if fit is not None:
                state.place(cls, host, fit)
                out[(index, k)] = host
                turn = (turn + step + 1) % len(pool)
                break
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m planner.analysis.generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, required=True, help="number of hosts")
    parser.add_argument("--guests", type=int, required=True, help="number of guests")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--models", default=None,
                        help=f"comma-separated catalogue host models (default {','.join(DEFAULT_MODELS)}; "
                             f"available: {','.join(available_models())})")
    parser.add_argument("--name", default=None, help="scenario name (default fleet-HxG-sSEED)")
    parser.add_argument("--order", default="given", choices=HOST_ORDERS,
                        help="how hosts are listed: by model as given (default), smallest or largest model first")
    parser.add_argument("--existing", type=float, default=0.0,
                        help="fraction 0..1 of guests already running (host: set where they fit; default 0)")
    parser.add_argument("-o", "--output", default=None, help="output file (default: standard output; include "
                                                              "paths are then relative to scenarios/)")
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    try:
        text = generate_fleet(args.hosts, args.guests, args.seed, models, out_path=args.output, name=args.name,
                              order=args.order, existing=args.existing)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.output is None:
        sys.stdout.write(text)
    else:
        target = Path(args.output)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(target)
        print(f"wrote {target} ({args.hosts} hosts, {args.guests} guests)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
