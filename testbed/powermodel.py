"""Simulated RAPL powercap trees whose counters follow the node's real CPU load.

`build_powercap_tree` writes plain directories shaped like /sys/class/powercap (names and values as
drivers/powercap/intel_rapl_common.c produces them); `Simulator` integrates a `PowerModel` into each
zone's `energy_uj`, wrapping at `max_energy_range_uj`, and records the true joules for checking.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

KERNEL_RANGE_UJ = 262143328850  # max_energy_range_uj of a typical Intel package (32-bit, 61 µJ)
TESTBED_RANGE_UJ = 2_000_000_000  # 2 kJ: wraps every ~13 s at 150 W, so test beds see it happen
SUMMED = ("package", "dram")
BUILD_OPTIONS = ("sysfs", "packages", "dram", "psys", "max_energy_range_uj", "tdp_w")


def build_powercap_tree(
    sysfs: Path,
    packages: int = 1,
    dram: bool = True,
    amd: bool = False,
    psys: bool = False,
    mmio_duplicate: bool = False,
    max_energy_range_uj: int = KERNEL_RANGE_UJ,
    tdp_w: float = 150.0,
    uncore: bool = False,
) -> None:
    """Write class/powercap zones numbered as the kernel registers them (psys after package 0)."""
    root = _simulated(sysfs) / "class" / "powercap"
    _write(root / "intel-rapl" / "enabled", "1")
    top = 0
    for package in range(packages):
        parent = root / f"intel-rapl:{top:x}"
        limits = () if amd else _package_limits(tdp_w)
        _write_zone(parent, f"package-{package}", max_energy_range_uj, limits, top)
        subzones = ["core"] + (["uncore"] if uncore and not amd else [])
        subzones += ["dram"] if dram and not amd else []
        for index, name in enumerate(subzones):
            limits = () if amd else (("long_term", 0.0, 976),)
            sub = parent.parent / f"{parent.name}:{index:x}"
            _write_zone(sub, name, max_energy_range_uj, limits, top + index + 1)
        top += 1
        if package == 0 and psys and not amd:
            _write_zone(root / f"intel-rapl:{top:x}", "psys", max_energy_range_uj, (), 9)
            top += 1
    if mmio_duplicate:
        _write(root / "intel-rapl-mmio" / "enabled", "1")
        mmio = root / "intel-rapl-mmio:0"
        _write_zone(mmio, "package-0", max_energy_range_uj, _package_limits(tdp_w), 0)


def _package_limits(tdp_w: float) -> tuple[tuple[str, float, int], ...]:
    """PL1 at TDP over ~1 s and PL2 at 1.2 x TDP over ~2.4 ms, as a server BIOS sets them."""
    return ("long_term", tdp_w, 999424), ("short_term", tdp_w * 1.2, 2440)


def _write_zone(
    path: Path, name: str, range_uj: int, limits: Iterable[tuple[str, float, int]], seed: int
) -> None:
    _write(path / "name", name)
    _write(path / "enabled", "1")
    _write(path / "max_energy_range_uj", str(range_uj))
    _write(path / "energy_uj", str((seed + 1) * range_uj // 11 % range_uj))  # arbitrary start
    for index, (constraint, limit_w, window_us) in enumerate(limits):
        _write(path / f"constraint_{index}_name", constraint)
        _write(path / f"constraint_{index}_power_limit_uw", str(round(limit_w * 1e6)))
        _write(path / f"constraint_{index}_time_window_us", str(window_us))
        _write(path / f"constraint_{index}_max_power_uw", str(round(limit_w * 1e6)))


def _write(path: Path, text: str) -> None:
    """Replace the file atomically: a concurrent reader sees the old or the new value, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text + "\n", encoding="ascii")
    os.replace(temporary, path)


def zone_channels(sysfs: Path) -> dict[str, list[Path]]:
    """Zone directories by channel id ("package-0", "dram-0", "core-0", "psys"); mirrors share one."""
    root = Path(sysfs) / "class" / "powercap"
    names = {p.name: (p / "name").read_text().strip() for p in root.glob("*:*") if p.is_dir()}
    channels: dict[str, list[Path]] = {}
    for dirname in sorted(names):
        parent = dirname.rsplit(":", 1)[0] if dirname.count(":") > 1 else None
        name = names[dirname]
        channel = f"{name}-{names[parent].removeprefix('package-')}" if parent else name
        channels.setdefault(channel, []).append(root / dirname)
    return channels


