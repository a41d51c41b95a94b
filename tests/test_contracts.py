"""The house's import contracts (pyproject's [tool.importlinter]) hold, and break when they should;
no module reaches into another package's private names; no module grows past 450 lines."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

SRC = REPO / "src" / "tunesmith"
LINT = Path(sys.executable).parent / "lint-imports"


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(root / "src"), "PATH": "/usr/bin:/bin"},
    )


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(SRC, root / "src" / "tunesmith", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_contracts_hold_and_a_forbidden_import_breaks_them(tmp_path):
    root = _copy(tmp_path)
    kept = _lint(root)
    assert kept.returncode == 0, kept.stdout[-2000:] + kept.stderr[-2000:]
    assert "0 broken" in kept.stdout
    (root / "src" / "tunesmith" / "train" / "leak.py").write_text("from tunesmith.evaluate import metrics\n")
    broken = _lint(root)
    assert broken.returncode == 1, broken.stdout[-2000:]
    assert "Training never imports evaluation BROKEN" in broken.stdout
    assert "tunesmith.train.leak -> tunesmith.evaluate.metrics" in broken.stdout


def test_a_stage_importing_the_command_line_breaks_the_layers(tmp_path):
    root = _copy(tmp_path)
    (root / "src" / "tunesmith" / "data" / "leak.py").write_text("import tunesmith.cli.views\n")
    broken = _lint(root)
    assert broken.returncode == 1 and "Stages never import the command line or the pipeline BROKEN" in broken.stdout


def test_no_module_imports_another_packages_private_names():
    found = []
    for path in SRC.rglob("*.py"):
        here = path.relative_to(SRC).parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tunesmith."):
                there = node.module.split(".")[1]
                found += [
                    f"{path.relative_to(SRC)}:{node.lineno} {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__") and there != here
                ]
    assert not found, found


def test_no_module_over_450_lines():
    sizes = {str(p.relative_to(SRC)): len(p.read_text().splitlines()) for p in SRC.rglob("*.py")}
    assert not {name: n for name, n in sizes.items() if n > 450}


def test_every_name_imported_from_tunesmith_exists():
    """Imports inside functions fail only when the function runs: a benchmark run for an hour, the first
    time after a rename. Every `from tunesmith... import name` in the package, the benchmarks, the tools
    and the examples names something that is there."""
    import importlib

    missing = []
    for folder in ("src", "benchmarks", "tools", "examples"):
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if not (isinstance(node, ast.ImportFrom) and node.level == 0):
                    continue
                if node.module != "tunesmith" and not (node.module or "").startswith("tunesmith."):
                    continue
                module = importlib.import_module(node.module)
                missing += [
                    f"{path.relative_to(REPO)}:{node.lineno} {node.module}.{a.name}"
                    for a in node.names
                    if not hasattr(module, a.name)
                    and not (hasattr(module, "__path__") and importlib.util.find_spec(f"{node.module}.{a.name}"))
                ]
    assert not missing, missing
