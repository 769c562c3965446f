"""Nothing the pipeline reads (store, data URL, step outputs) may be unpickled: a pickle runs arbitrary code on
load. This scans the project's code for pickle-family imports and loads, so a new one fails the suite."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("green_pipeline", "assets", "sensors")
PICKLING_MODULES = frozenset({"pickle", "_pickle", "cPickle", "cloudpickle", "dill", "joblib", "shelve", "marshal"})
PICKLE_READERS = frozenset({"read_pickle", "unpickle"})


def _module_root(name: str | None) -> str:
    return (name or "").split(".")[0]


def _allows_pickle(call: ast.Call) -> bool:
    """``np.load(..., allow_pickle=<anything but a literal False>)``."""
    return any(
        k.arg == "allow_pickle" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
        for k in call.keywords
    )


def unsafe_loads(source: str, filename: str) -> list[str]:
    """Each pickle-family import, pickle reader call or ``allow_pickle`` load in ``source``, as ``file:line: what``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        what = None
        if isinstance(node, ast.Import) and any(_module_root(a.name) in PICKLING_MODULES for a in node.names):
            what = "imports " + ", ".join(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and _module_root(node.module) in PICKLING_MODULES:
            what = f"imports from {node.module}"
        elif isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in PICKLE_READERS:
                what = f"calls {name}"
            elif _allows_pickle(node):
                what = f"calls {name} with allow_pickle"
        if what:
            found.append(f"{filename}:{node.lineno}: {what}")
    return found


def scan(paths: list[Path]) -> list[str]:
    return [hit for path in paths for hit in unsafe_loads(path.read_text(encoding="utf-8"), str(path))]


def project_files() -> list[Path]:
    return sorted(path for folder in SCANNED for path in (ROOT / folder).rglob("*.py"))


def test_project_code_never_unpickles() -> None:
    files = project_files()
    assert len(files) > 10 and any(p.name == "store.py" for p in files), "the scan found no project code"
    assert scan(files) == []


@pytest.mark.parametrize(
    ("line", "what"),
    [
        ("import pickle", "imports pickle"),
        ("import joblib as jl", "imports joblib"),
        ("from cloudpickle import loads", "imports from cloudpickle"),
        ("import dill.settings", "imports dill.settings"),
        ("frame = pd.read_pickle(url)", "calls read_pickle"),
        ("arr = np.load(path, allow_pickle=True)", "calls load with allow_pickle"),
        ("arr = numpy.load(path, mmap_mode='r', allow_pickle=flag)", "calls load with allow_pickle"),
    ],
)
def test_the_scanner_finds_a_planted_load(tmp_path: Path, line: str, what: str) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text(f'"""A module someone edited."""\n\n{line}\n', encoding="utf-8")
    assert scan([planted]) == [f"{planted}:3: {what}"]


def test_the_scanner_leaves_safe_loads_alone(tmp_path: Path) -> None:
    safe = tmp_path / "safe.py"
    safe.write_text("arr = np.load(path, allow_pickle=False)\nframe = pd.read_parquet(url)\nimport json\n")
    assert scan([safe]) == []
