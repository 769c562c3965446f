"""Nothing the pipeline reads (store, data URL, step outputs) may be unpickled or loaded as native code: either runs
arbitrary code on load. This scans the project's code for pickle-family imports and loads, and for native loads
(ctypes, cffi, shared libraries, object files, lleaves), so a new one fails the suite.

Native code runs only through ``green_pipeline/compression/engines.py``, which compiles engines from the verified
model text into a private local cache. The scan keeps it so: only that module may import lleaves or llvmlite or
pass lleaves a ``cache=`` file, and it may neither import anything that reads the store (fsspec, the store, S3
clients) nor take bytes or paths from its callers, so store bytes have no way into a native load. A tripwire,
not a proof: ``tests/integration/test_engine_store_tampering.py`` plants a compiled engine in the store and shows
it is never read."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("green_pipeline", "assets", "sensors")
PICKLING_MODULES = frozenset({"pickle", "_pickle", "cPickle", "cloudpickle", "dill", "joblib", "shelve", "marshal"})
PICKLE_READERS = frozenset({"read_pickle", "unpickle"})
#: Modules that load shared libraries; the project itself never needs them (lleaves uses ctypes inside).
NATIVE_MODULES = frozenset({"ctypes", "_ctypes", "cffi"})
#: Calls that map a shared library or an object file into the process.
NATIVE_LOADERS = frozenset(
    {"CDLL", "PyDLL", "WinDLL", "OleDLL", "LoadLibrary", "dlopen", "load_library_permanently", "add_object_file"}
)
NATIVE_LOADER_ATTRIBUTES = frozenset({"cdll", "pydll", "windll", "oledll", "set_object_cache"})
#: The engine compiler and the LLVM binding under it: only ENGINE_MODULE may use them.
COMPILER_MODULES = frozenset({"lleaves", "llvmlite"})
ENGINE_MODULE = ROOT / "green_pipeline" / "compression" / "engines.py"
#: What could hand store bytes to the engine module: it imports none of them.
STORAGE_MODULES = frozenset(
    {
        "green_pipeline.store.files",
        "green_pipeline.store.model_store",
        "fsspec",
        "s3fs",
        "boto3",
        "botocore",
        "urllib",
        "requests",
    }
    | {"httpx", "aiohttp", "shutil"}
)
#: Parameter types through which a caller could pass machine code, or a file holding it, to the engine module.
CALLER_PAYLOAD_TYPES = ("bytes", "bytearray", "memoryview", "Path", "PathLike", "BinaryIO", "IO")


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


def _imported_modules(node: ast.AST) -> list[str]:
    """Modules an import statement, ``importlib.import_module("...")`` or ``__import__("...")`` brings in."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module:
        return [f"{node.module}.{alias.name}" for alias in node.names]
    if isinstance(node, ast.Call) and _called_name(node) in {"import_module", "__import__"} and node.args:
        first = node.args[0]
        return [first.value] if isinstance(first, ast.Constant) and isinstance(first.value, str) else ["<computed>"]
    return []


def _called_name(call: ast.Call) -> str:
    return call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")


def _within(module: str, packages: frozenset[str]) -> bool:
    return any(module == package or module.startswith(f"{package}.") for package in packages)


def _caller_payloads(tree: ast.Module) -> list[tuple[int, str]]:
    """Parameters of public functions and methods typed as bytes or paths: (line, what)."""
    found = []
    scopes = [tree.body, *(n.body for n in tree.body if isinstance(n, ast.ClassDef) and not n.name.startswith("_"))]
    for function in (n for body in scopes for n in body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)):
        if function.name.startswith("_") and function.name != "__init__":
            continue
        arguments = function.args
        for argument in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]:
            annotation = ast.unparse(argument.annotation) if argument.annotation else ""
            if any(kind in annotation.replace(".", " ").replace("|", " ").split() for kind in CALLER_PAYLOAD_TYPES):
                found.append((function.lineno, f"{function.name} takes {argument.arg}: {annotation} from its caller"))
    return found


def _native_import(module: str, engine_module: bool) -> str | None:
    if _module_root(module) in NATIVE_MODULES:
        return f"imports {module}"
    if _module_root(module) in COMPILER_MODULES and not engine_module:
        return f"imports {module} outside the engine module"
    if engine_module and _within(module, STORAGE_MODULES):
        return f"the engine module imports {module}, a way in for store bytes"
    if engine_module and module == "<computed>":
        return "the engine module imports a computed module name"
    return None


def _native_use(node: ast.AST, engine_module: bool) -> str | None:
    if isinstance(node, ast.Call) and _called_name(node) in NATIVE_LOADERS:
        return f"calls {_called_name(node)}"
    if isinstance(node, ast.Attribute) and node.attr in NATIVE_LOADER_ATTRIBUTES:
        return f"uses {node.attr}"
    loads_a_file = isinstance(node, ast.Call) and _called_name(node) == "compile" and "cache" in _keywords(node)
    if loads_a_file and not engine_module:
        return "calls compile with a cache file outside the engine module"
    return None


def _keywords(call: ast.Call) -> set[str | None]:
    return {keyword.arg for keyword in call.keywords}


