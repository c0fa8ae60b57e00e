"""The scenario as plain, frozen data: what the loader produces and every later stage reads (never mutates).

Units are in the names: memory in KiB (libvirt's unit), hugepage sizes in KiB, loads and ratios as exact fractions.
Host models are fully resolved: ``cores`` always lists the SMT sibling groups, whether the YAML gave ``cores:`` or
``threads_per_core:``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property
from typing import Literal

CpuMode = Literal["shared", "dedicated"]
ThreadsPolicy = Literal["prefer", "isolate", "require"]
EmulatorPolicy = Literal["host", "isolate", "shared"]
MemoryMode = Literal["strict", "preferred", "interleave", "restrictive"]
Objective = Literal["pack", "spread"]
DomainType = Literal["kvm", "qemu"]
DomainCpuMode = Literal["host-passthrough", "host-model", "maximum", "custom"]
AntiAffinityScope = Literal["host", "rack", "zone"]
TenantIsolation = Literal["none", "core", "node", "host"]
DEFAULT_TENANT = ""  # the tenant of guests without ``tenant:`` (one tenant of their own)


@dataclass(frozen=True)
class Policy:
    cpu_overcommit_max: Fraction = Fraction(8)
    cpu_load_target: Fraction = Fraction(7, 10)
    memory_overcommit: Fraction = Fraction(1)
    # per node: physical 4K memory committed to guests (dedicated 1:1, shared ÷ memory_overcommit) at or under this
    # share of the node's free 4K memory; 1 keeps no headroom (the memory rule alone)
    node_memory_target: Fraction = Fraction(1)
    objective: Objective = "pack"
    time_limit_s: float = 60.0
    stall_s: float = 10.0  # stop once nothing improved for this long
    survive_hosts: int = 0  # policy.survive: {hosts: N}: any N failed hosts can be evacuated (N <= 1 supported)
    survive_racks: int = 0  # policy.survive: {racks: N}: any N failed racks can be evacuated (N <= 1 supported)
    anti_affinity_scope: AntiAffinityScope = "host"  # default scope of anti-affinity tags
    tenant_isolation: TenantIsolation = "none"  # what guests of different tenants never share
    page_sharing: bool = True  # False: every domain gets <memoryBacking><nosharepages/> (KSM never merges)


@dataclass(frozen=True)
class Node:
    id: int
    cpus: tuple[int, ...]
    memory_kib: int
    hugepages: Mapping[int, int] = field(default_factory=dict)  # page size KiB -> pages preallocated

    def pool_kib(self) -> int:
        """Memory carved out of the node for hugepage pools."""
        return sum(size * count for size, count in self.hugepages.items())


@dataclass(frozen=True, eq=False)
class HostModel:
    name: str
    nodes: tuple[Node, ...]
    distances: tuple[tuple[int, ...], ...]  # indexed by position in ``nodes``
    cores: tuple[tuple[int, ...], ...]  # SMT sibling groups, each sorted, sorted by first CPU
    reserved_cpus: frozenset[int] = frozenset()
    reserved_memory_kib: int = 0
    arch: str = "x86_64"
    source: str | None = None  # where the topology came from (file, capture)

    @cached_property
    def node_index(self) -> dict[int, int]:
        """Node id -> position in ``nodes`` (and in ``distances``)."""
        return {node.id: i for i, node in enumerate(self.nodes)}

    @cached_property
    def node_by_id(self) -> dict[int, Node]:
        return {node.id: node for node in self.nodes}

    @cached_property
    def node_of_cpu(self) -> dict[int, int]:
        return {cpu: node.id for node in self.nodes for cpu in node.cpus}

    @cached_property
    def core_of_cpu(self) -> dict[int, tuple[int, ...]]:
        return {cpu: core for core in self.cores for cpu in core}

    @cached_property
    def cpu_count(self) -> int:
        return sum(len(node.cpus) for node in self.nodes)

    def distance(self, node_a: int, node_b: int) -> int:
        return self.distances[self.node_index[node_a]][self.node_index[node_b]]

    def free_4k_kib(self, node: Node) -> int:
        """Node memory left for ordinary (4K) pages: memory − reserved − hugepage pools (memory-less nodes keep 0)."""
        if node.memory_kib == 0:
            return 0
        return node.memory_kib - self.reserved_memory_kib - node.pool_kib()


@dataclass(frozen=True)
class Host:
    name: str
    model: str
    rack: str | None = None  # failure domain labels; a host without one is a rack (zone) of its own
    zone: str | None = None

    def domain(self, scope: str) -> str:
        """The failure domain of the host at ``scope`` (host, rack, zone), as a label unique across scopes."""
        if scope == "rack":
            return f"rack {self.rack}" if self.rack is not None else f"host {self.name}"
        if scope == "zone":
            return f"zone {self.zone}" if self.zone is not None else f"host {self.name}"
        return f"host {self.name}"


@dataclass(frozen=True)
class DomainTemplate:
    """A domain XML whose parts vplan does not own (os, features, devices, ...) the emitted domain keeps."""

    path: str  # as named in messages (relative to the current directory, or absolute)
    text: str  # the file's text, read once by the loader
    has_uuid: bool = False  # the template names its own <uuid> (then it serves one guest only)
    type: str | None = None  # what the template says: <domain type>, <cpu mode> (custom when it has only a
    cpu_mode: str | None = None  # <model>), <cpu><model>, <os><type machine> and arch
    cpu_model: str | None = None
    machine: str | None = None
    arch: str | None = None


@dataclass(frozen=True)
class DomainSettings:
    """How a guest's domain XML is made (scenario ``domain:``, overridable per guest). ``None``: not given, so
    the template's value, else the default: ``type`` kvm, ``cpu_mode`` host-passthrough (``maximum`` for type
    qemu, which cannot pass the host CPU through), ``machine`` per architecture (q35, virt, pseries,
    s390-ccw-virtio). The architecture is always the host model's."""

    type: DomainType | None = None
    cpu_mode: DomainCpuMode | None = None
    cpu_model: str | None = None  # cpu_mode custom only
    machine: str | None = None
    template: DomainTemplate | None = None

    def effective_type(self) -> str:
        """The domain type: given, else the template's, else kvm."""
        return self.type or (self.template.type if self.template is not None and self.template.type else "kvm")

    def effective_cpu_mode(self) -> str:
        """The CPU mode: given, else the template's, else host-passthrough (maximum for type qemu)."""
        if self.cpu_mode is not None:
            return self.cpu_mode
        if self.template is not None and self.template.cpu_mode:
            return self.template.cpu_mode
        return "maximum" if self.effective_type() == "qemu" else "host-passthrough"

    def effective_cpu_model(self) -> str | None:
        """The CPU model of mode custom: given, else the template's (when the mode is custom)."""
        if self.effective_cpu_mode() != "custom":
            return None
        if self.cpu_model is not None:
            return self.cpu_model
        return self.template.cpu_model if self.template is not None else None

    def effective_machine(self, arch: str, default: str) -> str:
        """The machine type for a host of ``arch``: given, else the template's when its arch is this one (or it
        names none), else ``default``."""
        if self.machine is not None:
            return self.machine
        t = self.template
        if t is not None and t.machine and t.arch in (None, arch):
            return t.machine
        return default


