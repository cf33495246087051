"""The package's shape holds: imports run downwards, no cycles, and the old entry points still resolve.

Read from the source with `ast` (every import, including those deferred into functions, except under
`if TYPE_CHECKING:`), so a boundary is checked without importing anything. docs/architecture.md draws
the same picture.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "slurm_plugin"
# Old module paths kept for one release: prolog/epilog scripts, units and running agents of the
# previous release name them (issue 12). They only forward, so they are left out of the graph.
FORWARDERS = {
    "slurm_plugin.fastpath": "slurm_plugin.node.fastpath",
    "slurm_plugin.hooks": "slurm_plugin.node.hooks",
    "slurm_plugin.agent": "slurm_plugin.node.agent",
    "slurm_plugin.delivery": "slurm_plugin.accounting.delivery",
    "slurm_plugin.journal": "slurm_plugin.node.journal",
}
DATABASE_AND_NETWORK = ("requests", "psycopg", "sqlite_utils", "sqlite3")
# What each package must never import, directly or through a deferred import.
ABOVE_THE_NODE = ("storage", "accounting", "query", "reports", "cli", "intensity", *DATABASE_AND_NETWORK)
FORBIDDEN = {
    "node": ABOVE_THE_NODE,
    "sensors": ("node", *ABOVE_THE_NODE),
    "intensity": ("node", "sensors", "storage", "accounting", "query", "reports", "cli"),
    "storage": ("node", "sensors", "accounting", "query", "reports", "cli", "requests"),
    "accounting": ("node", "sensors", "query", "reports", "cli"),
    "query": ("node", "sensors", "reports", "cli", "requests"),
    "reports": ("node", "sensors", "query", "cli", "requests"),
}
# Top-level modules sit below every package: they may import only each other.
PACKAGES = ("node", "sensors", "intensity", "storage", "accounting", "query", "reports", "cli")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    found = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: path for name, path in found.items() if name not in FORWARDERS}


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST) -> Iterator[ast.AST]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _type_checking_only(child):
            yield from (n for c in child.orelse for n in [c, *_walk(c)])
            continue
        yield child
        yield from _walk(child)


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Every module `path` imports; `from pkg import mod` counts as importing `pkg.mod` when it is one."""
    found: set[str] = set()
    for node in _walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in known)
    return found


def graph() -> dict[str, set[str]]:
    known = set(modules())
    return {name: imports_of(path, known) for name, path in modules().items()}


def package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in PACKAGES else None


def _hits(imported: str, forbidden: str) -> bool:
    target = forbidden if forbidden in DATABASE_AND_NETWORK else f"slurm_plugin.{forbidden}"
    return imported == target or imported.startswith(target + ".")


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_only_what_lies_below_it(package: str) -> None:
    wrong = sorted(
        f"{module} imports {imported}"
        for module, imported_set in graph().items()
        if package_of(module) == package
        for imported in imported_set
        for forbidden in FORBIDDEN[package]
        if _hits(imported, forbidden)
    )
    assert wrong == []


def test_top_level_modules_import_no_package() -> None:
    wrong = sorted(
        f"{module} imports {imported}"
        for module, imported_set in graph().items()
        if modules()[module].parent == PACKAGE and module != "slurm_plugin.__main__"
        for imported in imported_set
        if package_of(imported) is not None
    )
    assert wrong == []


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in edges:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_there_are_no_import_cycles() -> None:
    edges = {
        module: {i for i in imported if not module.startswith(i + ".")}  # a package's own __init__
        for module, imported in graph().items()
    }
    assert _cycles(edges) == []


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize(("old", "new"), sorted(FORWARDERS.items()))
def test_an_old_module_path_is_the_new_module(old: str, new: str) -> None:
    assert importlib.import_module(old) is importlib.import_module(new)


@pytest.mark.parametrize(("old", "args"), [("slurm_plugin.agent", ["--help"]), ("slurm_plugin.delivery", [])])
def test_an_old_runnable_path_still_runs(old: str, args: list[str], tmp_path: Path) -> None:
    """Agents and units of the previous release run `python -m` on the old paths."""
    config = tmp_path / "config.yaml"
    config.write_text(f"paths:\n  spool: {tmp_path / 'spool'}\n  outbox: {tmp_path / 'outbox'}\n")
    (tmp_path / "spool").mkdir(mode=0o700)
    done = subprocess.run(
        [sys.executable, "-m", old, *args],
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "JOBCARBON_CONFIG": str(config)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "usage" in done.stdout.lower() or not args


def test_the_previous_release_hook_command_still_resolves() -> None:
    """The previous release's prolog ran exactly this; both names must reach the new code."""
    previous = (
        "import os; from slurm_plugin import fastpath; "
        "print(fastpath.hand_over.__module__, __import__('slurm_plugin.hooks').hooks.main.__module__)"
    )
    done = subprocess.run(
        [sys.executable, "-P", "-s", "-c", previous],
        cwd="/",
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["slurm_plugin.node.fastpath", "slurm_plugin.node.hooks"]
