"""The node spool: per-job directories shared by prolog, agent and epilog, and their finalisation."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from slurm_plugin.node import journal
from slurm_plugin.node.jobenv import JobInfo
from slurm_plugin.node.spool import STALE_TEMPORARY_S, AnotherJobHere, Spool, finalize

START = 1767225600.0


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    spool = Spool(tmp_path / "spool", fsync=False)
    spool.prepare()
    return spool


def test_prepare_makes_private_directories(spool: Spool) -> None:
    assert spool.jobs.is_dir()
    assert spool.root.stat().st_mode & 0o077 == 0
    assert spool.socket == spool.root / "agent.sock"


@pytest.mark.parametrize("key", ["../1.0", "1", "a.b", "1.0/..", "1.0\n", "", "1.-1", "12345678901.0"])
def test_invalid_keys_are_refused(spool: Spool, key: str) -> None:
    with pytest.raises(ValueError, match="invalid job key"):
        spool.job_dir(key)


def test_non_ascii_digits_are_not_a_job_key(spool: Spool) -> None:
    with pytest.raises(ValueError, match="invalid job key"):
        spool.job_dir("٤٢.0")


def test_valid_key(spool: Spool) -> None:
    assert spool.job_dir("4242.0") == spool.jobs / "4242.0"


def test_create_job_keeps_the_first_start(spool: Spool, job_info: JobInfo) -> None:
    directory = spool.create_job(job_info, START)
    assert directory == spool.jobs / "4242.0"
    spool.create_job(job_info, START + 30)  # slurmd retried the prolog
    assert spool.load_job("4242.0") == (job_info._replace(run="sluid:s0KZ3M1Q7H2B4X"), START)
    assert directory.stat().st_mode & 0o077 == 0


def test_stop_request(spool: Spool, job_info: JobInfo) -> None:
    assert spool.request_stop("4242.0", START + 40) is False
    assert spool.stop_time("4242.0") is None
    spool.create_job(job_info, START)
    assert spool.stop_time("4242.0") is None
    assert spool.request_stop("4242.0", START + 40) is True
    assert spool.request_stop("4242.0", START + 99) is True
    assert spool.stop_time("4242.0") == START + 40


def test_job_keys_list_only_job_directories(spool: Spool, job_info: JobInfo) -> None:
    spool.create_job(job_info, START)
    (spool.jobs / "17.1").mkdir()
    (spool.jobs / "failed-9.0-1767225600").mkdir()
    (spool.jobs / "notes.txt").write_text("")
    assert spool.job_keys() == ["17.1", "4242.0"]


def test_job_keys_of_an_unprepared_spool(tmp_path: Path) -> None:
    assert Spool(tmp_path / "absent").job_keys() == []


def test_lock_job_excludes_a_second_locker(spool: Spool, job_info: JobInfo) -> None:
    spool.create_job(job_info, START)
    first = spool.lock_job("4242.0")
    assert first is not None
    try:
        assert spool.lock_job("4242.0") is None  # flock is per open file: this models a second process
    finally:
        os.close(first)
    second = spool.lock_job("4242.0")
    assert second is not None
    os.close(second)


def test_lock_refuses_a_symlink(spool: Spool, job_info: JobInfo, tmp_path: Path) -> None:
    directory = spool.create_job(job_info, START)
    (directory / "lock").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError, match=os.strerror(errno.ELOOP)):
        spool.lock_job("4242.0")
    assert not (tmp_path / "elsewhere").exists()


def test_set_aside_keeps_the_data_out_of_the_scan(spool: Spool, job_info: JobInfo) -> None:
    spool.create_job(job_info, START)
    spool.set_aside("4242.0")
    assert spool.job_keys() == []
    [kept] = spool.jobs.iterdir()
    assert kept.name.startswith("failed-4242.0-")
    assert (kept / "job.json").is_file()


def test_remove_job(spool: Spool, job_info: JobInfo) -> None:
    spool.create_job(job_info, START)
    spool.remove_job("4242.0")
    spool.remove_job("4242.0")
    assert spool.job_keys() == []


def test_finalize_builds_the_record_from_the_journal(spool: Spool, job_info: JobInfo, tmp_path: Path) -> None:
    directory = spool.create_job(job_info, START)
    writer = journal.JournalWriter(directory / "journal.jsonl", fsync=False)
    writer.append(
        {
            "type": "header",
            "version": 1,
            "job": job_info.to_dict(),
            "start": START,
            "gpus": [],
            "node_info": {},
        }
    )
    writer.append(
        {
            "type": "interval",
            "t0": START,
            "t1": START + 10,
            "cpu": [500.0, "measured"],
            "dram": [20.0, "measured"],
            "gpu": {},
            "cpuset": [0, 1, 2, 3],
        }
    )
    writer.close()
    path = finalize(spool, "4242.0", START + 10, [], tmp_path / "outbox")
    document = json.loads(path.read_text())
    assert path.name == "hpc_4242_0_node001.json"  # a journal of an earlier release: no run
    assert document["energy"]["total_joules"] == 520.0
    assert document["status"] == "complete"
    assert document["allocated_cpus"] == {"count": 4, "list": "0-3"}
    assert not directory.exists()


def test_finalize_without_a_journal_is_partial(spool: Spool, job_info: JobInfo, tmp_path: Path) -> None:
    directory = spool.create_job(job_info, START)
    path = finalize(spool, "4242.0", START + 60, ["agent was not running"], tmp_path / "outbox")
    document = json.loads(path.read_text())
    assert document["status"] == "partial"
    assert document["partial_reasons"] == [
        "agent was not running",
        "the sampler never took a sample of this job",
    ]
    assert document["energy"]["total_joules"] == 0
    assert document["elapsed_s"] == 60.0
    assert (document["job_id"], document["user"]) == (4242, "alice")
    assert not directory.exists()


def test_adopting_sweeps_temporaries_that_a_killed_prolog_left(spool: Spool) -> None:
    stale, fresh = spool.incoming / ".41.0.json.1234", spool.incoming / ".42.0.json.1235"
    for path in (stale, fresh):
        path.write_text('{"env": {')  # cut short mid-write
    old = stale.stat().st_mtime - STALE_TEMPORARY_S - 1
    os.utime(stale, (old, old))
    assert spool.adopt_incoming("hpc", "node001") == []
    assert sorted(p.name for p in spool.incoming.iterdir()) == [fresh.name]  # one being written stays


def test_a_reused_id_waits_for_the_other_job_to_leave_the_spool(spool: Spool, job_info: JobInfo) -> None:
    """Slurm gave the id of a job still being finalised here to another user's job (issue 13, bug 2)."""
    spool.create_job(job_info, START)
    spool.create_job(job_info, START + 1)  # slurmd retried the prolog: the same run
    bob = job_info._replace(user="bob", uid=1001)
    with pytest.raises(AnotherJobHere, match=r"another job 4242\.0 \(uid 1000, run sluid:s0KZ3M1Q7H2B4X\)"):
        spool.create_job(bob, START + 60)
    assert spool.stop_time("4242.0") == START + 60  # alice's job, whose epilog never came, ends now
    with pytest.raises(AnotherJobHere):
        spool.create_job_after(bob, START + 60, wait_s=0.2)
    spool.remove_job("4242.0")  # the agent wrote alice's record
    spool.create_job_after(bob, START + 60, wait_s=0.2)
    assert spool.load_job("4242.0")[0].uid == 1001


def test_an_ended_run_of_the_same_user_is_another_job(spool: Spool, job_info: JobInfo) -> None:
    seen = job_info._replace(sluid=None)
    spool.create_job(seen, START)
    spool.request_stop("4242.0", START + 30)
    with pytest.raises(AnotherJobHere):
        spool.create_job(seen, START + 31)
