"""Config loading: defaults, and one precise `file:line: key: problem` message for every mistake."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from slurm_plugin import config, config_location
from slurm_plugin.config import Config, ConfigError
from slurm_plugin.errors import JobcarbonError

SOURCE = Path("/etc/jobcarbon/config.yaml")

FULL = """\
# jobcarbon configuration as an admin would write it
cluster: hpc
node: node001
paths:
  sysfs: /sys
  procfs: /proc
  cgroupfs: /sys/fs/cgroup
  spool: /var/spool/jobcarbon
  outbox: /var/spool/jobcarbon/outbox
  log_file: null
sampler:
  interval_s: 5
  stop_timeout_s: 2.5
  journal_fsync: false
cgroup:
  version: v2
  v1_prepend: slurm
  v2_slice: system.slice
cpu:
  tdp_w: 205
  idle_power_w: 60.5
  idle_fraction_of_tdp: 0.25
dram:
  w_per_gb: 0.4
nvml:
  enabled: false
  library: /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1
  slurm_index_order: pci_bus_id
"""


def error(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        config.parse(text, SOURCE)
    return str(caught.value)


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(config.ENV_VAR, raising=False)


# -- values ---------------------------------------------------------------------------------------


def test_defaults() -> None:
    settings = Config()
    assert settings.cluster is None
    assert settings.paths.cgroupfs == Path("/sys/fs/cgroup")
    assert settings.paths.log_file == Path("/var/log/jobcarbon/jobcarbon.log")
    assert settings.sampler.interval_s == 10.0
    assert settings.sampler.journal_fsync is True
    assert settings.cgroup.version == "auto"
    assert settings.cpu.tdp_w is None
    assert settings.cpu.idle_fraction_of_tdp == 0.3
    assert settings.dram.w_per_gb == 0.3725
    assert settings.nvml.slurm_index_order == "minor_number"


def test_every_key_is_read() -> None:
    settings = config.parse(FULL, SOURCE)
    assert settings.cluster == "hpc"
    assert settings.node == "node001"
    assert settings.paths.log_file is None
    assert settings.sampler == config.Sampler(interval_s=5.0, stop_timeout_s=2.5, journal_fsync=False)
    assert settings.cgroup.version == "v2"
    assert settings.cpu == config.Cpu(tdp_w=205.0, idle_power_w=60.5, idle_fraction_of_tdp=0.25)
    assert isinstance(settings.cpu.tdp_w, float)
    assert settings.dram.w_per_gb == 0.4
    assert settings.nvml.library == Path("/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1")
    assert settings.nvml.slurm_index_order == "pci_bus_id"
    assert settings.source == SOURCE


def test_a_partial_file_keeps_the_other_defaults() -> None:
    settings = config.parse("sampler:\n  interval_s: 30\n", SOURCE)
    assert settings.sampler.interval_s == 30.0
    assert settings.sampler.stop_timeout_s == 5.0
    assert settings.paths == config.Paths()


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n"])
def test_empty_file_means_defaults(text: str) -> None:
    settings = config.parse(text, SOURCE)
    assert settings == Config()
    assert settings.source == SOURCE


def test_a_template_with_every_line_commented_out_means_defaults() -> None:
    assert config.parse("---\n# cluster: hpc\n# node: node001\n", SOURCE) == Config()


# -- error messages -------------------------------------------------------------------------------


def test_unknown_top_level_key_lists_the_known_ones() -> None:
    message = error("cluster: hpc\nsampling:\n  interval_s: 5\n")
    assert message.startswith(
        f"{SOURCE}:2: sampling: unknown key (expected one of: accounting, advice, cgroup, cluster, "
    )
    assert "source" not in message


def test_unknown_nested_key_is_dotted() -> None:
    message = error("sampler:\n  interval_s: 5\n  intervall_s: 5\n")
    assert message == (
        f"{SOURCE}:3: sampler.intervall_s: unknown key "
        "(expected one of: interval_s, journal_fsync, journal_sync_interval_s, "
        "slurm_query_s, snapshot_interval_s, stop_timeout_s)"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sampler:\n  interval_s: ten\n", ":2: sampler.interval_s: expected a number, got 'ten'"),
        ("sampler:\n  interval_s: true\n", ":2: sampler.interval_s: expected a number, got True"),
        ("sampler:\n  journal_fsync: 1\n", ":2: sampler.journal_fsync: expected true/false, got 1"),
        ("cluster: 42\n", ":1: cluster: expected a non-empty string or null, got 42"),
        ("cluster: ''\n", ":1: cluster: expected a non-empty string or null, got ''"),
        ("cgroup:\n  version: v3\n", ":2: cgroup.version: expected one of auto, v1, v2, got 'v3'"),
        ("paths:\n  spool: var/spool\n", ":2: paths.spool: expected an absolute path, got 'var/spool'"),
        (
            "paths:\n  log_file: jobcarbon.log\n",
            ":2: paths.log_file: expected an absolute path or null, got 'jobcarbon.log'",
        ),
        ("cpu:\n  tdp_w: 205 W\n", ":2: cpu.tdp_w: expected a number or null, got '205 W'"),
        ("sampler: 10\n", ":1: sampler: expected a mapping of keys"),
        ("sampler:\n", ":1: sampler: expected a mapping of keys"),
        ("- cluster: hpc\n", ":1: <top>: expected a mapping of keys"),
        ("sampler:\n  interval_s: [5]\n", ":2: sampler.interval_s: expected a number, got 'a sequence'"),
    ],
)
def test_wrong_types_name_file_line_and_key(text: str, expected: str) -> None:
    assert error(text) == f"{SOURCE}{expected}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sampler:\n  interval_s: 0\n", ":2: sampler.interval_s: must be greater than 0, got 0.0"),
        ("sampler:\n  stop_timeout_s: -1\n", ":2: sampler.stop_timeout_s: must be greater than 0, got -1.0"),
        ("cpu:\n  tdp_w: -205\n", ":2: cpu.tdp_w: must be greater than 0, got -205.0"),
        ("cpu:\n  idle_power_w: 0\n", ":2: cpu.idle_power_w: must be greater than 0, got 0.0"),
        ("dram:\n  w_per_gb: 0\n", ":2: dram.w_per_gb: must be greater than 0, got 0.0"),
        (
            "cpu:\n  idle_fraction_of_tdp: 1.5\n",
            ":2: cpu.idle_fraction_of_tdp: must be between 0 and 1, got 1.5",
        ),
        (
            "cpu:\n  idle_fraction_of_tdp: -0.1\n",
            ":2: cpu.idle_fraction_of_tdp: must be between 0 and 1, got -0.1",
        ),
        (
            "accounting:\n  market_factors:\n    - {g_co2e_per_kwh: -1, instrument: x}\n",
            ":3: accounting.market_factors[0].g_co2e_per_kwh: must be 0 or more, got -1.0",
        ),
    ],
)
def test_out_of_range_values(text: str, expected: str) -> None:
    assert error(text) == f"{SOURCE}{expected}"


def test_market_factors_per_cluster_and_period() -> None:
    text = (
        "accounting:\n  market_factors:\n"
        "    - {g_co2e_per_kwh: 0, instrument: PPA wind, cluster: hpc, start: 2026-07-01, end: 2027-07-01}\n"
        "    - {g_co2e_per_kwh: 320, instrument: supplier mix}\n"
    )
    ppa, supplier = config.parse(text, SOURCE).accounting.market_factors
    assert ppa == config.MarketFactor(0.0, "PPA wind", "hpc", dt.date(2026, 7, 1), dt.date(2027, 7, 1))
    assert supplier == config.MarketFactor(320.0, "supplier mix")


@pytest.mark.parametrize("fraction", ["0", "1", "0.0", "1.0"])
def test_fraction_bounds_are_inclusive(fraction: str) -> None:
    settings = config.parse(f"cpu:\n  idle_fraction_of_tdp: {fraction}\n", SOURCE)
    assert settings.cpu.idle_fraction_of_tdp == float(fraction)


def test_nan_is_not_a_positive_number() -> None:
    assert ": sampler.interval_s: must be greater than 0" in error("sampler:\n  interval_s: .nan\n")


@pytest.mark.parametrize("text", ["cluster: [a, b]\n", "cpu:\n  tdp_w: {watts: 205}\n"])
def test_a_list_or_mapping_for_an_optional_scalar_is_refused(text: str) -> None:
    assert "expected" in error(text)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("sampler:\n  interval_s: [5\n", 3),
        ("cluster: hpc\n\tnode: x\n", 2),
        ("cluster: 'hpc\n", 2),
        ("cluster: hpc\n  node: x\n", 2),
    ],
)
def test_invalid_yaml_names_the_line(text: str, line: int) -> None:
    assert re.fullmatch(rf"{re.escape(str(SOURCE))}:{line}: invalid YAML: .+", error(text))


# -- finding the file -----------------------------------------------------------------------------


def test_missing_default_file_means_defaults(
    no_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(config_location, "DEFAULT_PATH", tmp_path / "absent.yaml")
    assert config.load() == Config()


def test_missing_default_file_is_an_error_when_required(
    no_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(config_location, "DEFAULT_PATH", tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match=r"absent\.yaml: file not found$"):
        config.load(missing_ok=False)


def test_missing_file_named_by_the_environment_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(config.ENV_VAR, str(tmp_path / "typo.yaml"))
    with pytest.raises(ConfigError, match=r"typo\.yaml: file not found$"):
        config.load()


def test_missing_explicit_file_is_an_error(no_env: None, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        config.load(tmp_path / "absent.yaml")


def test_environment_names_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text("cluster: hpc\n")
    monkeypatch.setenv(config.ENV_VAR, str(path))
    settings = config.load()
    assert settings.cluster == "hpc"
    assert settings.source == path


def test_explicit_path_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "env.yaml").write_text("cluster: from-env\n")
    (tmp_path / "cli.yaml").write_text("cluster: from-cli\n")
    monkeypatch.setenv(config.ENV_VAR, str(tmp_path / "env.yaml"))
    assert config.load(tmp_path / "cli.yaml").cluster == "from-cli"


def test_config_path_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(config.ENV_VAR, raising=False)
    assert config.config_path() == config_location.DEFAULT_PATH
    monkeypatch.setenv(config.ENV_VAR, "")
    assert config.config_path() == config_location.DEFAULT_PATH
    monkeypatch.setenv(config.ENV_VAR, "/srv/jc.yaml")
    assert config.config_path() == Path("/srv/jc.yaml")
    assert config.config_path("/opt/jc.yaml") == Path("/opt/jc.yaml")


def test_empty_file_on_disk(no_env: None, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("")
    assert config.load(path) == Config()


def test_unreadable_file_is_a_config_error(no_env: None, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"cluster: \xff\xfe\n")
    with pytest.raises(ConfigError, match=r"config\.yaml: cannot read: "):
        config.load(path)


def test_a_directory_is_a_config_error(no_env: None, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        config.load(tmp_path)


def test_errors_from_a_loaded_file_name_that_file(no_env: None, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("cluster: hpc\n\nsampler:\n  interval_s: -5\n")
    with pytest.raises(ConfigError) as caught:
        config.load(path)
    assert str(caught.value) == f"{path}:4: sampler.interval_s: must be greater than 0, got -5.0"


def test_a_config_error_is_a_jobcarbon_error_with_exit_2() -> None:
    assert issubclass(ConfigError, JobcarbonError)
    assert ConfigError("x").exit_code == 2
