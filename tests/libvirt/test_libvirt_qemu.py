"""Proof on the real stack: vplan's domain XML, as written, defined and started by libvirt + QEMU on this machine.

The test starts its own ``virtlogd`` and ``libvirtd`` (no systemd; sockets, pid files and logs in a temporary
``vplan-ci-*`` directory; creates the ``libvirt-qemu`` user libvirtd needs when it is missing), imports this
machine's ``virsh capabilities`` (``vplan host import``), solves three tiny guests with ``domain: {type: qemu}``
(TCG: runs anywhere QEMU runs) — shared, dedicated (emulator ``host``) and, where the machine lets the test reserve
2M pages, one on hugepages — then:

1. ``virsh define`` + ``virsh start`` each emitted file as written;
2. the pins took effect: virsh's view (``vcpupin``, ``emulatorpin``) and the kernel's (``Cpus_allowed_list`` of
   every QEMU thread: vCPU threads on their vCPU's pins, the others on the emulator pins); the hugepage guest took
   exactly the pages ``vplan hugepages`` predicted;
3. ``vplan check`` on ``virsh dumpxml`` finds nothing; after one vCPU is mis-pinned live it reports the guest;
   ``vplan apply --live`` gives the commands that repair it, and after them ``vplan check`` is clean again;
4. cleans up: destroy, undefine, the hugetlbfs mount, the page count as before, the daemons stopped by their PIDs.

Needs root (the system libvirtd), ``libvirtd``, ``virtlogd``, ``virsh`` and ``qemu-system-x86_64`` on x86_64
(``bash scripts/test`` installs them on Debian). Without them the test is skipped with the reason (failed under
``CI=true``); where QEMU cannot run at all it is skipped with QEMU's message. ``pytest -s`` shows what it saw;
``VPLAN_CI_TRACE=1`` adds each virsh call's duration and the findings.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import vplan as _vplan

PREFIX = "vplan-ci-"
PAGES_2M = 64  # 128 MiB of 2M pages: exactly the hugepage guest
NODE0_2M = Path("/sys/devices/system/node/node0/hugepages/hugepages-2048kB")
TOOLS = ("libvirtd", "virtlogd", "virsh", "qemu-system-x86_64")
INSTALL = "apt-get install libvirt-daemon libvirt-daemon-driver-qemu qemu-system-x86 libvirt-clients"


def _unavailable(reason: str) -> None:
    print(f"\nlibvirt+QEMU test not run: {reason}")
    if os.environ.get("CI", "").lower() == "true" and "cannot run" not in reason:
        pytest.fail(reason)
    pytest.skip(reason)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIBVIRT_") and k != "VIRSH_DEFAULT_CONNECT_URI"}
    env.update(LC_ALL="C", LANG="C")
    return env


def _running(name: str, exclude: set[int]) -> list[int]:
    """PIDs of processes called ``name`` (read from /proc; nothing is signalled)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) not in exclude:
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if stat[stat.index("(") + 1:stat.rindex(")")] == name and stat[stat.rindex(")") + 2] != "Z":
                pids.append(int(entry.name))
    return sorted(pids)


class Busy(Exception):
    """The system's own libvirt daemons run here: this test does not touch them."""


