"""Host captures (virsh capabilities, numactl, sysfs, lscpu) turned into host models."""
