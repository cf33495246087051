"""The node agent's records when the disk fails: kept in memory, retried, never resampled, given up
only when their job's spool entry is gone (node/agent_records.py)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.simnode import NODE, SimNode, driven_agent, wait_for


def _refusing(code: int) -> Callable[..., Path]:
    """An outbox writer that fails as a full or broken disk does."""

    def write(*args: Any, **kwargs: Any) -> Path:
        raise OSError(code, os.strerror(code))

    return write


def test_a_full_outbox_keeps_the_record_and_retries_without_resampling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from slurm_plugin import outbox
    from slurm_plugin.node import agent_records, jobenv

    node = SimNode(tmp_path, interval_s=60)
    node.job_cgroup(61, cpu_s=0.0)
    node.set_rapl(1000.0, 100.0)
    log: list[str] = []
    agent = driven_agent(node, log)
    monkeypatch.setattr(agent_records, "RETRY_FIRST_S", 0.01)
    real_write = outbox.write
    try:
        agent.spool.create_job(jobenv.from_env(node.env(61), "sim", NODE), time.time())
        agent._scan()
        for package in (1010.0, 1020.0):
            time.sleep(0.1)  # the job's wall time, so that coverage means something
            node.set_rapl(package, 100.0)
            agent._tick()
        monkeypatch.setattr(outbox, "write", _refusing(errno.ENOSPC))
        agent.spool.request_stop("61.0", time.time())
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # the agent's loop: scans and retries, ~100 tries
            agent._scan()
            agent._retry_records()
            time.sleep(0.005)
        assert agent.unwritten["61.0"].tries > 5
        assert "61.0" not in agent.sampler.jobs  # not adopted again, not sampled again
        monkeypatch.setattr(outbox, "write", real_write)
        wait_for(lambda: agent._retry_records() or not agent.unwritten, what="record written")
    finally:
        agent._close()
    record = node.record(61)
    assert record is not None
    assert record["status"] == "complete"
    assert record["partial_reasons"] == []
    assert record["coverage"]["fraction"] > 0.9
    failures = [line for line in log if "record not written yet" in line]
    assert len(failures) == 1  # one line a minute, whatever the number of tries
    assert "No space left on device" in failures[0]
    assert sum("sampling started" in line for line in log) == 1
    assert any(line.startswith("info: job 61.0: record written") and "tries" in line for line in log)
    assert not (node.spool / "jobs" / "61.0").exists()


def test_a_record_the_outbox_refused_survives_the_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from slurm_plugin import outbox
    from slurm_plugin.node import jobenv

    node = SimNode(tmp_path, interval_s=60)
    node.job_cgroup(62)
    node.set_rapl(1000.0, 100.0)
    log: list[str] = []
    agent = driven_agent(node, log)
    agent.spool.create_job(jobenv.from_env(node.env(62), "sim", NODE), time.time() - 3)
    agent._scan()
    node.set_rapl(1010.0, 100.0)
    agent._tick()
    real_write = outbox.write
    monkeypatch.setattr(outbox, "write", _refusing(errno.EIO))
    agent.spool.request_stop("62.0", time.time())
    agent._scan()
    assert "62.0" in agent.unwritten
    agent._close()  # the agent goes; the job's journal, closed by its end line, stays
    assert node.journal(62)[-1]["type"] == "end"
    monkeypatch.setattr(outbox, "write", real_write)
    successor = driven_agent(node, log)
    successor._scan()
    successor._close()
    record = node.record(62)
    assert record is not None
    assert (record["status"], record["partial_reasons"]) == ("complete", [])


def test_a_full_disk_keeps_journal_lines_in_memory_until_it_has_room(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from slurm_plugin import outbox
    from slurm_plugin.node import agent_records, jobenv
    from slurm_plugin.node import journal as journal_module

    node = SimNode(tmp_path, interval_s=60)
    node.job_cgroup(63)
    node.set_rapl(1000.0, 100.0)
    log: list[str] = []
    agent = driven_agent(node, log)
    monkeypatch.setattr(agent_records, "RETRY_FIRST_S", 0.01)
    real_write_all, real_write = journal_module.write_all, outbox.write
    try:
        agent.spool.create_job(jobenv.from_env(node.env(63), "sim", NODE), time.time())
        agent._scan()
        full = _refusing(errno.ENOSPC)
        monkeypatch.setattr(journal_module, "write_all", full)  # spool and outbox on one full disk
        monkeypatch.setattr(outbox, "write", full)
        for step in range(1, 5):
            time.sleep(0.05)
            node.set_rapl(1000.0 + step, 100.0)
            agent._tick()
        agent.spool.request_stop("63.0", time.time())
        agent._scan()
        for _ in range(20):
            time.sleep(0.01)
            agent._retry_records()
        assert node.intervals(63) == 0  # not one line since the disk filled up: all in memory
        monkeypatch.setattr(journal_module, "write_all", real_write_all)
        monkeypatch.setattr(outbox, "write", real_write)
        wait_for(lambda: agent._retry_records() or not agent.unwritten, what="record written")
    finally:
        agent._close()
    record = node.record(63)
    assert record is not None
    assert (record["status"], record["partial_reasons"]) == ("complete", [])
    assert record["coverage"]["samples"] == 5  # four ticks and the stop
    assert record["coverage"]["fraction"] > 0.9
    assert record["energy"]["cpu"]["method"] == "apportioned"
    assert sum("cannot write its journal" in line for line in log) == 1
    assert sum("record not written yet" in line for line in log) == 1


def test_a_record_whose_spool_entry_vanished_is_given_up_so_the_agent_can_leave(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import shutil
    import threading

    from slurm_plugin import outbox
    from slurm_plugin.node import jobenv, jobfacts

    slurm_answers = threading.Event()  # unanswered, as if its thread had not run yet (CI)
    monkeypatch.setattr(jobfacts, "query", lambda *_args, **_kw: slurm_answers.wait(30) and {})
    node = SimNode(tmp_path, interval_s=60, slurm_query_s=30)
    node.job_cgroup(64)
    log: list[str] = []
    agent = driven_agent(node, log)
    try:
        agent.spool.create_job(jobenv.from_env(node.env(64), "sim", NODE), time.time() - 3)
        agent._scan()
        monkeypatch.setattr(outbox, "write", _refusing(errno.ENOSPC))
        agent.spool.request_stop("64.0", time.time())
        agent._scan()
        assert "64.0" in agent.unwritten  # kept while the disk refuses it
        shutil.rmtree(node.spool / "jobs" / "64.0")  # an admin, or a test bed's teardown, removed it
        agent.unwritten["64.0"].next_try = 0.0
        agent._retry_records()
        assert not agent.unwritten
    finally:
        slurm_answers.set()
        agent._close()
    assert any("job 64.0: its spool entry is gone" in line for line in log)
