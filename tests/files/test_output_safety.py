"""Nothing lost, nothing stray, no traceback: every command that writes follows planner.files.atomic's rules.

Each case checks the exit status, that the message names the path, that no file changed or appeared anywhere under
the test's directory (outside OUT), and that there is no traceback."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import tarfile
from pathlib import Path

import pytest

from tests.conftest import vplan

FIXTURES = Path(__file__).parents[1] / "fixtures"
SCENARIO = FIXTURES / "cli" / "unplaced.yaml"  # one small host: solves in about a second
CAPTURE = FIXTURES / "hostimport" / "power8-smt8-hash.xml"


def snapshot(root: Path) -> dict[str, str]:
    """Every file and directory under ``root`` with its content hash (directories: 'dir')."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = "link:" + os.readlink(p)
        elif p.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def refused(result, *words: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    for word in words:
        assert word in result.output, (word, result.output)


@pytest.fixture
def proj(tmp_path) -> Path:
    (tmp_path / "proj").mkdir()
    shutil.copy(SCENARIO, tmp_path / "proj" / "s.yaml")
    return tmp_path


def solve(proj: Path, out, *extra):
    return vplan("solve", proj / "proj" / "s.yaml", "-o", out, "-q", "--time-limit", "1", *extra)


# --------------------------------------------------------------------------------------------------------------
# solve -o OUT


def test_out_missing_gets_the_umask_mode_and_a_manifest(proj):
    old = os.umask(0o022)
    try:
        result = solve(proj, proj / "out")
    finally:
        os.umask(old)
    assert result.exit_code == 3, result.output  # db7 does not fit (the fixture's point)
    out = proj / "out"
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    manifest = json.loads((out / ".vplan-manifest.json").read_text())
    assert manifest["written_by"] == "vplan" and "plan.json" in manifest["files"]
    assert sorted(manifest["files"]) == sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                                               if p.is_file() and p.name != ".vplan-manifest.json")
    assert sorted(p.name for p in proj.iterdir()) == ["out", "proj"]  # nothing beside OUT


def test_out_written_by_vplan_or_empty_is_replaced(proj):
    (proj / "out").mkdir()
    assert solve(proj, proj / "out").exit_code == 3
    first = snapshot(proj / "out")
    assert solve(proj, proj / "out", "--seed", "3").exit_code == 3
    assert set(snapshot(proj / "out")) == set(first)
    assert sorted(p.name for p in proj.iterdir()) == ["out", "proj"]


def test_out_holding_the_scenario_is_refused_even_with_force(proj):
    before = snapshot(proj)
    refused(solve(proj, proj / "proj"), "proj", "holds an input", "s.yaml")
    refused(solve(proj, proj / "proj", "--force"), "holds an input")
    refused(solve(proj, proj / "proj" / "s.yaml"), "is an input")
    assert snapshot(proj) == before


def test_out_with_files_vplan_did_not_write_is_refused_and_force_renames_it_aside(proj):
    out = proj / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    before = snapshot(proj)
    refused(solve(proj, out), str(out), "notes.txt", "--force")
    assert snapshot(proj) == before
    result = solve(proj, out, "--force")
    assert result.exit_code == 3, result.output
    assert (proj / "out.old" / "notes.txt").read_text() == "mine"  # nothing deleted
    assert "out.old" in result.output and (out / "plan.json").exists()
    (out / "again.txt").write_text("mine too")
    assert solve(proj, out, "--force").exit_code == 3
    assert (proj / "out.old.1" / "again.txt").read_text() == "mine too"  # never over an earlier one
    assert (proj / "out.old" / "notes.txt").read_text() == "mine"


def test_out_inside_an_earlier_output_is_refused(proj):
    assert solve(proj, proj / "out").exit_code == 3
    before = snapshot(proj)
    refused(solve(proj, proj / "out" / "hosts"), "is inside", "an output directory vplan wrote")
    refused(solve(proj, proj / "out" / "new"), "is inside")
    assert snapshot(proj) == before


def test_a_file_vplan_wrote_and_the_user_changed_is_not_replaced(proj):
    out = proj / "out"
    assert solve(proj, out).exit_code == 3
    (out / "plan.json").write_text("{}  # edited")
    before = snapshot(proj)
    refused(solve(proj, out), "plan.json (changed since vplan wrote it)")
    assert snapshot(proj) == before


