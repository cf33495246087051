"""Job identity from the prolog/epilog environment: strict validation of everything slurmd hands us."""

from __future__ import annotations

import pytest

from slurm_plugin.node import jobenv
from slurm_plugin.node.jobenv import JobEnvError, JobInfo, from_env, run_of


def test_valid_environment(slurm_env: dict[str, str]) -> None:
    info = from_env(slurm_env)
    assert info == JobInfo(
        cluster="hpc",
        job_id=4242,
        restart_count=0,
        node="node001",
        user="alice",
        uid=1000,
        gid=1000,
        account="physics",
        partition="batch",
        sluid="s0KZ3M1Q7H2B4X",
        cpus_per_node=4,
        job_gpus="0,1",
        cuda_visible_devices="0,1",
    )
    assert info.key == "4242.0"


def test_requeued_job_is_a_new_run(slurm_env: dict[str, str]) -> None:
    slurm_env["SLURM_JOB_RESTART_COUNT"] = "2"
    assert from_env(slurm_env).key == "4242.2"


def test_minimal_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobenv, "hostname", lambda: "cn17")
    info = from_env({"SLURM_JOB_ID": "7", "SLURM_JOB_UID": "0", "SLURM_JOB_GID": "0"})
    assert (info.cluster, info.node, info.user, info.restart_count) == ("default", "cn17", "", 0)
    assert (info.account, info.partition, info.sluid, info.cpus_per_node, info.job_gpus) == (None,) * 5


def test_empty_optional_values_are_absent(slurm_env: dict[str, str]) -> None:
    for name in ("SLURM_JOB_ACCOUNT", "SLURM_JOB_SLUID", "SLURM_JOB_GPUS", "SLURM_JOB_RESTART_COUNT"):
        slurm_env[name] = ""
    info = from_env(slurm_env)
    assert (info.account, info.sluid, info.job_gpus, info.restart_count) == (None, None, None, 0)


@pytest.mark.parametrize("name", ["SLURM_JOB_ID", "SLURM_JOB_UID", "SLURM_JOB_GID"])
def test_required_ids(slurm_env: dict[str, str], name: str) -> None:
    del slurm_env[name]
    with pytest.raises(JobEnvError, match=f"^{name} is not set$"):
        from_env(slurm_env)


@pytest.mark.parametrize(
    "value", ["1;id", "-1", "4242 ", " 4242", "0x10", "1e3", "4_242", "12345678901", "١٢٣", "²", "4242\n"]
)
@pytest.mark.parametrize("name", ["SLURM_JOB_ID", "SLURM_JOB_UID", "SLURM_JOB_RESTART_COUNT"])
def test_ids_must_be_ascii_digits(slurm_env: dict[str, str], name: str, value: str) -> None:
    slurm_env[name] = value
    with pytest.raises(JobEnvError, match=f"^{name}=.* is not a non-negative integer$"):
        from_env(slurm_env)


@pytest.mark.parametrize(
    "value",
    ["1;id", "../x", "a/b", "$(id)", "`id`", "alice bob", "x\ny", "naïve", "a" * 129, "a\x00b"],
)
@pytest.mark.parametrize(
    "name",
    ["SLURM_CLUSTER_NAME", "SLURMD_NODENAME", "SLURM_JOB_USER", "SLURM_JOB_ACCOUNT", "SLURM_JOB_PARTITION"],
)
def test_hostile_names_are_refused(slurm_env: dict[str, str], name: str, value: str) -> None:
    slurm_env[name] = value
    with pytest.raises(JobEnvError, match=f"^{name}="):
        from_env(slurm_env)


def test_names_allow_what_slurm_produces(slurm_env: dict[str, str]) -> None:
    slurm_env.update(
        SLURM_JOB_USER="j.doe@ad.example", SLURM_JOB_ACCOUNT="proj-42+x_y", SLURMD_NODENAME="a" * 128
    )
    info = from_env(slurm_env)
    assert (info.user, info.account, info.node) == ("j.doe@ad.example", "proj-42+x_y", "a" * 128)


def test_error_messages_are_short_and_quote_the_value(slurm_env: dict[str, str]) -> None:
    slurm_env["SLURM_JOB_ACCOUNT"] = "x;" * 10_000
    with pytest.raises(JobEnvError) as caught:
        from_env(slurm_env)
    assert len(str(caught.value)) < 150
    assert str(caught.value).startswith("SLURM_JOB_ACCOUNT='x;x;")


@pytest.mark.parametrize(
    "value", ["s0KZ3M1Q7H2B4", "s0KZ3M1Q7H2B4XY", "S0KZ3M1Q7H2B4X", "s0kz3m1q7h2b4x", "../s0KZ3M1Q7"]
)
def test_bad_sluid(slurm_env: dict[str, str], value: str) -> None:
    slurm_env["SLURM_JOB_SLUID"] = value
    with pytest.raises(JobEnvError, match=r"^SLURM_JOB_SLUID=.* is not a SLUID$"):
        from_env(slurm_env)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("4", 4),
        ("4(x2)", 4),
        ("4,4", 4),
        ("4(x2),4", 4),
        ("4,2", None),  # heterogeneous: which count is this node's is ambiguous
        ("4(x2),2(x3)", None),
        ("", None),
        ("four", None),
        ("4(x)", None),
        ("4;id", None),
        ("1234567", None),
    ],
)
def test_cpus_per_node(slurm_env: dict[str, str], value: str, expected: int | None) -> None:
    slurm_env["SLURM_JOB_CPUS_PER_NODE"] = value
    assert from_env(slurm_env).cpus_per_node == expected


