"""Hugepage pool sizing: the pages each host node needs per page size for a plan, and the settings that make them.

Input: a plan directory written by ``vplan solve`` (``plan.json``, read by ``planner.files.planfile``: per placed guest
its host, ``page_size`` and ``cells`` with each cell's node and ``memory_kib``). A cell on pages of size S needs
⌈memory / S⌉ pages of S on its node (memory is a whole number of pages for every valid guest).

Settings, per host:

* gigantic pages (1 GiB and larger: 1G on x86_64/aarch64, 16G on POWER) are best reserved at boot:
  ``default_hugepagesz=1G hugepagesz=1G hugepages=N`` with N the host's total. The kernel spreads boot-time pages
  evenly over the nodes, so per-node counts need either the node form ``hugepagesz=1G hugepages=0:8,1:4``
  (Linux 5.16 and later) or the per-node sysfs writes below (at runtime 1G pages need free contiguous memory,
  so do them early, e.g. from a systemd unit before libvirtd);
* every size, per node: ``echo N > /sys/devices/system/node/nodeK/hugepages/hugepages-SIZEkB/nr_hugepages``.
  Every node of the host is listed for each size the host uses (0 where none is needed), so the writes also
  release pages a node no longer needs.

* a hugetlbfs mount per page size, which libvirt backs the guests' memory from:
  ``mkdir -p /dev/hugepages-2M && mount -t hugetlbfs -o pagesize=2M hugetlbfs /dev/hugepages-2M`` (and its
  ``/etc/fstab`` line); libvirt looks for hugetlbfs mounts only when it starts, so name them in
  ``/etc/libvirt/qemu.conf`` (``hugetlbfs_mount = ["/dev/hugepages-2M", "/dev/hugepages-1G"]``) and restart
  libvirtd (or virtqemud). Without it a guest on hugepages does not start ("hugetlbfs filesystem is not mounted
  or disabled by administrator config").

The model's pools (``hugepages_used_pages + hugepages_free_pages`` in plan.json) are shown beside the need for
comparison.

Public API: ``read_plan_pages(plan_dir) -> PagePlan``; ``PagePlan.text()``, ``PagePlan.document()``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from planner.files.planfile import PlanFileError, plan_json_path, read_plan_document
from planner.model.errors import VplanError
from planner.model.units import format_page, parse_page_kib

__all__ = ["HugepageError", "HostPages", "PagePlan", "read_plan_pages", "GIGANTIC_KIB"]

GIGANTIC_KIB = 1024 * 1024  # 1 GiB: pages this size and larger are reserved at boot
LIBVIRT_RESTART = "systemctl restart libvirtd (or virtqemud, with the modular daemons)"


class HugepageError(VplanError):
    """A plan directory that cannot be read."""


@dataclass
class HostPages:
    host: str
    nodes: list[int]  # node ids of the host (from plan.json)
    need: dict[int, dict[int, int]] = field(default_factory=dict)  # page KiB -> node -> pages needed
    pool: dict[int, dict[int, int]] = field(default_factory=dict)  # page KiB -> node -> pages in the model's pool

    @property
    def sizes(self) -> list[int]:
        return sorted(self.need)

    def total(self, size: int) -> int:
        return sum(self.need.get(size, {}).values())

    def kernel_cmdline(self) -> str | None:
        """Boot parameters for the gigantic sizes (None when the host needs none)."""
        return self._cmdline(lambda size: str(self.total(size)))

    def kernel_cmdline_per_node(self) -> str | None:
        """The node form (Linux >= 5.16): ``hugepagesz=1G hugepages=0:8,1:4``."""
        return self._cmdline(lambda size: ",".join(f"{n}:{c}" for n, c in sorted(self.need[size].items()) if c))

    def _cmdline(self, pages_of) -> str | None:
        giant = [s for s in self.sizes if s >= GIGANTIC_KIB and self.total(s)]
        if not giant:
            return None
        default = max(giant, key=self.total)
        parts = [f"default_hugepagesz={format_page(default)}"]
        parts += [f"hugepagesz={format_page(size)} hugepages={pages_of(size)}" for size in giant]
        return " ".join(parts)

    def mounts(self) -> list[tuple[str, str]]:
        """(page size, mount point) per size the host uses."""
        return [(format_page(size), f"/dev/hugepages-{format_page(size)}") for size in self.sizes if self.total(size)]

    def mount_commands(self) -> list[str]:
        return [f"mkdir -p {path} && mount -t hugetlbfs -o pagesize={page} hugetlbfs {path}"
                for page, path in self.mounts()]

    def fstab_lines(self) -> list[str]:
        return [f"hugetlbfs {path} hugetlbfs pagesize={page} 0 0" for page, path in self.mounts()]

    def qemu_conf(self) -> str | None:
        """The /etc/libvirt/qemu.conf line naming the mounts (None when the host needs none)."""
        paths = [path for _, path in self.mounts()]
        return f"hugetlbfs_mount = [{', '.join(json.dumps(p) for p in paths)}]" if paths else None

    def sysfs(self) -> list[tuple[str, int]]:
        """(path, value) per node and size."""
        out = []
        for size in self.sizes:
            for node in self.nodes:
                out.append((f"/sys/devices/system/node/node{node}/hugepages/hugepages-{size}kB/nr_hugepages",
                            self.need[size].get(node, 0)))
        return out


@dataclass
class PagePlan:
    plan_dir: str
    hosts: list[HostPages]

    def document(self) -> dict:
        return {
            "plan": self.plan_dir,
            "hosts": {
                h.host: {
                    "pages": {format_page(size): {str(n): c for n, c in sorted(h.need[size].items())}
                              for size in h.sizes},
                    "pool_pages": {format_page(size): {str(n): c for n, c in sorted(h.pool.get(size, {}).items())}
                                   for size in h.sizes},
                    "kernel_cmdline": h.kernel_cmdline(),
                    "kernel_cmdline_per_node": h.kernel_cmdline_per_node(),
                    "sysfs": [{"path": p, "value": v} for p, v in h.sysfs()],
                    "hugetlbfs": [{"page": page, "path": path, "mount": command, "fstab": fstab}
                                  for (page, path), command, fstab in zip(h.mounts(), h.mount_commands(),
                                                                          h.fstab_lines(), strict=False)],
                    "qemu_conf": h.qemu_conf(),
                    "libvirt_restart": LIBVIRT_RESTART if h.mounts() else None,
                }
                for h in self.hosts
            },
        }

    def text(self) -> str:
        if not self.hosts:
            return "no placed guest uses hugepages: nothing to set\n"
        lines = []
        for h in self.hosts:
            lines.append(f"{h.host}:")
            for size in h.sizes:
                for node in h.nodes:
                    need = h.need[size].get(node, 0)
                    pool = h.pool.get(size, {}).get(node)
                    shown = f" (model pool {pool})" if pool is not None else ""
                    lines.append(f"  node {node}: {need} x {format_page(size)}{shown}")
            cmdline = h.kernel_cmdline()
            if cmdline:
                lines.append(f"  kernel command line (boot-time pages, spread evenly over the nodes): {cmdline}")
                lines.append(f"  per-node form (Linux >= 5.16): {h.kernel_cmdline_per_node()}")
                lines.append("  or set the per-node counts below early at boot:")
            else:
                lines.append("  set at runtime (or from a boot-time unit):")
            for path, value in h.sysfs():
                lines.append(f"    echo {value} > {path}")
            if h.mounts():
                lines.append("  mount hugetlbfs, one per page size (libvirt backs the guests' memory from it):")
                lines += [f"    {command}" for command in h.mount_commands()]
                lines.append("    and in /etc/fstab:")
                lines += [f"      {line}" for line in h.fstab_lines()]
                lines.append("  libvirt finds hugetlbfs mounts only when it starts: set in /etc/libvirt/qemu.conf")
                lines.append(f"    {h.qemu_conf()}")
                lines.append(f"  then restart it: {LIBVIRT_RESTART}")
        return "\n".join(lines) + "\n"


def read_plan_pages(plan_dir: str | Path) -> PagePlan:
    """The hugepages a plan needs, per host, node and size (hosts without hugepage guests are left out).
    ``plan_dir``: vplan solve's output directory or its plan.json."""
    try:
        return _read_plan_pages(plan_dir)
    except (KeyError, TypeError, ValueError, AttributeError, ZeroDivisionError) as exc:
        what = f"{type(exc).__name__}: {exc}"
        raise HugepageError(f"{plan_json_path(plan_dir)}: not a plan vplan wrote ({what})") from None


