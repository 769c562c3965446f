"""Inference engines compiled for this CPU from a LightGBM text model, with an honest fallback.

The LightGBM text model stays the deployable artefact: a compiled object is an optional extra file that
can always be rebuilt from it, and is rebuilt when it was compiled for another CPU. lleaves (LLVM through
llvmlite<0.45) measured fastest on this machine: ONNX Runtime reached 1.5-1.8x and tl2cgen was slower
than LightGBM itself (shared/FACTS.md), so they are not offered.
"""

from __future__ import annotations

import hashlib
import importlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from green_pipeline.energy import EnergyReport, EnergySettings, measure_energy
from green_pipeline.errors import InvalidConfigError

LIGHTGBM = "lightgbm"
LLEAVES = "lleaves"
COMPILED_ENGINES = (LLEAVES,)
#: lleaves' cache file: machine code for one CPU, which lleaves loads instead of compiling again.
LLEAVES_FILE = "model.lleaves.o"
MODEL_FILE = "model.txt"
#: What llvmlite raises for IR or target errors, and for APIs removed by llvmlite 0.45+ (PassManagerBuilder).
COMPILE_ERRORS = (AttributeError, KeyError, OSError, RuntimeError, ValueError)

Predict = Callable[[pd.DataFrame], np.ndarray]


@dataclass(frozen=True)
class EngineArtifact:
    """A compiled model: the bytes to store next to model.txt, its file name, and the CPU it runs on."""

    engine: str
    file_name: str
    payload: bytes
    target: str


@dataclass(frozen=True)
class CompiledModel:
    """A compiled engine ready to predict, its artefact, and what compiling it cost."""

    artifact: EngineArtifact
    predict: Predict
    build: EnergyReport


@dataclass(frozen=True)
class EngineUnavailable:
    """Why an engine could not compile this model here; the candidate is reported, never faked."""

    engine: str
    reason: str


def lightgbm_predictor(model_text: str, num_threads: int) -> Predict:
    """LightGBM's own predictor for ``model_text``: the reference every engine is compared with."""
    booster = lgb.Booster(model_str=model_text)
    return lambda features: np.asarray(booster.predict(features, num_threads=num_threads))


def compile_model(
    model_text: str, engine: str, energy: EnergySettings, num_threads: int
) -> CompiledModel | EngineUnavailable:
    """Compile ``model_text`` with ``engine`` for this CPU, measuring the compile's energy and time."""
    if engine not in COMPILED_ENGINES:
        return EngineUnavailable(engine, f"no compiler for engine {engine!r} here; available: {COMPILED_ENGINES}")
    module = _import_lleaves()
    if isinstance(module, EngineUnavailable):
        return module
    with tempfile.TemporaryDirectory(prefix="green-pipeline-compile-") as folder:
        try:
            with measure_energy(energy) as measurement:
                model = _lleaves_model(module, Path(folder), model_text, cached=None)
        except COMPILE_ERRORS as exc:
            return EngineUnavailable(engine, f"lleaves failed to compile the model: {type(exc).__name__}: {exc}")
        payload = (Path(folder) / LLEAVES_FILE).read_bytes()
    assert measurement.report is not None
    artifact = EngineArtifact(engine=LLEAVES, file_name=LLEAVES_FILE, payload=payload, target=host_target())
    return CompiledModel(artifact=artifact, predict=_lleaves_predictor(model, num_threads), build=measurement.report)


def load_compiled(model_text: str, artifact: EngineArtifact | None, num_threads: int) -> Predict:
    """A predictor from a stored artefact, recompiled from ``model_text`` if it is absent or for another CPU."""
    engine = artifact.engine if artifact else LLEAVES
    if engine not in COMPILED_ENGINES:
        raise InvalidConfigError(f"engine {engine!r} of the stored artefact is not one of {COMPILED_ENGINES}.")
    module = _import_lleaves()
    if isinstance(module, EngineUnavailable):
        raise InvalidConfigError(f"cannot load the compiled model: {module.reason}")
    reusable = artifact is not None and artifact.target == host_target()
    with tempfile.TemporaryDirectory(prefix="green-pipeline-load-") as folder:
        model = _lleaves_model(module, Path(folder), model_text, cached=artifact.payload if reusable else None)
    return _lleaves_predictor(model, num_threads)


def host_target() -> str:
    """This CPU's name and a digest of its features: machine code compiled for one may crash on another."""
    binding = importlib.import_module("llvmlite.binding")
    features = binding.get_host_cpu_features().flatten()
    return f"{binding.get_host_cpu_name()}-{hashlib.sha256(features.encode()).hexdigest()[:12]}"


def _import_lleaves() -> ModuleType | EngineUnavailable:
    try:
        return importlib.import_module("lleaves")
    except ImportError as exc:
        return EngineUnavailable(LLEAVES, f"lleaves is not installed ({exc}); install lleaves and llvmlite<0.45")


def _lleaves_model(module: ModuleType, folder: Path, model_text: str, cached: bytes | None) -> Any:
    """lleaves reads models from files and loads machine code from its cache file when that file exists."""
    model_path, object_path = folder / MODEL_FILE, folder / LLEAVES_FILE
    model_path.write_text(model_text, encoding="utf-8")
    if cached is not None:
        object_path.write_bytes(cached)
    model = module.Model(model_file=str(model_path))
    model.compile(cache=str(object_path))
    return model


def _lleaves_predictor(model: Any, num_threads: int) -> Predict:
    return lambda features: np.asarray(model.predict(features, n_jobs=num_threads))