def native_loads(source: str, filename: str, engine_module: bool) -> list[str]:
    """Each native load in ``source`` that could run bytes the pipeline did not compile itself, as ``file:line: what``.

    Everywhere: ctypes/cffi, library and object-file loaders. Outside the engine module: lleaves, llvmlite and
    ``compile(cache=...)``. In it: any import that could read the store, and public parameters typed bytes or paths.
    """
    tree = ast.parse(source, filename)
    found = []
    for node in ast.walk(tree):
        whats = [_native_import(module, engine_module) for module in _imported_modules(node)]
        found += [(node.lineno, what) for what in [*whats, _native_use(node, engine_module)] if what]
    if engine_module:
        found += _caller_payloads(tree)
    return [f"{filename}:{line}: {what}" for line, what in sorted(found)]


def scan_native(paths: list[Path], engine_module: Path = ENGINE_MODULE) -> list[str]:
    return [
        hit
        for path in paths
        for hit in native_loads(path.read_text(encoding="utf-8"), str(path), engine_module=path == engine_module)
    ]


def project_files() -> list[Path]:
    return sorted(path for folder in SCANNED for path in (ROOT / folder).rglob("*.py"))


def test_project_code_never_unpickles() -> None:
    files = project_files()
    assert len(files) > 10 and any(p.name == "model_store.py" for p in files), "the scan found no project code"
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


def test_project_code_loads_native_code_only_through_the_local_engine_cache() -> None:
    files = project_files()
    assert ENGINE_MODULE in files, "the engine module moved: update ENGINE_MODULE"
    assert scan_native(files) == []


def test_the_engine_module_is_the_one_that_loads_lleaves() -> None:
    """The exemption is not vacuous: scanned as any other module, the engine module's lleaves import is found."""
    hits = scan_native([ENGINE_MODULE], engine_module=ROOT / "elsewhere.py")
    assert any(hit.endswith("imports lleaves outside the engine module") for hit in hits), hits


@pytest.mark.parametrize(
    ("line", "what"),
    [
        ("import ctypes", "imports ctypes"),
        ("from ctypes import CDLL", "imports ctypes.CDLL"),
        ("lib = ctypes.CDLL(store_path)", "calls CDLL"),
        ("lib = cdll.LoadLibrary(store_path)", "calls LoadLibrary"),
        ("lib = ctypes.cdll.mylib", "uses cdll"),
        ("import cffi", "imports cffi"),
        ("handle = ffi.dlopen(store_path)", "calls dlopen"),
        ("import lleaves", "imports lleaves outside the engine module"),
        ("lleaves = importlib.import_module('lleaves')", "imports lleaves outside the engine module"),
        ("from llvmlite import binding", "imports llvmlite.binding outside the engine module"),
        ("binding.load_library_permanently(store_path)", "calls load_library_permanently"),
        ("engine.add_object_file(store_path)", "calls add_object_file"),
        ("engine.set_object_cache(getbuffer_func=lambda _: store_bytes)", "uses set_object_cache"),
        ("model.compile(cache=store_path)", "calls compile with a cache file outside the engine module"),
    ],
)
def test_the_scanner_finds_a_planted_native_load(tmp_path: Path, line: str, what: str) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text(f'"""A module someone edited."""\n\n{line}\n', encoding="utf-8")
    assert what in " ".join(scan_native([planted])), scan_native([planted])
    assert scan_native([planted])[0].startswith(f"{planted}:3: ")


@pytest.mark.parametrize(
    ("line", "what"),
    [
        ("from green_pipeline.store import files", "imports green_pipeline.store.files, a way in for store bytes"),
        (
            "from green_pipeline.store.model_store import ModelStore",
            "imports green_pipeline.store.model_store.ModelStore, a way",
        ),
        ("import fsspec", "the engine module imports fsspec, a way in for store bytes"),
        ("store = importlib.import_module(name)", "the engine module imports a computed module name"),
        ("def load_compiled(model_text: str, payload: bytes) -> None: ...", "takes payload: bytes from its caller"),
        ("def load_compiled(text: str, cached: Path | None) -> None: ...", "takes cached: Path | None from its caller"),
        ("class Engine:\n    def load(self, blob: bytearray) -> None: ...", "load takes blob: bytearray"),
    ],
)
def test_the_scanner_finds_a_way_for_store_bytes_into_the_engine_module(tmp_path: Path, line: str, what: str) -> None:
    """The engine module may load machine code, from its own cache only: store bytes must have no way in."""
    planted = tmp_path / "compression_engines.py"
    planted.write_text(f'"""The engine module, edited."""\n\nimport lleaves\n{line}\n', encoding="utf-8")
    hits = scan_native([planted], engine_module=planted)
    assert len(hits) == 1 and what in hits[0], hits


def test_the_native_scanner_leaves_safe_code_alone(tmp_path: Path) -> None:
    safe = tmp_path / "safe.py"
    safe.write_text(
        "import importlib\nfrom functools import lru_cache\nre = importlib.import_module('re')\n"
        "code = compile(source, 'x.py', 'exec')\ndef read(url: str, payload: bytes) -> None: ...\n",
        encoding="utf-8",
    )
    assert scan_native([safe]) == []
