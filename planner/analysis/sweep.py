"""What-if sweeps on any ``concurrent.futures.Executor``: a local process pool or a Dask cluster.

A sweep solves many scenarios (variants of one, the months of a growth study, the fleet sizes a sizing search
probes) independently, so the solves can run side by side. Every function here takes ``executor=``:

* ``None`` (default): a local process pool (``ProcessPoolExecutor``, ``forkserver`` start method so that no
  worker is forked from a process whose OR-Tools threads hold locks), as many workers as solves up to the CPUs;
* any ``concurrent.futures.Executor``: e.g. ``distributed.Client("tcp://HOST:8786").get_executor()`` to run the
  solves on a Dask cluster (``executor_for("tcp://HOST:8786")`` makes and closes one).

Solves are plain function calls on plain data (a ``Scenario`` in, a checked, frozen ``Plan`` out), pickled to
the workers and back. With ``deterministic=True`` (CP-SAT deterministic time, see ``planner.engine.clock``) the same
scenario and seed give the same plan on any executor, so a sweep on a cluster returns what the local pool returns.

``sweep(variants)`` returns one DataFrame row per variant: ``variant`` plus every ``plan.summary()`` column and
the headline's lower bound and gap; ``solve_all(variants)`` returns the plans themselves.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

import pandas as pd

from planner.model.plan import Plan
from planner.model.scenario import Scenario

Variants = Mapping[str, Scenario] | Sequence[Scenario]


class SchedulerError(ValueError):
    """A ``--scheduler`` address that is malformed or where no Dask scheduler answers."""


def solve_one(scenario: Scenario, options: Mapping[str, Any]) -> Plan:
    """One solve on a worker (a module-level function, so executors can pickle it)."""
    from planner.engine.solver import solve

    return solve(scenario, **options)


def local_executor(jobs: int) -> ProcessPoolExecutor:
    """A process pool of min(jobs, CPUs) workers (at least 1), started with ``forkserver``."""
    workers = max(1, min(jobs, os.cpu_count() or 1))
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("forkserver"))


@contextlib.contextmanager
def executor_for(scheduler: str | None, jobs: int = 2, timeout_s: float = 10.0) -> Iterator[Executor]:
    """The executor for a ``--scheduler`` value: ``None`` → a local process pool; ``tcp://HOST:PORT`` (or any
    address ``distributed.Client`` takes) → that Dask cluster's executor. Closed (pool shut down, client closed)
    on exit. Raises ``SchedulerError`` when the address is malformed, Dask is not installed, or no scheduler
    answers within ``timeout_s``."""
    if scheduler is None:
        pool = local_executor(jobs)
        try:
            yield pool
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return
    if "://" not in scheduler or not scheduler.split("://", 1)[1]:
        raise SchedulerError(f"--scheduler {scheduler}: expected a Dask scheduler address such as tcp://HOST:8786")
    try:
        from distributed import Client
    except ImportError:
        raise SchedulerError(f"--scheduler {scheduler}: Dask is not installed (pip install 'vplan[cluster]', "
                             "i.e. dask[distributed])") from None
    try:
        client = Client(scheduler, timeout=f"{timeout_s:g}s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise SchedulerError(f"--scheduler {scheduler}: no Dask scheduler answers there ({exc})") from None
    try:
        yield client.get_executor()
    finally:
        client.close()


def solve_many(scenarios: Sequence[Scenario], *, executor: Executor | None = None, **options: Any) -> list[Plan]:
    """Solve every scenario (in order) on ``executor`` (default: a local process pool, shut down afterwards);
    ``options`` are ``planner.engine.solver.solve``'s (``time_limit_s``, ``seed``, ``workers``, ``deterministic``,
    ``method``, ...). One scenario without an executor is solved in this process."""
    scenarios = list(scenarios)
    if not scenarios:
        return []
    if executor is None and len(scenarios) == 1:
        return [solve_one(scenarios[0], options)]
    if executor is None:
        with executor_for(None, jobs=len(scenarios)) as pool:
            return _map(pool, scenarios, options)
    return _map(executor, scenarios, options)


def _map(executor: Executor, scenarios: list[Scenario], options: Mapping[str, Any]) -> list[Plan]:
    futures = [executor.submit(solve_one, sc, dict(options)) for sc in scenarios]
    return [f.result() for f in futures]


def _labelled(variants: Variants) -> list[tuple[str, Scenario]]:
    if isinstance(variants, Mapping):
        items = [(str(k), v) for k, v in variants.items()]
    else:
        items = [(sc.name, sc) for sc in variants]
    for label, sc in items:
        if not isinstance(sc, Scenario):
            raise TypeError(f"variant {label}: expected a Scenario, not {type(sc).__name__}")
    return items


def solve_all(variants: Variants, *, executor: Executor | None = None, **options: Any) -> dict[str, Plan]:
    """Every variant solved (see ``solve_many``): label → plan. ``variants`` is a mapping label → scenario or a
    sequence of scenarios (labelled by their names)."""
    items = _labelled(variants)
    plans = solve_many([sc for _, sc in items], executor=executor, **options)
    return {label: plan for (label, _), plan in zip(items, plans, strict=False)}


def sweep(variants: Variants, *, executor: Executor | None = None, **options: Any) -> pd.DataFrame:
    """Solve every variant on ``executor`` and return one row per variant: ``variant``, ``bound_hosts``,
    ``gap_hosts`` and every ``plan.summary()`` column (``frames.SUMMARY_COLUMNS``: status, hosts_used,
    placed, utilisation fractions, solve_s, ...), in the order given."""
    from planner.analysis.headline import headline

    plans = solve_all(variants, executor=executor, **options)
    rows = []
    for label, plan in plans.items():
        summary = plan.summary().iloc[0].to_dict()
        h = headline(plan)
        bound = h.get("bound_hosts")
        rows.append({"variant": label, "bound_hosts": bound,
                     "gap_hosts": (summary["hosts_used"] - bound) if bound is not None else None, **summary})
    return pd.DataFrame(rows)
