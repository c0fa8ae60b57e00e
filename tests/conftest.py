"""Every plan.json the test suite writes is validated against planner/schemas/plan.schema.json: in-process
through ``planner.analysis.output.plan_document``, and those written by ``vplan`` subprocesses by a scan of the session's
temporary directories when the session ends. Strict mode: a solve phase that fails raises instead of falling
back (planner.engine.solver)."""

from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("VPLAN_STRICT", "1")


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
