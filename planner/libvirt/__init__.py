"""libvirt domain XML: written from a plan, merged into existing domains, live changes, hugepages."""
