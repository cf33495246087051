"""Who may see which job's footprint: Slurm's PrivateData=jobs, applied to jobcarbon's database.

`all`: everyone sees every job. `own`: a user sees the jobs that ran under their uid, coordinators of
an account see that account's jobs, and root and the configured admins see everything. The viewer is
always a real uid (the caller's, or the peer's from SO_PEERCRED in the query service) and the name
the password database gives for it; never a name or variable the caller can set. The same rule in
SQL, for listings, is `storage.readonly.visible_filter`.
"""

from __future__ import annotations

import pwd
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from slurm_plugin.config import Visibility

Row = TypeVar("Row", bound=dict[str, Any])


@dataclass(frozen=True)
class Viewer:
    uid: int
    name: str | None  # None when the uid has no passwd entry: such a viewer sees only its uid's jobs

    @classmethod
    def from_uid(cls, uid: int) -> Viewer:
        """The viewer for a kernel-verified uid, named by the password database."""
        try:
            return cls(uid, pwd.getpwuid(uid).pw_name)
        except KeyError:
            return cls(uid, None)


@dataclass(frozen=True)
class Scope:
    """What one viewer may see: everything, or the jobs of its uid and of some accounts."""

    everything: bool
    uid: int
    accounts: frozenset[str] = frozenset()


def scope_for(viewer: Viewer, settings: Visibility) -> Scope:
    if (
        settings.mode == "all"
        or viewer.uid == 0
        or (viewer.name is not None and viewer.name in settings.admins)
    ):
        return Scope(True, viewer.uid)
    accounts = frozenset(
        c.account for c in settings.coordinators if viewer.name is not None and viewer.name in c.users
    )
    return Scope(False, viewer.uid, accounts)


def may_see(scope: Scope, job_uid: int, account: str | None) -> bool:
    return scope.everything or job_uid == scope.uid or (account is not None and account in scope.accounts)


def visible(rows: Iterable[Row], scope: Scope, cluster: str | None = None) -> list[Row]:
    """The rows (runs, parts, array tasks: anything with `cluster`, `uid` and `account`) on `cluster`
    (any, when None) that the scope may see, in their order."""
    return [
        row
        for row in rows
        if (cluster is None or row["cluster"] == cluster) and may_see(scope, row["uid"], row["account"])
    ]


def describe(scope: Scope) -> str:
    """What `scope` admits, in words, for a report's metadata."""
    if scope.everything:
        return "every job"
    accounts = f" and the jobs of account {', '.join(sorted(scope.accounts))}" if scope.accounts else ""
    return f"the jobs of uid {scope.uid}{accounts}"
