"""Arrows point inward: screens -> issu_tui -> backends; no import circle; the commands, the
orchestrator and the demo each in their place. Checked in fresh interpreters and, for the
import graph, statically (every import, deferred ones too)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Collection
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(sys.modules)))
"""


def loaded_by(module: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", PROBE, module], cwd=ROOT, check=True,
                         capture_output=True, text=True, timeout=120).stdout
    return set(json.loads(out))


def backend_modules() -> list[str]:
    base = ROOT / "backends"
    return sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in base.rglob("*.py"))


def _top(name: str) -> str:
    return name.split(".")[0]


ALL_PROBE = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(sys.modules)))
"""


def test_backends_import_no_textual_screens_or_core() -> None:
    """Every backend module at once, in a fresh interpreter: nothing of the UI or the core."""
    out = subprocess.run([sys.executable, "-c", ALL_PROBE, *backend_modules()], cwd=ROOT,
                         check=True, capture_output=True, text=True, timeout=300).stdout
    bad = sorted(m for m in json.loads(out) if _top(m) in {"textual", "screens", "issu_tui"})
    assert bad == [], f"backends pull in {bad[:5]}"


def test_no_backend_module_imports_textual_or_core() -> None:
    """Statically, every backend module: no textual, screens or issu_tui imports."""
    offenders = []
    for path in (ROOT / "backends").rglob("*.py"):
        for line in path.read_text().splitlines():
            words = line.strip().split()
            if len(words) >= 2 and words[0] in ("import", "from") and \
                    _top(words[1]) in {"textual", "screens", "issu_tui"}:
                offenders.append(f"{path.relative_to(ROOT)}: {line.strip()}")
    assert offenders == []


@pytest.mark.parametrize("module", ["issu_tui.console_api", "issu_tui.tui_cli",
                                    "issu_tui.journal", "issu_tui.config"])
def test_core_modules_do_not_load_screens(module: str) -> None:
    loaded = loaded_by(module)
    assert sorted(m for m in loaded if _top(m) == "screens") == []


def test_only_app_imports_screens_statically() -> None:
    offenders = []
    for path in (ROOT / "issu_tui").rglob("*.py"):
        if path.name == "app.py" and path.parent.name == "issu_tui":
            continue
        for line in path.read_text().splitlines():
            words = line.strip().split()
            if len(words) >= 2 and words[0] in ("import", "from") and _top(words[1]) == "screens":
                offenders.append(f"{path.relative_to(ROOT)}: {line.strip()}")
    assert offenders == []


def test_screens_never_reach_a_backend_directly() -> None:
    offenders = []
    for path in (ROOT / "screens").rglob("*.py"):
        for line in path.read_text().splitlines():
            words = line.strip().split()
            if len(words) >= 2 and words[0] in ("import", "from") and \
                    _top(words[1]) == "backends":
                offenders.append(f"{path.relative_to(ROOT)}: {line.strip()}")
    assert offenders == []
    # and loading the screens pulls in no database or SSH client, even indirectly
    loaded = loaded_by("screens.console")
    heavy = ("cassandra", "kazoo", "kombu", "paramiko")
    assert sorted(m for m in loaded if _top(m) in heavy) == []


# ------------------------------------------------------------------ the import graph, statically

PRODUCT = ("issu_tui", "backends", "screens")


def product_modules() -> dict[str, Path]:
    found = {}
    for package in PRODUCT:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imported_names(path: Path, module: str, modules: Collection[str] = ()) -> set[str]:
    """Every module `module` imports, wherever the import is (at the top, in a function, under
    TYPE_CHECKING) and `importlib.import_module("...")` with a literal name: a circle held
    together by a deferred import is still a circle. `from pkg import name` is `pkg.name`
    when that is one of `modules`, else `pkg` (without `modules`: both)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in modules:
                    names.add(submodule)
                else:
                    names.add(base)
                    if not modules:
                        names.add(submodule)
        elif isinstance(node, ast.Call) and node.args and \
                isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str) \
                and ast.unparse(node.func) in ("importlib.import_module", "import_module",
                                               "__import__"):
            names.add(node.args[0].value)
    return names


