"""Who sees which job: the pure policy, and its SQL form agreeing with it on every combination."""

from __future__ import annotations

import itertools
import sqlite3

import pytest

from slurm_plugin.config import Coordinator, Visibility
from slurm_plugin.query.visibility import Scope, Viewer, may_see, scope_for
from slurm_plugin.storage.readonly import visible_filter

OWN = Visibility(
    mode="own",
    admins=("boss",),
    coordinators=(Coordinator("physics", ("carol",)), Coordinator("chemistry", ("carol", "dave"))),
)
ALICE, CAROL, BOSS, ROOT = (
    Viewer(1000, "alice"),
    Viewer(1002, "carol"),
    Viewer(1500, "boss"),
    Viewer(0, "root"),
)


def test_a_user_sees_only_jobs_that_ran_under_their_uid() -> None:
    scope = scope_for(ALICE, OWN)
    assert may_see(scope, 1000, "physics")
    assert not may_see(scope, 1001, "physics")
    assert not may_see(scope, 1001, None)


def test_a_coordinator_sees_their_accounts_and_their_own_jobs() -> None:
    scope = scope_for(CAROL, OWN)
    assert scope.accounts == frozenset({"physics", "chemistry"})
    assert may_see(scope, 1001, "chemistry")
    assert may_see(scope, 1002, "biology")
    assert not may_see(scope, 1001, "biology")


@pytest.mark.parametrize("viewer", [ROOT, BOSS])
def test_root_and_admins_see_everything(viewer: Viewer) -> None:
    assert scope_for(viewer, OWN).everything


def test_all_mode_shows_everything_to_everyone() -> None:
    assert scope_for(ALICE, Visibility(mode="all")).everything


def test_a_uid_without_a_name_gets_no_named_privileges() -> None:
    scope = scope_for(
        Viewer(4242, None), Visibility(admins=("boss",), coordinators=(Coordinator("x", ("y",)),))
    )
    assert scope == Scope(False, 4242, frozenset())


def test_names_come_from_the_password_database_not_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER", "boss")
    monkeypatch.setenv("LOGNAME", "boss")
    assert Viewer.from_uid(0).name == "root"
    assert Viewer.from_uid(2**31 - 7).name is None


def test_the_sql_filter_agrees_with_may_see() -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY, uid INTEGER, account TEXT)")
    jobs = list(itertools.product([0, 1000, 1001, 1002], ["physics", "chemistry", "biology", None]))
    db.executemany("INSERT INTO jobs (uid, account) VALUES (?, ?)", jobs)
    for viewer in (ALICE, CAROL, BOSS, ROOT, Viewer(1001, "dave"), Viewer(7, None)):
        scope = scope_for(viewer, OWN)
        where, params = visible_filter(scope.everything, scope.uid, scope.accounts)
        found = set(db.execute(f"SELECT uid, account FROM jobs j WHERE {where}", params))  # noqa: S608
        assert found == {job for job in jobs if may_see(scope, *job)}, viewer
