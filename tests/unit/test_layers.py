"""The layers the folders show, checked where import-linter's graph cannot look.

import-linter (``make lint``) enforces the contracts in pyproject.toml, indirect imports included. Two things it
cannot see: what importing a core module really loads at run time, and imports written as
``green_pipeline.assets``/``green_pipeline.sensors``, which reach assets/ and sensors/ through the package-dir mapping.
"""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import green_pipeline

ROOT = Path(__file__).resolve().parents[2]
CORE = ("carbon", "compression", "data", "demo", "drift", "energy", "reporting", "serving", "store", "training")
#: Only the app (definitions, runner, CLI) may use the assets and sensors; sensors may use the assets' jobs.
SHELL_USERS = {
    "green_pipeline.assets": ("green_pipeline/app", "sensors", "assets"),
    "green_pipeline.sensors": ("green_pipeline/app", "sensors"),
}

IMPORT_EACH = """
import importlib, json, sys
pulled = {}
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
    found = sorted(m for m in sys.modules if m == "dagster" or m.startswith("dagster."))
    if found:
        pulled[name] = found[:3]
        break
print(json.dumps({"imported": len(json.loads(sys.argv[1])), "pulled": pulled}))
"""


def core_modules() -> list[str]:
    names = ["green_pipeline.errors", "green_pipeline.records"]
    for package in CORE:
        names.append(f"green_pipeline.{package}")
        path = [str(Path(green_pipeline.__file__).parent / package)]
        names += [m.name for m in pkgutil.walk_packages(path, prefix=f"green_pipeline.{package}.")]
    return names


def test_no_core_module_loads_dagster_in_a_fresh_process() -> None:
    modules = core_modules()
    assert len(modules) > 40 and "green_pipeline.energy.measurement" in modules
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_EACH, json.dumps(modules)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"imported": len(modules), "pulled": {}}


def test_the_fresh_process_check_sees_a_module_that_loads_dagster() -> None:
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_EACH, json.dumps(["green_pipeline.orchestration.resources"])],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert json.loads(done.stdout.strip().splitlines()[-1])["pulled"]["green_pipeline.orchestration.resources"]


def shell_imports(path: Path) -> set[str]:
    """The ``green_pipeline.assets``/``.sensors`` modules a file imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        found |= {n for n in names if n.split(".")[:2] in (["green_pipeline", "assets"], ["green_pipeline", "sensors"])}
    return found


def test_only_the_layers_above_use_the_assets_and_sensors() -> None:
    offenders = []
    for path in sorted([*(ROOT / "green_pipeline").rglob("*.py"), *(ROOT / "assets").glob("*.py")]):
        where = path.relative_to(ROOT).as_posix()
        for module in shell_imports(path):
            shell = ".".join(module.split(".")[:2])
            if not where.startswith(SHELL_USERS[shell]):
                offenders.append(f"{where} imports {module}")
    assert offenders == []


def test_the_scan_finds_a_core_module_importing_an_asset(tmp_path: Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text(
        "from green_pipeline.assets.jobs import green_pipeline_job\nimport green_pipeline.sensors.drift\n"
    )
    assert shell_imports(planted) == {"green_pipeline.assets.jobs", "green_pipeline.sensors.drift"}