@pytest.mark.parametrize("make, words", [
    (lambda p: (p / "out.txt").write_text("x") and p / "out.txt", ["out.txt", "is a file"]),
    (lambda p: (p / "f").write_text("x") and p / "f" / "sub", ["is not a directory"]),
    (lambda p: p / "nodir" / "out", ["nodir", "does not exist"]),
    (lambda p: Path("."), ["'.'"]),
    (lambda p: Path(".."), ["'..'"]),
    (lambda p: p, ["current directory"]),
    (lambda p: (os.symlink(p / "nowhere", p / "lnk"), p / "lnk")[1], ["lnk", "nowhere", "does not exist"]),
    (lambda p: Path("/proc/vplan-out"), ["/proc/vplan-out", "cannot write"]),
])
def test_bad_out_paths_get_one_clear_message(proj, make, words):
    out = make(proj)
    before = snapshot(proj)
    refused(vplan("solve", proj / "proj" / "s.yaml", "-o", out, "-q", "--time-limit", "1", cwd=proj), *words)
    assert snapshot(proj) == before


def test_out_symlink_to_a_directory_writes_the_target_and_leaves_nothing_beside(proj):
    (proj / "real").mkdir()
    os.symlink(proj / "real", proj / "lnk")
    assert solve(proj, proj / "lnk").exit_code == 3
    assert assert_only(proj, {"proj", "real", "lnk"})
    assert (proj / "lnk").is_symlink() and (proj / "real" / "plan.json").exists()
    assert solve(proj, proj / "lnk").exit_code == 3  # vplan's own output behind the link: replaced
    assert assert_only(proj, {"proj", "real", "lnk"})


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="needs /dev/shm (another filesystem)")
def test_out_symlink_to_another_filesystem(proj):
    import tempfile

    with tempfile.TemporaryDirectory(dir="/dev/shm") as other:
        os.symlink(other, proj / "lnk")
        assert solve(proj, proj / "lnk").exit_code == 3
        assert (Path(other) / "plan.json").exists() and assert_only(proj, {"proj", "lnk"})
        assert sorted(p.name for p in Path(other).iterdir()) == [".vplan-manifest.json", "hosts", "plan.json"]
        assert not [p for p in Path("/dev/shm").iterdir() if ".vplan-" in p.name]


def test_in_place_refuses_symlinked_domain_files(plan_dir, tmp_path):
    real = tmp_path / "real"
    shutil.copytree(FIXTURES / "apply" / "corpus" / "domains", real)
    doms = tmp_path / "doms"
    doms.mkdir()
    os.symlink(real / "auto.xml", doms / "auto.xml")
    before = snapshot(tmp_path)
    refused(vplan("apply", plan_dir, "--domains", doms, "--in-place"), str(doms / "auto.xml"), "symbolic link")
    assert snapshot(tmp_path) == before


def assert_only(root: Path, names: set[str]) -> bool:
    assert {p.name for p in root.iterdir()} == names, sorted(p.name for p in root.iterdir())
    return True


def test_report_paths(proj):
    out = proj / "out"
    refused(solve(proj, out, "--report", proj), str(proj), "is a directory")
    refused(solve(proj, out, "--report", out / "r.html"), "inside) the output directory")
    refused(solve(proj, out, "--report", out), "inside) the output directory")
    (proj / "mine.html").write_text("<html>mine</html>")
    refused(solve(proj, out, "--report", proj / "mine.html"), "mine.html", "not written by vplan")
    assert not out.exists() and (proj / "mine.html").read_text() == "<html>mine</html>"
    assert solve(proj, out, "--report", proj / "r.html").exit_code == 3
    assert solve(proj, out, "--report", proj / "r.html").exit_code == 3  # its own report: replaced
    assert_only(proj, {"proj", "out", "r.html", "r.placements.csv", "mine.html"})


# --------------------------------------------------------------------------------------------------------------
# apply -o OUT / --in-place


