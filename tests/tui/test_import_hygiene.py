"""Arrows point inward: screens -> issu_tui -> backends. Checked in fresh interpreters."""

from __future__ import annotations

import json
import subprocess
import sys
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
