"""engine/ never imports PySide6, shiboken6 or console/: the service and the CLI run without Qt."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "engine"
FORBIDDEN = ("PySide6", "shiboken6", "console")
BIN = ROOT / ".venv" / "bin"


def _forbidden(module: str) -> bool:
    return module.split(".")[0] in FORBIDDEN


def forbidden_imports(path: Path, root: Path = ROOT) -> list[str]:
    """Every import of a forbidden package in one file: import statements (at any depth, lazy ones too) and
    importlib.import_module / __import__ calls with a literal name."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call):
            func = node.func
            called = (
                func.attr
                if isinstance(func, ast.Attribute)
                else func.id
                if isinstance(func, ast.Name)
                else ""
            )
            if called in {"import_module", "__import__"} and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    names = [first.value]
        found.extend(f"{path.relative_to(root)}:{node.lineno}: {name}" for name in names if _forbidden(name))
    return sorted(found, key=lambda hit: int(hit.split(":")[1]))


def test_no_engine_module_imports_qt_or_the_console() -> None:
    files = sorted(ENGINE.rglob("*.py"))
    assert len(files) > 5
    offenders = [hit for path in files for hit in forbidden_imports(path)]
    assert offenders == []


def test_the_checker_sees_lazy_and_dynamic_imports(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import json\n"
        "def f():\n    from PySide6.QtCore import QTimer\n"
        "import importlib\nimportlib.import_module('console.app')\n"
        "import shiboken6, consolekit\n",
        encoding="utf-8",
    )
    assert forbidden_imports(probe, root=tmp_path) == [
        "probe.py:3: PySide6.QtCore",
        "probe.py:5: console.app",
        "probe.py:6: shiboken6",
    ]


def test_the_cli_and_engine_load_without_qt() -> None:
    code = (
        "import sys, engine.cli, engine.bootstrap, engine.secrets, engine.logs\n"
        "rc = engine.cli.main(['--help'])\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'PySide6', 'shiboken6', 'console'})\n"
        "print(bad)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_import_linter_contract_holds() -> None:
    lint_imports = BIN / "lint-imports"
    done = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "engine never imports Qt or the console KEPT" in done.stdout
