"""A running VM bed: boot and power off its nodes, drive Slurm on them, bring their records home.

Nodes keep their records in their outboxes; `collect` copies them to the host and `ingest` stores them
in the bed's SQLite database there, where `jobcarbon` merges a job's parts from several nodes."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from testbed.host import REPO_ROOT, ClusterError, poll
from testbed.slurm import FINISHED_STATES
from testbed.vm import channel, nodes
from testbed.vm.config import CLUSTER, COMPUTE, CONTROLLER, NODES, STATE_SAVE, USERS, Node
from testbed.vm.image import Image

DEFAULT_STATE = Path("/tmp/jobcarbon-vmbed")
OUTBOX = "/var/spool/jobcarbon/outbox"
AGENT_PATTERN = "slurm_plugin[.]node[.]agent"


@dataclass
class VmCluster:
    """The three VMs of one bed, their overlays, sockets and logs under `state`."""

    state: Path = DEFAULT_STATE
    image: Image | None = None  # set by `up`

    @property
    def outbox(self) -> Path:
        return self.state / "outbox"

    @property
    def jobcarbon_config(self) -> Path:
        """The host's jobcarbon config for the bed: its database and the outbox `collect` fills."""
        return self.state / "jobcarbon.yaml"

    @property
    def database(self) -> Path:
        return self.state / "jobcarbon.db"

    # --- the machines ------------------------------------------------------------------------------

    def up(self, image: Image, timeout_s: float = 600) -> None:
        """Boot all nodes from fresh overlays; return once both compute nodes are idle in Slurm."""
        self.down()
        shutil.rmtree(self.state, ignore_errors=True)
        self.state.mkdir(parents=True)
        nodes.create_network()
        self.image = image
        for node in NODES:
            nodes.boot(image, node, self.state)
        for node in NODES:
            self._wait_agent(node, timeout_s)
        self.wait_idle(COMPUTE, timeout_s)
        self.outbox.mkdir()
        self.jobcarbon_config.write_text(
            f"cluster: {CLUSTER}\npaths:\n  outbox: {self.outbox}\n  log_file: {self.state / 'jobcarbon.log'}"
            f"\n  quarantine: {self.state / 'quarantine'}\n  spool: {self.state / 'spool'}\n"
            f"database:\n  url: sqlite:///{self.database}\naccounting:\n  zone: DE\n  pue: 1.2\n"
        )
        done = self.jobcarbon("db", "upgrade")
        if done.returncode != 0:
            raise ClusterError(f"jobcarbon db upgrade: {done.stderr.strip()}")

    def restart(self, node: Node, kernel_args: str = "", timeout_s: float = 600, idle: bool = True) -> None:
        """Stop one compute node (none of its jobs may be running) and boot it again from a fresh
        overlay of the image the bed came up with, with extra kernel arguments (`cgroup_disable=memory`
        ...); return once its command channel answers and, if `idle`, Slurm shows it idle (not when its
        slurmd needs other settings first)."""
        if self.image is None:
            raise ClusterError("the bed was not brought up by this process")
        nodes.kill(self.state, node)  # its overlay is thrown away: nothing on it needs a clean stop
        poll(lambda: None if nodes.alive(self.state, node) else True, 60, f"{node.name} to stop")
        nodes.boot(self.image, node, self.state, kernel_args)
        self._wait_agent(node, timeout_s)
        if idle:
            self.wait_idle((node,), timeout_s)

    def _wait_agent(self, node: Node, timeout_s: float) -> None:
        def answered() -> bool | None:
            try:
                return self.run(node, "true", timeout_s=5).returncode == 0 or None
            except (OSError, ClusterError):
                time.sleep(1)
                return None

        try:
            poll(answered, timeout_s, f"{node.name}'s agent")
        except ClusterError as error:
            raise ClusterError(f"{error}\n{nodes.console_tail(self.state, node)}") from None

    def running(self) -> list[Node]:
        return [node for node in NODES if nodes.alive(self.state, node)]

    def down(self, timeout_s: float = 60) -> None:
        """Power the nodes off (killing what does not stop within `timeout_s`; 0 kills them at once:
        their overlays are thrown away) and remove the network namespace."""
        for node in self.running() if timeout_s > 0 else ():
            with contextlib.suppress(OSError, ClusterError):
                self.run(node, "systemctl --no-block poweroff", timeout_s=10)
        deadline = time.monotonic() + timeout_s
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.5)
        for node in self.running():
            nodes.kill(self.state, node)
        nodes.delete_network()

    def status(self) -> str:
        running = self.running()
        if not running:
            return f"VM test bed at {self.state}: not running"
        sinfo = self.slurm("sinfo -N -o '%N %P %T %c %m %G'", check=False).stdout
        squeue = self.slurm("squeue -o '%i %u %T %M %D %N'", check=False).stdout
        names = " ".join(node.name for node in running)
        return f"VM test bed at {self.state}: {names} running\n{sinfo}\n{squeue}".rstrip()

    # --- commands on the nodes ---------------------------------------------------------------------

    def run(self, node: Node, shell: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a shell command as root on `node` through its agent."""
        return channel.run(nodes.agent_socket(self.state, node), shell, timeout_s)

    def slurm(self, shell: str, check: bool = True, timeout_s: float = 120) -> subprocess.CompletedProcess:
        """Run a command on the controller (Slurm's client commands); raise on failure if `check`."""
        done = self.run(CONTROLLER, shell, timeout_s)
        if check and done.returncode != 0:
            said = done.stderr.strip() or done.stdout.strip()
            raise ClusterError(f"{shell!r} on {CONTROLLER.name}: {said}")
        return done

    def set_options(self, targets: tuple[Node, ...], path: str, options: dict[str, str]) -> None:
        """Set `Key=value` lines of a Slurm config file on those nodes (replaced, or added at the end)."""
        script = []
        for key, value in options.items():
            line = shlex.quote(f"{key}={value}")
            script.append(f"if grep -q '^{key}=' {path}; then sed -i 's|^{key}=.*|'{line}'|' {path}; ")
            script.append(f"else echo {line} >> {path}; fi; ")
        for node in targets:
            self.run(node, "".join(script) + "true")

    def restart_daemons(self, targets: tuple[Node, ...]) -> None:
        """Restart slurmctld or slurmd on those nodes (settings `scontrol reconfigure` does not apply
        to a running slurmd, such as PrologFlags and cgroup.conf); return once the compute nodes are idle."""
        for node in targets:
            daemon = "slurmctld" if node.controller else "slurmd"
            done = self.run(node, f"systemctl restart {daemon}", timeout_s=300)
            if done.returncode != 0:
                raise ClusterError(f"{daemon} on {node.name} did not restart: {done.stderr.strip()}")
        self.wait_idle(COMPUTE)

    def reset_controller(self) -> None:
        """slurmctld started again with empty state (StateSaveLocation cleared), as after a state loss:
        job ids start again at FirstJobId."""
        reset = f"systemctl stop slurmctld && rm -rf {STATE_SAVE}/* && systemctl start slurmctld"
        self.slurm(reset, timeout_s=300)
        self.wait_idle(COMPUTE)

    def agent_pids(self, node: Node) -> list[int]:
        """Pids of jobcarbon's node agents running on `node`."""
        return [int(pid) for pid in self.run(node, f"pgrep -f '{AGENT_PATTERN}' || true").stdout.split()]

    def log_has(self, node: Node, text: str) -> bool:
        """Whether the node's jobcarbon log has a line containing `text`."""
        done = self.run(node, f"grep -cF -- {shlex.quote(text)} /var/log/jobcarbon/jobcarbon.log || true")
        return int(done.stdout.strip() or 0) > 0

    # --- Slurm -------------------------------------------------------------------------------------

    def wait_idle(self, targets: tuple[Node, ...] = COMPUTE, timeout_s: float = 300) -> None:
        """Wait until Slurm shows every one of `targets` idle; the error names the states last seen."""
        states: dict[str, str] = {}

        def idle() -> bool | None:
            time.sleep(0.5)  # every look costs a Slurm command in an emulated CPU
            states.update(self.node_states())
            return True if all(states.get(node.name) == "idle" for node in targets) else None

        try:
            poll(idle, timeout_s, "idle nodes")
        except ClusterError as error:
            raise ClusterError(f"{error}; last seen {states}") from None

    def node_states(self) -> dict[str, str]:
        """Compute nodes' states as sinfo prints them (idle, mixed, drained...)."""
        out = self.slurm("sinfo -h -N -o '%N %T'", check=False).stdout
        return dict(line.split() for line in out.splitlines() if len(line.split()) == 2)

    def submit(self, sbatch_args: str, user: str = USERS[0], script: str | None = None) -> int:
        """sbatch on the controller as `user`, working in /tmp, with `script` (if given) as the batch
        script; returns the job id."""
        command = f"runuser -u {user} -- sbatch --parsable --chdir=/tmp {sbatch_args}"
        if script is not None:
            command += f" <<'JCVM_SCRIPT'\n{script.rstrip()}\nJCVM_SCRIPT"
        done = self.slurm(command)
        return int(done.stdout.strip().split(";")[0])

    def jobs(self, job_id: int) -> list[dict[str, str]]:
        """`scontrol -o show job` of a job, as fields: one entry per array task or het component."""
        out = self.slurm(f"scontrol -o show job {job_id}").stdout
        return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in out.splitlines() if line.strip()]

    def wait_finished(self, job_id: int, timeout_s: float = 300) -> list[dict[str, str]]:
        """Wait until every task/component of the job has ended and its epilog has run."""

        def finished() -> list[dict[str, str]] | None:
            time.sleep(1)  # every look costs a Slurm command in an emulated CPU
            jobs = self.jobs(job_id)
            return jobs if jobs and all(job.get("JobState") in FINISHED_STATES for job in jobs) else None

        return poll(finished, timeout_s, f"job {job_id} to finish")

    # --- records -----------------------------------------------------------------------------------

    def collect(self) -> list[str]:
        """Copy the compute nodes' finished records into the host's outbox, removing them on the nodes."""
        collected = []
        for node in COMPUTE:
            listing = f"cd {OUTBOX} 2>/dev/null && ls -1 | grep '\\.json$' || true"
            names = self.run(node, listing).stdout.split()
            if not names:
                continue
            quoted = " ".join(shlex.quote(name) for name in names)
            packed = self.run(node, f"cd {OUTBOX} && tar -cf - {quoted} | base64 -w0")
            with tarfile.open(fileobj=io.BytesIO(base64.b64decode(packed.stdout)), mode="r:") as archive:
                archive.extractall(self.outbox, filter="data")
            self.run(node, f"cd {OUTBOX} && rm -f {quoted}")
            collected += names
        return collected

    def jobcarbon(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The host's `jobcarbon` on the bed's database."""
        env = {**os.environ, "JOBCARBON_CONFIG": str(self.jobcarbon_config), "PYTHONPATH": str(REPO_ROOT)}
        command = [sys.executable, "-m", "slurm_plugin", *args]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)

    def ingest(self) -> list[str]:
        """Collect the nodes' records and ingest them into the bed's database."""
        names = self.collect()
        done = self.jobcarbon("ingest")
        if done.returncode != 0:
            raise ClusterError(f"jobcarbon ingest: {done.stderr.strip()}")
        return names
