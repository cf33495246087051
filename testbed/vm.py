"""A three-node Slurm 24.11 cluster (Debian 13, systemd, cgroup v2) in software-emulated VMs.

One disk image is built from Debian's packages with `mmdebstrap` (cached under /var/cache/jobcarbon-ci/vm,
rebuilt when its inputs change) with jobcarbon, its hooks, the simulated RAPL and the NVML stand-in in
it. Each node boots its own copy-on-write overlay of that image under QEMU's TCG (KVM does not work on
these machines). The nodes share a bridge inside a network namespace the bed creates (nothing outside it
is reachable), and the host drives each node through a virtio-serial port served by testbed/vmguest.py.
vm1 runs slurmctld; vm2 and vm3 run slurmd, each with two fake GPUs. Nodes keep their records in their
outboxes; `collect` copies them to the host and `jobcarbon ingest` stores them in the bed's database.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from testbed.host import REPO_ROOT, ClusterError, find_binary, poll, rewrite_hook_defaults
from testbed.nvml_standin import build as build_nvml_standin
from testbed.slurm import FINISHED_STATES

CACHE = Path("/var/cache/jobcarbon-ci/vm")
DEFAULT_STATE = Path("/tmp/jobcarbon-vmbed")
WHEELS = Path("/var/cache/jobcarbon-ci/wheels")
SUITE = "trixie"
PACKAGES = (
    "linux-image-amd64,systemd,systemd-sysv,udev,dbus,slurmd,slurmctld,slurm-client,munge,python3,"
    "procps,iproute2,python3-yaml,python3-requests,python3-tabulate"
)
# jobcarbon's pure-Python dependencies not taken from Debian: installed from the CI wheelhouse.
PURE_WHEELS = ("nvidia-ml-py", "sqlite-utils", "sqlite-fts4", "click", "click-default-group")
PURE_WHEELS += ("python-dateutil", "pluggy")
GUEST_MODULES = ("__init__.py", "vmguest.py", "hardware.py", "host.py", "nvml_standin.py", "powermodel.py")
NETNS = "jobcarbon-vmbed"
SUBNET = "10.77.0"
GPUS_PER_NODE = 2
CLUSTER = "vmbed"
GUEST_PYTHON = "/usr/bin/python3"
GUEST_SITE = "usr/local/lib/python3.13/dist-packages"
GUEST_TESTBED = "/opt/jobcarbon-testbed"
USERS = ("jcalice", "jcbob")  # job owners, uid 2001 and 2002 on every node
AGENT_PORT = "jcvm.agent"


@dataclass(frozen=True)
class Node:
    name: str
    index: int
    controller: bool
    memory_mb: int
    cpus: int

    @property
    def address(self) -> str:
        return f"{SUBNET}.{self.index}"

    @property
    def compute(self) -> bool:
        return not self.controller


NODES = (
    Node("vm1", 1, controller=True, memory_mb=768, cpus=1),
    Node("vm2", 2, controller=False, memory_mb=1024, cpus=2),
    Node("vm3", 3, controller=False, memory_mb=1024, cpus=2),
)
COMPUTE = tuple(node for node in NODES if node.compute)
NODE_MEMORY_MB = 600  # RealMemory: below what slurmd finds in a 1 GiB guest


# --- the image -------------------------------------------------------------------------------------


def debian_mirror(sources: Path = Path("/etc/apt/sources.list.d/debian.sources")) -> str:
    """The Debian mirror this machine's apt uses (its deb822 `URIs:`), else deb.debian.org."""
    try:
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    except OSError:
        pass
    return "http://deb.debian.org/debian"


def _digest(*parts: bytes) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(hashlib.sha256(part).digest())
    return hasher.hexdigest()[:16]


def base_root(mirror: str) -> Path:
    """A tar of Debian 13's root with Slurm, systemd and a kernel, made once per package list."""
    target = CACHE / f"{SUITE}-{_digest(PACKAGES.encode(), mirror.encode())}.tar"
    if target.exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial.tar")
    command = ["mmdebstrap", "--quiet", "--variant=apt", f"--include={PACKAGES}", SUITE, str(partial)]
    _check([*command, f"deb {mirror} {SUITE} main"], timeout=1200)
    partial.replace(target)
    return target


