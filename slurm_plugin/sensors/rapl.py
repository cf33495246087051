"""RAPL energy counters from the Linux powercap tree: raw `energy_uj` per package and DRAM zone.

Imported by the long-running root node agent, so stdlib only. Deltas and wraparound are left to
`slurm_plugin.node.counters.EnergyCounter(joules_per_unit=1e-6, wrap=zone.max_energy_range_uj)`.
Layout and names: Documentation/power/powercap/powercap.rst, drivers/powercap/intel_rapl_common.c.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from slurm_plugin.sensors.base import Finding, Probe, Reading, Status
from slurm_plugin.sensors.files import read_int

# Several drivers can expose the same package counter; the first one present wins. intel-rapl is the
# MSR driver (also AMD Zen), -tpmi the newer Xeon interface, -mmio the thermal driver's mirror of it.
CONTROL_TYPES = ("intel-rapl", "intel-rapl-tpmi", "intel-rapl-mmio")
SUMMED_KINDS = ("package", "dram")
# Zone directories are "<control type>:<id>[:<id>]" with hex ids (powercap_sys.c: "%s:%x").
_ZONE_DIR = re.compile(r"^(?P<control>[a-z][a-z-]*):[0-9a-f]+(?::[0-9a-f]+)*$")
# intel_rapl_common.c names package zones "package-%d" or "package-%d-die-%d".
_PACKAGE = re.compile(r"^package-(?P<package>\d+)(?:-die-\d+)?$")
_ROOT_ONLY = "energy_uj is root-only since Linux 5.10 (CVE-2020-8694); run the agent as root"
_MAX_CONSTRAINTS = 8


@dataclass(frozen=True)
class RaplZone:
    """A powercap zone whose counter is summed: a package (or die) or the DRAM under it."""

    name: str
    kind: str
    package: int
    path: Path
    max_energy_range_uj: int | None
    tdp_w: float | None
    control_type: str
    channel: str  # reading id: "package-0", "package-0-die-1", "dram-0", "dram-0-die-1"


@dataclass(frozen=True)
class _Found:
    """A zone directory as discovered, before deciding whether its counter is used."""

    dirname: str
    path: Path
    name: str
    parent_name: str | None


class RaplSensor:
    """Discovers RAPL zones once under a configured sysfs root and reads their counters on demand."""

    name = "rapl"

    def __init__(self, sysfs: Path):
        self.sysfs = Path(sysfs)
        self.zones: list[RaplZone] = []
        self._energy_paths: list[str] = []
        self.ignored: list[tuple[str, str]] = []
        found = _discover(self.sysfs)
        candidates = [zone for zone in (self._classify(entry) for entry in found) if zone]
        self.zones = self._deduplicate(candidates)
        self._energy_paths = [str(zone.path / "energy_uj") for zone in self.zones]
        self.absent_reason = "" if self.zones else self._explain_absent(bool(found))

    def read(self) -> list[Reading]:
        """One raw reading per used zone; an unreadable zone gets a status, never an exception."""
        return [_read_zone(zone, path) for zone, path in zip(self.zones, self._energy_paths, strict=True)]

    def probe(self) -> Probe:
        """Which zones are readable here; ignored zones are listed as findings for `jobcarbon doctor`."""
        ignored = tuple(Finding(self.name, Status.OK, f"ignored {zone}: {why}") for zone, why in self.ignored)
        if not self.zones:
            return Probe(Status.ABSENT, self.absent_reason, ignored)
        readings = self.read()
        good = [r.channel for r in readings if r.status is Status.OK]
        bad = [f"{r.channel}: {r.reason}" for r in readings if r.status is not Status.OK]
        if not good:
            denied = all(r.status is Status.UNREADABLE for r in readings)
            return Probe(Status.UNREADABLE if denied else Status.ERROR, "; ".join(bad), ignored)
        message = f"{len(good)} zone(s) readable: {', '.join(good)}"
        return Probe(Status.OK, message + (f"; not readable: {'; '.join(bad)}" if bad else ""), ignored)

    def close(self) -> None:
        """Nothing is held: every read opens its counter afresh."""

    def _classify(self, entry: _Found) -> RaplZone | None:
        """The zone if its counter is summed, else record why it is not and return None."""
        control = entry.dirname.split(":", 1)[0]
        kind, package, channel = _identify(entry.name, entry.parent_name)
        why = _why_not_summed(control, kind, entry.name, entry.parent_name)
        if why or package is None:
            self.ignored.append((entry.dirname, why or f"{entry.name}: no package index"))
            return None
        return RaplZone(
            name=entry.name,
            kind=kind,
            package=package,
            path=entry.path,
            max_energy_range_uj=_read_optional_int(entry.path / "max_energy_range_uj"),
            tdp_w=_long_term_limit_w(entry.path),
            control_type=control,
            channel=channel,
        )

    def _deduplicate(self, candidates: list[RaplZone]) -> list[RaplZone]:
        """Per (package, kind), keep the zones of the most preferred control type only."""
        best: dict[tuple[int, str], str] = {}
        for zone in candidates:
            key = (zone.package, zone.kind)
            if key not in best or _rank(zone.control_type) < _rank(best[key]):
                best[key] = zone.control_type
        used = []
        for zone in candidates:
            chosen = best[(zone.package, zone.kind)]
            if zone.control_type == chosen:
                used.append(zone)
            else:
                why = f"{zone.name}: same counter as the {chosen} zone, which is used instead"
                self.ignored.append((zone.path.name, why))
        return sorted(used, key=lambda z: (z.package, SUMMED_KINDS.index(z.kind), z.channel))

    def _explain_absent(self, any_zone: bool) -> str:
        root = self.sysfs / "class" / "powercap"
        if not any_zone:
            return f"no powercap zones under {root} (no intel_rapl_msr driver, a CPU without RAPL, or a VM)"
        skipped = "; ".join(f"{zone}: {why}" for zone, why in self.ignored)
        return f"no RAPL package zones under {root} ({skipped})"


def _discover(sysfs: Path) -> list[_Found]:
    """Zone directories from class/powercap (flat) and devices/virtual/powercap (nested)."""
    paths: dict[str, Path] = {}
    for path in _subdirs(sysfs / "class" / "powercap"):
        if _ZONE_DIR.match(path.name):
            paths.setdefault(path.name, path)
    for control_dir in _subdirs(sysfs / "devices" / "virtual" / "powercap"):
        _walk_nested(control_dir, paths, depth=3)
    names = {dirname: _read_optional_text(path / "name") for dirname, path in paths.items()}
    found = []
    for dirname in sorted(paths, key=_zone_sort_key):
        parent = dirname.rsplit(":", 1)[0] if dirname.count(":") > 1 else None
        name = names[dirname]
        if name is None:
            continue  # not a zone (or vanished); a zone always has a name attribute
        parent_name = names.get(parent) if parent else None
        found.append(_Found(dirname, paths[dirname], name, parent_name))
    return found


def _walk_nested(directory: Path, paths: dict[str, Path], depth: int) -> None:
    """Collect zone directories nested as parent/child (only zone-named children are followed)."""
    if depth == 0:
        return
    for path in _subdirs(directory):
        if _ZONE_DIR.match(path.name):
            paths.setdefault(path.name, path)
            _walk_nested(path, paths, depth - 1)


def _identify(name: str, parent_name: str | None) -> tuple[str, int | None, str]:
    """(kind, package index, channel id) from a zone's own name and its parent's name."""
    own = _PACKAGE.match(name)
    if own and parent_name is None:
        return "package", int(own["package"]), name
    parent = _PACKAGE.match(parent_name or "")
    package = int(parent["package"]) if parent else None
    suffix = parent_name.removeprefix("package-") if parent and parent_name else ""
    if name.startswith("psys"):
        index = name.removeprefix("psys").removeprefix("-")
        return "psys", int(index) if index.isdigit() else 0, name
    return name, package, f"{name}-{suffix}" if suffix else name


def _why_not_summed(control: str, kind: str, name: str, parent_name: str | None) -> str:
    """Empty when the zone's counter is summed, else the reason shown by `jobcarbon doctor`."""
    if control not in CONTROL_TYPES:
        return f"{name}: control type {control} is not RAPL"
    if kind in ("core", "uncore"):
        return f"{name}: nested in {parent_name}, already counted there"
    if kind == "psys":
        return f"{name}: platform domain, already includes the packages"
    if kind == "dram" and parent_name is None:
        return "dram: not under a package zone"
    if kind not in SUMMED_KINDS:
        return f"{name}: unknown RAPL domain"
    return ""


