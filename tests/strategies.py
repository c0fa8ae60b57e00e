"""Hypothesis strategies: small random fleets covering every feature (for the property tests).

Host models: 1-3 nodes of 2-6 CPUs (SMT pairs or single threads, listed as ``cores``), memory-less nodes, 2M and 1G
hugepage pools, reserved CPUs and memory. Guests: shared (with loads) and dedicated (prefer/isolate/require),
hugepages 2M/1G, multi-cell (numa: 1/2/auto and listed uneven cells), anti-affinity tags (scope host or rack),
emulator isolate/host/shared, priorities, tenants (isolation none/core/node/host), page sharing off, and fixed hosts
(``host:``). Hosts carry racks; the policy may ask to survive one failed host. Every scenario is valid input: it is
written as YAML and read by the loader."""

from __future__ import annotations

import yaml
from hypothesis import strategies as st

from planner.io.loader import load_scenario_text


@st.composite
def host_models(draw, name: str) -> dict:
    threads = draw(st.sampled_from([1, 2]))
    node_count = draw(st.integers(1, 3))
    nodes, cores, cpu = [], [], 0
    reserved = draw(st.booleans())
    reserved_gib = draw(st.sampled_from([0, 1])) if reserved else 0
    for node_id in range(node_count):
        n = draw(st.sampled_from([2, 4, 6]))
        cpus = list(range(cpu, cpu + n))
        cpu += n
        cores += [cpus[i:i + threads] for i in range(0, n, threads)]
        memoryless = node_id > 0 and draw(st.integers(0, 5)) == 0
        memory_gib = 0 if memoryless else draw(st.integers(4, 24))
        node = {"id": node_id, "cpus": f"{cpus[0]}-{cpus[-1]}", "memory": f"{memory_gib}GiB"}
        if memory_gib:
            free = memory_gib - reserved_gib
            g1 = draw(st.integers(0, max(0, free // 2)))
            m2 = draw(st.sampled_from([0, 256, 1024]))
            if g1 + m2 * 2 / 1024 <= free - 1:
                node["hugepages"] = {"1G": g1, "2M": m2}
        nodes.append(node)
    model = {"nodes": nodes, "cores": cores}
    if reserved:
        model["reserved"] = {"cpus": "0", **({"memory": f"{reserved_gib}GiB"} if reserved_gib else {})}
    return model


@st.composite
def guests(draw, index: int, host_cpus: dict[str, int], max_cpus: int, vcpu_caps: dict[str, int],
           fixed_vcpus: dict[str, int]) -> dict:
    dedicated = draw(st.booleans())
    guest: dict = {"name": f"g{index:02d}"}
    threads = draw(st.sampled_from(["prefer", "isolate", "require"])) if dedicated else None
    vcpus = draw(st.integers(1, min(4, max_cpus)))
    if threads == "require":
        vcpus = max(2, vcpus - vcpus % 2)
    page = draw(st.sampled_from([None, None, "2M", "1G"]))
    memory_gib = draw(st.integers(1, 6))
    guest.update(vcpus=vcpus, memory=f"{memory_gib}GiB" if page != "2M" else f"{memory_gib * 512}MiB")
    if dedicated:
        guest.update(cpu="dedicated", threads=threads)
    else:
        guest["load"] = draw(st.sampled_from([0.1, 0.3, 0.5, 1.0]))
    if page:
        guest["hugepages"] = page
    numa_limit = vcpus // 2 if threads == "require" else vcpus
    numa = draw(st.sampled_from(["auto", 1, 2, "listed"]))
    if numa == "listed":
        if not page and threads != "require" and vcpus >= 2 and memory_gib >= 2:  # two uneven cells
            first = draw(st.integers(1, vcpus - 1))
            first_gib = draw(st.integers(1, memory_gib - 1))
            guest["numa"] = [{"vcpus": first, "memory": f"{first_gib}GiB"},
                             {"vcpus": vcpus - first, "memory": f"{memory_gib - first_gib}GiB"}]
    elif numa != "auto" and numa <= numa_limit:
        guest["numa"] = numa
    emulator = draw(st.sampled_from(["host", "host", "isolate", "shared"]))
    if emulator != "host":
        guest["emulator"] = emulator
    if draw(st.integers(0, 3)) == 0:
        guest["anti_affinity"] = draw(st.sampled_from(["a", "b"]))
    tenant = draw(st.sampled_from([None, None, "t1", "t2"]))
    if tenant:
        guest["tenant"] = tenant
    if draw(st.integers(0, 5)) == 0:
        guest["page_sharing"] = False
    priority = draw(st.sampled_from([1, 1, 2, 3]))
    if priority != 1:
        guest["priority"] = priority
    if draw(st.integers(0, 4)) == 0:
        # within the host's CPUs and, with the guests fixed there before, its vCPU cap (else the loader refuses)
        fits = [h for h, n in host_cpus.items() if n >= vcpus and fixed_vcpus[h] + vcpus <= vcpu_caps[h]]
        if fits:
            guest["host"] = draw(st.sampled_from(sorted(fits)))
            fixed_vcpus[guest["host"]] += vcpus
    return guest


@st.composite
def fleets(draw, max_guests: int = 8) -> "tuple[str, object]":
    """(YAML text, loaded Scenario) of a small random fleet."""
    models = {f"m{i}": draw(host_models(f"m{i}")) for i in range(draw(st.integers(1, 2)))}
    host_count = draw(st.integers(1, 4))
    hosts = [{"name": f"h{i}", "model": draw(st.sampled_from(sorted(models)))} for i in range(1, host_count + 1)]
    for host in hosts:
        rack = draw(st.sampled_from([None, "r1", "r2"]))
        if rack:
            host["rack"] = rack
    cpus_of = {m: sum(len(c) for c in spec["cores"]) for m, spec in models.items()}
    host_cpus = {h["name"]: cpus_of[h["model"]] for h in hosts}
    max_cpus = max(host_cpus.values())
    ratio = draw(st.sampled_from([1, 2, 8]))
    vcpu_caps = {h["name"]: ratio * len(models[h["model"]]["cores"]) for h in hosts}
    fixed_vcpus = {h: 0 for h in host_cpus}
    items = [draw(guests(i, host_cpus, max_cpus, vcpu_caps, fixed_vcpus)) for i in range(draw(st.integers(1, max_guests)))]
    # a page size must be listed by some model's node (the loader refuses it otherwise): else 4K memory
    listed = {size for spec in models.values() for n in spec["nodes"] for size in n.get("hugepages", {})}
    for g in items:
        if g.get("hugepages") not in (None, *listed):
            del g["hugepages"]
    # listed cells need as many nodes that hold cells on some host (on its fixed host, for a fixed guest)
    holding = {m: sum(1 for n in spec["nodes"] if n["memory"] != "0GiB") for m, spec in models.items()}
    host_holding = {h["name"]: holding[h["model"]] for h in hosts}
    for g in items:
        if isinstance(g.get("numa"), list):
            room = host_holding[g["host"]] if "host" in g else max(host_holding.values())
            if room < len(g["numa"]):
                del g["numa"]
    # the loader refuses fixed guests sharing a tag on one host: keep the first
    seen = set()
    for g in items:
        if "host" in g and "anti_affinity" in g:
            key = (g["host"], g["anti_affinity"])
            if key in seen:
                del g["anti_affinity"]
            seen.add(key)
    policy = {
        "memory_overcommit": draw(st.sampled_from([1, 1.5])),
        "node_memory_target": draw(st.sampled_from([1, 1, 0.8, 0.5])),
        "cpu_overcommit_max": ratio,
        "cpu_load_target": draw(st.sampled_from([0.5, 0.7, 1.0])),
        "objective": draw(st.sampled_from(["pack", "pack", "pack", "spread"])),
        "anti_affinity_scope": draw(st.sampled_from(["host", "host", "rack"])),
        "tenant_isolation": draw(st.sampled_from(["none", "none", "core", "node", "host"])),
    }
    if draw(st.integers(0, 3)) == 0:
        policy["survive"] = {"hosts": 1}
    doc = {"version": 1, "name": "prop", "policy": policy,
           "host_models": models, "hosts": hosts, "guests": items}
    text = yaml.safe_dump(doc, sort_keys=False)
    return text, load_scenario_text(text, "prop.yaml")
