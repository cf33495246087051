"""The query service as a real process, asked by real processes under distinct real uids.

Clients are forked from the test process and drop to the user's uid and gid before running the
CLI's `main` (the Python install may sit where other users cannot read, so nothing is exec'd). The
database is 0600 root, as in `own` mode; only the service can read it. On PostgreSQL (the same tests
run on both backends) what is 0600 root is the password file named by database.password_file.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import tabulate  # noqa: F401

import slurm_plugin.cli.query
import slurm_plugin.cli.report

# Everything a client touches, imported before forking: a client may not be able to read the install.
import slurm_plugin.query.job_list
import slurm_plugin.query.job_summary_text
import slurm_plugin.query.service
import slurm_plugin.reports.formats
from slurm_plugin.cli import main
from slurm_plugin.storage import dialect
from tests import jobdb
from tests.jobdb import DAY, HOUR, Job

with contextlib.suppress(ImportError):  # psycopg, which the PostgreSQL runs' clients import
    import slurm_plugin.storage.postgres_backend  # noqa: F401

REQUIRE_ENV = "JOBCARBON_REQUIRE_SLURM"
USERS = ("jcalice", "jcbob", "jccoord")
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int


@dataclass
class Result:
    code: int
    out: str
    err: str


def _need_root() -> None:
    if os.geteuid() == 0:
        return
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but the visibility tests need root (distinct uids)", pytrace=False)
    pytest.skip("the visibility tests need root to run clients under distinct uids")


@pytest.fixture(scope="session")
def accounts() -> dict[str, Account]:
    """The test users (created with useradd if missing, as the Slurm test bed does)."""
    _need_root()
    from testbed.host import ensure_user

    found = {}
    for name in USERS:
        ensure_user(name)
        entry = pwd.getpwnam(name)
        found[name] = Account(name, entry.pw_uid, entry.pw_gid)
    return found


@pytest.fixture(scope="module")
def site(accounts: dict[str, Account], module_db_url: str, request: pytest.FixtureRequest) -> Iterator[dict]:
    """A 0600 database, configs, a `sacct` that knows nothing, and the service running on a socket."""
    top = Path(tempfile.mkdtemp(prefix="jobcarbon-serve-"))
    top.chmod(0o755)  # users must reach the socket, the configs and the stand-in sacct
    private = top / "db"
    private.mkdir(mode=0o755)
    if module_db_url.startswith(dialect.SQLITE_PREFIX):
        # Where the users can reach it, so that only the file's own mode keeps them out.
        database = private / "jobcarbon.db"
        url = f"sqlite:///{database}"
        settings = f"database:\n  url: {url}\n"
    else:  # the server lets in whoever has the password: its file is what only root may read
        url = module_db_url
        database = request.getfixturevalue("postgres_server").password_file
        settings = f"database:\n  url: {json.dumps(url)}\n  password_file: {database}\n"
    alice, bob = accounts["jcalice"], accounts["jcbob"]
    store = jobdb.open_store(url)
    jobdb.store_jobs(
        store,
        [
            Job(501, user=alice.name, uid=alice.uid, account="physics", start=DAY + 2 * HOUR, rows=10),
            Job(502, user=bob.name, uid=bob.uid, account="physics", start=DAY + 3 * HOUR, rows=10),
            Job(503, user=bob.name, uid=bob.uid, account="chemistry", start=DAY + 4 * HOUR, rows=10),
            Job(504, user="root", uid=0, account="admin", start=DAY + 5 * HOUR, rows=10),
        ],
    )
    store.close()
    if database.is_relative_to(private):
        database.chmod(0o600)
    sock = top / "run" / "query.sock"
    sock.parent.mkdir(mode=0o755)
    coordinators = "  coordinators:\n    - {account: chemistry, users: [jccoord]}\n"
    configs = {
        "service": f"{settings}visibility:\n  mode: own\n{coordinators}  socket: {sock}\n",
        "direct": f"{settings}visibility:\n  mode: all\n",
        "down": f"visibility:\n  socket: {top / 'run' / 'nothing.sock'}\n",
    }
    paths = {}
    for name, text in configs.items():
        paths[name] = top / f"{name}.yaml"
        paths[name].write_text(text)
        paths[name].chmod(0o644)
    bin_dir = top / "bin"
    bin_dir.mkdir(mode=0o755)
    (bin_dir / "sacct").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "sacct").chmod(0o755)
    service = subprocess.Popen(
        [sys.executable, "-m", "slurm_plugin", "serve", "--config", str(paths["service"])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": os.defpath},
    )
    first = service.stdout.readline()  # the service says when it listens: no polling, no sleeping
    assert "listening on" in first, service.stderr.read()
    yield {
        "top": top,
        "database": database,
        "socket": sock,
        "configs": paths,
        "bin": bin_dir,
        "service": service,
    }
    service.send_signal(signal.SIGTERM)
    service.wait(timeout=10)
    shutil.rmtree(top)


def run_as(account: Account | None, argv: list[str], env: dict[str, str]) -> Result:
    """`jobcarbon ARGV` in a forked child that became `account` (None: stays root)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit code and files
            _child(account, argv, env, out.fileno(), err.fileno())
        _, status = os.waitpid(pid, 0)
        out.seek(0)
        err.seek(0)
        return Result(os.waitstatus_to_exitcode(status), out.read().decode(), err.read().decode())


