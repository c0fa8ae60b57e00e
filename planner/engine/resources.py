"""Counted resources and the rules over them, each declared once.

A *resource* is something a guest cell (node scope) or a guest (host scope) takes and a host node or host offers:
``Resource`` says its field name (the ``CellDemand`` / ``NodeTotals`` field and the CP-SAT ``NodeTerms`` key), its
unit, its scope, how a cell's demand is computed and what an empty node offers of it alone.

A *rule* is one family of inequalities over those resources (``NodeRule`` per host node, ``HostRule`` per host).
Its ``rows`` are written once over an abstract ``Sums`` (the resource totals of a node) and a capacity ``scale``,
and every consumer evaluates the same rows on its own numbers:

* ``planner.engine.cpsat_model``: sums of CP-SAT terms, scale 1 — the model's node and host constraints;
* ``planner.engine.problem.node_shortfalls``: integers (a node's totals plus one cell) — greedy fit tests and the
  explanations (each rule's ``explain`` words what is missing, with the same numbers);
* ``planner.engine.problem.option_capacity``: integers ``k × cell`` — the most guests one option fits on an
  empty host (each row is linear in k);
* ``planner.engine.bounds.lp_bound``: GLOP expressions, scale = the hosts of the model — the LP relaxation.

Every row reads ``lhs ≤ rhs``; its constraint is named ``TAG[host/node SUFFIX]`` (``TAG[host]`` for host rules).
Rows must be linear in the sums, and which rows exist may depend only on which resources are present: the fit test
reads them once per node, policy and present resources as linear forms (``compiled_rows``), and ``node_fits`` is
exactly ``not node_explain(...)``.

Adding a node rule: its ``_rows``/``_explain`` functions and a ``NodeRule`` in ``NODE_RULES`` here; a
``define_*`` function in ``planner.engine.cpsat_model`` (docstring with the maths, body ``add_node_rule``) listed in
``FAMILIES`` and ``FAMILY_SCOPE``; a sample in ``tests/engine/test_resources.py``. A new counted resource: a
``Resource`` in ``NODE_RESOURCES`` and the field of that name in ``CellDemand`` and ``NodeTotals``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from planner.model.scenario import Guest, Policy

LOAD_SCALE = 1000  # loads are counted in thousandths of a CPU, rounded up (never optimistic)
GIB_KIB = 1024**2


def load_units(vcpus: int, load: Fraction) -> int:
    return math.ceil(vcpus * load * LOAD_SCALE)


# ----------------------------------------------------------------------------------------------- counted data
# What a host node offers (``NodeCap``), what a guest cell takes (``CellDemand``) and what a node holds
# (``NodeTotals``): one field per declared resource below.


@dataclass(frozen=True)
class NodeCap:
    """What one host node offers to guest cells, in the counting rules above."""

    node_id: int
    usable_cpus: int  # node CPUs − reserved
    full_cores: int  # sibling groups wholly in the node with no reserved CPU
    threads_per_core: int  # T: the largest sibling group touching the node
    pair_slots: int  # Σ over cores of ⌊free threads / 2⌋
    pairs_per_full_core: int  # ⌊T / 2⌋
    memory_4k_kib: int  # ⌊free 4K memory × memory_overcommit⌋: what shared guests' cells may take in all
    pages: Mapping[int, int]  # page size KiB -> pool pages
    holds_cells: bool
    free_4k_kib: int = 0  # free 4K memory (memory − reserved − pools): the most one cell takes, and dedicated 1:1
    # the node rules' rows in linear form per policy and present resources (``resources.compiled_rows``)
    compiled: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def pool_cpus(self, iso: int, pairs: int, singles: int) -> int:
        return self.usable_cpus - self.threads_per_core * iso - 2 * pairs - singles


@dataclass(frozen=True)
class CellDemand:
    """What one guest cell takes from the node it lands on."""

    vcpus: tuple[int, ...]  # guest vCPU ids of the cell
    memory_kib: int
    iso: int = 0
    pairs: int = 0
    singles: int = 0
    shared_vcpus: int = 0
    shared_load: int = 0  # Σ vCPU × load, in LOAD_SCALE units, rounded up
    memory_4k_kib: int = 0
    page_kib: int | None = None
    pages: int = 0
    needs_pool: bool = False  # the guest's emulator floats on this node's shared pool
    memory_4k_dedicated_kib: int = 0  # the part of memory_4k_kib that counts 1:1 (cpu: dedicated guests)
    # the non-zero amounts per resource (``resources.cell_amounts``), computed once: the fit test's input
    amounts: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "amounts", cell_amounts(self))


@dataclass
class NodeTotals:
    """Running totals of the cells on one node (used by the greedy planner and the explanations)."""

    iso: int = 0
    pairs: int = 0
    singles: int = 0
    shared_vcpus: int = 0
    shared_load: int = 0
    memory_4k_kib: int = 0
    pages: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    needs_pool: bool = False
    memory_4k_dedicated_kib: int = 0
    amounts: dict = field(default_factory=dict, repr=False, compare=False)  # the same, per variable (fit test)

    def add(self, cell: CellDemand, sign: int = 1) -> None:
        """Add (sign −1: take away) a cell, resource by resource; a flag stays set once a cell set it."""
        add_amounts(self.amounts, cell.amounts, sign)
        for r in NODE_RESOURCES:
            amount = r.value(cell)
            if r.keyed_by:
                key = getattr(cell, r.keyed_by)
                if key:
                    getattr(self, r.name)[key] += sign * amount
            elif r.flag:
                if sign > 0 and amount:
                    setattr(self, r.name, True)
            else:
                setattr(self, r.name, getattr(self, r.name) + sign * amount)


# ----------------------------------------------------------------------------------------------- resources
@dataclass(frozen=True)
class CellContext:
    """One cell of a guest on a host model: what its demand is computed from."""

    guest: Guest
    index: int  # cell index; cell 0 hosts the guest's emulator threads
    vcpus: int
    memory_kib: int
    emulator_floats: bool  # emulator threads on the shared pool (emulator=shared, or host without reserved CPUs)


@dataclass(frozen=True)
class Resource:
    """A counted resource. ``name`` is the field of ``CellDemand`` and ``NodeTotals`` (and the key of the CP-SAT
    model's per-node terms); ``keyed_by`` names the ``CellDemand`` field that splits it (hugepages: per page size);
    ``flag``: only its presence counts (totals keep it once set)."""

    name: str
    unit: str
    scope: str  # "node": per host node, from guest cells | "host": per host, from whole guests
    demand: Callable[[CellContext], int]
    capacity: Callable[[NodeCap, Policy], int]  # what an empty node offers of this resource alone
    description: str
    total: str | None  # the fleet total (``TOTALS`` key, or the hugepages prefix) it counts toward; None: none
    keyed_by: str | None = None
    flag: bool = False

    def value(self, cell: CellDemand) -> int:
        """The cell's amount (a flag counts 1)."""
        return int(getattr(cell, self.name))


def _dedicated_threads(ctx: CellContext, threads: str, amount: int) -> int:
    g = ctx.guest
    return amount if g.dedicated and g.threads == threads else 0


def _singles(ctx: CellContext) -> int:
    g = ctx.guest
    own = ctx.vcpus if g.dedicated and g.threads not in ("isolate", "require") else 0
    return own + (1 if ctx.index == 0 and g.emulator == "isolate" else 0)


def _memory_4k(ctx: CellContext) -> int:
    return 0 if ctx.guest.hugepage_kib else ctx.memory_kib


NODE_RESOURCES: tuple[Resource, ...] = (
    Resource("iso", "cores", "node", lambda c: _dedicated_threads(c, "isolate", c.vcpus),
             lambda n, p: n.full_cores, "whole cores taken by threads=isolate vCPUs (one vCPU per core)", "cpus"),
    Resource("pairs", "pairs", "node", lambda c: _dedicated_threads(c, "require", c.vcpus // 2),
             lambda n, p: n.pair_slots, "sibling thread pairs taken by threads=require vCPU pairs", "cpus"),
    Resource("singles", "CPUs", "node", _singles, lambda n, p: n.usable_cpus,
             "CPUs taken one by one: threads=prefer vCPUs and emulator=isolate CPUs", "cpus"),
    Resource("shared_vcpus", "vCPUs", "node", lambda c: 0 if c.guest.dedicated else c.vcpus,
             lambda n, p: math.floor(p.cpu_overcommit_max * n.usable_cpus / n.threads_per_core),
             "vCPUs on the shared pool (cpu_overcommit_max per pool core)", "cpus"),
    Resource("shared_load", f"1/{LOAD_SCALE} CPU", "node",
             lambda c: 0 if c.guest.dedicated else load_units(c.vcpus, c.guest.load),
             lambda n, p: math.floor(p.cpu_load_target * n.usable_cpus * LOAD_SCALE),
             "expected load of shared vCPUs (vCPUs × load, rounded up)", "cpus"),
    Resource("memory_4k_kib", "KiB", "node", _memory_4k, lambda n, p: n.memory_4k_kib,
             "4K (non-hugepage) memory of the cell", "memory_4k"),
    Resource("memory_4k_dedicated_kib", "KiB", "node", lambda c: _memory_4k(c) if c.guest.dedicated else 0,
             lambda n, p: n.free_4k_kib, "the part of the 4K memory that counts 1:1 (cpu: dedicated guests)",
             "memory_4k"),
    Resource("pages", "pages", "node",
             lambda c: c.memory_kib // c.guest.hugepage_kib if c.guest.hugepage_kib else 0,
             lambda n, p: sum(n.pages.values()), "hugepages of one size (per page size)", "hugepages_",
             keyed_by="page_kib"),
    Resource("needs_pool", "flag", "node", lambda c: int(c.index == 0 and c.guest.dedicated and c.emulator_floats),
             lambda n, p: n.usable_cpus, "floating emulator threads of a dedicated guest need a shared-pool CPU",
             None, flag=True),
)
HOST_RESOURCES: tuple[Resource, ...] = (
    Resource("vcpus", "vCPUs", "host", lambda c: c.guest.vcpus if c.index == 0 else 0,
             lambda n, p: 0, "vCPUs of the guests on a host (host-wide cpu_overcommit_max cap)", "vcpu_cap"),
)
RESOURCES: Mapping[str, Resource] = {r.name: r for r in (*NODE_RESOURCES, *HOST_RESOURCES)}


def guest_demand(resource: Resource, guest: Guest) -> int:
    """A host-scope resource's amount for a whole guest."""
    return resource.demand(CellContext(guest, 0, guest.vcpus, guest.memory_kib, False))


# ----------------------------------------------------------------------------------------------- sums
class Sums:
    """The totals of one node (or host) a rule's rows are written over. Subclasses give numbers (``NumberSums``),
    CP-SAT or LP expressions; ``indicator(name)`` is 1 when the resource is present at all (a 0/1 variable in
    CP-SAT, 0 in the LP relaxation, which drops it)."""

    def has(self, name: str) -> bool:
        raise NotImplementedError

    def __getitem__(self, name: str) -> Any:
        raise NotImplementedError

    def keyed(self, name: str) -> Mapping[int, Any]:
        raise NotImplementedError

    def indicator(self, name: str, var_tag: str, link_tag: str) -> Any:
        """1 when ``name`` is present; CP-SAT names the 0/1 variable ``var_tag[...]`` and its link ``link_tag[...]``."""
        raise NotImplementedError


class NumberSums(Sums):
    """Integer totals: ``values`` per resource name, ``keys`` per keyed resource (page size -> pages)."""

    def __init__(self, values: Mapping[str, int], keys: Mapping[str, Mapping[int, int]] | None = None):
        self.values = values
        self.keys = keys or {}

    def has(self, name: str) -> bool:
        return bool(self.values.get(name, 0)) or any(self.keys.get(name, {}).values())

    def __getitem__(self, name: str) -> int:
        return self.values.get(name, 0)

    def keyed(self, name: str) -> Mapping[int, int]:
        return self.keys.get(name, {})

    def indicator(self, name: str, var_tag: str = "", link_tag: str = "") -> int:
        return 1 if self.values.get(name, 0) > 0 else 0

    @classmethod
    def of(cls, totals: NodeTotals | None, cell: CellDemand, times: int = 1) -> NumberSums:
        """``totals`` (None: an empty node) plus ``times`` × ``cell``."""
        values: dict[str, int] = {}
        keys: dict[str, dict[int, int]] = {}
        for r in NODE_RESOURCES:
            if r.keyed_by:
                own = dict(getattr(totals, r.name)) if totals is not None else {}
                key = getattr(cell, r.keyed_by)
                if key:
                    own[key] = own.get(key, 0) + times * r.value(cell)
                keys[r.name] = own
            else:
                base = int(getattr(totals, r.name)) if totals is not None else 0
                values[r.name] = max(base, r.value(cell) if times else 0) if r.flag else base + times * r.value(cell)
        return cls(values, keys)


def pool(cap: NodeCap, s: Sums, scale: Any = 1) -> Any:
    """The shared pool: usable CPUs − T·iso − 2·pairs − singles."""
    return cap.usable_cpus * scale - cap.threads_per_core * s["iso"] - 2 * s["pairs"] - s["singles"]


def dedicated_cpus(cap: NodeCap, s: Sums | CellDemand) -> Any:
    """CPUs taken by dedicated vCPUs and isolated emulators: T·iso + 2·pairs + singles."""
    get = s.__getitem__ if isinstance(s, Sums) else (lambda name: getattr(s, name))
    return cap.threads_per_core * get("iso") + 2 * get("pairs") + get("singles")


# ----------------------------------------------------------------------------------------------- rules
@dataclass(frozen=True)
class Row:
    """One inequality ``lhs ≤ rhs``; its constraint name is ``tag[where suffix]``. ``lp_scale`` multiplies both
    sides in the LP relaxation (keeps GLOP's numbers well scaled); it does not change the inequality. A cell that
    does not demand any of ``cell_needs`` is not refused for this row (a node already over it by other cells)."""

    tag: str
    lhs: Any
    rhs: Any
    suffix: str = ""
    lp_scale: float = 1.0
    # for the fit test of one more cell (numbers only): the row counts against the cell only when the cell demands
    # one of these (a resource name, or (keyed resource, key)); (): always
    cell_needs: tuple = ()

    @property
    def key(self) -> str:
        return self.tag + self.suffix


@dataclass(frozen=True)
class Shortfall:
    """One resource a node lacks for a cell: what, how much is needed, how much is free."""

    resource: str
    needed: float
    free: float
    unit: str

    @property
    def missing(self) -> float:
        return self.needed - self.free


@dataclass(frozen=True)
class CellLimit:
    """No single cell may take more of ``resource`` than ``most(node)`` (x = 0 for such options, ``tag``)."""

    resource: str
    most: Callable[[NodeCap], int]
    tag: str


Explain = Callable[["NodeCap", "NodeTotals", "CellDemand", Policy, frozenset[str]], list[Shortfall]]


@dataclass(frozen=True)
class NodeRule:
    """A family of per-node inequalities: ``rows(node, sums, policy, scale)``, ``explain`` (what is missing for
    one more cell, given the keys of the rows that fail), the resources it reads and its CP-SAT family."""

    family: str  # the ``define_*`` function of planner.engine.cpsat_model that adds it
    resources: tuple[str, ...]
    rows: Callable[[NodeCap, Sums, Policy, Any], list[Row]]
    explain: Explain
    cell_limits: tuple[CellLimit, ...] = ()
    # the resources kept when the rule bounds one option alone on an empty node (``node_limit``, the x bounds of the
    # model); empty: the rule bounds no option alone (it is left to the model)
    alone: tuple[str, ...] = ()


def _smt_rows(cap: NodeCap, s: Sums, policy: Policy, scale: Any) -> list[Row]:
    out = []
    if s.has("iso"):
        out.append(Row("isolate_cores", s["iso"], cap.full_cores * scale, cell_needs=("iso",)))
    if s.has("pairs") or s.has("iso"):
        out.append(Row("require_pairs", s["pairs"] + cap.pairs_per_full_core * s["iso"], cap.pair_slots * scale,
                       cell_needs=("pairs", "iso")))  # an isolated core takes its pairs away from require guests
    return out


def _smt_explain(cap, totals, cell, policy, failed) -> list[Shortfall]:
    out = []
    if cell.iso and "isolate_cores" in failed:
        out.append(Shortfall("whole free cores (threads=isolate)", cell.iso, cap.full_cores - totals.iso, "cores"))
    if cell.pairs and "require_pairs" in failed:
        free = cap.pair_slots - totals.pairs - (totals.iso + cell.iso) * cap.pairs_per_full_core
        out.append(Shortfall("free sibling pairs (threads=require)", cell.pairs, free, "pairs"))
    elif cell.iso and "require_pairs" in failed:  # whole cores for isolate would take the pairs require guests hold
        free = cap.pair_slots - totals.pairs - totals.iso * cap.pairs_per_full_core
        out.append(Shortfall("whole cores not split by threads=require pairs (threads=isolate)",
                             cell.iso * cap.pairs_per_full_core, free, "pairs"))
    return out


def _split_rows(cap: NodeCap, s: Sums, policy: Policy, scale: Any) -> list[Row]:
    if not (s.has("iso") or s.has("pairs") or s.has("singles")):
        return []
    return [Row("dedicated_cpus", 0, pool(cap, s, scale), cell_needs=("iso", "pairs", "singles"))]  # pool ≥ 0


def _split_explain(cap, totals, cell, policy, failed) -> list[Shortfall]:
    needed = dedicated_cpus(cap, cell)
    if needed and "dedicated_cpus" in failed:
        free = cap.pool_cpus(totals.iso, totals.pairs, totals.singles)
        return [Shortfall("free CPUs for dedicated vCPUs", needed, free, "CPUs")]
    return []


def _after(cap: NodeCap, totals: NodeTotals, cell: CellDemand) -> int:
    """The pool with the cell added, never below 0 (what the pool rules' texts count from)."""
    return max(cap.pool_cpus(totals.iso + cell.iso, totals.pairs + cell.pairs, totals.singles + cell.singles), 0)


def _overcommit_rows(cap: NodeCap, s: Sums, policy: Policy, scale: Any) -> list[Row]:
    if not s.has("shared_vcpus"):
        return []
    ratio = policy.cpu_overcommit_max
    return [Row("pool_overcommit", ratio.denominator * cap.threads_per_core * s["shared_vcpus"],
                ratio.numerator * pool(cap, s, scale))]


def _overcommit_explain(cap, totals, cell, policy, failed) -> list[Shortfall]:
    if not (totals.shared_vcpus + cell.shared_vcpus and "pool_overcommit" in failed):
        return []
    ratio = policy.cpu_overcommit_max
    free = math.floor(ratio * _after(cap, totals, cell) / cap.threads_per_core) - totals.shared_vcpus
    return [Shortfall(f"shared vCPU slots ({ratio}x cap)", cell.shared_vcpus, max(free, 0), "vCPUs")]


def _load_rows(cap: NodeCap, s: Sums, policy: Policy, scale: Any) -> list[Row]:
    if not s.has("shared_load"):
        return []
    target = policy.cpu_load_target
    return [Row("load_target", target.denominator * s["shared_load"],
                target.numerator * LOAD_SCALE * pool(cap, s, scale), lp_scale=1 / LOAD_SCALE)]


def _load_explain(cap, totals, cell, policy, failed) -> list[Shortfall]:
    if not (totals.shared_load + cell.shared_load and "load_target" in failed):
        return []
    target = policy.cpu_load_target
    free = target * _after(cap, totals, cell) - Fraction(totals.shared_load, LOAD_SCALE)
    return [Shortfall(f"shared-pool CPU load headroom (target {float(target):.0%})", cell.shared_load / LOAD_SCALE,
                      max(float(free), 0.0), "CPUs")]


def _emulator_rows(cap: NodeCap, s: Sums, policy: Policy, scale: Any) -> list[Row]:
    if not s.has("needs_pool"):
        return []
    return [Row("emulator_pool", s.indicator("needs_pool", "emulator_pool", "emulator_users"), pool(cap, s, scale))]


def _emulator_explain(cap, totals, cell, policy, failed) -> list[Shortfall]:
    if (totals.needs_pool or cell.needs_pool) and "emulator_pool" in failed:
        return [Shortfall("a shared-pool CPU for emulator threads", 1, _after(cap, totals, cell), "CPUs")]
    return []


def _committed(s: Sums, policy: Policy) -> Any:
    """The physical 4K memory committed on a node, times a (memory_overcommit = a/b): a·D + b·S, with D the
    dedicated guests' 4K memory (1:1) and S the shared guests' (written b·(D + S) + (a − b)·D over the totals)."""
    a, b = policy.memory_overcommit.numerator, policy.memory_overcommit.denominator
    total = b * s["memory_4k_kib"]
    if s.has("memory_4k_dedicated_kib") and a != b:
        total = total + (a - b) * s["memory_4k_dedicated_kib"]
    return total


def _memory_rows(cap: NodeCap, s: Sums, policy: Policy, scale: Any) -> list[Row]:
    if not s.has("memory_4k_kib"):
        return []
    a = policy.memory_overcommit.numerator
    return [Row("memory", _committed(s, policy), a * cap.free_4k_kib * scale, lp_scale=1 / GIB_KIB,
                cell_needs=("memory_4k_kib",))]


def _memory_target_rows(cap: NodeCap, s: Sums, policy: Policy, scale: Any) -> list[Row]:
    if not s.has("memory_4k_kib") or policy.node_memory_target >= 1:
        return []
    a = policy.memory_overcommit.numerator
    p, q = policy.node_memory_target.numerator, policy.node_memory_target.denominator
    return [Row("memory_target", q * _committed(s, policy), p * a * cap.free_4k_kib * scale, lp_scale=1 / GIB_KIB,
                cell_needs=("memory_4k_kib",))]


def _memory_target_explain(cap, totals, cell, policy, failed) -> list[Shortfall]:
    if not cell.memory_4k_kib or "memory_target" not in failed:
        return []
    target = policy.node_memory_target
    room = memory_4k_room_kib(cap, totals, bool(cell.memory_4k_dedicated_kib), policy.memory_overcommit, target)
    return [Shortfall(f"4K memory under the node memory target ({float(target):.0%} of the free 4K memory)",
                      cell.memory_4k_kib, max(room, 0), "KiB")]


def memory_4k_room_kib(cap: NodeCap, totals: NodeTotals, dedicated: bool, overcommit: Fraction,
                       share: Fraction = Fraction(1)) -> int:
    """4K memory a cell of a dedicated (1:1) or shared (overcommitted) guest may still take on the node.

    Rule: dedicated 4K memory + shared 4K memory ÷ memory_overcommit ≤ ``share`` × free 4K memory (``share``: the
    node memory target, 1 for the memory rule itself), and no cell above the free 4K memory (overcommit is shared
    among guests, never inside one). In integers, with overcommit = a/b: a·D + b·S ≤ share·a·free."""
    a, b = overcommit.numerator, overcommit.denominator
    dedicated_kib = totals.memory_4k_dedicated_kib
    shared_kib = totals.memory_4k_kib - dedicated_kib
    slack = share * a * cap.free_4k_kib - a * dedicated_kib - b * shared_kib  # in 1/a KiB of physical memory
    room = math.floor(slack / (a if dedicated else b))
    return min(room, cap.free_4k_kib)


def _memory_explain(cap, totals, cell, policy, failed) -> list[Shortfall]:
    if not cell.memory_4k_kib:
        return []
    overcommit = policy.memory_overcommit
    if cell.memory_4k_kib > cap.free_4k_kib:
        note = "" if overcommit == 1 else "; memory_overcommit never applies inside one guest"
        return [Shortfall(f"4K memory for one cell (at most the node's free 4K memory{note})",
                          cell.memory_4k_kib, cap.free_4k_kib, "KiB")]
    if "memory" not in failed:
        return []
    dedicated = bool(cell.memory_4k_dedicated_kib)
    room = memory_4k_room_kib(cap, totals, dedicated, overcommit)
    name = "4K memory" if overcommit == 1 or not dedicated else "4K memory (cpu: dedicated counts 1:1, no overcommit)"
    return [Shortfall(name, cell.memory_4k_kib, room, "KiB")]


def _pages_rows(cap: NodeCap, s: Sums, policy: Policy, scale: Any) -> list[Row]:
    return [Row("hugepages", total, cap.pages.get(size, 0) * scale, suffix=f"/{size}KiB", cell_needs=(("pages", size),))
            for size, total in sorted(s.keyed("pages").items())]


def _pages_explain(cap, totals, cell, policy, failed) -> list[Shortfall]:
    if not (cell.page_kib and f"hugepages/{cell.page_kib}KiB" in failed):
        return []
    free = cap.pages.get(cell.page_kib, 0) - totals.pages.get(cell.page_kib, 0)
    return [Shortfall(f"{cell.page_kib}KiB hugepages", cell.pages, free, "pages")]


NODE_RULES: tuple[NodeRule, ...] = (
    NodeRule("define_smt_policies", ("iso", "pairs"), _smt_rows, _smt_explain),
    NodeRule("define_cpu_split", ("iso", "pairs", "singles"), _split_rows, _split_explain,
             alone=("iso", "pairs", "singles")),
    NodeRule("define_shared_overcommit", ("shared_vcpus", "iso", "pairs", "singles"), _overcommit_rows,
             _overcommit_explain, alone=("shared_vcpus",)),
    NodeRule("define_load_target", ("shared_load", "iso", "pairs", "singles"), _load_rows, _load_explain,
             alone=("shared_load",)),
    NodeRule("define_emulator_pool", ("needs_pool", "iso", "pairs", "singles"), _emulator_rows, _emulator_explain),
    NodeRule("define_node_memory", ("memory_4k_kib", "memory_4k_dedicated_kib"), _memory_rows, _memory_explain,
             (CellLimit("memory_4k_kib", lambda n: n.free_4k_kib, "cell_memory"),),
             alone=("memory_4k_kib", "memory_4k_dedicated_kib")),
    NodeRule("define_node_memory_target", ("memory_4k_kib", "memory_4k_dedicated_kib"), _memory_target_rows,
             _memory_target_explain, alone=("memory_4k_kib", "memory_4k_dedicated_kib")),
    NodeRule("define_hugepage_pools", ("pages",), _pages_rows, _pages_explain, alone=("pages",)),
)
NODE_RULE_OF: Mapping[str, NodeRule] = {r.family: r for r in NODE_RULES}


@dataclass(frozen=True)
class HostRule:
    """A per-host inequality over host-scope resources: ``rows(model capacity, sums, policy, scale)`` and
    ``explain(host, model capacity, totals before, guest's amounts, policy)``: why the guest does not fit."""

    family: str
    resources: tuple[str, ...]
    rows: Callable[[Any, Sums, Policy, Any], list[Row]]
    explain: Callable[[str, Any, Mapping[str, int], Mapping[str, int], Policy], str]


def _vcpu_cap_explain(host: str, cap: Any, before: Mapping[str, int], guest: Mapping[str, int],
                      policy: Policy) -> str:
    return (f"{host} has room for {cap.vcpu_cap - before['vcpus']} more vCPUs under the {policy.cpu_overcommit_max}x "
            f"cap ({cap.host_cores} cores), needs {guest['vcpus']}")


HOST_RULES: tuple[HostRule, ...] = (
    HostRule("define_host_overcommit", ("vcpus",),
             lambda cap, s, policy, scale: [Row("overcommit", s["vcpus"], cap.vcpu_cap * scale)], _vcpu_cap_explain),
)
HOST_RULE_OF: Mapping[str, HostRule] = {r.family: r for r in HOST_RULES}


def host_amounts(guest: Guest) -> dict[str, int]:
    """A guest's amount of every host-scope resource."""
    return {r.name: guest_demand(r, guest) for r in HOST_RESOURCES}


def host_explain(host: str, cap: Any, before: Mapping[str, int], amounts: Mapping[str, int],
                 policy: Policy) -> str | None:
    """Why one more guest (``amounts``: its ``host_amounts``) does not fit the host rules of ``host`` (``before``:
    the host's totals), else None."""
    after = NumberSums({name: before.get(name, 0) + amount for name, amount in amounts.items()})
    for rule in HOST_RULES:
        if rows_hold(rule.rows(cap, after, policy, 1)):
            return rule.explain(host, cap, before, amounts, policy)
    return None


def rows_hold(rows: list[Row]) -> frozenset[str]:
    """The keys of the rows (of numbers) that fail."""
    return frozenset(r.key for r in rows if r.lhs > r.rhs)


def cell_violations(cap: NodeCap, cell: CellDemand) -> frozenset[str]:
    """Tags of the per-cell limits the cell breaks on this node."""
    return frozenset(lim.tag for rule in NODE_RULES for lim in rule.cell_limits
                     if getattr(cell, lim.resource) > lim.most(cap))


def node_explain(cap: NodeCap, totals: NodeTotals, cell: CellDemand, policy: Policy) -> list[Shortfall]:
    """What is missing on the node for ``cell`` on top of ``totals``, rule by rule (empty: it fits).

    The rows are evaluated in their compiled form (``compiled_rows``); a rule words what fails only when one of its
    rows or per-cell limits does."""
    amounts = _amounts(totals, cell)
    failed: dict[int, set[str]] = {}
    for row in compiled_rows(cap, policy, frozenset(amounts)):
        excess = row.const
        for var, coef in row.coefs:
            excess += coef * amounts[var]
        if excess > 0 and (not row.cell_needs or _demands(cell, row.cell_needs)):
            failed.setdefault(row.rule, set()).add(row.key)
    limits = cell_violations(cap, cell)
    if not failed and not limits:
        return []
    out: list[Shortfall] = []
    for index, rule in enumerate(NODE_RULES):
        if index in failed or any(lim.tag in limits for lim in rule.cell_limits):
            out.extend(rule.explain(cap, totals, cell, policy, frozenset(failed.get(index, ()))))
    return out


def node_fits(cap: NodeCap, totals: NodeTotals, cell: CellDemand, policy: Policy) -> bool:
    """``node_explain(...) == []``, faster: the first failing row (or per-cell limit) stops it."""
    amounts = _amounts(totals, cell)
    for row in compiled_rows(cap, policy, frozenset(amounts)):
        excess = row.const
        for var, coef in row.coefs:
            excess += coef * amounts[var]
        if excess > 0 and (not row.cell_needs or _demands(cell, row.cell_needs)):
            return False
    return not cell_violations(cap, cell)


_KEYED_BY = {r.name: r.keyed_by for r in NODE_RESOURCES if r.keyed_by}


def _demands(cell: CellDemand, needs: tuple) -> bool:
    """Whether the cell demands any of ``needs`` (names, or (keyed resource, key))."""
    for var in needs:
        if isinstance(var, str):
            if getattr(cell, var):
                return True
        elif getattr(cell, _KEYED_BY[var[0]]) == var[1]:
            return True
    return False


# ----------------------------------------------------------------------------------------------- compiled rows
Var = str | tuple[str, int]  # a resource name, or (keyed resource, key): ("pages", 2048)
_PLAIN = tuple(r.name for r in NODE_RESOURCES if not r.keyed_by and not r.flag)
_FLAGS = tuple(r.name for r in NODE_RESOURCES if r.flag)
_KEYED = tuple((r.name, r.keyed_by) for r in NODE_RESOURCES if r.keyed_by)


_FLAG_SET = frozenset(_FLAGS)


def cell_amounts(cell: CellDemand) -> tuple[tuple[Var, int], ...]:
    """The cell's non-zero amounts per variable (a flag: 1), computed once per cell (``CellDemand.amounts``)."""
    out: list[tuple[Var, int]] = [(name, value) for name in _PLAIN if (value := getattr(cell, name))]
    out += [(name, 1) for name in _FLAGS if getattr(cell, name)]
    for name, keyed_by in _KEYED:
        if getattr(cell, keyed_by) and getattr(cell, name):
            out.append(((name, getattr(cell, keyed_by)), getattr(cell, name)))
    return tuple(out)


def add_amounts(amounts: dict[Var, int], cell_amounts: tuple[tuple[Var, int], ...], sign: int = 1) -> None:
    """``amounts`` += sign × a cell's amounts, in place (zeros dropped; a flag stays once set)."""
    for var, value in cell_amounts:
        if var in _FLAG_SET:
            if sign > 0:
                amounts[var] = 1
        elif total := amounts.get(var, 0) + sign * value:
            amounts[var] = total
        else:
            amounts.pop(var, None)


def _amounts(totals: NodeTotals, cell: CellDemand) -> dict[Var, int]:
    """The non-zero amounts of ``totals`` plus ``cell`` per variable (a flag: 1 when set)."""
    out = dict(totals.amounts)
    add_amounts(out, cell.amounts)
    return out


@dataclass(frozen=True)
class LinearRow:
    """A row of ``NODE_RULES[rule]`` as lhs − rhs = const + Σ coef · amount(var): it fails when that is > 0."""

    rule: int
    key: str
    const: Any
    coefs: tuple[tuple[Var, Any], ...]
    cell_needs: tuple = ()


class _UnitSums(Sums):
    """Sums where the variables of ``present`` exist (with ``values``, 0 by default): used to read a rule's rows as
    linear forms. Rows must be linear in the sums, and which rows exist may depend only on what is present."""

    def __init__(self, present: frozenset, values: Mapping[Var, int]):
        self.present, self.values = present, values
        self.names = {v if isinstance(v, str) else v[0] for v in present}

    def has(self, name: str) -> bool:
        return name in self.names

    def __getitem__(self, name: str) -> int:
        return self.values.get(name, 0)

    def keyed(self, name: str) -> Mapping[int, int]:
        return {v[1]: self.values.get(v, 0) for v in sorted(self.present, key=str) if not isinstance(v, str)
                and v[0] == name}

    def indicator(self, name: str, var_tag: str = "", link_tag: str = "") -> int:
        return 1 if name in self.names else 0


def compiled_rows(cap: NodeCap, policy: Policy, present: frozenset) -> tuple[LinearRow, ...]:
    """Every node rule's rows on ``cap`` as linear forms, for the variables ``present`` (cached on the node)."""
    cache: tuple[Policy, dict[frozenset, tuple[LinearRow, ...]]] | None = cap.compiled.get(id(policy))
    if cache is None or cache[0] is not policy:  # the entry keeps its policy alive: its id is not reused
        cache = cap.compiled[id(policy)] = (policy, {})
    rows = cache[1].get(present)
    if rows is None:
        rows = cache[1][present] = tuple(_linear(cap, policy, present))
    return rows


def _linear(cap: NodeCap, policy: Policy, present: frozenset) -> list[LinearRow]:
    out = []
    for index, rule in enumerate(NODE_RULES):
        base = rule.rows(cap, _UnitSums(present, {}), policy, 1)
        unit = {var: rule.rows(cap, _UnitSums(present, {var: 1}), policy, 1) for var in present}
        for i, row in enumerate(base):
            const = row.lhs - row.rhs
            coefs = tuple((var, c) for var, rows in unit.items() if (c := rows[i].lhs - rows[i].rhs - const))
            out.append(LinearRow(index, row.key, const, coefs, row.cell_needs))
    return out


def _most(rows_of: Callable[[int], list[Row]]) -> int | None:
    """The largest k ≥ 0 with every row holding, each row linear in k: evaluated at k = 1 and k = 2 (where the same
    rows exist), lhs − rhs = base + k·slope; None: no row grows with k."""
    one, two = rows_of(1), rows_of(2)
    best = None
    for r1, r2 in zip(one, two, strict=False):
        slope = (r2.lhs - r2.rhs) - (r1.lhs - r1.rhs)
        base = (r1.lhs - r1.rhs) - slope
        if slope > 0:
            k = max((-base) // slope, 0) if base <= 0 else 0
            best = k if best is None else min(best, k)
    return best


def node_limit(cap: NodeCap, cell: CellDemand, policy: Policy) -> int | None:
    """The most copies of ``cell`` an empty node takes, rule by rule, each rule counting only the resources it
    bounds alone (``NodeRule.alone``); None: no rule limits it."""
    if cell_violations(cap, cell):
        return 0
    limits = []
    for rule in NODE_RULES:
        if not rule.alone:
            continue

        def rows(times: int, rule: NodeRule = rule) -> list[Row]:
            full = NumberSums.of(None, cell, times)
            kept = NumberSums({k: v for k, v in full.values.items() if k in rule.alone},
                              {k: v for k, v in full.keys.items() if k in rule.alone})
            return rule.rows(cap, kept, policy, 1)

        k = _most(rows)
        if k is not None:
            limits.append(k)
    return min(limits) if limits else None


def host_limit(cap: Any, guest_vcpus: int, policy: Policy) -> int | None:
    """The most guests of ``guest_vcpus`` vCPUs an empty host takes by the host rules."""
    limits = []
    for rule in HOST_RULES:

        def rows(times: int, rule: HostRule = rule) -> list[Row]:
            return rule.rows(cap, NumberSums({"vcpus": times * guest_vcpus}), policy, 1)

        k = _most(rows)
        if k is not None:
            limits.append(k)
    return min(limits) if limits else None


# ----------------------------------------------------------------------------------------------- fleet totals
@dataclass(frozen=True)
class Total:
    """A resource summed over the fleet, for the lower bounds on hosts from totals alone (``bounds.resource_bounds``,
    ``planner.analysis.capacity``): what all guests need (``guest_totals``) against what one host offers
    (``capacity``). ``key`` is the bound's name in plan.json ``solver.bounds``, the capacity bounds and the frames
    columns (hugepages: one key per page size, ``hugepages_<size>``)."""

    key: str
    words: str  # in the bounds' texts ("... of MODEL hosts binds")
    label: str  # in the capacity plots and tables
    capacity: Callable[[Any, Any], int]  # (ModelCap, node filter) -> what one host offers


def _nodes(cap: Any, keep: Callable[[Any], bool]) -> list:
    return [n for n in cap.nodes if keep(n)]


TOTALS: tuple[Total, ...] = (
    Total("cpus", "CPUs (dedicated and shared-pool)", "CPUs (dedicated + shared load ÷ target)",
          lambda cap, keep: cap.usable_cpus),
    Total("vcpu_cap", "the host vCPU cap", "vCPUs (overcommit cap)", lambda cap, keep: cap.vcpu_cap),
    Total("memory_4k", "4K memory", "4K memory",
          lambda cap, keep: sum(n.memory_4k_kib for n in _nodes(cap, keep))),
)
TOTAL_OF: Mapping[str, Total] = {t.key: t for t in TOTALS}
PAGES_PREFIX = "hugepages_"


def pages_key(page_kib: int) -> str:
    """``hugepages_2M``: the total of one page size (named as ``format_page`` writes it)."""
    from planner.model.units import format_page

    return f"{PAGES_PREFIX}{format_page(page_kib)}"


def parse_pages_key(key: str) -> int:
    """The page size in KiB of a ``hugepages_<size>`` key."""
    from planner.model.units import parse_page_kib

    return parse_page_kib(key[len(PAGES_PREFIX):])


def total_words(key: str) -> str:
    """What a total is, in words: '4K memory', '2M hugepages'."""
    return TOTAL_OF[key].words if key in TOTAL_OF else f"{key[len(PAGES_PREFIX):]} hugepages"


def total_label(key: str) -> str:
    return TOTAL_OF[key].label if key in TOTAL_OF else f"{key[len(PAGES_PREFIX):]} hugepages"


def is_total(key: str) -> bool:
    return key in TOTAL_OF or key.startswith(PAGES_PREFIX)


def host_totals(cap: Any, cells_only: bool = True) -> dict[str, int]:
    """What one host of a model offers per total: usable CPUs, the vCPU cap, 4K memory (× memory_overcommit) and
    pool pages per size, over the nodes that hold guest cells (``cells_only=False``: over every node)."""
    keep = (lambda n: n.holds_cells) if cells_only else (lambda n: True)
    out = {t.key: t.capacity(cap, keep) for t in TOTALS}
    for size in sorted({size for n in _nodes(cap, keep) for size in n.pages}):
        out[pages_key(size)] = sum(n.pages.get(size, 0) for n in _nodes(cap, keep))
    return out


def host_total(cap: Any, key: str, cells_only: bool = True) -> int:
    """One total of ``host_totals`` (0 when the host has none of it)."""
    return host_totals(cap, cells_only).get(key, 0)


@dataclass(frozen=True)
class GuestTotals:
    """What the guests need in all: dedicated CPUs (``threads_per_core`` per isolate vCPU, 1 per emulator=isolate),
    shared vCPUs and their load in CPUs (Σ vCPUs × load), vCPUs, 4K memory (KiB) and pages per size."""

    dedicated_cpus: Fraction
    shared_vcpus: int
    shared_load_cpus: Fraction
    vcpus: int
    memory_4k_kib: int
    pages: Mapping[int, int]

    def needs(self, policy: Policy, threads_per_core: int, with_vcpu_cap: bool) -> dict[str, Fraction]:
        """Per total key. ``cpus``: dedicated + shared load ÷ load target; ``with_vcpu_cap``: the shared pool at
        least shared vCPUs × T ÷ cpu_overcommit_max too (the pool's own vCPU cap)."""
        pool = self.shared_load_cpus / policy.cpu_load_target
        if with_vcpu_cap:
            pool = max(pool, Fraction(self.shared_vcpus * threads_per_core) / policy.cpu_overcommit_max)
        out = {"cpus": self.dedicated_cpus + pool, "vcpu_cap": Fraction(self.vcpus),
               "memory_4k": Fraction(self.memory_4k_kib)}
        for size, n in sorted(self.pages.items()):
            out[pages_key(size)] = Fraction(n)
        return out


def guest_totals(guests: Any, threads_per_core: int) -> GuestTotals:
    dedicated = Fraction(0)
    shared = vcpus = memory = 0
    load = Fraction(0)
    pages: dict[int, int] = {}
    for g in guests:
        vcpus += g.vcpus
        if g.dedicated:
            dedicated += g.vcpus * (threads_per_core if g.threads == "isolate" else 1)
        else:
            shared += g.vcpus
            load += g.vcpus * g.load
        if g.emulator == "isolate":
            dedicated += 1
        if g.hugepage_kib:
            pages[g.hugepage_kib] = pages.get(g.hugepage_kib, 0) + g.memory_kib // g.hugepage_kib
        else:
            memory += g.memory_kib
    return GuestTotals(dedicated, shared, load, vcpus, memory, pages)
