"""vplan benchmark: seeded fleets of four sizes and other shapes, vplan against every built-in heuristic.

    python bench/run.py                       # small, medium, large (xl with --sizes xl)
    python bench/run.py --sizes small,medium --profile
    python bench/run.py --sizes medium-running,large-smallest   # fleets of other shapes (SHAPES below)

Each size runs in a fresh subprocess (so peak RSS is that size's own); inside it vplan and then every heuristic of
planner.engine.heuristics (first-fit, first-fit-decreasing, dot-product, dot-product-lp, best-fit) run in the same
process, each plan pinned and checked by planner.verify.check, so ratios hold on a noisy machine. A heuristic's row
carries vplan's bound and its kind. Output: JSON lines (--jsonl FILE, default bench/results.jsonl)
and a table. Figures, never assertions: this is not a test.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SIZES = {  # name: (hosts, guests)
    "small": (4, 40),
    "medium": (50, 1500),
    "large": (400, 12000),
    "xl": (2000, 60000),
}
# fleets of other shapes (planner.analysis.generate options): name -> (hosts, guests, generate_fleet keyword arguments)
SHAPES = {
    "medium-smallest": (50, 1500, {"order": "smallest"}),
    "medium-running": (50, 1500, {"order": "smallest", "existing": 0.02}),
    # small 2-socket boxes: 1G pools on one node of 4 and memory-less nodes (EPYC) beside a 22-CPU Xeon where CPUs bind
    "medium-small-models": (50, 450, {"models": ["amd-epyc-7401-2s-memoryless", "intel-xeon-e5649-2s"],
                                      "order": "smallest"}),
    "medium-8node": (50, 1500, {"models": ["intel-xeon-e7-4870-8s"]}),
    "large-smallest": (400, 12000, {"order": "smallest"}),
    "large-running": (400, 12000, {"order": "smallest", "existing": 0.02}),
}


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_size(name: str, seed: int, time_limit: float | None, profile: bool) -> list[dict]:
    from planner.engine.bounds import lower_bounds
    from planner.verify.check import check_plan
    from planner.analysis.generate import generate_fleet
    from planner.engine.greedy import greedy
    from planner.io.loader import load_scenario
    from planner.engine.pinning import pin_assignment
    from planner.model.plan import Plan, SolveStats
    from planner.engine.problem import compile_problem, score
    from planner.engine.solver import solve

    hosts, guests, options = SHAPES[name] if name in SHAPES else (*SIZES[name], {})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"bench-{name}.yaml"
        path.write_text(generate_fleet(hosts, guests, seed=seed, out_path=str(ROOT / "scenarios" / path.name),
                                       **options).replace("../models/", str(ROOT / "models") + "/"), encoding="utf-8")
        scenario = load_scenario(path)
    problem = compile_problem(scenario)
    mix: dict[str, float] = {}
    bounds = lower_bounds(problem, mix=mix)
    rows = []
    t0 = time.monotonic()
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    plan = solve(scenario, time_limit_s=time_limit, seed=seed)
    if profiler:
        profiler.disable()
    elapsed = time.monotonic() - t0
    stats = plan.stats
    hosts_used = len(plan.hosts_used)
    violations = len(check_plan(plan))
    vplan_bound = (stats.bound.hosts, stats.bound.binding) if stats.bound else (bounds.hosts, bounds.binding)
    rows.append(row(name, f"vplan ({stats.solver})", elapsed, stats.search.first_plan_s if stats.search else 0.0, hosts_used,
                    *vplan_bound, _distance(problem, plan), len(plan.placed), len(scenario.guests), violations))
    vplan_plan = plan
    from planner.engine.heuristics import portfolio

    for h in portfolio(problem, mix):  # every built-in heuristic, pinned and checked
        placements = pin_assignment(problem, h.assignment)
        unplaced = {g.name: "not placed by the baseline" for g in scenario.guests if g.name not in placements}
        baseline = Plan(scenario, "partial" if unplaced else "feasible", placements, unplaced, SolveStats(solver=h.name))
        violations = len(check_plan(baseline))
        sc = score(problem, h.assignment)
        rows.append(row(name, h.name, h.seconds, h.seconds, -sc[1], *vplan_bound, -sc[2], len(placements),
                        len(scenario.guests), violations))
    plan = vplan_plan
    if name in ("small", "medium"):
        rows.append(replan_row(name, scenario, plan, problem, seed))
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
        print(out.getvalue(), file=sys.stderr)
    return rows


def replan_row(name, scenario, plan, problem, seed) -> dict:
    """Issue 5's fast re-plan: 5% of the guests changed (half removed, half new copies), planned from ``plan``."""
    import dataclasses

    from planner.engine.bounds import lower_bounds
    from planner.verify.check import check_plan
    from planner.engine.replan import replan

    guests = list(scenario.guests)
    step = max(len(guests) // max(len(guests) * 5 // 200, 1), 1)
    removed = set(g.name for g in guests[::step][: max(len(guests) * 5 // 200, 1)])
    added = [dataclasses.replace(g, name=f"{g.name}-new", anti_affinity=()) for g in guests[step // 2::step][: len(removed)]]
    changed = dataclasses.replace(scenario, guests=tuple([g for g in guests if g.name not in removed] + added))
    t0 = time.monotonic()
    after = replan(changed, plan, seed=seed)
    elapsed = time.monotonic() - t0
    r = row(name, "vplan re-plan (5% changed)", elapsed, elapsed, len(after.hosts_used), plan.stats.bound.hosts if plan.stats.bound else 0,
            plan.stats.bound.binding if plan.stats.bound else "", _distance(problem, after), len(after.placed), len(changed.guests),
            len(check_plan(after)))
    r["moved"] = after.stats.quick_replan.moved
    r["changed"] = len(removed) + len(added)
    return r


def _distance(problem, plan) -> int:
    scenario = plan.scenario
    total = 0
    for p in plan.placed.values():
        model = scenario.model_of(p.host)
        nodes = [c.node_id for c in p.cells]
        total += sum((model.distance(a, b) + model.distance(b, a)) // 2 for i, a in enumerate(nodes) for b in nodes[i + 1:])
    return total


def row(size, solver, wall, first, hosts, bound, binding, distance, placed, guests, violations) -> dict:
    gap = round(100.0 * (hosts - bound) / bound, 2) if bound and placed == guests else None
    return {
        "size": size, "solver": solver, "wall_s": round(wall, 2), "first_plan_s": round(first, 2),
        "peak_rss_mb": round(rss_mb(), 1), "hosts_used": hosts, "lower_bound": bound, "binding": binding,
        "gap_pct": gap, "distance_cost": distance, "placed": placed, "guests": guests, "violations": violations,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="small,medium,large",
                        help="comma list of small,medium,large,xl and of other shapes: " + ",".join(SHAPES))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--time-limit", type=float, default=60.0,
                        help="seconds (default 60, the spec's default; the generator writes 300 s into large fleets)")
    parser.add_argument("--profile", action="store_true", help="cProfile vplan's solve (to stderr)")
    parser.add_argument("--jsonl", default=str(ROOT / "bench" / "results.jsonl"))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one size in this process
    args = parser.parse_args()
    if args.one:
        for r in run_size(args.one, args.seed, args.time_limit, args.profile):
            print(json.dumps(r), flush=True)
        return
    rows = []
    for size in args.sizes.split(","):
        cmd = [sys.executable, __file__, "--one", size, "--seed", str(args.seed)]
        if args.time_limit:
            cmd += ["--time-limit", str(args.time_limit)]
        if args.profile:
            cmd.append("--profile")
        result = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        if result.returncode:
            print(result.stderr, file=sys.stderr)
            sys.exit(result.returncode)
        if args.profile:
            print(result.stderr, file=sys.stderr)
        for line in result.stdout.splitlines():
            rows.append(json.loads(line))
            print(line, flush=True)
    stamp = {"date": time.strftime("%Y-%m-%d"), "machine": f"{os.cpu_count()} cores, {os.uname().machine}"}
    with open(args.jsonl, "a", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps({**stamp, **r}) + "\n")
    cols = ["size", "solver", "wall_s", "first_plan_s", "peak_rss_mb", "hosts_used", "lower_bound", "binding",
            "gap_pct", "distance_cost", "placed", "violations"]
    print()
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")


if __name__ == "__main__":
    main()