def set_energy(sysfs: Path, zone_name_or_dir: str, uj: int) -> None:
    """Set one zone's counter by directory ("intel-rapl:0:1") or channel ("dram-0"), atomically."""
    direct = _simulated(sysfs) / "class" / "powercap" / zone_name_or_dir
    dirs = [direct] if direct.is_dir() else zone_channels(sysfs).get(zone_name_or_dir)
    if not dirs:
        raise KeyError(f"no powercap zone {zone_name_or_dir!r} under {sysfs}")
    for path in dirs:
        _write(path / "energy_uj", str(int(uj)))


@dataclass(frozen=True)
class PowerModel:
    """Watts per zone as a linear function of node CPU utilisation (0..1)."""

    idle_w: float = 40.0
    max_w: float = 150.0
    dram_idle_w: float = 4.0
    dram_max_w: float = 12.0
    core_share: float = 0.7  # PP0 part of the package power
    uncore_share: float = 0.05  # PP1 (client graphics) part of the package power
    platform_w: float = 30.0  # what psys sees beyond the packages and DRAM

    def package_w(self, busy: float) -> float:
        return self.idle_w + (self.max_w - self.idle_w) * _clamp(busy)

    def dram_w(self, busy: float) -> float:
        return self.dram_idle_w + (self.dram_max_w - self.dram_idle_w) * _clamp(busy)

    def channel_w(self, channels: Iterable[str], busy: float) -> dict[str, float]:
        """Power of every channel; nested ones are shares of, and psys the sum over, the rest."""
        package, dram = self.package_w(busy), self.dram_w(busy)
        by_kind = {"package": package, "dram": dram, "core": package * self.core_share}
        by_kind["uncore"] = package * self.uncore_share
        watts = {c: by_kind.get(_kind(c), 0.0) for c in channels}
        summed = sum(w for c, w in watts.items() if _kind(c) in SUMMED)
        return {c: summed + self.platform_w if _kind(c) == "psys" else w for c, w in watts.items()}


