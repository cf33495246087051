"""What each node of the VM bed is and how it is configured: names, addresses, users, slurm.conf,
cgroup.conf, jobcarbon's config and the systemd units that give a node its role at boot.

The same files go into the one image every node boots; a node learns which of them it is from its
kernel command line (`systemd.hostname=`, `jcvm.*`, see testbed/vmguest.py)."""

from __future__ import annotations

from dataclasses import dataclass

SUBNET = "10.77.0"
GPUS_PER_NODE = 2
CLUSTER = "vmbed"
GUEST_PYTHON = "/usr/bin/python3"
GUEST_SITE = "usr/local/lib/python3.13/dist-packages"
GUEST_TESTBED = "/opt/jobcarbon-testbed"
USERS = ("jcalice", "jcbob")  # job owners, uid 2001 and 2002 on every node
AGENT_PORT = "jcvm.agent"
NODE_MEMORY_MB = 600  # RealMemory: below what slurmd finds in a 1 GiB guest
SLURM_CONF = "/etc/slurm/slurm.conf"
CGROUP_CONF_PATH = "/etc/slurm/cgroup.conf"
STATE_SAVE = "/var/lib/slurm/slurmctld"


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
CONTROLLER = NODES[0]
COMPUTE = tuple(node for node in NODES if node.compute)


def node_range() -> str:
    return f"vm[{COMPUTE[0].index}-{COMPUTE[-1].index}]"


# Settings the scenarios change and put back (cluster.VmCluster.set_options); the rest stays as written.
SLURM_DEFAULTS = {
    "PrologFlags": "Contain",
    "JobAcctGatherType": "jobacct_gather/cgroup",
    "FirstJobId": "1",
}
CGROUP_DEFAULTS = {"ConstrainCores": "yes", "ConstrainRAMSpace": "yes"}


def slurm_conf() -> str:
    """slurm.conf for all nodes: cgroup/v2 under systemd, jobcarbon's hooks, two fake GPUs a node."""
    lines = [
        "# Written by jobcarbon's VM test bed (testbed/vm/config.py).",
        f"ClusterName={CLUSTER}",
        f"SlurmctldHost={CONTROLLER.name}",
        "SlurmUser=slurm",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "MpiDefault=none",
        "ProctrackType=proctrack/cgroup",
        "TaskPlugin=task/cgroup",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "DefMemPerCPU=200",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/filetxt",
        "JobCompLoc=/var/log/slurm/jobcomp.txt",
        "GresTypes=gpu",
        "Prolog=/usr/lib/jobcarbon/jobcarbon-prolog",
        "Epilog=/usr/lib/jobcarbon/jobcarbon-epilog",
        *(f"{key}={value}" for key, value in SLURM_DEFAULTS.items()),
        "PrologEpilogTimeout=120",
        "ReturnToService=2",
        "MinJobAge=3600",
        "KillWait=5",
        "SlurmdTimeout=300",
        "MessageTimeout=30",
        "MailProg=/bin/true",
        f"StateSaveLocation={STATE_SAVE}",
        "SlurmdSpoolDir=/var/lib/slurm/slurmd",
        "SlurmctldLogFile=/var/log/slurm/slurmctld.log",
        "SlurmdLogFile=/var/log/slurm/slurmd.log",
        f"NodeName={node_range()} CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1"
        f" RealMemory={NODE_MEMORY_MB} Gres=gpu:h100:{GPUS_PER_NODE} State=UNKNOWN",
        "PartitionName=batch Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
    ]
    return "\n".join(lines) + "\n"


CGROUP_CONF = "CgroupPlugin=cgroup/v2\n" + "".join(f"{k}={v}\n" for k, v in CGROUP_DEFAULTS.items())
CGROUP_CONF += "ConstrainDevices=no\n"


def gres_conf() -> str:
    devices = f"/dev/fakegpu[0-{GPUS_PER_NODE - 1}]"
    return f"AutoDetect=off\nNodeName={node_range()} Name=gpu Type=h100 File={devices}\n"


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
