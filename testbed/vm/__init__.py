"""A three-node Slurm 24.11 cluster (Debian 13, systemd, cgroup v2) in software-emulated VMs.

- `config`: the nodes (vm1 the controller; vm2 and vm3 compute, two fake GPUs each), slurm.conf,
  cgroup.conf, jobcarbon's config and the units that give a node its role at boot;
- `image`: the one disk image every node boots (mmdebstrap's Debian root with jobcarbon in it);
- `nodes`: the network namespace and one QEMU (TCG) process per node;
- `channel`: the host's command channel into a node (testbed/vmguest.py answers inside);
- `cluster`: a running bed (`VmCluster`): boot, Slurm commands, settings, records to the host.
"""

from testbed.vm.cluster import DEFAULT_STATE, VmCluster
from testbed.vm.config import COMPUTE, CONTROLLER, NODES, USERS, Node
from testbed.vm.image import WHEELS, Image, build_image
from testbed.vm.nodes import unavailable_reason

__all__ = [
    "COMPUTE",
    "CONTROLLER",
    "DEFAULT_STATE",
    "NODES",
    "USERS",
    "WHEELS",
    "Image",
    "Node",
    "VmCluster",
    "build_image",
    "unavailable_reason",
]
