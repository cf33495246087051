"""Preparing this host for the Slurm test bed: packages, users, munge, fake GPUs, cgroups, hooks.

Everything here changes the machine itself rather than one cluster's scratch directory; the steps
follow shared/research/slurm-testbed-notes.md (Debian's packages, munge, cgroup v1).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
BINARIES = ("slurmctld", "slurmd", "sbatch", "scontrol", "sinfo", "munged")
SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")
GPU_COUNT = 4
NVIDIA_MAJOR = 195  # the NVIDIA driver's character major; minors from 100 up are not real GPUs
SHELL_UNSAFE = re.compile(r'["$`\\}\n]')


class ClusterError(Exception):
    """The test bed could not do what was asked; the message says why."""


def find_binary(name: str) -> str | None:
    """Path of a Slurm/munge binary; sbin is searched too because it is often off PATH."""
    path = os.pathsep.join([os.environ.get("PATH", ""), *SBIN_DIRS])
    return shutil.which(name, path=path)


def missing_binaries() -> list[str]:
    """Slurm and munge programs the test bed needs that are not installed."""
    return [name for name in BINARIES if find_binary(name) is None]


def short_hostname() -> str:
    """What `hostname -s` prints; Slurm's NodeName and SlurmctldHost must equal it."""
    return socket.gethostname().split(".")[0]


def poll(check: Callable[[], T | None], timeout_s: float, what: str) -> T:
    """Call `check` until it returns something other than None, or raise after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            raise ClusterError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll `condition` until it is true, or raise after `timeout_s`."""
    poll(lambda: True if condition() else None, timeout_s, what)


def run(args: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a command with text output captured and a bound on how long it may take."""
    kwargs.setdefault("timeout", 120)
    return subprocess.run(list(args), capture_output=True, text=True, check=False, **kwargs)


def ensure_packages() -> None:
    """Install Debian's Slurm and munge packages when slurmd is missing (root, apt)."""
    if not missing_binaries():
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]
    if run(install, env=env, timeout=600).returncode != 0:
        run(["apt-get", "update"], env=env, timeout=600)
        result = run(install, env=env, timeout=600)
        if result.returncode != 0:
            raise ClusterError(f"apt-get install failed: {result.stderr.strip()[-500:]}")


def ensure_user(name: str) -> int:
    """Uid of a local user, created with a home directory (`useradd -m`) if it does not exist."""
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        result = run(["useradd", "-m", name])
        if result.returncode != 0:
            raise ClusterError(f"useradd {name}: {result.stderr.strip()}") from None
        return pwd.getpwnam(name).pw_uid


def make_fake_gpus(count: int = GPU_COUNT) -> list[Path]:
    """Create /dev/fakegpuN (char 195, 100+N) for gres.conf's File= lines."""
    paths = []
    for index in range(count):
        path = Path(f"/dev/fakegpu{index}")
        device = os.makedev(NVIDIA_MAJOR, 100 + index)
        if path.is_char_device() and path.stat().st_rdev == device:
            paths.append(path)
            continue
        path.unlink(missing_ok=True)
        os.mknod(path, 0o666 | stat.S_IFCHR, device)
        paths.append(path)
    return paths


def _munge_works() -> bool:
    """Whether a credential from `munge -n` is accepted by `unmunge`."""
    munge, unmunge = find_binary("munge"), find_binary("unmunge")
    if munge is None or unmunge is None:
        raise ClusterError("munge is not installed")
    credential = run([munge, "-n"], timeout=10)
    if credential.returncode != 0:
        return False
    return run([unmunge], input=credential.stdout, timeout=10).returncode == 0


def start_munge(timeout_s: float = 15) -> None:
    """Start munged as user munge unless a working one is already running."""
    if _munge_works():
        return
    munge_user = pwd.getpwnam("munge")
    for directory in (Path("/run/munge"), Path("/var/log/munge"), Path("/var/lib/munge")):
        directory.mkdir(mode=0o755, parents=True, exist_ok=True)
        os.chown(directory, munge_user.pw_uid, munge_user.pw_gid)
    result = run(["runuser", "-u", "munge", "--", str(find_binary("munged")), "--force"])
    if result.returncode != 0:
        raise ClusterError(f"munged failed to start: {result.stderr.strip()}")
    wait_until(_munge_works, timeout_s, "munged")