def _child(account: Account | None, argv: list[str], env: dict[str, str], out: int, err: int) -> None:
    code = 99
    try:
        if account is not None:
            os.setgroups([])
            os.setgid(account.gid)
            os.setuid(account.uid)
        os.environ.clear()
        os.environ.update(env)
        sys.stdout = io.TextIOWrapper(io.FileIO(os.dup(out), "w"), encoding="utf-8")
        sys.stderr = io.TextIOWrapper(io.FileIO(os.dup(err), "w"), encoding="utf-8")
        code = _probe(argv[1]) if argv[0] == "--probe-db" else main.main(argv)
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _probe(path: str) -> int:
    try:
        with open(path, "rb"):
            print("readable")
    except PermissionError:
        print("PermissionError")
    return 0


def client_env(site: dict, config: str = "service", **extra: str) -> dict[str, str]:
    return {"JOBCARBON_CONFIG": str(site["configs"][config]), "PATH": str(site["bin"]), **extra}


def visible_jobs(site: dict, account: Account | None, **extra: str) -> list[int]:
    argv = ["jobs", "--all-users", "-S", "2026-01-01", "-E", "2026-01-02", "--json"]
    done = run_as(account, argv, client_env(site, **extra))
    assert done.code == 0, done.err
    return sorted(job["job_id"] for job in json.loads(done.out)["jobs"])


def test_each_caller_sees_exactly_what_the_rules_allow(site: dict, accounts: dict[str, Account]) -> None:
    assert visible_jobs(site, accounts["jcalice"]) == [501]
    assert visible_jobs(site, accounts["jcbob"]) == [502, 503]
    assert visible_jobs(site, accounts["jccoord"]) == [503]
    assert visible_jobs(site, None) == [501, 502, 503, 504]


@pytest.mark.parametrize(
    ("user", "allowed"),
    [("jcalice", {501}), ("jcbob", {502, 503}), ("jccoord", {503}), (None, {501, 502, 503, 504})],
)
def test_show_answers_only_for_visible_jobs(site: dict, accounts: dict[str, Account], user, allowed) -> None:
    account = accounts[user] if user else None
    for job_id in (501, 502, 503, 504, 999999):
        done = run_as(account, [str(job_id), "--json"], client_env(site))
        if job_id in allowed:
            assert done.code == 0, done.err
            assert json.loads(done.out)["job_id"] == job_id
        else:  # refused exactly as an unknown job is
            assert (done.code, done.out) == (1, "")
            assert done.err == f"jobcarbon: no job {job_id} in the jobcarbon database\n"


@pytest.mark.parametrize(
    ("user", "allowed"),
    [
        ("jcalice", {("physics", "jcalice")}),
        ("jcbob", {("physics", "jcbob"), ("chemistry", "jcbob")}),
        ("jccoord", {("chemistry", "jcbob")}),
        (None, {("physics", "jcalice"), ("physics", "jcbob"), ("chemistry", "jcbob"), ("admin", "root")}),
    ],
)
def test_reports_through_the_service_show_what_jobs_would(
    site: dict, accounts: dict[str, Account], user, allowed
) -> None:
    """A user's report holds their own usage, a coordinator's their accounts', root's everything: the
    rows with energy, per account and user, are exactly the visible jobs' (`jobs` above)."""
    account = accounts[user] if user else None
    seen = {}
    for by in ("account", "user"):
        done = run_as(account, ["report", "--month", "2026-01", "--by", by, "--json"], client_env(site))
        assert done.code == 0, done.err
        document = json.loads(done.out)
        seen[by] = {r["group"] for r in document["rows"]}
        assert {r["group"] for r in document["rows"] if r["jobs"]} <= seen[by]
    assert seen == {"account": {a for a, _ in allowed}, "user": {u for _, u in allowed}}
    expected = "every job" if user is None else f"the jobs of uid {account.uid}"
    assert document["metadata"]["visibility"].startswith(expected)