@pytest.fixture(scope="module")
def plan_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("plan") / "plan"
    result = vplan("solve", FIXTURES / "apply" / "corpus" / "scenario.yaml", "-o", out, "-q", "--time-limit", "3")
    assert result.exit_code == 0, result.output
    return out


def test_apply_out_never_an_input(plan_dir, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(FIXTURES / "apply" / "corpus" / "domains", work / "doms")
    plan = tmp_path / "plan"
    shutil.copytree(plan_dir, plan)
    before = snapshot(tmp_path)
    for out, words in ((work, ["holds an input", "doms"]), (plan, ["is an input"]),
                       (work / "doms" / "sub", ["inside an input directory"]),
                       (work / "doms", ["is the domains directory"])):
        refused(vplan("apply", plan, "--domains", work / "doms", "-o", out), str(out), *words)
        refused(vplan("apply", plan, "--domains", work / "doms", "-o", out, "--force"), str(out))
    assert snapshot(tmp_path) == before
    assert vplan("apply", plan, "--domains", work / "doms", "-o", tmp_path / "merged").exit_code == 0
    assert vplan("apply", plan, "--domains", work / "doms", "-o", tmp_path / "merged").exit_code == 0  # its own
    assert json.loads((tmp_path / "merged" / ".vplan-manifest.json").read_text())["kind"] == "apply"


def test_plan_json_that_is_not_a_plan(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "plan.json").write_text("[]")
    (tmp_path / "d").mkdir()
    refused(vplan("hugepages", tmp_path / "p"), "plan.json", "not a vplan plan")
    refused(vplan("apply", tmp_path / "p", "--domains", tmp_path / "d", "-o", tmp_path / "o"), "plan.json",
            "not a vplan plan")
    assert not (tmp_path / "o").exists()


def test_a_tampered_plan_gets_messages_not_tracebacks(plan_dir, tmp_path):
    plan = tmp_path / "plan"
    shutil.copytree(plan_dir, plan)
    doc = json.loads((plan / "plan.json").read_text())
    doc["guests"]["auto"]["xml"] = "../../../etc/passwd"
    doc["guests"]["crlf"]["xml"] = 5
    doc["guests"]["nvdimm"]["page_size"] = "x"
    (plan / "plan.json").write_text(json.dumps(doc))
    dimm = next(plan.rglob("dimm.xml"))
    dimm.write_text(dimm.read_text().replace(">2</vcpu>", ">x</vcpu>"))
    before = snapshot(tmp_path)
    result = vplan("apply", plan, "--domains", FIXTURES / "apply" / "corpus" / "domains", "-o", tmp_path / "o")
    refused(result, "guests.auto.xml: '../../../etc/passwd' is not a file inside", "guests.crlf.xml: 5",
            "dimm.xml: the plan's domain of dimm: <vcpu> 'x' is not a count")
    refused(vplan("hugepages", plan), "plan.json: not a plan vplan wrote")
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------------------------------------------
# generate, host import, check --to-scenario


def test_generate_paths_and_counts(tmp_path):
    refused(vplan("generate", "--hosts", "0", "--guests", "3", "-o", tmp_path / "f.yaml"), "--hosts 0")
    refused(vplan("generate", "--hosts", "-1", "--guests", "3", "-o", tmp_path / "f.yaml"), "--hosts -1")
    refused(vplan("generate", "--hosts", "2", "--guests", "-5", "-o", tmp_path / "f.yaml"), "--guests -5")
    refused(vplan("generate", "--hosts", "2", "--guests", "3", "-o", tmp_path), "is a directory")
    from planner.analysis.generate import MODELS_DIR

    model = MODELS_DIR / "amd-nps4.yaml"
    text = model.read_text()
    refused(vplan("generate", "--hosts", "2", "--guests", "3", "-o", model), "inside an input directory")
    assert model.read_text() == text
    (tmp_path / "mine.yaml").write_text("my scenario\n")
    refused(vplan("generate", "--hosts", "2", "--guests", "3", "-o", tmp_path / "mine.yaml"), "not written by vplan")
    assert (tmp_path / "mine.yaml").read_text() == "my scenario\n"
    assert_only(tmp_path, {"mine.yaml"})
    for _ in range(2):  # the second run replaces its own file
        assert vplan("generate", "--hosts", "2", "--guests", "3", "-o", tmp_path / "f.yaml").exit_code == 0
    forced = vplan("generate", "--hosts", "2", "--guests", "3", "-o", tmp_path / "mine.yaml", "--force")
    assert forced.exit_code == 0 and (tmp_path / "mine.yaml.old").read_text() == "my scenario\n"
    assert_only(tmp_path, {"mine.yaml", "mine.yaml.old", "f.yaml"})


def test_host_import_out_paths(tmp_path):
    refused(vplan("host", "import", CAPTURE, "-o", tmp_path), "is a directory")
    refused(vplan("host", "import", CAPTURE, "-o", tmp_path / "no" / "m.yaml"), "does not exist")
    copy = tmp_path / "cap.xml"
    shutil.copy(CAPTURE, copy)
    refused(vplan("host", "import", copy, "-o", copy), "is an input")
    assert copy.read_bytes() == CAPTURE.read_bytes()
    assert_only(tmp_path, {"cap.xml"})
    for _ in range(2):
        result = vplan("host", "import", copy, "-o", tmp_path / "m.yaml")
        assert result.exit_code == 0, result.output
    assert_only(tmp_path, {"cap.xml", "m.yaml"})


def test_truncated_tarball_capture(tmp_path):
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as tar:
        for i in range(40):
            payload = os.urandom(2000)
            info = tarfile.TarInfo(f"sys/devices/system/node/node0/x{i}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    cut = tmp_path / "host-sysfs.tgz"
    cut.write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    result = vplan("host", "import", cut)
    refused(result, "host-sysfs.tgz", "damaged or cut short")
    assert "Aborted" not in result.output


def test_check_to_scenario_paths(tmp_path):
    domains = FIXTURES / "apply" / "corpus" / "domains"
    base = ["check", "--host", f"kvm1={CAPTURE}", "--domains", domains, "--map", "auto=kvm1"]
    refused(vplan(*base, "--to-scenario", tmp_path), "is a directory")
    refused(vplan(*base, "--to-scenario", tmp_path / "nodir" / "x.yaml"), "does not exist")
    refused(vplan(*base, "--to-scenario", "/tmp"), "/tmp", "is a directory")
    assert not Path("/.tmp.tmp").exists()
    refused(vplan(*base, "--map-file", "/bin/true"), "/bin/true", "not UTF-8 text")
    assert_only(tmp_path, set())


# --------------------------------------------------------------------------------------------------------------
# a signal or an error while writing


@pytest.mark.parametrize("error", [KeyboardInterrupt(), OSError(28, "No space left on device")])
def test_a_failed_write_removes_its_temporaries_and_keeps_out(tmp_path, error):
    from planner.files.atomic import OutputError, write_directory_atomically, write_file_atomically
    from planner.cli.interrupt import Aborted

    out = tmp_path / "out"
    write_directory_atomically(out, lambda tmp: (tmp / "a.xml").write_text("first"))
    (tmp_path / "f.yaml").write_text("# Generated by planner.analysis.generate\nold\n")
    before = snapshot(tmp_path)

    def fill(tmp: Path) -> None:
        for i in range(50):
            (tmp / f"g{i}.xml").write_text("new")
        raise error

    expected = (KeyboardInterrupt, OutputError)
    with pytest.raises(expected):
        write_directory_atomically(out, fill)
    assert snapshot(tmp_path) == before
    with pytest.raises(Aborted):  # what the CLI's SIGTERM handler raises
        write_directory_atomically(out, lambda tmp: (_ for _ in ()).throw(Aborted(15)))
    assert snapshot(tmp_path) == before
    with pytest.raises(OutputError) as info:
        write_file_atomically(tmp_path / "f.yaml", "x" * 10, inputs=[tmp_path / "f.yaml"])
    assert "is an input" in str(info.value)
    assert snapshot(tmp_path) == before


def test_signals_are_held_back_during_the_renames_and_delivered_after():
    import signal

    from planner.files.atomic import signals_blocked

    got: list[str] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: got.append("handled"))
    try:
        with signals_blocked():
            signal.raise_signal(signal.SIGTERM)
            got.append("renamed")
        assert got == ["renamed", "handled"]
    finally:
        signal.signal(signal.SIGTERM, previous)
