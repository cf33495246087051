"""`jobcarbon doctor`: a pre-flight of one node, one verdict line per finding (ok, absent, warning, error).

The checks are small functions in a list, each taking the `Site` (the loaded configuration and Slurm's
running one) and returning its lines; a bug in one is reported as its error and hides no other.
`docs/install.md` lists them with why each matters and how to fix it.
"""

from __future__ import annotations

from collections.abc import Callable

from slurm_plugin import config as config_module
from slurm_plugin.cli.doctor import node, site, slurm
from slurm_plugin.cli.doctor.base import Check, Site

__all__ = ["CHECKS", "Check", "Site", "run"]

CHECKS: tuple[Callable[[Site], list[Check]], ...] = (
    node.check_sensors,
    node.check_cpu_power,
    node.check_spool,
    node.check_outbox,
    node.check_ledger,
    node.check_database,
    site.check_database_files,
    site.check_secrets,
    site.check_pue,
    site.check_timezone,
    site.check_zone,
    slurm.check_slurm,
    slurm.check_prolog,
    slurm.check_epilog,
    slurm.check_prolog_flags,
    slurm.check_prolog_timeout,
    slurm.check_slurm_cgroup,
)


def run(config: config_module.Config) -> list[Check]:
    """Every check on a loaded configuration (one that does not load is reported by the command)."""
    source = str(config.source) if config.source else "no file: built-in defaults"
    slurm_settings, problem = slurm.read_slurm()
    here = Site(config, slurm_settings, problem)
    checks = [Check("config", "ok", source)]
    for check in CHECKS:
        try:
            checks.extend(check(here))
        except Exception as exc:  # a check's bug must not hide the other checks
            checks.append(
                Check(check.__name__.removeprefix("check_"), "error", f"{type(exc).__name__}: {exc}")
            )
    return checks