@dataclass(frozen=True)
class GuestCell:
    """One explicit vNUMA cell of a guest (``numa: [{vcpus: 1, memory: 1GiB}, ...]``): its vCPU count and memory.
    Cell i holds the next ``vcpus`` vCPU ids in order (cell 0 from vCPU 0)."""

    vcpus: int
    memory_kib: int


@dataclass(frozen=True)
class Guest:
    name: str
    vcpus: int
    memory_kib: int
    cpu: CpuMode = "shared"
    threads: ThreadsPolicy | None = None  # dedicated guests only; None for shared
    load: Fraction = Fraction(1)  # shared guests only
    cpu_demand: Fraction | None = None
    vcpus_auto: bool = False  # vcpus came from ``auto`` (right-sizing)
    hugepage_kib: int | None = None
    numa: int | None = None  # None: auto
    memory_mode: MemoryMode = "strict"
    emulator: EmulatorPolicy = "host"
    anti_affinity: tuple[str, ...] = ()
    priority: int = 1
    host: str | None = None
    domain: DomainSettings = DomainSettings()
    numa_cells: tuple[GuestCell, ...] = ()  # explicit cells (then numa == len(numa_cells)); (): auto or N even cells
    anti_affinity_scope: AntiAffinityScope | None = None  # None: the policy's
    tenant: str | None = None  # None: the default tenant ("")
    page_sharing: bool | None = None  # None: the policy's page_sharing

    @property
    def dedicated(self) -> bool:
        return self.cpu == "dedicated"

    @property
    def tenant_name(self) -> str:
        """The guest's tenant; guests without ``tenant:`` all belong to the default tenant ``""``."""
        return self.tenant if self.tenant is not None else DEFAULT_TENANT


@dataclass(frozen=True, eq=False)
class Scenario:
    name: str
    policy: Policy
    host_models: Mapping[str, HostModel]
    hosts: tuple[Host, ...]
    guests: tuple[Guest, ...]
    path: str | None = None

    @cached_property
    def host_by_name(self) -> dict[str, Host]:
        return {h.name: h for h in self.hosts}

    @cached_property
    def guest_by_name(self) -> dict[str, Guest]:
        return {g.name: g for g in self.guests}

    def scope_of(self, guest: Guest) -> str:
        """The anti-affinity scope of a guest: its own, else the policy's."""
        return guest.anti_affinity_scope or self.policy.anti_affinity_scope

    def model_of(self, host: str) -> HostModel:
        return self.host_models[self.host_by_name[host].model]
