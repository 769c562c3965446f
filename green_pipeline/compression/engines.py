"""Inference engines compiled on this machine from a verified LightGBM text model, with an honest fallback.

Machine code is never read from the model store: its checksums live in the same bucket, so they authenticate
nothing, and whoever could write the bucket would run code here. The LightGBM text is the only deployable
artefact; an engine is compiled from it and kept in a local cache keyed by the text's sha256 and the build
target, in a folder only this user can write (``$XDG_CACHE_HOME/green-pipeline/engines``, else under
``~/.cache``). This is the only module that hands machine code to lleaves (``tests/unit/test_safe_loading.py``).
lleaves (LLVM through llvmlite<0.45) measured fastest on this machine: ONNX Runtime reached 1.5-1.8x and tl2cgen
was slower than LightGBM itself (shared/FACTS.md), so they are not offered.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import secrets
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from green_pipeline.energy.measurement import EnergyReport, EnergySettings, measure_energy
from green_pipeline.errors import InvalidConfigError

LIGHTGBM = "lightgbm"
LLEAVES = "lleaves"
COMPILED_ENGINES = (LLEAVES,)
#: Where a compiled engine came from: compiled in this call, or loaded from this user's engine cache.
COMPILED_HERE, LOCAL_CACHE = "compiled here", "local cache"
CACHE_HOME_ENV = "XDG_CACHE_HOME"
#: Group or others able to write the cache could plant machine code in it: such a folder or file is refused.
_SHARED_WRITE = stat.S_IWGRP | stat.S_IWOTH
#: What llvmlite raises for IR or target errors, and for APIs removed by llvmlite 0.45+ (PassManagerBuilder).
COMPILE_ERRORS = (AttributeError, KeyError, OSError, RuntimeError, ValueError)

Predict = Callable[[pd.DataFrame], np.ndarray]


@dataclass(frozen=True)
class CompiledModel:
    """A compiled engine ready to predict; ``build`` is what compiling it, or loading it from the cache, cost."""

    engine: str
    predict: Predict
    build: EnergyReport
    source: str


@dataclass(frozen=True)
class EngineUnavailable:
    """Why an engine cannot run this model here; the candidate is reported, never faked."""

    engine: str
    reason: str


def lightgbm_predictor(model_text: str, num_threads: int) -> Predict:
    """LightGBM's own predictor for ``model_text``: the reference every engine is compared with."""
    booster = lgb.Booster(model_str=model_text)
    return lambda features: np.asarray(booster.predict(features, num_threads=num_threads))


