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
from scipy.special import logit

from green_pipeline.compression.engines import (
    LIGHTGBM,
    CompiledModel,
    Predict,
    compile_model,
    lightgbm_predictor,
)
from green_pipeline.data.schema import FeatureSchema
from green_pipeline.energy.measurement import EnergySettings, measure_energy
from green_pipeline.store.model_store import DeployedModel

logger = logging.getLogger(__name__)

ROW_HASH = "row_hash"
SCORE = "score"
#: Rows a version's prediction cache keeps besides the batch just scored, newest first. Every step that scores
#: reads the whole cache and the drift step rewrites it: unbounded, its cost grew with every batch the version
#: served (a 300,000-row cache cost 68 ms of CPU to write and read, 5,000 rows 9 ms). 50,000 rows keep the last
#: few batches, where repeats (a reprocessed batch, a customer unchanged since yesterday) are.
MAX_CACHE_ROWS = 50_000
#: Probabilities are kept this far from 0 and 1 before taking log-odds: a raw score past +-34 carries nothing more.
PROBABILITY_FLOOR = 1e-15


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
    chosen = served_engine(model)
    if chosen == LIGHTGBM:
        return ServingEngine(lightgbm_predictor(model.model_text, num_threads), LIGHTGBM)
    compiled = compile_model(model.model_text, chosen, energy, num_threads)
    if isinstance(compiled, CompiledModel):
        return ServingEngine(compiled.predict, compiled.engine, compiled=compiled)
    logger.warning("version %s: %s; scoring with LightGBM instead", model.version, compiled.reason)
    return ServingEngine(lightgbm_predictor(model.model_text, num_threads), LIGHTGBM, fallback_reason=compiled.reason)


def served_engine(model: DeployedModel) -> str:
    """The engine compression chose for the version (``lightgbm`` when it chose none)."""
    return str(model.metadata.get("engine", {}).get("name", LIGHTGBM))


def score_batch(
    predict: Predict | None,
    schema: FeatureSchema,
    frame: pd.DataFrame,
    cache: pd.DataFrame | None,
    max_cache_rows: int = MAX_CACHE_ROWS,
) -> ScoringResult:
    """Score ``frame``, computing only rows whose hash is not in ``cache`` (columns row_hash, score).

    ``predict`` may be None only when ``cache`` is known to hold every row (``is_cached``): nothing is computed.
    The cache returned holds ``frame``'s rows, newest last, after the newest of the others up to ``max_cache_rows``.
    """
    frame = frame.reset_index(drop=True)
    hashes = row_hashes(frame, schema)
    known = cache.set_index(ROW_HASH)[SCORE] if cache is not None and len(cache) else pd.Series(dtype="float64")
    cached = hashes.map(known[~known.index.duplicated()])
    missing = cached.isna()
    to_score = (missing & ~hashes.duplicated()).to_numpy()
    if to_score.any() and predict is None:
        raise ValueError(f"{int(to_score.sum())} rows are not in the cache and no predictor was given")
    fresh_scores = predict(schema.encode(frame[to_score])) if predict is not None and to_score.any() else np.empty(0)
    fresh = pd.Series(fresh_scores, index=hashes[to_score].to_numpy(), dtype="float64")
    scores = cached.where(~missing, hashes.map(fresh))
    predictions = pd.DataFrame({ROW_HASH: hashes.to_numpy(), SCORE: scores.to_numpy(dtype="float64")})
    return ScoringResult(
        predictions=predictions,
        cache=_kept(cache, predictions.drop_duplicates(ROW_HASH), max_cache_rows),
        rows=len(frame),
        cache_hits=int((~missing).sum()),
        rows_computed=len(fresh),
    )


def _kept(cache: pd.DataFrame | None, scored: pd.DataFrame, max_rows: int) -> pd.DataFrame:
    """The cache to store: the rows just scored, after the newest other rows that fit in ``max_rows``."""
    if cache is None:
        return scored.reset_index(drop=True)
    others = cache[~cache[ROW_HASH].isin(scored[ROW_HASH])]
    room = max(0, max_rows - len(scored))
    return pd.concat([others.iloc[len(others) - min(room, len(others)) :], scored], ignore_index=True)


def is_cached(frame: pd.DataFrame, schema: FeatureSchema, cache: pd.DataFrame | None) -> bool:
    """Whether ``cache`` already holds a score for every row of ``frame``: then no engine need be built."""
    return cache is not None and bool(row_hashes(frame, schema).isin(cache[ROW_HASH]).all())


@dataclass(frozen=True)
class ScoringCost:
    """What one scoring of a batch by a version cost: rows scored and computed, and the measured block.

    JSON-able, so the drift step can hand its scoring's cost to ``predictions``, which reads the scores it cached.
    """

    rows: int
    rows_computed: int
    duration_s: float
    #: None when the block could not be measured: unmeasured, never 0.
    energy_kwh: float | None

    @property
    def energy_per_1k_kwh(self) -> float | None:
        return self.energy_kwh / self.rows * 1000 if self.energy_kwh is not None and self.rows else None


@dataclass(frozen=True)
class CachedScoring:
    """One scoring of a batch through its version's cache, the engine that computed the missing rows (None when
    every row came from the cache, so none was built), and its cost."""

    result: ScoringResult
    engine: ServingEngine | None
    cost: ScoringCost


def score_through_cache(
    model: DeployedModel, frame: pd.DataFrame, cache: pd.DataFrame | None, energy: EnergySettings, num_threads: int
) -> CachedScoring:
    """Score ``frame`` with the engine ``model`` serves with, computing only the rows ``cache`` lacks.

    The engine is built (outside the measured block; its build is reported by ``ServingEngine``) only when some
    row must be computed, so a step reading scores an earlier step cached pays neither build nor predictions.
    """
    engine = None if is_cached(frame, model.schema, cache) else serving_predictor(model, energy, num_threads)
    with measure_energy(energy) as block:
        result = score_batch(engine.predict if engine else None, model.schema, frame, cache)
    report = block.report
    assert report is not None, "measure_energy reports when its block ends"
    cost = ScoringCost(result.rows, result.rows_computed, report.duration_s, report.energy_kwh)
    return CachedScoring(result, engine, cost)


@dataclass(frozen=True)
class ChampionScores:
    """The champion's scores of any rows, read from its prediction cache where the drift step left them.

    The rows a retrain trains, validates and tests on are the judged batches' rows, which the drift step scored
    with this version, so they are looked up by row hash; the rest (a sample of the champion's reference data) is
    computed with its booster. Nothing computed here is cached: the cache holds what the version served.
    """

    model: DeployedModel
    cache: pd.DataFrame | None

    def probabilities(self, frame: pd.DataFrame) -> np.ndarray:
        """Scores (probabilities) of ``frame``'s rows, in order."""
        booster, schema = self.model.booster, self.model.schema
        result = score_batch(lambda features: np.asarray(booster.predict(features)), schema, frame, self.cache)
        return np.asarray(result.predictions[SCORE].to_numpy(), dtype="float64")

    def raw(self, frame: pd.DataFrame) -> np.ndarray:
        """Raw (log-odds) scores of ``frame``'s rows, as LightGBM's ``init_score`` takes them."""
        probabilities = np.clip(self.probabilities(frame), PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR)
        return np.asarray(logit(probabilities), dtype="float64")
