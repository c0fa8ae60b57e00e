"""Host import: a real host's NUMA topology, as the host reports it, into a :class:`planner.model.scenario.HostModel`
(and the YAML text of a scenario-v1 host model with a header naming its source).

Three kinds of capture are read (the kind is told from the content, not the file name):

* ``virsh capabilities`` XML: ``<host><topology><cells>``, each cell with its ``<cpus>`` (``id``, ``socket_id``,
  ``die_id``, ``core_id`` and ``siblings`` written as a list ``'0,12'`` or a range ``'0-7'``), ``<memory unit>``,
  ``<pages unit size>`` (``unit`` may be missing: KiB, libvirt's default) and ``<distances>``; the architecture
  from ``<host><cpu><arch>``.
* ``numactl --hardware`` text: ``available:``, ``node N cpus:`` (lists wrapped over several lines by a mail client
  are joined), ``node N size: M MB`` (numactl's MB is 2^20 bytes: MiB), the distance table (rows may be wrapped
  too; the table may be missing). It has no SMT siblings: give ``threads_per_core`` or an ``lscpu -p`` file
  (found beside the capture as ``FILE.lscpu`` or ``STEM.lscpu``).
* a sysfs snapshot, a directory or a tarball (``.tar``, ``.tar.gz``, ``.tgz``, ...) holding
  ``sys/devices/system/node/nodeN/{cpulist,meminfo,distance,hugepages/hugepages-SIZEkB/nr_hugepages}`` and
  ``sys/devices/system/cpu/cpuN/topology/{thread_siblings_list,core_id,physical_package_id}``, made with
  :data:`SYSFS_CAPTURE_COMMAND` (tar pads sysfs files with NUL bytes, which are ignored; an ``arch`` file at the
  top, from ``uname -m``, gives the architecture).

Rules of the model made from a capture (the same for ``vplan host import`` and for ``capabilities:``/``numactl:``/
``sysfs:`` in a scenario's host model):

* nodes are the capture's nodes/cells, sorted by id (ids may be sparse: 0, 1, 16, 17); CPU ids as the host numbers
  them (they may interleave across nodes); a node may have no CPUs or no memory (it then holds no guest cell).
* node memory is the cell's ``<memory>`` / numactl's ``size`` / sysfs ``MemTotal``. When the capture has none
  (libvirt before 1.2.x wrote no ``<memory>``), the import is refused with the nodes named, unless ``memory``
  overrides are given: one size for every node the capture gives no memory for, or per node id (which also
  replaces a value the capture has).
* hugepage pools are the capture's per-node page counts of every size above the base page (the smallest size the
  host lists, 4K on x86 and most aarch64 kernels, 64K on POWER), including empty pools (count 0) so the sizes the
  host supports stay visible. ``hugepages`` overrides set per node id and size ``{0: {1G: 8}}``; other sizes keep
  the capture's count. A size the capture does not list is allowed with a warning (a kernel lists a size only
  when it was enabled, e.g. ``hugepagesz=1G`` on its command line).
* SMT sibling groups come from ``siblings`` (capabilities) or ``thread_siblings_list`` (sysfs), only the CPUs the
  capture lists (offline siblings dropped); where the capture has none, from the CPUs' socket/die/core ids, else
  from an ``lscpu -p`` file, else ``threads_per_core`` (Linux's usual numbering: the siblings of c are c + k*N/T,
  which needs CPU ids 0..N-1). A group must sit inside one node. ``threads_per_core`` given with a capture that
  has siblings must agree with them.
* distances come from the capture; when it has none at all, 10 on the diagonal and 20 elsewhere (the scenario
  default), said in the header. A partial table is refused. Off-diagonal values must be 11..254.
* ``reserved`` (CPUs and memory per node with memory) and ``arch`` are taken as given; the architecture defaults to
  the capture's (capabilities, or a sysfs snapshot's ``arch`` file), else x86_64 (said in the header).
* A capture that lacks something required raises :class:`CaptureError` naming the file and what to add.

The readers live in this package by what they read: :mod:`~planner.hostimport.capabilities`,
:mod:`~planner.hostimport.numactl`, :mod:`~planner.hostimport.sysfs`, :mod:`~planner.hostimport.lscpu`
(:mod:`~planner.hostimport.read` tells the kind), :mod:`~planner.hostimport.build` (capture + overrides → model),
:mod:`~planner.hostimport.spec` (model → YAML); :mod:`~planner.hostimport.errors` and
:mod:`~planner.hostimport.captured` hold what they share. This module is the facade that names the public API::

    read_capture(path) -> Capture                      # parse, whatever the kind
    build_model(capture, name=..., overrides) -> Imported   # .model (HostModel), .spec, .notes, .choices
    import_host(path, ...) -> Imported                 # both
    Imported.yaml_text(source=..., command=...) -> str # scenario-v1 host model with its header
"""

from __future__ import annotations

from planner.hostimport.build import ARCHES, build_model, import_host
from planner.hostimport.capabilities import parse_capabilities
from planner.hostimport.captured import MAX_FILE_BYTES, Capture, CaptureNode, Kind, page_kib
from planner.hostimport.errors import CaptureError, Style
from planner.hostimport.lscpu import lscpu_beside, parse_lscpu
from planner.hostimport.numactl import parse_numactl
from planner.hostimport.read import detect_kind, read_capture
from planner.hostimport.spec import Imported, model_spec, spec_lines, spec_yaml
from planner.hostimport.sysfs import MAX_SYSFS_FILE_BYTES, MAX_TAR_BYTES, SYSFS_CAPTURE_COMMAND, parse_sysfs
from planner.model.units import scaled_kib

__all__ = [
    "ARCHES",
    "Capture",
    "CaptureError",
    "CaptureNode",
    "Imported",
    "Kind",
    "MAX_FILE_BYTES",
    "MAX_SYSFS_FILE_BYTES",
    "MAX_TAR_BYTES",
    "SYSFS_CAPTURE_COMMAND",
    "Style",
    "build_model",
    "detect_kind",
    "import_host",
    "lscpu_beside",
    "model_spec",
    "page_kib",
    "parse_capabilities",
    "parse_lscpu",
    "parse_numactl",
    "parse_sysfs",
    "read_capture",
    "scaled_kib",
    "spec_lines",
    "spec_yaml",
]
