"""The Debian package on a clean Debian 12 root: install, a job through the installed hooks into the
database the package created, an upgrade while the agent samples that job, removal and purge.

Needs root, a built package ($JOBCARBON_DEB, from packaging/build-deb) and a tarball of a minimal
Debian 12 root ($JOBCARBON_DEB_ROOTFS, from mmdebstrap with python3, adduser and logrotate); .ci/run
makes both and sets JOBCARBON_REQUIRE_DEB=1, under which a missing one fails instead of skipping. The
job runs against simulated RAPL and cgroup trees inside the chroot; /proc is the chroot's own mount.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from slurm_plugin.node.agent_client import request
from testbed.powermodel import build_powercap_tree, set_energy
from tests.simnode import wait_for

REQUIRE_ENV = "JOBCARBON_REQUIRE_DEB"
NODE = "debnode"
JOB = 31
SPOOL = "var/spool/jobcarbon"
DATABASE = "var/lib/jobcarbon/jobcarbon.db"


def unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "installing a .deb into a chroot needs root"
    for variable, what in (("JOBCARBON_DEB", "a package"), ("JOBCARBON_DEB_ROOTFS", "a Debian 12 root")):
        value = os.environ.get(variable)
        if not value or not Path(value).is_file():
            return f"${variable} names no file ({what}; .ci/run builds it)"
    if shutil.which("chroot") is None:
        return "chroot is not installed"
    return None


class Chroot:
    def __init__(self, root: Path):
        self.root = root

    def run(
        self, *argv: str, env: dict[str, str] | None = None, user: str | None = None, timeout: float = 300
    ):
        prefix = ["chroot", *([f"--userspec={user}"] if user else []), str(self.root)]
        base = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "DEBIAN_FRONTEND": "noninteractive",
        }
        return subprocess.run(
            [*prefix, *argv], env={**base, **(env or {})}, capture_output=True, text=True, timeout=timeout
        )

    def dpkg_install(self, deb: Path) -> subprocess.CompletedProcess[str]:
        shutil.copy(deb, self.root / "tmp" / deb.name)
        result = self.run("dpkg", "-i", "--force-confdef", "--force-confold", f"/tmp/{deb.name}")
        if result.returncode != 0:  # dependencies the root lacks: from Debian's archive
            shutil.copy("/etc/resolv.conf", self.root / "etc" / "resolv.conf")
            fixed = self.run("apt-get", "-f", "install", "-y", "--no-install-recommends")
            assert fixed.returncode == 0, fixed.stdout[-2000:] + fixed.stderr[-2000:]
            result = self.run("dpkg", "-s", "jobcarbon")
        return result

    def hook(self, name: str, job_id: int, **extra: str) -> subprocess.CompletedProcess[str]:
        env = {
            "SLURM_JOB_ID": str(job_id),
            "SLURM_JOB_UID": "1000",
            "SLURM_JOB_GID": "1000",
            "SLURM_JOB_USER": "alice",
            "SLURM_JOB_ACCOUNT": "physics",
            "SLURM_JOB_PARTITION": "batch",
            "SLURMD_NODENAME": NODE,
            "SLURM_CLUSTER_NAME": "deb",
            **extra,
        }
        return self.run(f"/etc/slurm/{name}.d/50-jobcarbon", env=env, timeout=60)

    def intervals(self, job_id: int) -> int:
        path = self.root / SPOOL / "jobs" / f"{job_id}.0" / "journal.jsonl"
        if not path.exists():
            return 0
        return sum(1 for line in path.read_text().splitlines() if '"interval"' in line)

    def agent_pid(self) -> int | None:
        try:
            return int(request(self.root / SPOOL / "agent.sock", {"op": "status"}, 1.0)["pid"])
        except OSError:
            return None

    def group(self, name: str) -> int:
        for line in (self.root / "etc" / "group").read_text().splitlines():
            fields = line.split(":")
            if fields[0] == name:
                return int(fields[2])
        raise AssertionError(f"no group {name} in the chroot")


@pytest.fixture(scope="module")
def chroot() -> Iterator[Chroot]:
    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {reason}")
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="jcdeb.", dir="/tmp"))  # short: the agent's socket path
    proc = root / "proc"
    mounted = False
    try:
        subprocess.run(["tar", "-C", str(root), "-xf", os.environ["JOBCARBON_DEB_ROOTFS"]], check=True)
        proc.mkdir(exist_ok=True)
        subprocess.run(["mount", "-t", "proc", "proc", str(proc)], check=True)
        mounted = True
        yield Chroot(root)
    finally:
        box = Chroot(root)
        pid = box.agent_pid() if mounted else None
        if pid:
            os.kill(pid, 15)
            with contextlib.suppress(AssertionError):
                wait_for(lambda: box.agent_pid() is None, what="agent exit")
        if mounted:
            subprocess.run(["umount", str(proc)], check=False)
        if not os.path.ismount(proc):
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def installed(chroot: Chroot) -> Chroot:
    result = chroot.dpkg_install(Path(os.environ["JOBCARBON_DEB"]))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return chroot


def simulate_node(box: Chroot) -> None:
    """RAPL and cgroup v1 trees under /sim in the chroot, and the packaged config pointed at them."""
    sim = box.root / "sim"
    build_powercap_tree(sim / "sys", packages=1, dram=True, tdp_w=100.0)
    job = Path(f"slurm_{NODE}", "uid_1000", f"job_{JOB}")
    files = {
        "cpuacct": {"cpuacct.usage": "0"},
        "memory": {"memory.usage_in_bytes": str(2**30), "memory.stat": "total_inactive_file 0\n"},
        "cpuset": {"cpuset.cpus": "0"},
    }
    for controller, contents in files.items():
        directory = sim / "cgroup" / controller / job
        directory.mkdir(parents=True)
        for name, text in contents.items():
            (directory / name).write_text(text)
    config = box.root / "etc" / "jobcarbon" / "config.yaml"
    text = config.read_text()
    text = text.replace("  sysfs: /sys ", "  sysfs: /sim/sys ")
    text = text.replace("  cgroupfs: /sys/fs/cgroup ", "  cgroupfs: /sim/cgroup ")
    text = text.replace("  interval_s: 10 ", "  interval_s: 0.2 ")
    text = text.replace("  stop_timeout_s: 5 ", "  stop_timeout_s: 3 ")
    text = text.replace("  journal_fsync: true ", "  journal_fsync: false ")
    assert text.count("/sim/") == 2
    assert "interval_s: 0.2" in text
    config.write_text(text)


def test_install_creates_group_directories_and_a_private_database(installed: Chroot) -> None:
    root = installed.root
    gid = installed.group("jobcarbon")
    spool = (root / SPOOL).stat()
    assert (stat.S_IMODE(spool.st_mode), spool.st_uid) == (0o700, 0)
    lib = (root / "var/lib/jobcarbon").stat()
    assert (stat.S_IMODE(lib.st_mode), lib.st_uid, lib.st_gid) == (0o750, 0, gid)
    db = (root / DATABASE).stat()
    assert (stat.S_IMODE(db.st_mode), db.st_uid, db.st_gid) == (0o640, 0, gid)
    # An unprivileged user cannot read it (nobody is not in the jobcarbon group).
    denied = installed.run("cat", f"/{DATABASE}", user="nobody:nogroup")
    assert denied.returncode != 0
    assert "Permission denied" in denied.stderr
    assert os.readlink(root / "etc/slurm/prolog.d/50-jobcarbon") == "/usr/lib/jobcarbon/jobcarbon-prolog"
    assert installed.run("jobcarbon", "--help").returncode == 0
    # Only the delivery timer is enabled; the agent, query service and head-node timers are not.
    wants = root / "etc/systemd/system"
    assert (wants / "timers.target.wants/jobcarbon-deliver.timer").is_symlink()
    assert not list(wants.glob("*/jobcarbon-agent.service"))
    assert not list(wants.glob("*/jobcarbon-serve.service"))
    conffiles = installed.run("dpkg-query", "-W", "-f=${Conffiles}", "jobcarbon").stdout
    assert "/etc/jobcarbon/config.yaml" in conffiles
    rotate = installed.run("logrotate", "--debug", "/etc/logrotate.d/jobcarbon")
    assert rotate.returncode == 0, rotate.stderr[-2000:]
    assert "error" not in rotate.stderr.lower()


def test_hook_without_its_interpreter_logs_a_line(installed: Chroot) -> None:
    result = installed.hook("prolog", 99, JOBCARBON_PYTHON="/opt/missing/python3")
    assert result.returncode == 0
    log = (installed.root / "var/log/jobcarbon/hooks.log").read_text()
    assert "jobcarbon prolog skipped for job 99: /opt/missing/python3 not found" in log


def test_a_job_survives_an_upgrade_and_is_delivered(installed: Chroot, tmp_path: Path) -> None:
    simulate_node(installed)
    sysfs = installed.root / "sim" / "sys"
    assert installed.hook("prolog", JOB).returncode == 0
    wait_for(lambda: installed.intervals(JOB) >= 2, what="the installed agent's first samples")
    pid = installed.agent_pid()
    assert pid is not None

    # Upgrade to a newer version of the same package while the agent samples the job.
    unpacked = tmp_path / "unpacked"
    subprocess.run(["dpkg-deb", "-R", os.environ["JOBCARBON_DEB"], str(unpacked)], check=True)
    control = unpacked / "DEBIAN" / "control"
    control.write_text(
        "\n".join(
            f"{line}+upgrade" if line.startswith("Version:") else line
            for line in control.read_text().splitlines()
        )
        + "\n"
    )
    newer = tmp_path / "jobcarbon_upgrade.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Znone", "-b", str(unpacked), str(newer)], check=True)
    before = installed.intervals(JOB)
    upgraded = installed.dpkg_install(newer)
    assert upgraded.returncode == 0, upgraded.stdout[-3000:] + upgraded.stderr[-3000:]
    assert "+upgrade" in installed.run("dpkg-query", "-W", "-f=${Version}", "jobcarbon").stdout
    assert installed.agent_pid() == pid, "the upgrade restarted the agent"
    for step in range(1, 4):
        set_energy(sysfs, "package-0", step * 5_000_000)
        set_energy(sysfs, "dram-0", step * 500_000)
        wait_for(lambda b=before + step: installed.intervals(JOB) >= b, what="samples after the upgrade")
    assert installed.agent_pid() == pid

    assert installed.hook("epilog", JOB).returncode == 0
    row = wait_for(lambda: _delivered(installed.root / DATABASE, JOB), timeout_s=30, what="delivery")
    assert row["status"] == "complete"
    assert row["account"] == "physics"
    assert row["cpu_j"] is not None
    # The database and its WAL files stay private after the writes.
    gid = installed.group("jobcarbon")
    for name in (DATABASE, f"{DATABASE}-wal", f"{DATABASE}-shm"):
        path = installed.root / name
        if path.exists():
            info = path.stat()
            assert (stat.S_IMODE(info.st_mode), info.st_gid) == (0o640, gid), name


def _delivered(database: Path, job_id: int) -> dict[str, object] | None:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
            conn.row_factory = sqlite3.Row
            row = conn.execute(
                "SELECT p.status, p.cpu_j, j.account FROM job_parts p JOIN jobs j ON p.job = j.id"
                " WHERE j.job_id = ?",
                (job_id,),
            ).fetchone()
    except sqlite3.Error:
        return None
    return dict(row) if row else None


def test_remove_takes_the_hooks_and_purge_keeps_the_database(installed: Chroot) -> None:
    pid = installed.agent_pid()
    if pid:
        os.kill(pid, 15)
        wait_for(lambda: installed.agent_pid() is None, what="agent exit")
    removed = installed.run("dpkg", "--purge", "jobcarbon")
    assert removed.returncode == 0, removed.stdout[-2000:] + removed.stderr[-2000:]
    root = installed.root
    assert not os.path.lexists(root / "etc/slurm/prolog.d/50-jobcarbon")
    assert not (root / "opt/jobcarbon/bin/python3").exists()
    assert not (root / "etc/jobcarbon/config.yaml").exists()
    assert (root / DATABASE).exists()
    assert "kept /var/lib/jobcarbon" in removed.stderr
