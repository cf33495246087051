"""The guest side of the virtual-machine test bed (testbed/vm/): runs inside each Debian 13 VM.

`setup` (a boot-time unit) gives the node the identity its kernel command line names (`jcvm.addr=`,
`jcvm.gpus=`): its address on the bed's bridge, fake GPU devices and the NVML stand-in's programme.
`agent` serves the host's commands over a virtio-serial port: one JSON request per line
(`{"id": n, "sh": "...", "timeout": s}`) answered by one JSON line (`{"id": n, "rc", "out", "err"}`),
so the host needs no login, ssh or network route into the VM. Standard library only (Python 3.13).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

from testbed.hardware import GPU_POWER_W
from testbed.nvml_standin import CONFIG_NAME, FakeGpu, write_config

STATE = Path("/var/lib/jcvm")
NVML_DIR = Path("/opt/jobcarbon-testbed/nvml")
NVIDIA_MAJOR = 195


def kernel_options(cmdline: str) -> dict[str, str]:
    """The `jcvm.<key>=<value>` options of a kernel command line, by key."""
    options = {}
    for word in cmdline.split():
        key, _, value = word.partition("=")
        if key.startswith("jcvm."):
            options[key.removeprefix("jcvm.")] = value
    return options


def node_gpus(node_index: int, count: int) -> list[FakeGpu]:
    """GPU i of node n: /dev/fakegpu<i> (minor 100+i), a node-unique UUID, GPU_POWER_W[i] watts."""
    return [
        FakeGpu(
            uuid=f"GPU-00000000-0000-4000-8000-0000000{node_index:02d}{i:03d}",
            minor=100 + i,
            pci_bus_id=f"00000000:{0x17 + 0x20 * i:02X}:00.0",
            power_mw=GPU_POWER_W[i] * 1000,
        )
        for i in range(count)
    ]


def setup(options: dict[str, str]) -> None:
    """Bring up eth0 with the node's address and create its fake GPUs and their NVML programme.

    eth0 appears once udev has loaded virtio-net, which under emulation can take minutes: wait for it."""
    while not Path("/sys/class/net/eth0").exists():
        time.sleep(0.5)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "addr", "replace", options["addr"], "dev", "eth0"], check=True)
    subprocess.run(["ip", "link", "set", "eth0", "up"], check=True)
    gpus = node_gpus(int(options.get("index", "0")), int(options.get("gpus", "0")))
    for gpu in gpus:
        path = Path(f"/dev/fakegpu{gpu.minor - 100}")
        path.unlink(missing_ok=True)
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(NVIDIA_MAJOR, gpu.minor))
    STATE.mkdir(parents=True, exist_ok=True)
    write_config(NVML_DIR / CONFIG_NAME, gpus)


def serve(port: Path) -> None:
    """Answer the host's requests on the virtio-serial port until the VM stops.

    While no host is connected, reads see end-of-file: wait and read again."""
    with open(port, "r+b", buffering=0) as channel:
        pending = b""
        while True:
            chunk = channel.read(65536)
            if not chunk:
                time.sleep(0.2)
                continue
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                if line.strip():
                    reply = json.dumps(answer(json.loads(line))).encode() + b"\n"
                    with contextlib.suppress(OSError):  # the host went away: it will ask again
                        view = memoryview(reply)
                        while view:
                            view = view[channel.write(view) or 0 :]


def answer(request: dict[str, object]) -> dict[str, object]:
    """Run one shell command as root and report its exit status and output."""
    try:
        done = subprocess.run(
            ["/bin/sh", "-c", str(request["sh"])],
            capture_output=True,
            timeout=float(request.get("timeout", 120)),  # type: ignore[arg-type]
            check=False,
            stdin=subprocess.DEVNULL,
        )
        rc, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as expired:
        rc, out, err = 124, expired.stdout or b"", (expired.stderr or b"") + b"\n(timed out)"
    text = {"out": out.decode(errors="replace"), "err": err.decode(errors="replace")}
    return {"id": request.get("id"), "rc": rc, **text}


def main(argv: list[str]) -> int:
    if argv[:1] == ["setup"]:
        setup(kernel_options(Path("/proc/cmdline").read_text()))
    elif argv[:1] == ["agent"] and len(argv) == 2:
        serve(Path(argv[1]))
    else:
        print("usage: python3 -m testbed.vmguest setup | agent PORT", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