def _read_zone(zone: RaplZone, path: str) -> Reading:
    """The zone's counter; a failure becomes the reading's status, never an exception."""
    try:
        value = read_int(path)
    except PermissionError:
        return Reading(zone.channel, None, Status.UNREADABLE, f"{path}: {_ROOT_ONLY}")
    except OSError as exc:
        return Reading(zone.channel, None, Status.ERROR, f"{path}: {exc.strerror or exc}")
    except ValueError:
        return Reading(zone.channel, None, Status.ERROR, f"{path}: not a counter value")
    return Reading(zone.channel, value)


def _read_optional_int(path: Path) -> int | None:
    try:
        return read_int(path)
    except (OSError, ValueError):
        return None


def _read_optional_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def _long_term_limit_w(path: Path) -> float | None:
    """The long_term constraint's power limit (PL1, close to TDP); AMD zones have no constraints."""
    for index in range(_MAX_CONSTRAINTS):
        name = _read_optional_text(path / f"constraint_{index}_name")
        if name is None:
            return None
        if name == "long_term":
            limit_uw = _read_optional_int(path / f"constraint_{index}_power_limit_uw")
            return limit_uw / 1e6 if limit_uw else None
    return None


def _subdirs(directory: Path) -> list[Path]:
    try:
        return [path for path in directory.iterdir() if path.is_dir()]
    except OSError:
        return []


def _zone_sort_key(dirname: str) -> tuple[str, tuple[int, ...]]:
    control, _, ids = dirname.partition(":")
    return control, tuple(int(part, 16) for part in ids.split(":"))


def _rank(control_type: str) -> int:
    return CONTROL_TYPES.index(control_type)
