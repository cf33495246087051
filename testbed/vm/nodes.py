"""The VM bed's machines: a private network namespace with a bridge, and one QEMU (TCG) per node.

KVM does not work on the machines this runs on, so every node is software-emulated; each boots its own
copy-on-write overlay of the one image, and nothing outside the namespace is reachable from it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from testbed.host import find_binary
from testbed.vm.config import AGENT_PORT, GPUS_PER_NODE, NODES, Node
from testbed.vm.image import Image
from testbed.vm.process import check, quiet

NETNS = "jobcarbon-vmbed"


def create_network() -> None:
    """A bridge and one tap per node inside the bed's own network namespace."""
    if quiet(["ip", "netns", "pids", NETNS]).returncode != 0:
        check(["ip", "netns", "add", NETNS])
    inside = ["ip", "-n", NETNS]
    check([*inside, "link", "set", "lo", "up"])
    if quiet([*inside, "link", "show", "br0"]).returncode != 0:
        check([*inside, "link", "add", "br0", "type", "bridge"])
    check([*inside, "link", "set", "br0", "up"])
    for node in NODES:
        tap = f"tap-{node.name}"
        if quiet([*inside, "link", "show", tap]).returncode != 0:
            check([*inside, "tuntap", "add", "dev", tap, "mode", "tap"])
        check([*inside, "link", "set", tap, "master", "br0", "up"])


def delete_network() -> None:
    if quiet(["ip", "netns", "pids", NETNS]).returncode == 0:
        quiet(["ip", "netns", "delete", NETNS])


def boot(image: Image, node: Node, state: Path, kernel_args: str = "") -> None:
    """Start `node` from a fresh overlay in `state` (its pid file, console log and command socket there).

    The kernel command line gives the node its identity (testbed/vmguest.py reads `jcvm.*`)."""
    overlay = state / f"{node.name}.qcow2"
    check(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(image.disk), str(overlay)])
    role = "jcvm.controller=1" if node.controller else f"jcvm.compute=1 jcvm.gpus={GPUS_PER_NODE}"
    append = f"root=/dev/vda rw console=ttyS0 panic=-1 net.ifnames=0 systemd.hostname={node.name} "
    append += f"jcvm.addr={node.address}/24 jcvm.index={node.index} {role} {kernel_args}".rstrip()
    command = ["ip", "netns", "exec", NETNS, "nice", "-n", "10", "qemu-system-x86_64", "-name", node.name]
    command += ["-accel", "tcg,thread=multi", "-cpu", "max", "-m", str(node.memory_mb)]
    command += ["-smp", f"{node.cpus},sockets=1,cores={node.cpus},threads=1"]
    command += ["-nodefaults", "-vga", "none"]
    command += ["-display", "none", "-no-reboot", "-daemonize", "-pidfile", str(pid_file(state, node))]
    command += ["-serial", f"file:{console_log(state, node)}", "-monitor", "none"]
    command += ["-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", append]
    command += ["-drive", f"file={overlay},if=virtio,format=qcow2,cache=unsafe"]
    command += ["-netdev", f"tap,id=net0,ifname=tap-{node.name},script=no,downscript=no"]
    command += ["-device", f"virtio-net-pci,netdev=net0,mac=52:54:00:77:00:{node.index:02x}"]
    command += ["-chardev", f"socket,id=agent,path={agent_socket(state, node)},server=on,wait=off"]
    command += ["-device", "virtio-serial-pci"]
    command += ["-device", f"virtserialport,chardev=agent,name={AGENT_PORT}"]
    check(command)


def pid_file(state: Path, node: Node) -> Path:
    return state / f"{node.name}.pid"


def agent_socket(state: Path, node: Node) -> Path:
    return state / f"{node.name}.agent"


def console_log(state: Path, node: Node) -> Path:
    return state / f"{node.name}.console.log"


def console_tail(state: Path, node: Node, lines: int = 20) -> str:
    path = console_log(state, node)
    try:
        tail = "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        tail = "(none)"
    return f"--- {path} ---\n{tail}"


def alive(state: Path, node: Node) -> bool:
    """Whether the node's QEMU process still runs."""
    try:
        pid = int(pid_file(state, node).read_text())
        return Path(f"/proc/{pid}/comm").read_text().startswith("qemu")
    except (OSError, ValueError):
        return False


def kill(state: Path, node: Node) -> None:
    """Stop the node's QEMU at once (after a poweroff that did not finish in time)."""
    if alive(state, node):
        os.kill(int(pid_file(state, node).read_text()), signal.SIGKILL)


def unavailable_reason() -> str | None:
    """Why this machine cannot run the VM bed, or None if it can."""
    if os.geteuid() != 0:
        return "the VM test bed needs root (network namespace, image ownership)"
    tools = ("mmdebstrap", "qemu-system-x86_64", "qemu-img", "mkfs.ext4", "ip")
    missing = [tool for tool in tools if find_binary(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed (apt-get install mmdebstrap qemu-system-x86 qemu-utils)"
    return None
