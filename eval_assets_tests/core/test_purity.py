"""The evaluation core is shared by the Dagster skin and the command line tool.

It must stay a pure library: importing any of it must not pull in dagster or mlflow (a data
scientist without a deployment runs it, and the CLI must start fast), and no core source file may
import them, even lazily inside a function. Its modules import one another in one direction only,
at the top of each module, where a circle cannot hide; and computing metrics does not load
matplotlib, which only the pictures need.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import eval_assets.core

CORE = Path(eval_assets.core.__file__).parent
FORBIDDEN = ("dagster", "mlflow")
# The only core module that draws; everything else, the metrics above all, must not need it.
PLOTS = "eval_assets.core.render.plots"
# Core modules that import the plots to draw a report's pictures (loaded after them).
DRAWING = (PLOTS, "eval_assets.core.pipeline.compare")


def core_sources() -> dict[str, Path]:
    """Every core module (subpackages included) by dotted name, with its source file."""
    sources = {}
    for path in sorted(CORE.rglob("*.py")):
        parts = path.relative_to(CORE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        sources[".".join(("eval_assets.core", *parts))] = path
    return sources


def core_modules() -> list[str]:
    return sorted(name for name in core_sources() if name != "eval_assets.core")


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


@pytest.fixture(scope="module")
def loaded_after_imports() -> dict[str, set[str]]:
    """Top-level packages loaded in a fresh interpreter after importing every core module but
    those that draw ("without_plots"), then after importing those too ("all")."""
    modules = core_modules()
    first = [m for m in modules if m not in DRAWING]
    script = (
        "import importlib, json, sys\n"
        "def loaded():\n"
        "    return sorted({m.split('.')[0] for m in sys.modules})\n"
        f"for name in {first!r}:\n"
        "    importlib.import_module(name)\n"
        "without_plots = loaded()\n"
        f"for name in {list(DRAWING)!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps({'without_plots': without_plots, 'all': loaded()}))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env=subprocess_env(),
        timeout=300,
    )
    return {key: set(value) for key, value in json.loads(completed.stdout).items()}


def test_importing_every_core_module_leaves_dagster_and_mlflow_unloaded(loaded_after_imports):
    loaded = loaded_after_imports["all"]

    assert "eval_assets" in loaded and "pandas" in loaded  # the imports did happen
    assert not loaded & set(FORBIDDEN), loaded & set(FORBIDDEN)


def test_computing_metrics_leaves_matplotlib_unloaded(loaded_after_imports):
    """The metrics (binary, curves, streamed), gating, the HTML page and the pipeline up to the
    paired comparison never need matplotlib."""
    assert {
        "eval_assets.core.metrics.binary",
        "eval_assets.core.metrics.curves",
        "eval_assets.core.metrics.streamed",
        "eval_assets.core.render.html",
        "eval_assets.core.pipeline.metrics",
        "eval_assets.core.pipeline.prediction_files",
        "eval_assets.core.pipeline.scoring",
    } <= set(core_modules())
    assert "matplotlib" in loaded_after_imports["all"]  # the plots do load it: the probe works
    assert "matplotlib" not in loaded_after_imports["without_plots"]


def test_no_core_source_file_imports_dagster_or_mlflow():
    offenders = []
    for path in core_sources().values():
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
                f"{path.relative_to(CORE)}:{node.lineno} {name}"
                for name in names
                if name.split(".")[0] in FORBIDDEN or name.split(".")[0].startswith("dagster_")
            ]

    assert offenders == []


def project_imports(path: Path) -> list[tuple[ast.stmt, list[str]]]:
    """Each import statement of `path` that names an eval_assets module, with the modules it
    names (``from eval_assets.core.metrics import streamed`` names the submodule)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        names = [n for n in names if n.split(".")[0] == "eval_assets"]
        if names:
            found.append((node, names))
    return found


def test_every_core_import_of_eval_assets_is_at_the_top_of_its_module():
    """An import inside a function (or under TYPE_CHECKING) is how a circle hides: criteria,
    metrics and slicing once imported each other that way."""
    offenders = []
    for path in core_sources().values():
        top = ast.parse(path.read_text(encoding="utf-8")).body
        top_level = {(n.lineno, n.col_offset) for n in top}
        offenders += [
            f"{path.relative_to(CORE)}:{node.lineno} {names[0]}"
            for node, names in project_imports(path)
            if (node.lineno, node.col_offset) not in top_level
        ]

    assert offenders == []


def test_core_modules_import_each_other_without_a_circle():
    sources = core_sources()
    graph = {
        module: {
            name
            for _, names in project_imports(path)
            for name in names
            if name in sources and name != module
        }
        for module, path in sources.items()
    }
    done: set[str] = set()

    def circle_from(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return path[path.index(module) :] + [module]
        if module in done:
            return None
        for imported in sorted(graph[module]):
            found = circle_from(imported, [*path, module])
            if found:
                return found
        done.add(module)
        return None

    circles = [c for m in sorted(graph) if (c := circle_from(m, []))]
    assert circles == []
