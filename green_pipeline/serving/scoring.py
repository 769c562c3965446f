"""Batch scoring with a prediction cache: a row already scored by the same model version is not recomputed.

The key is a 64-bit hash of the row's feature values (pandas' stable ``hash_pandas_object``) and the
cache is kept per model version, so a new model never reuses its predecessor's scores.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.util import hash_pandas_object

from green_pipeline.compression.engines import (
    LIGHTGBM,
    CompiledModel,
    Predict,
    compile_model,
    lightgbm_predictor,
)
from green_pipeline.data.schema import FeatureSchema
from green_pipeline.energy.measurement import EnergySettings
from green_pipeline.store.model_store import DeployedModel

logger = logging.getLogger(__name__)

ROW_HASH = "row_hash"
SCORE = "score"


@dataclass(frozen=True)
class ScoringResult:
    """Scores in the batch's row order, and the cache to keep for this model version."""

    predictions: pd.DataFrame
    cache: pd.DataFrame
    rows: int
    cache_hits: int
    rows_computed: int

    @property
    def hit_rate(self) -> float:
        return self.cache_hits / self.rows if self.rows else 0.0


def row_hashes(frame: pd.DataFrame, schema: FeatureSchema) -> pd.Series:
    """One stable hash per row of the model's features (label and other columns do not matter)."""
    features = frame[list(schema.features)].copy()
    for column in schema.categorical:
        features[column] = features[column].astype("string")
    return hash_pandas_object(features, index=False).astype("uint64")


@dataclass(frozen=True)
class ServingEngine:
    """The predictor serving a version here, its engine, and what building a compiled engine cost in this step."""

    predict: Predict
    engine: str
    compiled: CompiledModel | None = None
    fallback_reason: str | None = None

    def as_metadata(self) -> dict[str, object]:
        """``engine``, where a compiled engine came from and its build cost, or why LightGBM serves instead."""
        metadata: dict[str, object] = {"engine": self.engine}
        if self.compiled is not None:
            build = self.compiled.build
            metadata |= {"engine_source": self.compiled.source, "engine_build_duration_s": build.duration_s}
            if build.energy_kwh is not None:
                metadata["engine_build_energy_kwh"] = build.energy_kwh
        if self.fallback_reason is not None:
            metadata["engine_fallback_reason"] = self.fallback_reason
        return metadata


def serving_predictor(model: DeployedModel, energy: EnergySettings, num_threads: int) -> ServingEngine:
    """The engine compression chose for the version, built here from its verified text, else LightGBM on the text.

    A compiled engine is compiled on this machine, or loaded from this user's engine cache; never from the store.
    """
    chosen = model.metadata.get("engine", {}).get("name", LIGHTGBM)
    if chosen == LIGHTGBM:
        return ServingEngine(lightgbm_predictor(model.model_text, num_threads), LIGHTGBM)
    compiled = compile_model(model.model_text, chosen, energy, num_threads)
    if isinstance(compiled, CompiledModel):
        return ServingEngine(compiled.predict, compiled.engine, compiled=compiled)
    logger.warning("version %s: %s; scoring with LightGBM instead", model.version, compiled.reason)
    return ServingEngine(lightgbm_predictor(model.model_text, num_threads), LIGHTGBM, fallback_reason=compiled.reason)


def score_batch(
    predict: Predict, schema: FeatureSchema, frame: pd.DataFrame, cache: pd.DataFrame | None
) -> ScoringResult:
    """Score ``frame``, computing only rows whose hash is not in ``cache`` (columns row_hash, score)."""
    frame = frame.reset_index(drop=True)
    hashes = row_hashes(frame, schema)
    known = cache.set_index(ROW_HASH)[SCORE] if cache is not None and len(cache) else pd.Series(dtype="float64")
    cached = hashes.map(known[~known.index.duplicated()])
    missing = cached.isna()
    to_score = (missing & ~hashes.duplicated()).to_numpy()
    fresh_scores = predict(schema.encode(frame[to_score])) if to_score.any() else np.empty(0)
    fresh = pd.Series(fresh_scores, index=hashes[to_score].to_numpy(), dtype="float64")
    scores = cached.where(~missing, hashes.map(fresh))
    new_rows = pd.DataFrame({ROW_HASH: fresh.index.to_numpy(dtype="uint64"), SCORE: fresh.to_numpy()})
    updated = new_rows if cache is None else pd.concat([cache, new_rows], ignore_index=True)
    return ScoringResult(
        predictions=pd.DataFrame({ROW_HASH: hashes.to_numpy(), SCORE: scores.to_numpy(dtype="float64")}),
        cache=updated,
        rows=len(frame),
        cache_hits=int((~missing).sum()),
        rows_computed=len(fresh),
    )