def test_users_cannot_read_the_database(site: dict, accounts: dict[str, Account]) -> None:
    for name in USERS:
        probe = run_as(accounts[name], ["--probe-db", str(site["database"])], {})
        assert probe.out.strip() == "PermissionError"
        direct = run_as(accounts[name], ["501"], client_env(site, "direct"))
        assert direct.code == 1
        assert direct.out == ""
        assert "permission denied" in direct.err
        assert len(direct.err.splitlines()) == 1


def test_spoofed_identity_changes_nothing(site: dict, accounts: dict[str, Account]) -> None:
    bob = accounts["jcbob"]
    spoof = {"USER": "root", "LOGNAME": "root", "SLURM_JOB_USER": "root", "SLURM_JOB_UID": "0",
             "JOBCARBON_USER": "root", "SUDO_UID": "0"}  # fmt: skip
    assert visible_jobs(site, bob, **spoof) == [502, 503]
    # Pointing JOBCARBON_CONFIG at a config that claims `all` and the database only meets the file's mode.
    done = run_as(bob, ["501"], {**client_env(site, "direct"), **spoof})
    assert done.code == 1
    assert "permission denied" in done.err


@pytest.mark.parametrize("bad", ["12x", "-1", "1;id", "9" * 5000, "999999"])
def test_bad_ids_through_the_service_are_one_line(site: dict, accounts: dict[str, Account], bad: str) -> None:
    done = run_as(accounts["jcalice"], [bad], client_env(site))
    assert done.code == 1
    assert done.out == ""
    assert len(done.err.splitlines()) == 1
    assert done.err.startswith("jobcarbon: ")


def test_service_down_is_one_line(site: dict, accounts: dict[str, Account]) -> None:
    done = run_as(accounts["jcalice"], ["501"], client_env(site, "down"))
    assert done.code == 1
    assert done.err.startswith("jobcarbon: the jobcarbon query service is not running")
    assert len(done.err.splitlines()) == 1


def test_the_socket_is_open_to_all_and_the_database_to_root_only(site: dict) -> None:
    assert site["socket"].stat().st_mode & 0o777 == 0o666
    assert site["database"].stat().st_mode & 0o777 == 0o600


def raw_exchange(path: Path, payload: bytes) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(10)
        conn.connect(str(path))
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)
        return json.loads(conn.makefile("rb").read())


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"x" * 4096 + b"\n", "one line under"),  # all read by the service: no reset on close
        (b"{not json\n", "JSON"),
        (b'{"op": "drop"}\n', "op must be"),
        (b'{"op": "show", "job_id": "1;id"}\n', "positive integer"),
        (b'{"op": "show", "job_id": -1}\n', "positive integer"),
        (b'{"op": "jobs", "since_s": 0}\n', "numbers"),
        (b"[1, 2]\n", "JSON object"),
        (b'{"op": "show", "job_id": 501}', "one line"),  # no newline: the request never ended
    ],
    ids=["too-long", "not-json", "op", "string-id", "negative-id", "no-window", "not-object", "unended"],
)
def test_malformed_requests_are_refused(site: dict, payload: bytes, problem: str) -> None:
    reply = raw_exchange(site["socket"], payload)
    assert reply["ok"] is False
    assert reply["kind"] == "bad_request"
    assert problem in reply["error"]


def test_a_second_service_on_the_same_socket_refuses_to_start(site: dict) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "slurm_plugin", "serve", "--config", str(site["configs"]["service"])],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PYTHONPATH": str(REPO), "PATH": os.defpath},
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == f"jobcarbon: serve: another query service is listening on {site['socket']}"


def test_a_socket_in_a_missing_directory_is_one_line_and_creates_nothing(site: dict, tmp_path: Path) -> None:
    sock = tmp_path / "missing" / "query.sock"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "slurm_plugin",
            "serve",
            "--config",
            str(site["configs"]["service"]),
            "--socket",
            str(sock),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PYTHONPATH": str(REPO), "PATH": os.defpath},
        check=False,
    )
    assert (done.returncode, done.stderr) == (
        1,
        f"jobcarbon: serve: socket {sock}: directory {sock.parent} does not exist\n",
    )
    assert not sock.parent.exists()


def test_the_service_stops_on_sigterm_and_removes_its_socket(site: dict, tmp_path: Path) -> None:
    sock = tmp_path / "other.sock"
    service = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "slurm_plugin",
            "serve",
            "--config",
            str(site["configs"]["service"]),
            "--socket",
            str(sock),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": os.defpath},
    )
    assert "listening on" in service.stdout.readline()
    assert raw_exchange(sock, b'{"op": "show", "job_id": 501}\n')["summary"]["job_id"] == 501
    service.send_signal(signal.SIGTERM)
    assert service.wait(timeout=10) == 0
    assert not sock.exists()