def rewrite_hook_defaults(text: str, defaults: dict[str, str]) -> str:
    """Replace each `: "${NAME:=...}"` line of a hook script with the given default value."""
    for name, value in defaults.items():
        if SHELL_UNSAFE.search(value):
            raise ClusterError(f"{name} default {value!r} cannot go inside a shell string")
        line = re.compile(rf'^(?P<indent>[ \t]*): "\$\{{{name}:=.*\}}"[ \t]*$', re.MULTILINE)
        # SHELL_UNSAFE also rules out backslashes, so `value` is literal in the template.
        text, count = line.subn(rf'\g<indent>: "${{{name}:={value}}}"', text)
        if count != 1:
            raise ClusterError(f'expected one line `: "${{{name}:=...}}"`, found {count}')
    return text


def install_hooks(
    scratch: Path, python: str, config_path: Path, pythonpath: str | None = None
) -> tuple[Path, Path]:
    """Copy the repo's prolog and epilog into `scratch`/hooks with the test bed's defaults.

    slurmd scrubs the hooks' environment, so the variables they honour are baked in instead;
    `pythonpath` (JOBCARBON_PYTHONPATH) is needed when jobcarbon is an editable install.
    """
    defaults = {"JOBCARBON_PYTHON": python, "JOBCARBON_CONFIG": str(config_path)}
    if pythonpath is not None:
        defaults["JOBCARBON_PYTHONPATH"] = pythonpath
    hooks = scratch / "hooks"
    hooks.mkdir(parents=True, exist_ok=True)
    installed = []
    for source in (REPO_ROOT / "prolog/jobcarbon-prolog", REPO_ROOT / "epilog/jobcarbon-epilog"):
        try:
            text = rewrite_hook_defaults(source.read_text(), defaults)
        except (OSError, ClusterError) as error:
            raise ClusterError(f"{source}: {error}") from error
        target = hooks / source.name
        target.write_text(text)
        target.chmod(0o755)
        installed.append(target)
    return installed[0], installed[1]


def node_hardware() -> dict[str, str]:
    """The node's topology as `slurmd -C` reports it: CPUs, Boards, SocketsPerBoard..."""
    result = run([str(find_binary("slurmd")), "-C"], timeout=30)
    keys = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore")
    found = dict(re.findall(r"(\w+)=(\S+)", result.stdout))
    if result.returncode != 0 or not all(key in found for key in keys):
        raise ClusterError(f"slurmd -C gave no node topology: {result.stderr.strip()}")
    return {key: found[key] for key in keys}


def real_memory_mb() -> int:
    """RealMemory to declare: 80% of MemTotal, so slurmd never finds less than configured."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 8 // 10 // 1024
    raise ClusterError("/proc/meminfo has no MemTotal")


def sigkill(pid: int) -> None:
    """SIGKILL a process that may already have gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def clear_job_cgroups(node: str, root: Path = Path("/sys/fs/cgroup")) -> None:
    """Kill processes left in Slurm's cgroups for `node` and remove those cgroups.

    Job ids restart at 1 with fresh state, so a stale `job_1` cgroup would be reused by a new job.
    Debian's 22.05 names the top cgroup `slurm_<node>` (see the test-bed notes).
    """
    tops = [top for top in root.glob(f"*/slurm_{node}") if top.is_dir()]
    procs_files = [procs for top in tops for procs in top.glob("*/**/cgroup.procs")]
    for procs in procs_files:
        for pid in procs.read_text().split():
            sigkill(int(pid))
    wait_until(lambda: not any(p.read_text().strip() for p in procs_files), 10, "job cleanup")
    children = [path for top in tops for path in top.glob("*/**/") if path != top]
    for directory in sorted(children, key=lambda path: len(path.parts), reverse=True):
        wait_until(functools.partial(_remove_cgroup, directory), 10, f"removal of {directory}")


def _remove_cgroup(directory: Path) -> bool:
    """rmdir a cgroup; False while it is still busy (a killed task not yet released)."""
    try:
        directory.rmdir()
    except FileNotFoundError:
        return True
    except OSError as error:
        if error.errno == errno.EBUSY:
            return False
        raise
    return True
