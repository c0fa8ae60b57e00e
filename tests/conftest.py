"""Shared test set-up (tests/README.md describes it all).

* Every plan.json the test suite writes is validated against planner/schemas/plan.schema.json: in-process through
  ``planner.analysis.output.plan_document``, and those written by ``vplan`` subprocesses by a scan of the session's
  temporary directories when the session ends. Strict mode: a solve phase that fails raises instead of falling
  back (planner.engine.solver).
* Fixtures: ``quickstart_plan`` (scenarios/quickstart.yaml solved once per session), ``plan_validator``.
* The CLI, one way each: :func:`vplan` (in-process, typer's CliRunner) and :func:`vplan_process` (a
  ``python -m planner.cli.main`` subprocess); import them: ``from tests.conftest import vplan``.
* ``--update-golden`` (or ``VPLAN_UPDATE_GOLDEN=1``) rewrites the golden files from the current output.
* The ``slow`` marker on the modules of ``SLOW_MODULES``: ``-m "not slow"`` for a quick run; the default runs all.
* :func:`shared_dir`: the project's shared folder beside the checkout, for the tests that compare copies with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("VPLAN_STRICT", "1")

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
QUICKSTART = REPO / "scenarios" / "quickstart.yaml"

#: Test modules marked ``slow`` (the heaviest: minutes on 2 cores). The default test command still runs them.
SLOW_MODULES = frozenset({"test_scale", "test_notebooks", "test_libvirt_qemu", "test_signals", "test_properties",
                          "test_scenarios_e2e"})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite the golden files (tests/golden/) from the current output instead of comparing "
                          "(the same as VPLAN_UPDATE_GOLDEN=1); review the diff before committing")


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--update-golden"):
        os.environ["VPLAN_UPDATE_GOLDEN"] = "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.stem in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


def shared_dir() -> Path | None:
    """The project's shared folder: ``$VPLAN_SHARED``, else ``shared/`` beside the checkout; None if neither."""
    for candidate in (os.environ.get("VPLAN_SHARED"), REPO.parent / "shared"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def vplan(*args: object, cwd: Path | None = None):
    """``vplan ARGS`` in this process (typer's CliRunner; arguments made strings), from ``cwd`` if given. Returns
    the click Result (``exit_code``, ``stdout``, ``stderr``)."""
    from typer.testing import CliRunner

    from planner.cli.main import app

    old = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        return CliRunner().invoke(app, [str(a) for a in args])
    finally:
        os.chdir(old)


def vplan_process(*args: object, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m planner.cli.main ARGS`` as a subprocess (text output captured), from ``cwd`` if given."""
    return subprocess.run([sys.executable, "-m", "planner.cli.main", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout)


@pytest.fixture(scope="session")
def quickstart_plan():
    """scenarios/quickstart.yaml solved once for the session (10 s limit). A frozen Plan: do not mutate it."""
    from planner.engine.solver import solve
    from planner.io.loader import load_scenario

    return solve(load_scenario(QUICKSTART), time_limit_s=10)


@pytest.fixture(scope="session")
def plan_validator():
    import jsonschema

    from planner.files.planfile import schema

    return jsonschema.Draft202012Validator(schema())


@pytest.fixture(scope="session", autouse=True)
def _validate_every_plan_json(plan_validator, tmp_path_factory):
    from planner.analysis import output

    original = output.plan_document

    def validated(plan):
        document = original(plan)
        plan_validator.validate(json.loads(json.dumps(document)))
        return document

    output.plan_document = validated
    yield
    output.plan_document = original
    base = tmp_path_factory.getbasetemp()
    for path in base.rglob("plan.json"):
        if not _written_by_vplan(path):
            continue  # copies and plans that tests break on purpose
        document = json.loads(path.read_text(encoding="utf-8"))
        errors = sorted(plan_validator.iter_errors(document), key=str)
        assert not errors, f"{path}: {errors[0].message} at {list(errors[0].absolute_path)}"


def _written_by_vplan(path) -> bool:
    """plan.json as vplan wrote it: listed, with its hash, in the output directory's manifest."""
    import hashlib

    from planner.files.atomic import MANIFEST

    try:
        files = json.loads((path.parent / MANIFEST).read_text(encoding="utf-8"))["files"]
        return files.get(path.name) == hashlib.sha256(path.read_bytes()).hexdigest()
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
