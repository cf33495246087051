"""The systemd units in config/: each scores at most 4.0 ("OK") in `systemd-analyze security`, unless the
unit says why not beside the exception, and each timer has its service."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CONFIG = Path(__file__).resolve().parents[2] / "config"
SERVICES = sorted(CONFIG.glob("*.service"))
TIMERS = sorted(CONFIG.glob("*.timer"))
MAX_EXPOSURE = 4.0
# A unit that cannot score this writes `# security-exception: <why>` beside its settings.
EXCEPTION = re.compile(r"^# security-exception: (\S.*)$", re.MULTILINE)
REQUIRE_ENV = "JOBCARBON_REQUIRE_DEB"


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but systemd-analyze is not installed (apt-get install systemd)")
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    return found


def exposure(unit: Path) -> float:
    result = subprocess.run(
        [systemd_analyze(), "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert found, f"no score for {unit.name}: {result.stdout[-500:]} {result.stderr[-500:]}"
    return float(found.group(1))


def test_the_package_ships_the_expected_units() -> None:
    names = {unit.name for unit in SERVICES + TIMERS}
    for expected in ("jobcarbon-serve.service", "jobcarbon-agent.service", "jobcarbon-deliver.timer"):
        assert expected in names
    assert "jobcarbon-report.timer" in names


@pytest.mark.parametrize("unit", SERVICES, ids=[unit.name for unit in SERVICES])
def test_unit_is_hardened(unit: Path) -> None:
    score = exposure(unit)
    text = unit.read_text()
    if score > MAX_EXPOSURE:
        reason = EXCEPTION.search(text)
        assert reason, f"{unit.name} scores {score} > {MAX_EXPOSURE} and gives no `# security-exception:`"
    for setting in ("NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes", "ProtectHome=yes"):
        assert setting in text.splitlines(), f"{unit.name} lacks {setting}"
    assert re.search(r"^CapabilityBoundingSet=", text, re.MULTILINE)
    assert re.search(r"^RestrictAddressFamilies=", text, re.MULTILINE)


def test_query_service_keeps_peer_credentials_real() -> None:
    """A user namespace (PrivateUsers=) would show every caller as nobody to SO_PEERCRED."""
    assert "PrivateUsers=" not in (CONFIG / "jobcarbon-serve.service").read_text()


def test_agent_sees_what_it_samples() -> None:
    """RAPL in /sys, the node's CPU time in /proc/stat, NVML's /dev/nvidia*: none may be hidden."""
    text = (CONFIG / "jobcarbon-agent.service").read_text().splitlines()
    for hidden in ("PrivateDevices=yes", "ProcSubset=pid", "ProtectProc=invisible", "PrivateUsers=yes"):
        assert hidden not in text


@pytest.mark.parametrize("timer", TIMERS, ids=[timer.name for timer in TIMERS])
def test_every_timer_has_its_service(timer: Path) -> None:
    assert (CONFIG / timer.name.replace(".timer", ".service")).exists()