def image_inputs() -> list[Path]:
    """The files whose content goes into the node image besides the base root."""
    package = (REPO_ROOT / "slurm_plugin").rglob("*")
    files = sorted(p for p in package if p.is_file() and "__pycache__" not in p.parts)
    files += [REPO_ROOT / "prolog/jobcarbon-prolog", REPO_ROOT / "epilog/jobcarbon-epilog"]
    files += [REPO_ROOT / "testbed" / name for name in GUEST_MODULES]
    return [*files, REPO_ROOT / "testbed/nvml_standin.c", Path(__file__)]


@dataclass(frozen=True)
class Image:
    directory: Path

    @property
    def disk(self) -> Path:
        return self.directory / "disk.img"

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.img"


def build_image(wheels: Path = WHEELS, mirror: str | None = None) -> Image:
    """The node image for this tree: reused when nothing it is made from has changed."""
    base = base_root(mirror or debian_mirror())
    inputs = image_inputs()
    key = _digest(base.name.encode(), *(str(p).encode() for p in inputs), *(p.read_bytes() for p in inputs))
    image = Image(CACHE / f"node-{key}")
    if image.disk.exists():
        return image
    missing = [name for name in PURE_WHEELS if not any(wheels.glob(f"{name.replace('-', '_')}-*.whl"))]
    if missing:
        names = ", ".join(missing)
        raise ClusterError(f"{wheels} lacks wheels of {names}: run packaging/fetch-wheels {wheels}")
    work = CACHE / f".build-{key}"
    shutil.rmtree(work, ignore_errors=True)
    root = work / "root"
    root.mkdir(parents=True)
    try:
        _check(["tar", "--numeric-owner", "-xf", str(base), "-C", str(root)])
        _install_jobcarbon(root, wheels, work)
        _configure(root)
        for name in ("vmlinuz", "initrd.img"):
            shutil.copy(next((root / "boot").glob(f"{name}-*")), work / name)
        disk = work / "disk.img"
        _check(["truncate", "-s", "3G", str(disk)])
        _check(["mkfs.ext4", "-q", "-F", "-L", "jcvm", "-d", str(root), str(disk)], timeout=600)
        shutil.rmtree(root)
        for old in CACHE.glob("node-*"):
            shutil.rmtree(old, ignore_errors=True)
        work.replace(image.directory)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return image


def _install_jobcarbon(root: Path, wheels: Path, work: Path) -> None:
    """slurm_plugin, its pure-Python wheels, the hooks and the guest's test-bed modules into the root.

    The .deb (packaging/build-deb) bundles wheels built for Debian 12's Python 3.11; Debian 13 has 3.13,
    so the image takes PyYAML and requests from Debian and the rest from pure-Python wheels."""
    site = root / GUEST_SITE
    pip = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-index", "--no-deps"]
    pip += ["--root-user-action=ignore", "-q", "--find-links", str(wheels), "--target", str(site)]
    _check([*pip, *PURE_WHEELS], timeout=300)
    caches = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO_ROOT / "slurm_plugin", site / "slurm_plugin", ignore=caches)
    _write(root / "usr/local/bin/jobcarbon", JOBCARBON_SCRIPT, 0o755)
    defaults = {"JOBCARBON_PYTHON": GUEST_PYTHON, "JOBCARBON_CONFIG": "/etc/jobcarbon/config.yaml"}
    for hook in ("prolog/jobcarbon-prolog", "epilog/jobcarbon-epilog"):
        text = rewrite_hook_defaults((REPO_ROOT / hook).read_text(), defaults)
        _write(root / "usr/lib/jobcarbon" / Path(hook).name, text, 0o755)
    guest = root / GUEST_TESTBED.lstrip("/")
    for name in GUEST_MODULES:
        _write(guest / "testbed" / name, (REPO_ROOT / "testbed" / name).read_text())
    build_nvml_standin(work / "nvml")
    shutil.move(work / "nvml", guest / "nvml")


