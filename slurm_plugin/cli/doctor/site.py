"""Doctor's checks of the site's settings: PUE, time zone, grid zone, secret files, the database's modes.

Each is a value that loads fine yet gives wrong figures or leaks data: the configuration's own schema
only knows types and signs.
"""

from __future__ import annotations

import os
from pathlib import Path

from slurm_plugin import config as config_module
from slurm_plugin.cli.doctor.base import Check, Site, open_to_others
from slurm_plugin.intensity import static
from slurm_plugin.storage import dialect

PUE_RANGE = (1.0, 3.0)  # below 1 is impossible; above 3 is a mistyped figure, not a data centre


def check_pue(site: Site) -> list[Check]:
    """Every PUE the footprints may use, the site's and each rule's."""
    accounting = site.config.accounting
    figures = [("accounting.pue", accounting.pue)]
    figures += [(f"accounting.pue_rules[{i}].pue", rule.pue) for i, rule in enumerate(accounting.pue_rules)]
    low, high = PUE_RANGE
    wrong = [
        Check("pue", "error", f"{site.where(key)} {value:g} is not a plausible PUE ({low:g} to {high:g})")
        for key, value in figures
        if not low <= value <= high
    ]
    return wrong or [Check("pue", "ok", ", ".join(f"{key} {value:g}" for key, value in figures))]


def check_timezone(site: Site) -> list[Check]:
    """The zone months and tables are read in; an unknown one stops every local-time command."""
    try:
        config_module.site_timezone(site.config)
    except config_module.ConfigError as exc:
        return [Check("timezone", "error", str(exc))]
    return [Check("timezone", "ok", f"accounting.timezone {site.config.accounting.timezone}")]


def check_zone(site: Site) -> list[Check]:
    """Whether the grid zone names a series or a bundled yearly figure, not a typo that matches neither."""
    accounting = site.config.accounting
    zone = accounting.zone
    if zone is None:
        rung = (
            f"country {accounting.country}"
            if accounting.country
            else "accounting.constant_g_per_kwh"
            if accounting.constant_g_per_kwh
            else "the world average"
        )
        return [
            Check("zone", "warning", f"{site.where('accounting.zone')} is not set: footprints use {rung}")
        ]
    series = [p.name for p in site.config.intensity.providers if p.zone == zone]
    if series:
        return [Check("zone", "ok", f"{zone}: series from {', '.join(series)}")]
    yearly = static.zone_yearly(zone)
    if yearly is not None:
        return [
            Check("zone", "ok", f"{zone}: no series configured, {yearly.source} {yearly.g_per_kwh:g} g/kWh")
        ]
    providers = ", ".join(sorted({p.zone for p in site.config.intensity.providers})) or "none"
    return [
        Check(
            "zone",
            "error",
            f"{site.where('accounting.zone')} {zone!r} is unknown to the configured providers (zones: "
            f"{providers}) and to the bundled {static.ZONES_FILE} (Electricity Maps codes: DE, DK-DK1, GB)",
        )
    ]


def check_secrets(site: Site) -> list[Check]:
    """Token and password files: only their owner (root, or whoever runs jobcarbon) may read them."""
    named = [
        (f"intensity.providers[{i}].token_file", p.token_file)
        for i, p in enumerate(site.config.intensity.providers)
        if p.token_file is not None
    ]
    if site.config.database.password_file:
        named.append(("database.password_file", Path(site.config.database.password_file)))
    if not named:
        return [Check("secrets", "ok", "no token or password file configured")]
    return [_secret(site, key, path) for key, path in named]


def _secret(site: Site, key: str, path: Path) -> Check:
    if not path.exists():
        return Check("secrets", "absent", f"{site.where(key)} {path} does not exist on this host")
    problem = open_to_others(path, 0o077)
    if problem:
        return Check("secrets", "error", f"{site.where(key)}: readable by group/others: {problem}")
    owner = os.stat(path).st_uid
    if owner not in (0, os.geteuid()):
        return Check("secrets", "error", f"{site.where(key)} {path} is owned by uid {owner}: chown root: it")
    return Check("secrets", "ok", f"{key} {path}: owner only")


def check_database_files(site: Site) -> list[Check]:
    """An SQLite database, its -wal and -shm and its directory, closed to other users unless all may see."""
    url = site.config.database.url
    try:
        if dialect.backend_of(url) != dialect.SQLITE:
            return [
                Check("database_files", "ok", "PostgreSQL: access is the server's roles (database check)")
            ]
        database = Path(dialect.sqlite_path(url))
    except dialect.UrlError as exc:
        return [Check("database_files", "error", f"{site.where('database.url')}: {exc}")]
    if not database.exists():
        return [Check("database_files", "absent", f"{database} is not on this host")]
    if site.config.visibility.mode == "all":
        return [Check("database_files", "ok", f"{database}: visibility.mode all, users may read it")]
    files = [database, *(database.with_name(database.name + s) for s in ("-wal", "-shm"))]
    leaks = [problem for path in files if (problem := open_to_others(path, 0o004))]
    if leaks:
        return [
            Check("database_files", "error", f"readable by every user while visibility.mode is own: {leak}")
            for leak in leaks
        ]
    directory = open_to_others(database.parent, 0o002)
    if directory:
        return [Check("database_files", "error", f"anyone may replace the database: {directory}")]
    listed = open_to_others(database.parent, 0o004)
    if listed:
        return [Check("database_files", "warning", f"every user may list the database's directory: {listed}")]
    return [Check("database_files", "ok", f"{database}: closed to other users")]