def _read_plan_pages(plan_dir: str | Path) -> PagePlan:
    plan_dir = Path(plan_dir)
    path = plan_json_path(plan_dir)
    try:
        document = read_plan_document(plan_dir)
    except PlanFileError as exc:
        raise HugepageError(str(exc)) from None
    guests = document["guests"]
    hosts_doc = document["hosts"]
    by_host: dict[str, HostPages] = {}
    for name, g in guests.items():
        if not isinstance(g, dict) or not g.get("host") or g.get("page_size") in (None, "4K"):
            continue
        size = parse_page_kib(g["page_size"])
        host = g["host"]
        cells = g.get("cells")
        if not isinstance(cells, list) or not cells:
            raise HugepageError(f"{path}: guest {name} has no cells (node and memory per cell)")
        if host not in by_host:
            nodes = sorted(int(n) for n in hosts_doc.get(host, {}).get("nodes", {}))
            by_host[host] = HostPages(host=host, nodes=nodes)
        h = by_host[host]
        for cell in cells:
            node, memory = int(cell["node"]), int(cell["memory_kib"])
            h.need.setdefault(size, {})
            h.need[size][node] = h.need[size].get(node, 0) + -(-memory // size)
            if node not in h.nodes:
                h.nodes.append(node)
                h.nodes.sort()
    for host, h in by_host.items():
        for node_id, usage in hosts_doc.get(host, {}).get("nodes", {}).items():
            used = usage.get("hugepages_used_pages", {}) or {}
            free = usage.get("hugepages_free_pages", {}) or {}
            for label in set(used) | set(free):
                size = parse_page_kib(label)
                h.pool.setdefault(size, {})[int(node_id)] = int(used.get(label, 0)) + int(free.get(label, 0))
    order = [h for h in hosts_doc if h in by_host] + sorted(set(by_host) - set(hosts_doc))
    return PagePlan(plan_dir=str(plan_dir), hosts=[by_host[h] for h in order])