def import_graph() -> dict[str, set[str]]:
    """module -> the product modules it imports (`from pkg import mod` counts as mod)."""
    modules = product_modules()
    return {name: {n for n in imported_names(path, name, modules) if n in modules and n != name}
            for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target):], target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_circle_through_a_deferred_import(tmp_path: Path) -> None:
    """The checker itself: a circle whose one edge is an import inside a function."""
    (tmp_path / "a.py").write_text("import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from a import x\n")
    graph = {name: imported_names(tmp_path / f"{name}.py", name, {"a", "b"})
             for name in ("a", "b")}
    assert find_cycle(graph) == ["a", "b", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle_in_the_product() -> None:
    """issu_tui, backends and screens form no import circle, counting deferred imports."""
    assert find_cycle(import_graph()) is None


def test_no_import_hidden_from_the_graph() -> None:
    """No product module imports a module whose name it computes (importlib with a variable):
    the graph above could not see that edge. Plugins come through entry points."""
    offenders = []
    for name, path in product_modules().items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and ast.unparse(node.func) in (
                    "importlib.import_module", "import_module", "__import__") and not (
                    node.args and isinstance(node.args[0], ast.Constant)):
                offenders.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
    assert offenders == []


def test_only_the_command_root_imports_command_modules() -> None:
    """The `*_cli` modules are commands: only issu_tui/cli.py (which registers them) imports
    one. What the commands and the orchestrator share (the config -> backend mapping, config
    loading) lives in modules of its own (issu_tui/sides.py, issu_tui/cli_common.py)."""
    offenders = sorted(f"{name} imports {target}" for name, targets in import_graph().items()
                       for target in targets
                       if target.rpartition(".")[2].endswith("_cli") and name != "issu_tui.cli")
    assert offenders == []


def test_no_product_module_imports_the_demo() -> None:
    """The demo plugs into `issu` through the `issu.commands` entry points; the product never
    names it in an import, deferred or not."""
    offenders = sorted(f"{name}: {target}" for name, path in product_modules().items()
                       for target in imported_names(path, name) if _top(target) == "demo")
    assert offenders == []


def test_the_product_wheel_leaves_the_demo_out() -> None:
    """The packages pyproject.toml ships (setuptools' `packages.find` include patterns, matched
    as setuptools matches them) hold no `demo`: the demo is its own distribution."""
    import fnmatch
    import tomllib

    include = tomllib.loads((ROOT / "pyproject.toml").read_text())[
        "tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {".".join(p.parent.relative_to(ROOT).parts) for p in ROOT.glob("*/**/__init__.py")
                if ".venv" not in p.parts}
    shipped = {p for p in packages if any(fnmatch.fnmatchcase(p, pat) for pat in include)}
    assert "issu_tui" in shipped and "backends.runsync" in shipped
    assert sorted(p for p in shipped if _top(p) in {"demo", "tests", "bench"}) == []


def test_issu_demo_comes_from_the_entry_point() -> None:
    """`issu demo` is found through the demo distribution's `issu.commands` entry point."""
    from importlib.metadata import entry_points

    from click.testing import CliRunner

    from issu_tui.cli import COMMAND_ENTRY_POINTS, cli

    demo = [ep for ep in entry_points(group=COMMAND_ENTRY_POINTS) if ep.name == "demo"]
    assert [ep.value for ep in demo] == ["demo.cli:demo"]
    result = CliRunner().invoke(cli, ["demo", "--help"])
    assert result.exit_code == 0, result.output
    assert "up" in result.output and "down" in result.output


def test_a_plugin_that_cannot_be_loaded_is_named_not_fatal(capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    """A distribution registering a command that does not import: `issu` says which one and
    why, and goes on without it."""
    from importlib.metadata import EntryPoint

    from issu_tui.cli import COMMAND_ENTRY_POINTS, _load_plugin

    broken = EntryPoint(name="broken", value="issu_no_such_module:command",
                        group=COMMAND_ENTRY_POINTS)
    assert _load_plugin(broken) is None
    err = capsys.readouterr().err
    assert "command 'broken' from issu_no_such_module:command cannot be loaded" in err
    assert "ModuleNotFoundError" in err
    not_a_command = EntryPoint(name="odd", value="issu_tui.cli:COMMAND_ENTRY_POINTS",
                               group=COMMAND_ENTRY_POINTS)
    assert _load_plugin(not_a_command) is None
    assert "is not a click command" in capsys.readouterr().err
