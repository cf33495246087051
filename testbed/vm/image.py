"""The VM bed's one disk image: Debian 13 (Slurm 24.11, systemd, a 6.12 kernel) with jobcarbon in it.

The Debian root comes from `mmdebstrap` (cached as a tar under /var/cache/jobcarbon-ci/vm, remade when
the package list or mirror changes); the image is rebuilt when any file it is made from changes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from testbed.host import REPO_ROOT, ClusterError, rewrite_hook_defaults
from testbed.nvml_standin import build as build_nvml_standin
from testbed.vm import config
from testbed.vm.process import check

CACHE = Path("/var/cache/jobcarbon-ci/vm")
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


def debian_mirror(sources: Path = Path("/etc/apt/sources.list.d/debian.sources")) -> str:
    """The Debian mirror this machine's apt uses (its deb822 `URIs:`), else deb.debian.org."""
    with contextlib.suppress(OSError):  # no deb822 sources: the default mirror
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
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
    check([*command, f"deb {mirror} {SUITE} main"], timeout=1200)
    partial.replace(target)
    return target


def image_inputs() -> list[Path]:
    """The files whose content goes into the node image besides the base root."""
    package = (REPO_ROOT / "slurm_plugin").rglob("*")
    files = sorted(p for p in package if p.is_file() and "__pycache__" not in p.parts)
    files += [REPO_ROOT / "prolog/jobcarbon-prolog", REPO_ROOT / "epilog/jobcarbon-epilog"]
    files += [REPO_ROOT / "testbed" / name for name in GUEST_MODULES]
    here = Path(__file__).parent
    return [*files, REPO_ROOT / "testbed/nvml_standin.c", here / "config.py", here / "image.py"]


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
        check(["tar", "--numeric-owner", "-xf", str(base), "-C", str(root)])
        _install_jobcarbon(root, wheels, work)
        _configure(root)
        for name in ("vmlinuz", "initrd.img"):
            shutil.copy(next((root / "boot").glob(f"{name}-*")), work / name)
        disk = work / "disk.img"
        check(["truncate", "-s", "3G", str(disk)])
        check(["mkfs.ext4", "-q", "-F", "-L", "jcvm", "-d", str(root), str(disk)], timeout=600)
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
    site = root / config.GUEST_SITE
    pip = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-index", "--no-deps"]
    pip += ["--root-user-action=ignore", "-q", "--find-links", str(wheels), "--target", str(site)]
    check([*pip, *PURE_WHEELS], timeout=300)
    caches = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO_ROOT / "slurm_plugin", site / "slurm_plugin", ignore=caches)
    _write(root / "usr/local/bin/jobcarbon", config.JOBCARBON_SCRIPT, 0o755)
    defaults = {"JOBCARBON_PYTHON": config.GUEST_PYTHON, "JOBCARBON_CONFIG": "/etc/jobcarbon/config.yaml"}
    for hook in ("prolog/jobcarbon-prolog", "epilog/jobcarbon-epilog"):
        text = rewrite_hook_defaults((REPO_ROOT / hook).read_text(), defaults)
        _write(root / "usr/lib/jobcarbon" / Path(hook).name, text, 0o755)
    guest = root / config.GUEST_TESTBED.lstrip("/")
    for name in GUEST_MODULES:
        _write(guest / "testbed" / name, (REPO_ROOT / "testbed" / name).read_text())
    build_nvml_standin(work / "nvml")
    shutil.move(work / "nvml", guest / "nvml")


def _configure(root: Path) -> None:
    """Slurm, jobcarbon, systemd units and the hosts file, the same on every node."""
    hosts = "127.0.0.1 localhost\n" + "".join(f"{node.address} {node.name}\n" for node in config.NODES)
    _write(root / "etc/hosts", hosts)
    _write(root / config.SLURM_CONF.lstrip("/"), config.slurm_conf())
    _write(root / config.CGROUP_CONF_PATH.lstrip("/"), config.CGROUP_CONF)
    _write(root / "etc/slurm/gres.conf", config.gres_conf())
    _write(root / "etc/jobcarbon/config.yaml", config.JOBCARBON_CONFIG)
    units = root / "etc/systemd/system"
    for name, text in config.UNITS.items():
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
    for uid, user in enumerate(config.USERS, start=2001):
        check(["chroot", str(root), "useradd", "--uid", str(uid), "--create-home", user])


def _guest_ids(root: Path, user: str) -> tuple[int, int]:
    """uid and gid of a user of the guest (its /etc/passwd; the host's may differ)."""
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3])
    raise ClusterError(f"the image has no user {user}")


def _write(path: Path, content: str | bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)
    path.chmod(mode)
