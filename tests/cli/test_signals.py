"""Ctrl-C and SIGTERM on a real `vplan solve` process (planner.cli.interrupt, planner.engine.clock.request_stop).

The 1,500-guest example keeps searching for its whole time limit (60 s here), so a signal always arrives during
the search; the subprocess timeout only guards against a hang."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FLEET = REPO / "scenarios" / "fleet-50x1500.yaml"
SMALL = REPO / "tests" / "fixtures" / "cli" / "example.yaml"
ANNOUNCE = "Ctrl-C stops the search"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def snapshot(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


class Solve:
    """``vplan solve`` in a subprocess, with its stderr collected as it comes."""

    def __init__(self, out: Path, *args: str):
        # stderr is a terminal (a pseudo-terminal), as for a user at the keyboard: the announcement and the live
        # progress are for terminals only
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # a 160-column terminal
        self.proc = subprocess.Popen([sys.executable, "-m", "planner.cli.main", "solve", str(FLEET), "-o", str(out),
                                      "--time-limit", "60", *args],
                                     stdout=subprocess.PIPE, stderr=slave, text=True)
        os.close(slave)
        self.master = master
        self.err: list[str] = []
        self.announced = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            self.err.append(ANSI.sub("", chunk.decode("utf-8", "replace")).replace("\r", ""))
            if ANNOUNCE in " ".join("".join(self.err).split()):  # (the terminal may wrap the line anywhere)
                self.announced.set()
        os.close(self.master)

    def signal_when_searching(self, signum: int, after_s: float = 1.5) -> None:
        assert self.announced.wait(120), "".join(self.err)
        time.sleep(after_s)  # inside the search (greedy, bounds, patterns)
        self.proc.send_signal(signum)

    def finish(self) -> tuple[int, str, str]:
        out = self.proc.stdout.read()
        code = self.proc.wait(timeout=120)
        self.reader.join(10)
        return code, out, "".join(self.err)


@pytest.fixture
def previous(tmp_path) -> Path:
    """An OUT holding an earlier vplan plan (of another scenario)."""
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "planner.cli.main", "solve", str(SMALL), "-o", str(out), "-q",
                           "--time-limit", "2"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return out


def test_ctrl_c_stops_the_search_and_writes_the_best_checked_plan(tmp_path):
    out = tmp_path / "out"
    run = Solve(out)
    run.signal_when_searching(signal.SIGINT)
    code, stdout, stderr = run.finish()
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert "stopping the search" in stderr and "interrupted by Ctrl-C" in stderr
    assert "interrupted by Ctrl-C" in stdout  # the summary says so
    doc = json.loads((out / "plan.json").read_text())
    assert doc["solver"]["interrupted"] is True
    assert doc["headline"]["placed"] == 1500 and doc["status"] in ("feasible", "optimal")
    assert len(list((out / "hosts").rglob("*.xml"))) == 1500
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary left beside OUT


@pytest.mark.parametrize("second", [signal.SIGINT, signal.SIGTERM])
def test_second_ctrl_c_or_sigterm_aborts_leaving_out_as_it_was(previous, second):
    before = snapshot(previous)
    run = Solve(previous)
    if second == signal.SIGINT:
        run.signal_when_searching(signal.SIGINT)
        time.sleep(0.3)
        run.proc.send_signal(signal.SIGINT)
    else:
        run.signal_when_searching(signal.SIGTERM)
    code, stdout, stderr = run.finish()
    assert code == (130 if second == signal.SIGINT else 143), stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("vplan: aborted by") and "nothing half-written is left" in last
    assert snapshot(previous) == before
    assert sorted(p.name for p in previous.parent.iterdir()) == ["out"]


def test_ctrl_c_aborts_compare_at_once():
    proc = subprocess.Popen([sys.executable, "-m", "planner.cli.main", "compare", str(FLEET), str(FLEET), "--time-limit",
                             "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(6)  # loading both, then solving the first
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1].startswith("vplan: aborted by Ctrl-C") and "Traceback" not in stderr