def _configure(root: Path) -> None:
    """Slurm, jobcarbon, systemd units and the hosts file, the same on every node."""
    hosts = "127.0.0.1 localhost\n" + "".join(f"{node.address} {node.name}\n" for node in NODES)
    _write(root / "etc/hosts", hosts)
    _write(root / "etc/slurm/slurm.conf", slurm_conf())
    _write(root / "etc/slurm/cgroup.conf", CGROUP_CONF)
    devices = f"/dev/fakegpu[0-{GPUS_PER_NODE - 1}]"
    gres = f"AutoDetect=off\nNodeName={_node_range()} Name=gpu Type=h100 File={devices}\n"
    _write(root / "etc/slurm/gres.conf", gres)
    _write(root / "etc/jobcarbon/config.yaml", JOBCARBON_CONFIG)
    units = root / "etc/systemd/system"
    for name, text in UNITS.items():
        _write(units / name, text)
        if not name.endswith(".conf"):
            wants = units / "multi-user.target.wants" / name
            wants.unlink(missing_ok=True)
            wants.symlink_to(f"/etc/systemd/system/{name}")
    for timer in ("apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer", "fstrim.timer"):
        (units / "timers.target.wants" / timer).unlink(missing_ok=True)
    for directory in ("var/log/jobcarbon", "var/log/slurm"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    os.chown(root / "var/log/slurm", *_guest_ids(root, "slurm"))
    # One munge key for every node (the package made one at build time; make sure it is private).
    os.chmod(root / "etc/munge/munge.key", 0o400)
    for uid, user in enumerate(USERS, start=2001):
        _check(["chroot", str(root), "useradd", "--uid", str(uid), "--create-home", user])


def _guest_ids(root: Path, user: str) -> tuple[int, int]:
    """uid and gid of a user of the guest (its /etc/passwd; the host's may differ)."""
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3])
    raise ClusterError(f"the image has no user {user}")


def _node_range() -> str:
    return f"vm[{COMPUTE[0].index}-{COMPUTE[-1].index}]"


def slurm_conf() -> str:
    """slurm.conf for all nodes: cgroup/v2 under systemd, jobcarbon's hooks, two fake GPUs a node."""
    lines = [
        "# Written by jobcarbon's VM test bed (testbed/vm.py).",
        f"ClusterName={CLUSTER}",
        f"SlurmctldHost={NODES[0].name}",
        "SlurmUser=slurm",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "MpiDefault=none",
        "ProctrackType=proctrack/cgroup",
        "TaskPlugin=task/cgroup",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "DefMemPerCPU=200",
        "JobAcctGatherType=jobacct_gather/cgroup",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/filetxt",
        "JobCompLoc=/var/log/slurm/jobcomp.txt",
        "GresTypes=gpu",
        "Prolog=/usr/lib/jobcarbon/jobcarbon-prolog",
        "Epilog=/usr/lib/jobcarbon/jobcarbon-epilog",
        "PrologFlags=Contain",
        "PrologEpilogTimeout=120",
        "ReturnToService=2",
        "MinJobAge=3600",
        "KillWait=5",
        "SlurmdTimeout=300",
        "MessageTimeout=30",
        "MailProg=/bin/true",
        "StateSaveLocation=/var/lib/slurm/slurmctld",
        "SlurmdSpoolDir=/var/lib/slurm/slurmd",
        "SlurmctldLogFile=/var/log/slurm/slurmctld.log",
        "SlurmdLogFile=/var/log/slurm/slurmd.log",
        f"NodeName={_node_range()} CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1"
        f" RealMemory={NODE_MEMORY_MB} Gres=gpu:h100:{GPUS_PER_NODE} State=UNKNOWN",
        "PartitionName=batch Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
    ]
    return "\n".join(lines) + "\n"