@pytest.mark.parametrize("name", ["SLURM_JOB_GPUS", "CUDA_VISIBLE_DEVICES"])
def test_gpu_lists_are_bounded_and_printable(slurm_env: dict[str, str], name: str) -> None:
    slurm_env[name] = ",".join(str(n) for n in range(1000))[: jobenv.MAX_GPU_LIST]
    assert getattr(from_env(slurm_env), name.lower().removeprefix("slurm_")) == slurm_env[name]
    slurm_env[name] = "0," * 3000
    with pytest.raises(JobEnvError, match=f"^{name} is longer than 4096"):
        from_env(slurm_env)
    slurm_env[name] = "0\n1"
    with pytest.raises(JobEnvError, match="not printable"):
        from_env(slurm_env)


def test_mig_uuids_pass_as_gpu_lists(slurm_env: dict[str, str]) -> None:
    slurm_env["CUDA_VISIBLE_DEVICES"] = "MIG-8f0c1b57-6e8d-5c2b-9a5e-2f1d0c7a4b3e"
    assert from_env(slurm_env).cuda_visible_devices == slurm_env["CUDA_VISIBLE_DEVICES"]


def test_configured_cluster_and_node_override_slurm(slurm_env: dict[str, str]) -> None:
    info = from_env(slurm_env, cluster="site-a", node="cn-17")
    assert (info.cluster, info.node) == ("site-a", "cn-17")


def test_overrides_are_validated_too(slurm_env: dict[str, str]) -> None:
    with pytest.raises(JobEnvError, match=r"^cluster="):
        from_env(slurm_env, cluster="../etc")
    with pytest.raises(JobEnvError, match=r"^SLURMD_NODENAME="):
        from_env(slurm_env, node="cn 17")


def test_an_override_replaces_a_hostile_slurm_value(slurm_env: dict[str, str]) -> None:
    slurm_env["SLURMD_NODENAME"] = "../x"
    assert from_env(slurm_env, node="cn17").node == "cn17"


def test_node_falls_back_to_the_short_hostname(
    slurm_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobenv.socket, "gethostname", lambda: "cn17.cluster.example.org")
    del slurm_env["SLURMD_NODENAME"]
    assert from_env(slurm_env).node == "cn17"


def test_dict_round_trip(job_info: JobInfo) -> None:
    assert JobInfo.from_dict(job_info.to_dict()) == job_info


def test_dict_round_trip_of_a_minimal_job() -> None:
    info = from_env(
        {"SLURM_JOB_ID": "7", "SLURM_JOB_UID": "0", "SLURM_JOB_GID": "0", "SLURMD_NODENAME": "cn1"}
    )
    assert JobInfo.from_dict(info.to_dict()) == info


def test_from_dict_revalidates(job_info: JobInfo) -> None:
    tampered = {**job_info.to_dict(), "account": "x;rm -rf /"}
    with pytest.raises(JobEnvError, match=r"^SLURM_JOB_ACCOUNT="):
        JobInfo.from_dict(tampered)
    with pytest.raises(JobEnvError, match=r"^cluster="):
        JobInfo.from_dict({**job_info.to_dict(), "cluster": "../x"})


def test_the_run_is_slurms_sluid_else_its_start_time_else_the_prolog_time(slurm_env: dict[str, str]) -> None:
    """Every node of a job derives the same run from SLUID or start time; only `seen:` is the node's own."""
    assert run_of(from_env(slurm_env), 1767225600.9) == "sluid:s0KZ3M1Q7H2B4X"
    del slurm_env["SLURM_JOB_SLUID"]
    slurm_env["SLURM_JOB_START_TIME"] = "1767225590"
    assert run_of(from_env(slurm_env), 1767225600.9) == "start:1767225590"
    del slurm_env["SLURM_JOB_START_TIME"]
    assert run_of(from_env(slurm_env), 1767225600.9) == "seen:1767225600"


def test_a_spooled_run_is_read_back_not_recomputed(slurm_env: dict[str, str]) -> None:
    info = from_env(slurm_env)._replace(run="seen:1767225600")
    assert JobInfo.from_dict(info.to_dict()).run == "seen:1767225600"
    with pytest.raises(JobEnvError, match=r"^run='seen:/etc' is not a run identity$"):
        JobInfo.from_dict({**info.to_dict(), "run": "seen:/etc"})
    slurm_env["SLURM_JOB_START_TIME"] = "17e9"
    with pytest.raises(JobEnvError, match=r"^SLURM_JOB_START_TIME='17e9' is not a non-negative integer$"):
        from_env(slurm_env)
