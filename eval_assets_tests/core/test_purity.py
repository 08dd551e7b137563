"""The evaluation core is shared by the Dagster skin and the command line tool.

It must stay a pure library: importing any of it must not pull in dagster or mlflow (a data
scientist without a deployment runs it, and the CLI must start fast), and no core source file may
import them, even lazily inside a function.
"""

from __future__ import annotations

import ast
import json
import os
import pkgutil
import subprocess
import sys
import tempfile
from pathlib import Path

import eval_assets.core

CORE = Path(eval_assets.core.__file__).parent
FORBIDDEN = ("dagster", "mlflow")


def core_modules() -> list[str]:
    return sorted(f"eval_assets.core.{m.name}" for m in pkgutil.iter_modules([str(CORE)]))


def subprocess_env() -> dict[str, str]:
    """Cache bytecode in a shared temporary folder, so child interpreters start quickly."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "eval-assets-test-pycache")
    return env


def test_the_core_has_the_modules_the_design_names():
    assert {
        "eval_assets.core.contract",
        "eval_assets.core.criteria",
        "eval_assets.core.gating",
        "eval_assets.core.metrics",
        "eval_assets.core.slicing",
    } <= set(core_modules())


def test_importing_every_core_module_leaves_dagster_and_mlflow_unloaded():
    script = (
        "import importlib, json, sys\n"
        f"for name in {core_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules})\n"
        "print(json.dumps(loaded))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env=subprocess_env(),
        timeout=300,
    )
    loaded = set(json.loads(completed.stdout))

    assert "eval_assets" in loaded and "pandas" in loaded  # the imports did happen
    assert not loaded & set(FORBIDDEN), loaded & set(FORBIDDEN)


def test_no_core_source_file_imports_dagster_or_mlflow():
    offenders = []
    for path in sorted(CORE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", getattr(node.func, "id", ""))
                in ("import_module", "__import__")
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                names = [str(node.args[0].value)]
            else:
                continue
            offenders += [
                f"{path.name}:{node.lineno} {name}"
                for name in names
                if name.split(".")[0] in FORBIDDEN or name.split(".")[0].startswith("dagster_")
            ]

    assert offenders == []
