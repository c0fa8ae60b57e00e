"""The copies of the shared folder in tests/fixtures are what the shared folder holds.

Tests read only the copies (tests/fixtures/spec/example, tests/fixtures/hostimport/shared/{hostcaps,numactl}; see the
SOURCES.md files there). The shared folder is found beside the checkout (``../shared``) or at ``$VPLAN_SHARED``; CI
lays it there, so with ``CI=true`` it must be found. Elsewhere the comparison is skipped with the places looked at
(printed by ``-ra``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import FIXTURES, shared_dir

#: copy in tests/fixtures -> the same tree in the shared folder
COPIES = {
    FIXTURES / "spec" / "example": Path("spec") / "example",
    FIXTURES / "hostimport" / "shared" / "hostcaps": Path("hostcaps"),
    FIXTURES / "hostimport" / "shared" / "numactl": Path("numactl"),
}


def _copied_files() -> list:
    """(copy, its path in the shared folder) for every file of the copied trees, named by the latter."""
    return [pytest.param(path, original / path.relative_to(copy), id=str(original / path.relative_to(copy)))
            for copy, original in COPIES.items() for path in sorted(copy.rglob("*")) if path.is_file()]


def test_every_copy_is_there():
    assert [copy for copy in COPIES if not any(p.is_file() for p in copy.rglob("*"))] == []
    assert (FIXTURES / "spec" / "example" / "out" / "plan.json").is_file()


def test_copies_are_identical_to_the_shared_folder():
    """One test over every copied file (the shared folder is the source the copies were taken from)."""
    shared = shared_dir()
    if shared is None:
        pytest.skip("no shared folder beside the checkout (../shared) nor at $VPLAN_SHARED: copies not compared")
    pairs = [(p.values[0], p.values[1]) for p in _copied_files()]
    assert len(pairs) >= 20
    missing = [str(relative) for _, relative in pairs if not (shared / relative).is_file()]
    assert missing == [], f"copies without an original in {shared}: {missing}"
    differ = [str(copy) for copy, relative in pairs if copy.read_bytes() != (shared / relative).read_bytes()]
    assert differ == [], f"copies that differ from {shared}: copy them again: {differ}"