class Stack:
    """Our own virtlogd + libvirtd, their runtime directory, and the hugepages we reserved."""

    def __init__(self, root: Path):
        self.root = root
        self.uri = f"qemu:///system?socket={root}/libvirt-sock"
        self.daemons: list[subprocess.Popen] = []
        self.pages_before: int | None = None
        self.mount: Path | None = None
        self.defined: list[str] = []
        self.hugepages = False
        self.hugepage_note = ""

    def virsh(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        begin = time.monotonic()
        result = subprocess.run(["virsh", "-c", self.uri, *args], capture_output=True, text=True, env=_env(),
                                timeout=timeout)
        if os.environ.get("VPLAN_CI_TRACE"):
            print(f"  virsh {' '.join(args)}: {time.monotonic() - begin:.1f} s")
        if check and result.returncode != 0:
            raise AssertionError(f"virsh {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def reserve_pages(self) -> None:
        """64 more 2M pages on node 0 and a hugetlbfs mount, where the machine lets us (else no such guest)."""
        count = NODE0_2M / "nr_hugepages"
        try:
            self.pages_before = int(count.read_text())
            count.write_text(str(self.pages_before + PAGES_2M))
            free = int((NODE0_2M / "free_hugepages").read_text())
        except OSError as exc:
            self.hugepage_note = f"cannot reserve 2M pages ({exc})"
            return
        if free < PAGES_2M:
            self.hugepage_note = f"only {free} free 2M pages after asking for {PAGES_2M} more"
            return
        mount = self.root / "hugepages-2M"
        mount.mkdir()
        result = subprocess.run(["mount", "-t", "hugetlbfs", "-o", "pagesize=2M", "hugetlbfs", str(mount)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            self.hugepage_note = f"cannot mount hugetlbfs ({result.stderr.strip()})"
            return
        self.mount = mount
        self.hugepages = True

    def start(self) -> None:
        (self.root / "virtlogd.conf").write_text(f'log_outputs = "3:file:{self.root}/virtlogd.log"\n')
        (self.root / "libvirtd.conf").write_text(
            f'unix_sock_dir = "{self.root}"\nauth_unix_ro = "none"\nauth_unix_rw = "none"\n'
            f'log_outputs = "3:file:{self.root}/libvirtd.log"\n')
        for daemon in ("virtlogd", "libvirtd"):
            process = subprocess.Popen([daemon, "-f", str(self.root / f"{daemon}.conf"),
                                        "-p", str(self.root / f"{daemon}.pid")],
                                       stdout=subprocess.DEVNULL, stderr=open(self.root / f"{daemon}.err", "w"),
                                       env=_env())
            self.daemons.append(process)
            time.sleep(0.5)
            if process.poll() is not None:
                message = (self.root / f"{daemon}.err").read_text().strip()
                others = _running(daemon, exclude={p.pid for p in self.daemons})
                if others:
                    raise Busy(f"another {daemon} (PID {', '.join(map(str, others))}) runs on this machine and holds "
                               "libvirt's state: this test leaves it alone")
                raise AssertionError(f"{daemon} exited with {process.returncode}: {message}")
        deadline = time.monotonic() + 60
        while True:
            result = subprocess.run(["virsh", "-c", self.uri, "version"], capture_output=True, text=True,
                                    env=_env(), timeout=60)
            if result.returncode == 0:
                return
            if time.monotonic() > deadline or self.daemons[-1].poll() is not None:
                raise AssertionError(f"libvirtd does not answer: {result.stderr.strip()}")
            time.sleep(0.5)

    def stop(self) -> None:
        for name in reversed(self.defined):
            self.virsh("destroy", name, check=False)
            self.virsh("undefine", name, check=False)
        for process in reversed(self.daemons):  # by PID: only the daemons this test started
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if self.mount is not None:
            subprocess.run(["umount", str(self.mount)], capture_output=True)
        if self.pages_before is not None:
            try:
                (NODE0_2M / "nr_hugepages").write_text(str(self.pages_before))
            except OSError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)


def _ensure_qemu_user() -> None:
    """libvirtd (Debian's build) refuses to start until its QEMU user exists."""
    if subprocess.run(["getent", "group", "libvirt-qemu"], capture_output=True).returncode != 0:
        subprocess.run(["groupadd", "-r", "libvirt-qemu"], check=True, capture_output=True)
    if subprocess.run(["getent", "passwd", "libvirt-qemu"], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "-r", "-g", "libvirt-qemu", "-d", "/var/lib/libvirt", "-s", "/usr/sbin/nologin",
                        "libvirt-qemu"], check=True, capture_output=True)
    # as Debian's libvirt-daemon-system does: QEMU's user may use /dev/kvm. Otherwise libvirt, having probed QEMU
    # with KVM, finds KVM "not available now" on every lookup and probes QEMU again (about 50 s per define).
    groups = subprocess.run(["id", "-nG", "libvirt-qemu"], capture_output=True, text=True).stdout.split()
    if Path("/dev/kvm").exists() and "kvm" not in groups and \
            subprocess.run(["getent", "group", "kvm"], capture_output=True).returncode == 0:
        subprocess.run(["usermod", "-aG", "kvm", "libvirt-qemu"], check=True, capture_output=True)


@pytest.fixture(scope="module")
def stack():
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        _unavailable(f"QEMU x86_64 guests on {platform.system()} {platform.machine()} cannot run here")
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        _unavailable(f"{', '.join(missing)} not installed (install: {INSTALL}; bash scripts/test does it as root)")
    if os.geteuid() != 0:
        _unavailable("needs root to run the system libvirtd and reserve hugepages")
    probe = subprocess.run(["qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-display", "none", "-S",
                            "-nodefaults", "-no-user-config", "-qmp", "stdio"], input='{"execute": "qmp_capabilities"}'
                           '\n{"execute": "quit"}\n', capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        _unavailable(f"QEMU cannot run: {probe.stderr.strip()[:300]}")
    _ensure_qemu_user()
    stack = Stack(Path(tempfile.mkdtemp(prefix=PREFIX)))
    stack.root.chmod(0o755)  # QEMU runs as libvirt-qemu and opens its hugepage files under the mount in here
    try:
        stack.reserve_pages()
        try:
            stack.start()
        except Busy as exc:
            _unavailable(str(exc))
        yield stack
    finally:
        stack.stop()


def _cpus_allowed(pid: int) -> dict[str, str]:
    """thread name -> Cpus_allowed_list for every thread of the process."""
    result = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            status = (task / "status").read_text()
        except OSError:
            continue  # the thread ended meanwhile
        allowed = re.search(r"^Cpus_allowed_list:\s*(\S+)", status, re.M).group(1)
        result[f"{name} ({task.name})"] = allowed
    return result


def _virsh_pins(stack: Stack, guest: str) -> tuple[dict[int, str], str]:
    vcpus = {int(m[1]): m[2] for m in re.finditer(r"^\s*(\d+)\s+(\S+)\s*$", stack.virsh("vcpupin", guest), re.M)}
    emulator = re.search(r"\*:\s*(\S+)", stack.virsh("emulatorpin", guest)).group(1)
    return vcpus, emulator


def _dump(stack: Stack, guests: list[str], host: str, into: Path) -> Path:
    shutil.rmtree(into, ignore_errors=True)
    (into / host).mkdir(parents=True)
    for guest in guests:
        (into / host / f"{guest}.xml").write_text(stack.virsh("dumpxml", guest))
    return into


def _free_2m() -> int:
    """2M pages neither used nor reserved (QEMU reserves the guest's pages when it maps them)."""
    pool = Path("/sys/kernel/mm/hugepages/hugepages-2048kB")
    return int((pool / "free_hugepages").read_text()) - int((pool / "resv_hugepages").read_text())


def test_emitted_domains_define_start_pin_check_and_repin_live(stack: Stack, tmp_path: Path) -> None:
    started = time.monotonic()
    # 1. import this machine, solve three tiny guests
    (tmp_path / "caps.xml").write_text(stack.virsh("capabilities"))
    cpus = len(re.findall(r"<cpu id=", (tmp_path / "caps.xml").read_text()))
    reserve = ["--reserved-cpus", "0"] if cpus >= 3 else []  # on 2 CPUs: the emulator falls back to the pool
    result = _vplan("host", "import", str(tmp_path / "caps.xml"), "-o", str(tmp_path / "this.yaml"), *reserve)
    assert result.exit_code == 0, result.output
    host = "local"
    guests = [f"{PREFIX}shared", f"{PREFIX}dedicated"] + ([f"{PREFIX}huge"] if stack.hugepages else [])
    huge = f"\n  - {{name: {PREFIX}huge, vcpus: 1, memory: 128MiB, hugepages: 2M, load: 0.2}}" if stack.hugepages \
        else ""
    (tmp_path / "s.yaml").write_text(f"""version: 1
name: {PREFIX}proof
domain: {{type: qemu, cpu_mode: maximum}}
host_models:
  this: {{include: this.yaml}}
hosts: [{{name: {host}, model: this}}]
guests:
  - {{name: {PREFIX}shared, vcpus: 1, memory: 128MiB, load: 0.2}}
  - {{name: {PREFIX}dedicated, vcpus: 1, memory: 128MiB, cpu: dedicated, emulator: host}}{huge}
""")
    out = tmp_path / "out"
    result = _vplan("solve", str(tmp_path / "s.yaml"), "-o", str(out), "--time-limit", "5", "--quiet")
    assert result.exit_code == 0, result.output
    plan = json.loads((out / "plan.json").read_text())
    assert sorted(g for g, e in plan["guests"].items() if e["host"] == host) == sorted(guests)
    if stack.hugepages:
        pages = json.loads(_vplan("hugepages", str(out / "plan.json"), "--json").stdout)
        assert pages["hosts"][host]["pages"] == {"2M": {"0": PAGES_2M}}
        free_before = _free_2m()

    # 2. define and start each emitted file as written
    for guest in guests:
        stack.virsh("define", str(out / "hosts" / host / f"{guest}.xml"))
        stack.defined.append(guest)
        stack.virsh("start", guest)
    states = {g: stack.virsh("domstate", g).strip() for g in guests}
    assert set(states.values()) == {"running"}, states

    # 3. the pins took effect: virsh's view and every QEMU thread's
    seen = []
    for guest in guests:
        xml = (out / "hosts" / host / f"{guest}.xml").read_text()
        want_vcpu = {int(v): c for v, c in re.findall(r"<vcpupin vcpu='(\d+)' cpuset='([^']+)'", xml)}
        want_emulator = re.search(r"<emulatorpin cpuset='([^']+)'", xml).group(1)
        vcpus, emulator = _virsh_pins(stack, guest)
        assert (vcpus, emulator) == (want_vcpu, want_emulator), guest
        pid = int(Path(f"/run/libvirt/qemu/{guest}.pid").read_text())
        threads = _cpus_allowed(pid)
        vcpu_threads = {n: c for n, c in threads.items() if re.match(r"CPU \d+/", n)}
        assert len(vcpu_threads) == len(want_vcpu), threads
        for name, allowed in threads.items():
            match = re.match(r"CPU (\d+)/", name)
            expected = want_vcpu[int(match.group(1))] if match else want_emulator
            assert allowed == expected, (guest, name, allowed, expected)
        seen.append(f"{guest}: vCPU pins {want_vcpu}, emulator {want_emulator}; {len(threads)} QEMU threads agree")
    if stack.hugepages:
        assert free_before - _free_2m() == PAGES_2M  # exactly what vplan hugepages predicted

    # 4. vplan check on virsh dumpxml: clean; mis-pinned live: found; repaired with the live commands: clean
    running = _dump(stack, guests, host, tmp_path / "running")
    result = _vplan("check", str(tmp_path / "s.yaml"), "--domains", str(running), "--json")
    assert result.exit_code == 0, result.output
    dedicated = f"{PREFIX}dedicated"
    pool = plan["guests"][f"{PREFIX}shared"]["cells"][0]["pcpus"]
    wrong = pool.split(",")[0].split("-")[0]  # a CPU of the shared pool: a dedicated pCPU shared
    stack.virsh("vcpupin", dedicated, "0", wrong, "--live")
    running = _dump(stack, guests, host, tmp_path / "running")
    result = _vplan("check", str(tmp_path / "s.yaml"), "--domains", str(running), "--json")
    assert result.exit_code == 1, result.output
    findings = json.loads(result.stdout)["findings"]
    if os.environ.get("VPLAN_CI_TRACE"):
        print(json.dumps(findings, indent=1))
    shared_cpu = [f for f in findings if f["rule"] == "cpus" and f["guest"] == dedicated]
    assert len(shared_cpu) == 1 and re.search(rf"\b{wrong}\b", shared_cpu[0]["message"]), findings
    if len({c["node"] for g in plan["guests"].values() for c in g["cells"]}) == 1:  # one node: same pool
        assert f"CPU {wrong}, dedicated to {dedicated} vCPU 0, also serves shared" in shared_cpu[0]["message"]
    live = _vplan("apply", str(out / "plan.json"), "--domains", str(running), "--live", "-o",
                  str(tmp_path / "live.sh"))
    assert live.exit_code == 0, live.output
    script = (tmp_path / "live.sh").read_text()
    assert f"$VIRSH vcpupin {dedicated} 0 " in script and "emulatorpin" not in script
    subprocess.run(["sh", str(tmp_path / "live.sh")], check=True, env={**_env(), "VIRSH": f"virsh -c {stack.uri}"})
    vcpus, emulator = _virsh_pins(stack, dedicated)
    want = plan["guests"][dedicated]["cells"][0]["pcpus"]
    assert vcpus == {0: want}
    pid = int(Path(f"/run/libvirt/qemu/{dedicated}.pid").read_text())
    assert [c for n, c in _cpus_allowed(pid).items() if n.startswith("CPU 0/")] == [want]
    running = _dump(stack, guests, host, tmp_path / "running")
    result = _vplan("check", str(tmp_path / "s.yaml"), "--domains", str(running))
    assert result.exit_code == 0, result.output
    print(f"\nlibvirt+QEMU proof on {cpus} CPUs: started {', '.join(guests)} "
          f"({stack.hugepage_note or f'{PAGES_2M} x 2M pages taken'})")
    for line in seen:
        print("  " + line)
    print(f"  mis-pinned {dedicated} vCPU 0 on CPU {wrong}: vplan check found {len(findings)} finding(s) "
          f"({', '.join(sorted({f['rule'] for f in findings}))}), first: {shared_cpu[0]['message']}")
    print("  repaired live by: "
          + "; ".join(line for line in script.splitlines() if line.startswith("$VIRSH")))
    print(f"  {time.monotonic() - started:.1f} s after the daemons started")