CGROUP_CONF = "CgroupPlugin=cgroup/v2\nConstrainCores=yes\nConstrainRAMSpace=yes\nConstrainDevices=no\n"
JOBCARBON_CONFIG = f"""cluster: {CLUSTER}
paths:
  sysfs: /var/lib/jcvm/sys
sampler:
  interval_s: 1
cgroup:
  version: v2
nvml:
  library: {GUEST_TESTBED}/nvml/libnvidia-ml.so.1
  slurm_index_order: minor_number
database:
  deliver_from_nodes: false
accounting:
  zone: DE
  pue: 1.2
"""
JOBCARBON_SCRIPT = f"""#!{GUEST_PYTHON}
import sys
from slurm_plugin.cli.main import main
sys.exit(main())
"""
_GUEST_ENV = f"Environment=PYTHONPATH={GUEST_TESTBED}\n"
# Emulated CPUs shared with other work start daemons slowly: wait longer, and retry a failed start.
_PATIENT = "[Service]\nTimeoutStartSec=10min\nRestart=on-failure\nRestartSec=5\n"
UNITS = {
    # No device dependency: under emulation and load, eth0 can take longer than a device unit's 90 s.
    "jcvm-setup.service": "[Unit]\nDescription=VM test bed: node address, fake GPUs\n"
    "Before=network-online.target munge.service slurmd.service slurmctld.service\n"
    f"[Service]\nType=oneshot\nRemainAfterExit=yes\nTimeoutStartSec=15min\n{_GUEST_ENV}"
    f"ExecStart={GUEST_PYTHON} -m testbed.vmguest setup\n[Install]\nWantedBy=multi-user.target\n",
    "jcvm-agent.service": "[Unit]\nDescription=VM test bed: the host's command channel\n"
    f"[Service]\n{_GUEST_ENV}ExecStart={GUEST_PYTHON} -m testbed.vmguest agent /dev/virtio-ports/{AGENT_PORT}"
    "\n"
    "Restart=always\nRestartSec=1\n[Install]\nWantedBy=multi-user.target\n",
    "jcvm-power.service": "[Unit]\nDescription=VM test bed: simulated RAPL\n"
    "ConditionKernelCommandLine=jcvm.compute=1\n"
    f"Before=slurmd.service\n[Service]\n{_GUEST_ENV}"
    f"ExecStart={GUEST_PYTHON} -m testbed.powermodel run --build --sysfs /var/lib/jcvm/sys "
    "--ground-truth /var/lib/jcvm/power-truth.json --period 0.5 --max-energy-range-uj 5000000000\n"
    "[Install]\nWantedBy=multi-user.target\n",
    "slurmd.service.d/jcvm.conf": "[Unit]\nConditionKernelCommandLine=jcvm.compute=1\n"
    f"Requires=jcvm-setup.service\nAfter=jcvm-setup.service jcvm-power.service\n{_PATIENT}",
    "slurmctld.service.d/jcvm.conf": "[Unit]\nConditionKernelCommandLine=jcvm.controller=1\n"
    f"Requires=jcvm-setup.service\nAfter=jcvm-setup.service\n{_PATIENT}",
    "munge.service.d/jcvm.conf": f"[Unit]\nRequires=jcvm-setup.service\nAfter=jcvm-setup.service\n{_PATIENT}",
}


def _write(path: Path, content: str | bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)
    path.chmod(mode)