def engine_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/green-pipeline/engines``; under ``~/.cache`` when the variable is unset or relative (XDG)."""
    base = os.environ.get(CACHE_HOME_ENV, "")
    return (Path(base) if os.path.isabs(base) else Path.home() / ".cache") / "green-pipeline" / "engines"


def compile_model(
    model_text: str, engine: str, energy: EnergySettings, num_threads: int
) -> CompiledModel | EngineUnavailable:
    """``model_text`` compiled with ``engine`` for this CPU, or loaded from the local cache if compiled here before.

    The compile (or the load) is measured like any block, so the step that pays for it is charged.
    """
    if engine not in COMPILED_ENGINES:
        return EngineUnavailable(engine, f"no compiler for engine {engine!r} here; available: {COMPILED_ENGINES}")
    module = _import_lleaves()
    if isinstance(module, EngineUnavailable):
        return module
    try:
        with measure_energy(energy) as measurement, _private_cache(engine_cache_dir()) as cache:
            model, source = _cached_or_compiled(module, cache, model_text)
    except InvalidConfigError as exc:
        return EngineUnavailable(engine, str(exc))
    except COMPILE_ERRORS as exc:
        return EngineUnavailable(engine, f"lleaves failed to compile the model: {type(exc).__name__}: {exc}")
    assert measurement.report is not None
    predict = _lleaves_predictor(model, num_threads)
    return CompiledModel(engine=LLEAVES, predict=predict, build=measurement.report, source=source)


@dataclass(frozen=True)
class _Cache:
    """The engine cache folder, opened once: names are resolved against its descriptor, so it cannot be swapped."""

    folder: Path
    descriptor: int

    def read(self, name: str) -> bytes | None:
        """A cached object, or None if absent; one that is not a private regular file of this user is refused."""
        try:
            descriptor = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=self.descriptor)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise InvalidConfigError(f"engine cache file {self.folder / name}: {exc.strerror}; delete it.") from exc
        with os.fdopen(descriptor, "rb") as handle:
            status = os.fstat(handle.fileno())
            if not stat.S_ISREG(status.st_mode):
                raise InvalidConfigError(f"engine cache file {self.folder / name} is not a regular file; delete it.")
            _require_private(status, self.folder / name)
            return handle.read()

    def write(self, name: str, payload: bytes) -> None:
        """A temporary file renamed into place: readers, or a concurrent compile, see a whole object or none."""
        temporary = f".{name}.{secrets.token_hex(8)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        try:
            with os.fdopen(os.open(temporary, flags, 0o600, dir_fd=self.descriptor), "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, name, src_dir_fd=self.descriptor, dst_dir_fd=self.descriptor)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary, dir_fd=self.descriptor)
            raise


@contextlib.contextmanager
def _private_cache(folder: Path) -> Iterator[_Cache]:
    """``folder``, created 0700 if absent; refused if it is a link, another user's, or writable by group or others."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        raise InvalidConfigError(
            f"engine cache {folder}: {exc.strerror} (a symbolic link is refused); "
            f"set {CACHE_HOME_ENV} to a folder only you can write."
        ) from exc
    try:
        _require_private(os.fstat(descriptor), folder)
        yield _Cache(folder, descriptor)
    finally:
        os.close(descriptor)


def _require_private(status: os.stat_result, path: Path) -> None:
    """Machine code is loaded from the cache: only this user may have written it."""
    if status.st_uid != os.geteuid():
        raise InvalidConfigError(
            f"engine cache {path} belongs to uid {status.st_uid}, not to this user (uid {os.geteuid()}); "
            f"set {CACHE_HOME_ENV} to a folder of yours."
        )
    if status.st_mode & _SHARED_WRITE:
        raise InvalidConfigError(
            f"engine cache {path} is writable by group or others (mode {stat.S_IMODE(status.st_mode):o}); "
            f"run `chmod go-w {path}` or set {CACHE_HOME_ENV} to a folder only you can write."
        )


def _cached_or_compiled(module: ModuleType, cache: _Cache, model_text: str) -> tuple[Any, str]:
    """lleaves loads machine code from a path: cached bytes are read once here and staged in a private folder."""
    name = f"{hashlib.sha256(model_text.encode()).hexdigest()}-{_build_target()}.o"
    cached = cache.read(name)
    with tempfile.TemporaryDirectory(prefix="green-pipeline-engine-") as staging:
        model_path, object_path = Path(staging) / "model.txt", Path(staging) / "model.o"
        model_path.write_text(model_text, encoding="utf-8")
        if cached is not None:
            object_path.write_bytes(cached)
        model = module.Model(model_file=str(model_path))
        model.compile(cache=str(object_path))
        if cached is None:
            cache.write(name, object_path.read_bytes())
    return model, COMPILED_HERE if cached is None else LOCAL_CACHE


def _build_target() -> str:
    """What machine code depends on besides the model: the CPU, its features and the compiler's versions."""
    binding = importlib.import_module("llvmlite.binding")
    try:
        features = binding.get_host_cpu_features().flatten()
    except RuntimeError:  # LLVM cannot detect them everywhere; lleaves then compiles for the CPU name alone
        features = ""
    identity = "|".join((features, metadata.version("llvmlite"), metadata.version("lleaves")))
    return f"{binding.get_host_cpu_name()}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"


def _import_lleaves() -> ModuleType | EngineUnavailable:
    try:
        return importlib.import_module("lleaves")
    except ImportError as exc:
        return EngineUnavailable(LLEAVES, f"lleaves is not installed ({exc}); install lleaves and llvmlite<0.45")


def _lleaves_predictor(model: Any, num_threads: int) -> Predict:
    return lambda features: np.asarray(model.predict(features, n_jobs=num_threads))
