"""Fixtures for the sensor tests: the NVML stand-in (testbed/nvml_standin.c) loaded by real pynvml."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from slurm_plugin import config
from testbed import nvml_standin


@dataclass(frozen=True)
class NvmlStandIn:
    """The built stand-in library and this test's config file (named by $NVML_STANDIN_CONFIG)."""

    library: Path
    config: Path

    def write(self, gpus: list[nvml_standin.FakeGpu], epoch_s: float | None = None) -> float:
        """Program the GPUs; the running library picks the change up on its next call."""
        return nvml_standin.write_config(self.config, gpus, epoch_s)

    def settings(self, **changes: object) -> config.Nvml:
        """NVML settings that load the stand-in by path, as the Slurm test bed does."""
        return replace(config.Nvml(library=self.library), **changes)


@pytest.fixture(scope="session")
def nvml_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Compile the stand-in once per session; a process can load only one libnvidia-ml.so.1."""
    try:
        return nvml_standin.build(tmp_path_factory.mktemp("nvml-standin"))
    except nvml_standin.BuildError as exc:
        pytest.skip(f"NVML stand-in cannot be built: {exc}")


@pytest.fixture
def nvml_standin_env(nvml_library: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> NvmlStandIn:
    """A per-test config file for the shared library, selected through the environment."""
    path = tmp_path / nvml_standin.CONFIG_NAME
    monkeypatch.setenv(nvml_standin.CONFIG_ENV, str(path))
    return NvmlStandIn(nvml_library, path)