def read_cpu_jiffies(procfs: Path) -> tuple[int, int]:
    """(busy, total) jiffies from the aggregate `cpu` line of /proc/stat (guest is inside user)."""
    with open(Path(procfs) / "stat", "rb") as handle:
        fields = [int(value) for value in handle.readline().split()[1:9]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_fraction(previous: tuple[int, int], current: tuple[int, int]) -> float:
    """Share of CPU time spent busy between two `read_cpu_jiffies` samples."""
    total = current[1] - previous[1]
    return _clamp((current[0] - previous[0]) / total) if total > 0 else 0.0


class Simulator:
    """Advances every zone's counter by model power x time; `step` needs no real clock."""

    def __init__(
        self,
        sysfs: Path,
        procfs: Path = Path("/proc"),
        model: PowerModel | None = None,
        period_s: float = 0.2,
        ground_truth: Path | None = None,
    ):
        self.sysfs, self.procfs, self.period_s = _simulated(sysfs), Path(procfs), period_s
        self.model = model or PowerModel()
        self.ground_truth = ground_truth
        self.channels = zone_channels(self.sysfs)
        zones = [path for paths in self.channels.values() for path in paths]
        self._start_uj = {p: int((p / "energy_uj").read_text()) for p in zones}
        self._range_uj = {p: int((p / "max_energy_range_uj").read_text()) for p in zones}
        self.total_j = dict.fromkeys(self.channels, 0.0)
        self.elapsed_s = 0.0
        self.stopping = False
        self._jiffies: tuple[int, int] | None = None

    def step(self, busy: float, dt_s: float) -> dict[str, float]:
        """Integrate `dt_s` seconds at `busy` utilisation; write counters and ground truth."""
        added = {c: w * dt_s for c, w in self.model.channel_w(self.channels, busy).items()}
        for channel, joules in added.items():
            self.total_j[channel] += joules
            for path in self.channels[channel]:
                _write(path / "energy_uj", str(self.counter_uj(path, channel)))
        self.elapsed_s += dt_s
        if self.ground_truth:
            _write(self.ground_truth, json.dumps(self.truth(busy), indent=1, sort_keys=True))
        return added

    def counter_uj(self, path: Path, channel: str) -> int:
        """The zone's counter: start plus true energy, modulo its range as the 32-bit MSR wraps."""
        return self._unwrapped_uj(path, channel) % self._range_uj[path]

    def wraps(self, channel: str) -> int:
        """How many times the channel's (first) zone counter has wrapped since the start."""
        path = self.channels[channel][0]
        return self._unwrapped_uj(path, channel) // self._range_uj[path]

    def _unwrapped_uj(self, path: Path, channel: str) -> int:
        return self._start_uj[path] + int(self.total_j[channel] * 1e6)

    def truth(self, busy: float) -> dict[str, object]:
        """Cumulative true joules per channel; `node_j` sums what RAPL users may sum."""
        return {
            "version": 1,
            "time_utc": datetime.now(UTC).isoformat(),
            "time_s": time.time(),
            "elapsed_s": self.elapsed_s,
            "busy_fraction": busy,
            "joules": self.total_j,
            "node_j": sum(j for c, j in self.total_j.items() if _kind(c) in SUMMED),
            "wraps": {channel: self.wraps(channel) for channel in self.channels},
        }

    def sample_busy(self) -> float:
        """Busy fraction of the real node since the previous call (0 on the first)."""
        current = read_cpu_jiffies(self.procfs)
        previous, self._jiffies = self._jiffies, current
        return busy_fraction(previous, current) if previous else 0.0

    def run(self, periods: int = 0) -> int:
        """Step once per period until `stopping` (set by SIGTERM) or `periods` steps; one
        /proc/stat read, a few small writes per step."""
        self.sample_busy()
        last, done = time.monotonic(), 0
        while not self.stopping and not (periods and done >= periods):
            time.sleep(self.period_s)  # a signal handler runs during the sleep; PEP 475 resumes it
            now = time.monotonic()
            self.step(self.sample_busy(), now - last)
            last, done = now, done + 1
        return done

    def stop_on_signals(self) -> None:
        """Make SIGTERM and SIGINT finish the current period and return from `run`."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._request_stop)

    def _request_stop(self, signum: int, frame: object) -> None:
        self.stopping = True


def _simulated(sysfs: Path) -> Path:
    """Refuse the real /sys: the builder writes power limits and the simulator writes counters."""
    if Path("/sys") in (real := Path(sysfs).resolve(), *real.parents):
        raise ValueError(f"{sysfs} is the real sysfs, not a simulated tree")
    return Path(sysfs)


def _kind(channel: str) -> str:
    return channel.split("-", 1)[0]


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


def main(argv: list[str] | None = None) -> int:
    """`build` writes a tree; `run` (optionally `--build`) simulates it until SIGTERM."""
    args = _parser().parse_args(argv)
    if args.command == "build" or getattr(args, "build", False):
        build_powercap_tree(**{option: vars(args)[option] for option in BUILD_OPTIONS})
    if args.command == "run":
        model = PowerModel(args.idle_w, args.tdp_w, args.dram_idle_w, args.dram_max_w)
        simulator = Simulator(args.sysfs, args.procfs, model, args.period, args.ground_truth)
        simulator.stop_on_signals()
        simulator.run(args.periods)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python3 -m testbed.powermodel", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="write a simulated powercap tree and exit")
    run = commands.add_parser("run", help="drive the tree's counters from real CPU load")
    for sub in (build, run):
        sub.add_argument("--sysfs", type=Path, required=True)
        sub.add_argument("--packages", type=int, default=1)
        sub.add_argument("--dram", action=argparse.BooleanOptionalAction, default=True)
        sub.add_argument("--psys", action="store_true")
        sub.add_argument("--max-energy-range-uj", type=int, default=TESTBED_RANGE_UJ)
        sub.add_argument("--tdp-w", type=float, default=150.0, help="also the full-load power")
    run.add_argument("--ground-truth", type=Path, required=True)
    run.add_argument("--build", action="store_true", help="write the tree first")
    run.add_argument("--procfs", type=Path, default=Path("/proc"))
    run.add_argument("--period", type=float, default=0.2)
    run.add_argument("--periods", type=int, default=0, help="stop after N periods (0: never)")
    run.add_argument("--idle-w", type=float, default=40.0)
    run.add_argument("--dram-idle-w", type=float, default=4.0)
    run.add_argument("--dram-max-w", type=float, default=12.0)
    return parser


if __name__ == "__main__":
    sys.exit(main())
