"""Doctor's checks of Slurm's side: the hooks slurm.conf names, PrologFlags, timeouts and cgroups.

Read from `scontrol show config` (the `scontrol` first on PATH, 5 s at most), so they see what slurmd
runs with, not a file that may differ from it; without scontrol they are one warning, not a failure.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from pathlib import Path

from slurm_plugin.cli.doctor.base import Check, Site, Slurm, open_to_others

SCONTROL_TIMEOUT_S = 5.0
SETTING = re.compile(r"^(\w+)\s*=\s*(.*?)\s*$")
HOOK_MARK = "slurm_plugin"  # what jobcarbon's hook scripts (this release's and older) run
PYTHON_DEFAULT = re.compile(r'^:\s*"\$\{JOBCARBON_PYTHON:=([^}"]+)\}"', re.MULTILINE)
PYTHONPATH_DEFAULT = re.compile(r'^:\s*"\$\{JOBCARBON_PYTHONPATH:=([^}"]*)\}"', re.MULTILINE)
NO_TIMEOUT = {"65534", "UNLIMITED", "0"}  # how scontrol prints "wait for ever" (NO_VAL16)


def read_slurm() -> tuple[Slurm | None, str]:
    """Slurm's running configuration, or None and why not."""
    scontrol = shutil.which("scontrol")
    if scontrol is None:
        return None, "scontrol not found on PATH"
    try:
        done = subprocess.run(
            [scontrol, "show", "config"],
            capture_output=True,
            text=True,
            timeout=SCONTROL_TIMEOUT_S,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return None, f"{scontrol} show config did not answer in {SCONTROL_TIMEOUT_S:g} s"
    except OSError as exc:
        return None, f"{scontrol}: {exc.strerror}"
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return None, f"{scontrol} show config failed: {why}"
    found = Slurm({m[1]: m[2] for line in done.stdout.splitlines() if (m := SETTING.match(line.strip()))})
    if found.get("ConstrainCores") is None:
        return Slurm({**_cgroup_conf(found.get("SLURM_CONF")), **found.values}), ""
    return found, ""


def _cgroup_conf(slurm_conf: str | None) -> dict[str, str]:
    """cgroup.conf beside slurm.conf, for Slurm versions whose scontrol does not print it."""
    if not slurm_conf:
        return {}
    try:
        text = (Path(slurm_conf).parent / "cgroup.conf").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    pairs = (line.split("#", 1)[0].strip().partition("=") for line in text.splitlines())
    return {key.strip(): value.strip() for key, sep, value in pairs if sep and key.strip()}


def check_slurm(site: Site) -> list[Check]:
    """Whether slurm.conf could be read at all; the checks below say nothing without it."""
    if site.slurm is None:
        return [Check("slurm", "warning", f"{site.slurm_problem}: hooks and slurm.conf not checked")]
    where, version = site.slurm.get("SLURM_CONF") or "slurm.conf", site.slurm.get("SLURM_VERSION") or "?"
    return [Check("slurm", "ok", f"{where} (Slurm {version})")]


def check_prolog(site: Site) -> list[Check]:
    return _hooks(site, "Prolog")


def check_epilog(site: Site) -> list[Check]:
    return _hooks(site, "Epilog")


def _hooks(site: Site, key: str) -> list[Check]:
    """Every script `key` names exists and is executable, and jobcarbon's is among them and can run."""
    if site.slurm is None:
        return []
    name = key.lower()
    setting = site.slurm.get(key)
    if setting is None:
        return [Check(name, "error", f"slurm.conf has no {key}=: jobcarbon's {name} never runs")]
    scripts = [Path(p) for pattern in setting.split(",") for p in sorted(glob.glob(pattern.strip()))]
    if not scripts:
        return [Check(name, "error", f"{key}={setting} names no file on this node")]
    broken = [Check(name, "error", problem) for script in scripts if (problem := _not_runnable(script))]
    ours = [script for script in scripts if _is_jobcarbon(script)]
    if not ours:
        # A site's own wrapper may call jobcarbon's hook: a warning, since only the wrapper's author knows.
        detail = f"jobcarbon's {name} is not among {key}={setting} (fine if one of them calls it)"
        return [*broken, Check(name, "warning", detail)]
    return broken + [_interpreter(name, script) for script in ours]


def _not_runnable(script: Path) -> str | None:
    if not script.is_file():
        return f"{script} is not a file"
    if not os.access(script, os.X_OK):
        return f"{script} is not executable: slurmd fails the hook and drains the node (chmod 755 it)"
    writable = open_to_others(script, 0o022)
    if writable:
        return f"slurmd runs it as root, yet others may change it: {writable}"
    return None


def _is_jobcarbon(script: Path) -> bool:
    try:
        return HOOK_MARK in script.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def _interpreter(name: str, script: Path) -> Check:
    """The script's own interpreter (shebang) and the Python it runs, which must import jobcarbon."""
    text = script.read_text(encoding="utf-8", errors="replace")
    shebang = text.splitlines()[0][2:].split() if text.startswith("#!") else []
    if not shebang or not os.access(shebang[0], os.X_OK):
        return Check(name, "error", f"{script}: interpreter {' '.join(shebang) or '(no #! line)'} not found")
    python = PYTHON_DEFAULT.search(text)
    if python is None:
        return Check(name, "ok", f"{script} (no JOBCARBON_PYTHON default to check)")
    path = PYTHONPATH_DEFAULT.search(text)
    problem = _cannot_import(python[1], path[1] if path else "")
    if problem:
        return Check(name, "error", f"{script}: JOBCARBON_PYTHON {python[1]} {problem}")
    return Check(name, "ok", f"{script} runs {python[1]}, which imports slurm_plugin")


def _cannot_import(python: str, pythonpath: str) -> str | None:
    """Why `python`, started as the hooks start it, cannot import slurm_plugin; None when it can."""
    if not os.access(python, os.X_OK):
        return "not found or not executable"
    try:
        done = subprocess.run(
            [python, "-P", "-s", "-c", "import slurm_plugin"],
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": pythonpath},
            capture_output=True,
            text=True,
            timeout=SCONTROL_TIMEOUT_S,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"did not start: {exc}"
    last = (done.stderr.strip().splitlines() or [""])[-1]
    return f"cannot import slurm_plugin: {last}" if done.returncode else None


def check_prolog_flags(site: Site) -> list[Check]:
    if site.slurm is None:
        return []
    flags = {f.strip().lower() for f in (site.slurm.get("PrologFlags") or "").split(",") if f.strip()}
    shown = site.slurm.get("PrologFlags") or "(none)"
    if "runinjob" in flags:
        return [
            Check(
                "prolog_flags",
                "error",
                f"PrologFlags={shown}: with RunInJob the prolog runs in the job's cgroup, so the agent it "
                "starts would be charged to and killed with the job; drop RunInJob (not supported for now)",
            )
        ]
    if "contain" not in flags:
        return [
            Check(
                "prolog_flags",
                "warning",
                f"PrologFlags={shown}: add Contain, so the job cgroup exists for the whole allocation",
            )
        ]
    return [Check("prolog_flags", "ok", f"PrologFlags={shown}")]


def check_prolog_timeout(site: Site) -> list[Check]:
    if site.slurm is None:
        return []
    value = site.slurm.get("PrologEpilogTimeout")
    if value is None or value.split()[0].upper() in NO_TIMEOUT:
        return [
            Check(
                "prolog_timeout",
                "warning",
                "no PrologEpilogTimeout: slurmd waits for ever on a hung hook; set e.g. 60",
            )
        ]
    return [Check("prolog_timeout", "ok", f"PrologEpilogTimeout={value}")]


def check_slurm_cgroup(site: Site) -> list[Check]:
    """Job cgroups exist (proctrack or task cgroup) and their cpuset is the job's (ConstrainCores)."""
    if site.slurm is None:
        return []
    proctrack, task = site.slurm.get("ProctrackType") or "", site.slurm.get("TaskPlugin") or ""
    plugins = f"ProctrackType={proctrack or '(none)'} TaskPlugin={task or '(none)'}"
    if "cgroup" not in proctrack + task:
        return [Check("slurm_cgroup", "error", f"{plugins}: no job cgroups to measure; use proctrack/cgroup")]
    cgroup = f"CgroupPlugin={site.slurm.get('CgroupPlugin') or 'autodetect'}"
    constrain = (site.slurm.get("ConstrainCores") or "no").lower()
    if constrain not in ("yes", "true", "1"):
        return [
            Check(
                "slurm_cgroup",
                "warning",
                f"{cgroup}, ConstrainCores={constrain}: the job cgroup's cpuset is every CPU, so jobcarbon "
                "takes the job's CPUs from Slurm's allocation, not the cpuset (set ConstrainCores=yes)",
            )
        ]
    return [Check("slurm_cgroup", "ok", f"{plugins}, {cgroup}, ConstrainCores=yes")]


def slurmd_spool(site: Site) -> Path | None:
    """Slurm's SlurmdSpoolDir on this node (`%n`/`%h` taken as this host), None when unknown."""
    value = site.slurm.get("SlurmdSpoolDir") if site.slurm else None
    if value is None:
        return None
    host = site.config.node or os.uname().nodename.split(".")[0]
    return Path(value.replace("%n", host).replace("%h", host))
