"""A real single-node Slurm 22.05 cluster under one scratch directory, for demos and e2e tests.

Writes slurm.conf, gres.conf and cgroup.conf, runs slurmctld and slurmd, submits jobs and waits
for them; the host is prepared by testbed.host, with the prolog/epilog paths chosen by the caller.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Base job states; scontrol prints COMPLETING instead while the epilog still runs.
from slurm_plugin.node.jobfacts import FINAL_STATES as FINISHED_STATES
from testbed.host import (
    GPU_COUNT,
    SBIN_DIRS,
    ClusterError,
    clear_job_cgroups,
    find_binary,
    make_fake_gpus,
    node_hardware,
    poll,
    real_memory_mb,
    run,
    short_hostname,
    sigkill,
    start_munge,
    wait_until,
)

DEFAULT_SCRATCH = Path("/tmp/jobcarbon-testbed")
DAEMONS = frozenset({"slurmctld", "slurmd", "slurmstepd"})


def cgroup_conf(constrain_cores: bool = True) -> str:
    """cgroup.conf text; ConstrainCores=no (Slurm's default) leaves every job on the whole node's CPUs."""
    cores = "yes" if constrain_cores else "no"
    return f"CgroupPlugin=cgroup/v1\nConstrainCores={cores}\nConstrainRAMSpace=yes\nConstrainDevices=no\n"


@dataclass(frozen=True)
class JobResult:
    """How a job ended, read once its epilog had finished."""

    job_id: int
    state: str
    exit_code: int
    signal: int


@dataclass
class Cluster:
    """One controller and one compute node on this host, all state under `scratch`."""

    scratch: Path = DEFAULT_SCRATCH
    prolog: Path | None = None
    epilog: Path | None = None
    node: str = field(default_factory=short_hostname)
    ctld_port: int = 16817
    slurmd_port: int = 16818
    constrain_cores: bool = True

    @property
    def conf(self) -> Path:
        """slurm.conf; Slurm reads cgroup.conf and gres.conf from the same directory."""
        return self.scratch / "etc" / "slurm.conf"

    @property
    def jobcomp(self) -> Path:
        """The jobcomp/filetxt file: one line per finished job."""
        return self.scratch / "jobcomp.txt"

    @property
    def jobcarbon_config(self) -> Path:
        """Where the test bed's jobcarbon config lives (baked into installed hooks)."""
        return self.scratch / "jobcarbon.yaml"

    def client_env(self) -> dict[str, str]:
        """The caller's environment plus SLURM_CONF, for Slurm client commands."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def slurm(
        self, *args: str, user: str | None = None, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client command, as `user` via runuser if given; the caller checks returncode."""
        command = [find_binary(args[0]) or args[0], *args[1:]]
        if user is not None:
            command = ["runuser", "-u", user, "--", *command]
        return run(command, env=self.client_env(), input=stdin, timeout=60)

    def write_config(self) -> None:
        """Write slurm.conf, cgroup.conf, gres.conf and an empty plugstack.conf."""
        self.conf.parent.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(self._slurm_conf())
        (self.conf.parent / "cgroup.conf").write_text(cgroup_conf(self.constrain_cores))
        gpus = f"/dev/fakegpu[0-{GPU_COUNT - 1}]"
        gres = f"AutoDetect=off\nNodeName={self.node} Name=gpu Type=h100 File={gpus}\n"
        (self.conf.parent / "gres.conf").write_text(gres)
        (self.conf.parent / "plugstack.conf").write_text("")

    def _slurm_conf(self) -> str:
        """slurm.conf text: the settings from the test-bed notes, paths under scratch."""
        run, memory_mb, hardware = self.scratch, real_memory_mb(), node_hardware()
        topology = " ".join(f"{key}={value}" for key, value in hardware.items())
        lines = [
            "# Written by jobcarbon's test bed (testbed/slurm.py).",
            "ClusterName=jobcarbon",
            f"SlurmctldHost={self.node}(127.0.0.1)",
            f"SlurmctldPort={self.ctld_port}",
            f"SlurmdPort={self.slurmd_port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "MpiDefault=none",
            "ProctrackType=proctrack/cgroup",
            "TaskPlugin=task/cgroup",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            # Without a default, each job is given the whole node's memory and jobs never overlap.
            f"DefMemPerCPU={min(1024, memory_mb // int(hardware['CPUs']))}",
            "JobAcctGatherType=jobacct_gather/cgroup",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/filetxt",
            f"JobCompLoc={self.jobcomp}",
            "GresTypes=gpu",
            "PrologFlags=Contain",
            "PrologEpilogTimeout=60",
            "ReturnToService=2",
            "MinJobAge=3600",
            "KillWait=5",
            "MailProg=/bin/true",
            f"PlugStackConfig={self.conf.parent / 'plugstack.conf'}",
            f"StateSaveLocation={run / 'state'}",
            f"SlurmdSpoolDir={run / 'spool'}",
            f"SlurmctldPidFile={run / 'slurmctld.pid'}",
            f"SlurmdPidFile={run / 'slurmd.pid'}",
            f"SlurmctldLogFile={run / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={run / 'log' / 'slurmd.log'}",
        ]
        lines += [f"Prolog={self.prolog}"] if self.prolog else []
        lines += [f"Epilog={self.epilog}"] if self.epilog else []
        lines += [
            f"NodeName={self.node} NodeAddr=127.0.0.1 {topology} RealMemory={memory_mb}"
            f" Gres=gpu:h100:{GPU_COUNT} State=UNKNOWN",
            "PartitionName=batch Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        ]
        return "\n".join(lines) + "\n"

    def up(self, timeout_s: float = 60) -> None:
        """Start munged, slurmctld and slurmd from clean state; return once the node is idle."""
        for hook in (self.prolog, self.epilog):
            if hook is not None and not os.access(hook, os.X_OK):
                raise ClusterError(f"hook {hook} is not an executable file")
        self.down()
        for stale in ("state", "spool"):
            shutil.rmtree(self.scratch / stale, ignore_errors=True)
        for directory in ("state", "spool", "log", "jobs"):
            (self.scratch / directory).mkdir(parents=True, exist_ok=True)
        for directory in (self.scratch, self.scratch / "jobs"):
            directory.chmod(0o755)
        self.write_config()
        make_fake_gpus()
        start_munge()
        self._start_daemons(timeout_s)

    def restart_slurmd(self, constrain_cores: bool, timeout_s: float = 60) -> None:
        """Rewrite cgroup.conf and restart slurmd alone (slurmd reads it at start); slurmctld keeps its
        state, so job ids go on where they were. Call only while no job runs."""
        self.constrain_cores = constrain_cores
        (self.conf.parent / "cgroup.conf").write_text(cgroup_conf(constrain_cores))
        pid_file = self.scratch / "slurmd.pid"
        old = int(pid_file.read_text()) if pid_file.exists() else None
        if old is not None:
            os.kill(old, signal.SIGTERM)
            wait_until(lambda: not Path(f"/proc/{old}").exists(), timeout_s, "slurmd to stop")
        env = {"PATH": ":".join(SBIN_DIRS), "SLURM_CONF": str(self.conf)}
        result = run([str(find_binary("slurmd")), "-f", str(self.conf)], env=env)
        if result.returncode != 0:
            raise ClusterError(f"slurmd failed: {result.stderr.strip()}{self._log_tails()}")
        wait_until(lambda: self.node_state() == "idle", timeout_s, "node idle after the slurmd restart")

    def reset_controller(self, first_job_id: int, timeout_s: float = 60) -> None:
        """A controller state reset, as when StateSaveLocation is lost: jobs cancelled, the daemons
        stopped, slurmctld's state cleared and slurmd's spool too (its credential cache would skip the
        prolog of a job id it ran within CredExpire, as for a requeue), slurm.conf given FirstJobId=N,
        both started again. Job ids then restart at N: Slurm reuses ids (docs/record.md, `run`). The
        current slurm.conf is kept otherwise, hooks included."""
        if not self.conf.exists():
            raise ClusterError(f"{self.conf} missing: run `python3 -m testbed up` first")
        kept = [line for line in self.conf.read_text().splitlines() if not line.startswith("FirstJobId=")]
        self.down(timeout_s)
        for state in ("state", "spool"):
            shutil.rmtree(self.scratch / state, ignore_errors=True)
            (self.scratch / state).mkdir(parents=True)
        self.conf.write_text("\n".join([*kept, f"FirstJobId={first_job_id}"]) + "\n")
        self._start_daemons(timeout_s)

    def _start_daemons(self, timeout_s: float) -> None:
        """slurmctld and slurmd with this cluster's slurm.conf; return once the node is idle."""
        daemon_env = {"PATH": ":".join(SBIN_DIRS), "SLURM_CONF": str(self.conf)}
        for daemon in ("slurmctld", "slurmd"):
            result = run([str(find_binary(daemon)), "-f", str(self.conf)], env=daemon_env)
            if result.returncode != 0:
                raise ClusterError(f"{daemon} failed: {result.stderr.strip()}{self._log_tails()}")
        try:
            wait_until(lambda: self.node_state() == "idle", timeout_s, "node idle")
        except ClusterError as error:
            state = self.node_state()
            raise ClusterError(f"{error}; node state {state!r}{self._log_tails()}") from None

    def node_state(self) -> str:
        """The node's state as sinfo prints it (`idle`, `mixed`, `completing`...), or ''."""
        result = self.slurm("sinfo", "-h", "-N", "-n", self.node, "-o", "%T")
        return result.stdout.strip() if result.returncode == 0 else ""

    def _log_tails(self, lines: int = 15) -> str:
        """The last lines of both daemon logs, to append to an error message."""
        tails = []
        for log in sorted((self.scratch / "log").glob("*.log")):
            tails.append(f"\n--- {log} ---\n" + "\n".join(log.read_text().splitlines()[-lines:]))
        return "".join(tails)

    def daemons(self) -> dict[int, str]:
        """Live slurmctld/slurmd/slurmstepd processes started with this cluster's SLURM_CONF."""
        marker = f"SLURM_CONF={self.conf}".encode()
        found = {}
        for proc in Path("/proc").iterdir():
            try:
                comm = (proc / "comm").read_text().strip() if proc.name.isdigit() else ""
                # Zombies have an empty environ, so they never match.
                if comm in DAEMONS and marker in (proc / "environ").read_bytes().split(b"\0"):
                    found[int(proc.name)] = comm
            except OSError:
                continue  # the process ended while we looked
        return found

    def down(self, timeout_s: float = 30) -> None:
        """Cancel jobs, stop the daemons, kill what an unclean run left; safe to repeat."""
        controllers = {"slurmctld", "slurmd"}
        with contextlib.suppress(ClusterError):  # whatever does not stop in time is killed below
            if "slurmctld" in self.daemons().values():
                self._cancel_all_jobs(timeout_s)
                self.slurm("scontrol", "shutdown")
            wait_until(lambda: not controllers & set(self.daemons().values()), timeout_s, "stop")
        # slurmstepd outlives slurmd by design; after a crash it is left to us.
        for pid in self.daemons():
            sigkill(pid)
        clear_job_cgroups(self.node)
        for pid_file in ("slurmctld.pid", "slurmd.pid"):
            (self.scratch / pid_file).unlink(missing_ok=True)

    def _cancel_all_jobs(self, timeout_s: float) -> None:
        """scancel every job and wait until squeue is empty, so their epilogs run."""
        job_ids = self.slurm("squeue", "-h", "-o", "%i").stdout.split()
        if job_ids:
            self.slurm("scancel", *job_ids)
            wait_until(lambda: not self.slurm("squeue", "-h").stdout.strip(), timeout_s, "scancel")

    def workdir(self, user: str) -> Path:
        """A job working directory under scratch that `user` owns."""
        account = pwd.getpwnam(user)
        path = self.scratch / "jobs" / user
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, account.pw_uid, account.pw_gid)
        return path

    def submit(
        self,
        script_text: str,
        user: str = "root",
        account: str | None = None,
        gres: str | None = None,
        cpus: int = 1,
        extra_args: Sequence[str] = (),
    ) -> int:
        """Submit a batch script as `user` with sbatch; returns the job id."""
        if not script_text.startswith("#!"):
            script_text = "#!/bin/sh\n" + script_text
        workdir = self.workdir(user)
        args = ["sbatch", "--parsable", f"--chdir={workdir}", f"--cpus-per-task={cpus}"]
        args += [f"--output={workdir}/slurm-%j.out"]
        args += [f"--account={account}"] if account else []
        args += [f"--gres={gres}"] if gres else []
        result = self.slurm(*args, *extra_args, user=user, stdin=script_text)
        if result.returncode != 0:
            raise ClusterError(f"sbatch as {user}: {result.stderr.strip()}")
        return int(result.stdout.strip().split(";")[0])

    def job_result(self, job_id: int) -> JobResult | None:
        """How the job ended, or None while it is pending, running or its epilog still runs.

        scontrol prints JobState=COMPLETING while the JOB_COMPLETING flag is set (job_state_string()
        in src/common/slurm_protocol_defs.c); slurmctld clears it once slurmd reports the epilog done.
        """
        result = self.slurm("scontrol", "-o", "show", "job", str(job_id))
        if result.returncode != 0:
            if "Invalid job id" in result.stderr:
                return self._jobcomp_result(job_id)  # purged after MinJobAge
            raise ClusterError(f"scontrol show job {job_id}: {result.stderr.strip()}")
        return _parse_job(job_id, result.stdout)

    def _jobcomp_result(self, job_id: int) -> JobResult | None:
        """The jobcomp line of a job slurmctld no longer remembers.

        Only for purged jobs: slurmctld writes this line before the epilog has run.
        """
        text = self.jobcomp.read_text() if self.jobcomp.exists() else ""
        lines = [line for line in text.splitlines() if line.startswith(f"JobId={job_id} ")]
        if not lines:
            raise ClusterError(f"job {job_id} is unknown to slurmctld and not in {self.jobcomp}")
        return _parse_job(job_id, lines[-1])

    def wait_finished(self, job_id: int, timeout_s: float = 120) -> JobResult:
        """Wait until the job has ended and its epilog has finished."""
        return poll(lambda: self.job_result(job_id), timeout_s, f"job {job_id} to finish")

    def status(self) -> str:
        """A human-readable summary: daemons, sinfo and squeue."""
        pids = sorted(self.daemons())
        if not pids:
            return f"test bed at {self.scratch}: not running"
        sinfo = self.slurm("sinfo", "-N", "-o", "%N %P %T %c %m %G").stdout
        squeue = self.slurm("squeue", "-o", "%i %u %a %T %M %b").stdout
        return f"test bed at {self.scratch}: daemon pids {pids}\n{sinfo}\n{squeue}".rstrip()


def _parse_job(job_id: int, record: str) -> JobResult | None:
    """A JobResult from `scontrol -o show job` or jobcomp text, None if not finished."""
    state = re.search(r"\bJobState=(\S+)", record)
    if state is None or state[1] not in FINISHED_STATES:
        return None
    exit_code = re.search(r"\bExitCode=(\d+):(\d+)", record)
    code, sig = (int(exit_code[1]), int(exit_code[2])) if exit_code else (0, 0)
    return JobResult(job_id=job_id, state=state[1], exit_code=code, signal=sig)
