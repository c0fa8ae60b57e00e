"""Host captures (virsh capabilities, numactl, sysfs, lscpu) turned into host models.

Modules by what they read: ``capabilities`` (virsh capabilities XML), ``numactl`` (numactl --hardware),
``sysfs`` (a sysfs snapshot directory or tarball), ``lscpu`` (lscpu -p), ``read`` (the kind told from the
content); ``build`` (capture + overrides → HostModel), ``spec`` (HostModel → YAML); ``errors`` and ``captured``
(shared types and helpers). ``capture`` is the public facade: import from it."""