def _check(command: list[str], timeout: float = 120) -> str:
    """Run a command; its failure becomes a ClusterError with the end of its output."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ClusterError(f"{command[0]}: timed out after {timeout:g} s") from None
    if done.returncode != 0:
        raise ClusterError(f"{shlex.join(command[:6])}: {(done.stderr or done.stdout).strip()[-800:]}")
    return done.stdout


# --- the running bed -------------------------------------------------------------------------------


@dataclass
class VmCluster:
    """The three VMs of one bed, their overlays, sockets and logs under `state`."""

    state: Path = DEFAULT_STATE
    image: Image | None = None  # set by `up`

    def pid_file(self, node: Node) -> Path:
        return self.state / f"{node.name}.pid"

    def agent_socket(self, node: Node) -> Path:
        return self.state / f"{node.name}.agent"

    def console_log(self, node: Node) -> Path:
        return self.state / f"{node.name}.console.log"

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

    def up(self, image: Image, timeout_s: float = 600) -> None:
        """Boot all nodes from fresh overlays; return once both compute nodes are idle in Slurm."""
        self.down()
        shutil.rmtree(self.state, ignore_errors=True)
        self.state.mkdir(parents=True)
        self._network()
        self.image = image
        for node in NODES:
            self._boot(image, node)
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

    def restart(self, node: Node, kernel_args: str = "", timeout_s: float = 600) -> None:
        """Power one compute node off and boot it again from a fresh overlay of the image the bed came
        up with, with extra kernel arguments (`cgroup_disable=memory`...); return once it is idle."""
        if self.image is None:
            raise ClusterError("the bed was not brought up by this process")
        with contextlib.suppress(OSError, ClusterError):
            self.run(node, "systemctl --no-block poweroff", timeout_s=10)
        poll(lambda: None if _alive(self.pid_file(node)) else True, 120, f"{node.name} to power off")
        self._boot(self.image, node, kernel_args)
        self._wait_agent(node, timeout_s)
        self.wait_idle((node,), timeout_s)

    def _network(self) -> None:
        """A bridge and one tap per node inside the bed's own network namespace."""
        if _run(["ip", "netns", "pids", NETNS]).returncode != 0:
            _check(["ip", "netns", "add", NETNS])
        inside = ["ip", "-n", NETNS]
        _check([*inside, "link", "set", "lo", "up"])
        if _run([*inside, "link", "show", "br0"]).returncode != 0:
            _check([*inside, "link", "add", "br0", "type", "bridge"])
        _check([*inside, "link", "set", "br0", "up"])
        for node in NODES:
            tap = f"tap-{node.name}"
            if _run([*inside, "link", "show", tap]).returncode != 0:
                _check([*inside, "tuntap", "add", "dev", tap, "mode", "tap"])
            _check([*inside, "link", "set", tap, "master", "br0", "up"])

    def _boot(self, image: Image, node: Node, kernel_args: str = "") -> None:
        overlay = self.state / f"{node.name}.qcow2"
        _check(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(image.disk), str(overlay)])
        role = "jcvm.controller=1" if node.controller else f"jcvm.compute=1 jcvm.gpus={GPUS_PER_NODE}"
        append = f"root=/dev/vda rw console=ttyS0 panic=-1 net.ifnames=0 systemd.hostname={node.name} "
        append += f"jcvm.addr={node.address}/24 jcvm.index={node.index} {role} {kernel_args}".rstrip()
        command = ["ip", "netns", "exec", NETNS, "nice", "-n", "10", "qemu-system-x86_64", "-name", node.name]
        command += ["-accel", "tcg,thread=multi", "-cpu", "max", "-m", str(node.memory_mb)]
        command += ["-smp", f"{node.cpus},sockets=1,cores={node.cpus},threads=1"]
        command += ["-nodefaults", "-vga", "none"]
        command += ["-display", "none", "-no-reboot", "-daemonize", "-pidfile", str(self.pid_file(node))]
        command += ["-serial", f"file:{self.console_log(node)}", "-monitor", "none"]
        command += ["-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", append]
        command += ["-drive", f"file={overlay},if=virtio,format=qcow2,cache=unsafe"]
        command += ["-netdev", f"tap,id=net0,ifname=tap-{node.name},script=no,downscript=no"]
        command += ["-device", f"virtio-net-pci,netdev=net0,mac=52:54:00:77:00:{node.index:02x}"]
        command += ["-chardev", f"socket,id=agent,path={self.agent_socket(node)},server=on,wait=off"]
        command += ["-device", "virtio-serial-pci"]
        command += ["-device", f"virtserialport,chardev=agent,name={AGENT_PORT}"]
        _check(command)

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
            tail = "\n".join(self.console_log(node).read_text(errors="replace").splitlines()[-20:])
            raise ClusterError(f"{error}\n--- {self.console_log(node)} ---\n{tail}") from None

    def wait_idle(self, nodes: tuple[Node, ...] = COMPUTE, timeout_s: float = 300) -> None:
        """Wait until Slurm shows every one of `nodes` idle; the error names the states last seen."""
        states: dict[str, str] = {}

        def idle() -> bool | None:
            time.sleep(0.5)  # every look costs a Slurm command in an emulated CPU
            states.update(self.node_states())
            return True if all(states.get(node.name) == "idle" for node in nodes) else None

        try:
            poll(idle, timeout_s, "idle nodes")
        except ClusterError as error:
            raise ClusterError(f"{error}; last seen {states}") from None

    def node_states(self) -> dict[str, str]:
        """Compute nodes' states as sinfo prints them (idle, mixed, drained...)."""
        out = self.slurm("sinfo -h -N -o '%N %T'", check=False).stdout
        return dict(line.split() for line in out.splitlines() if len(line.split()) == 2)

    def run(self, node: Node, shell: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a shell command as root on `node` through its agent."""
        request_id = secrets.token_hex(8)
        request = json.dumps({"id": request_id, "sh": shell, "timeout": timeout_s}).encode() + b"\n"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as channel:
            channel.settimeout(timeout_s + 30)
            channel.connect(str(self.agent_socket(node)))
            channel.sendall(request)
            reader = channel.makefile("rb")
            while True:
                line = reader.readline()
                if not line:
                    raise ClusterError(f"{node.name}: the agent closed the channel")
                reply = json.loads(line)
                if reply.get("id") == request_id:
                    return subprocess.CompletedProcess(shell, reply["rc"], reply["out"], reply["err"])

    def slurm(self, shell: str, check: bool = True, timeout_s: float = 120) -> subprocess.CompletedProcess:
        """Run a command on the controller (Slurm's client commands); raise on failure if `check`."""
        done = self.run(NODES[0], shell, timeout_s)
        if check and done.returncode != 0:
            raise ClusterError(f"{shell!r} on {NODES[0].name}: {done.stderr.strip() or done.stdout.strip()}")
        return done

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

    def collect(self) -> list[str]:
        """Copy the compute nodes' finished records into the host's outbox, removing them on the nodes."""
        collected = []
        for node in COMPUTE:
            listing = "cd /var/spool/jobcarbon/outbox 2>/dev/null && ls -1 | grep '\\.json$' || true"
            names = self.run(node, listing).stdout.split()
            if not names:
                continue
            quoted = " ".join(shlex.quote(name) for name in names)
            packed = self.run(node, f"cd /var/spool/jobcarbon/outbox && tar -cf - {quoted} | base64 -w0")
            with tarfile.open(fileobj=io.BytesIO(base64.b64decode(packed.stdout)), mode="r:") as archive:
                archive.extractall(self.outbox, filter="data")
            self.run(node, f"cd /var/spool/jobcarbon/outbox && rm -f {quoted}")
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

    def running(self) -> list[Node]:
        return [node for node in NODES if _alive(self.pid_file(node))]

    def down(self, timeout_s: float = 60) -> None:
        """Power the nodes off (killing what does not stop in time) and remove the network namespace."""
        for node in self.running():
            with contextlib.suppress(OSError, ClusterError):
                self.run(node, "systemctl --no-block poweroff", timeout_s=10)
        deadline = time.monotonic() + timeout_s
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.5)
        for node in self.running():
            os.kill(int(self.pid_file(node).read_text()), signal.SIGKILL)
        if _run(["ip", "netns", "pids", NETNS]).returncode == 0:
            _run(["ip", "netns", "delete", NETNS])

    def status(self) -> str:
        running = self.running()
        if not running:
            return f"VM test bed at {self.state}: not running"
        sinfo = self.slurm("sinfo -N -o '%N %P %T %c %m %G'", check=False).stdout
        squeue = self.slurm("squeue -o '%i %u %T %M %D %N'", check=False).stdout
        names = " ".join(node.name for node in running)
        return f"VM test bed at {self.state}: {names} running\n{sinfo}\n{squeue}".rstrip()


def _alive(pid_file: Path) -> bool:
    """Whether the QEMU process named by the pid file still runs."""
    try:
        pid = int(pid_file.read_text())
        return Path(f"/proc/{pid}/comm").read_text().startswith("qemu")
    except (OSError, ValueError):
        return False


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def unavailable_reason() -> str | None:
    """Why this machine cannot run the VM bed, or None if it can."""
    if os.geteuid() != 0:
        return "the VM test bed needs root (network namespace, image ownership)"
    tools = ("mmdebstrap", "qemu-system-x86_64", "qemu-img", "mkfs.ext4", "ip")
    missing = [tool for tool in tools if find_binary(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed (apt-get install mmdebstrap qemu-system-x86 qemu-utils)"
    return None
