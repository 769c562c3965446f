"""Compression candidates measured side by side: size, AUC on held-out rows, throughput and energy.

Every candidate is timed on the same replicated batch in the same process, with codecarbon around the
timed predictions, so their figures compare; build costs (a compile) are measured too, to be amortized.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from green_pipeline.compression.engines import (
    LIGHTGBM,
    CompiledModel,
    Predict,
    compile_model,
    lightgbm_predictor,
)
from green_pipeline.compression.techniques import leaves_per_tree
from green_pipeline.data.schema import FeatureSchema
from green_pipeline.energy.measurement import EnergySettings, measure_energy
from green_pipeline.errors import TrainingError

ENERGY_BASIS = "energy_kwh"
DURATION_BASIS = "duration_s"
WARMUP_ROWS = 1000


@dataclass(frozen=True)
class InferenceFigures:
    """Batch prediction of ``rows`` rows (the batch repeated until the timing was long enough to measure)."""

    rows: int
    duration_s: float
    energy_kwh: float | None

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.duration_s

    @property
    def s_per_1k(self) -> float:
        return self.duration_s * 1000.0 / self.rows

    @property
    def energy_per_1k_kwh(self) -> float | None:
        return None if self.energy_kwh is None else self.energy_kwh * 1000.0 / self.rows


@dataclass(frozen=True)
class Candidate:
    """One way to serve the model, measured on the same rows as the others; figures are None if unavailable.

    ``model_text`` is the deployable LightGBM text; a compiled candidate says where its engine came from
    (``build_source``: compiled here or the local engine cache) and what that cost (``build_s``, ``build_energy_kwh``).
    """

    name: str
    technique: str
    engine: str
    model_text: str
    holdout_auc: float | None
    inference: InferenceFigures | None
    build_s: float = 0.0
    build_energy_kwh: float | None = 0.0
    build_source: str | None = None
    unavailable_reason: str | None = None

    @property
    def available(self) -> bool:
        return self.unavailable_reason is None

    @property
    def size_bytes(self) -> int:
        return len(self.model_text.encode())

    @property
    def trees(self) -> int:
        return len(leaves_per_tree(self.model_text))

    @property
    def leaves(self) -> int:
        return sum(leaves_per_tree(self.model_text))

    def cost_per_1k(self, basis: str, expected_predictions: int) -> float | None:
        """Energy (kWh) or seconds per 1,000 predictions, with the build cost spread over the expected ones."""
        if self.inference is None:
            return None
        if basis == DURATION_BASIS:
            return self.inference.s_per_1k + self.build_s * 1000.0 / expected_predictions
        if self.inference.energy_per_1k_kwh is None or self.build_energy_kwh is None:
            return None
        return self.inference.energy_per_1k_kwh + self.build_energy_kwh * 1000.0 / expected_predictions


def measure_inference(
    predict: Predict, batch: pd.DataFrame, min_seconds: float, energy: EnergySettings
) -> InferenceFigures:
    """Predict ``batch`` until ``min_seconds`` have passed, inside codecarbon; one warm-up call runs outside."""
    predict(batch.iloc[:WARMUP_ROWS])
    rows = 0
    with measure_energy(energy) as measurement:
        started = time.perf_counter()
        while rows == 0 or time.perf_counter() - started < min_seconds:
            predict(batch)
            rows += len(batch)
    report = measurement.report
    assert report is not None
    return InferenceFigures(rows=rows, duration_s=report.duration_s, energy_kwh=report.energy_kwh)


@dataclass(frozen=True)
class HoldoutBench:
    """Held-out rows (for AUC) and the replicated batch (for throughput and energy) every candidate is run on."""

    features: pd.DataFrame
    labels: np.ndarray
    timing_batch: pd.DataFrame
    min_timing_s: float
    num_threads: int
    energy: EnergySettings

    @classmethod
    def of(
        cls,
        holdout: pd.DataFrame,
        schema: FeatureSchema,
        timing_rows: int,
        min_timing_s: float,
        num_threads: int,
        energy: EnergySettings,
    ) -> HoldoutBench:
        labels = schema.labels(holdout).to_numpy()
        if len(np.unique(labels)) < 2:
            raise TrainingError(
                f"compression needs both classes of {schema.label!r} in the {len(holdout)} held-out rows."
            )
        features = schema.encode(holdout).reset_index(drop=True)
        timing_batch = features.iloc[np.resize(np.arange(len(features)), timing_rows)].reset_index(drop=True)
        return cls(features, labels, timing_batch, min_timing_s, num_threads, energy)

    def measure(self, name: str, technique: str, model_text: str) -> Candidate:
        """A LightGBM text model run by LightGBM."""
        predict = lightgbm_predictor(model_text, self.num_threads)
        return Candidate(name, technique, LIGHTGBM, model_text, self._auc(predict), self._inference(predict))

    def measure_rewrite(self, source: Candidate, name: str, technique: str, model_text: str) -> Candidate:
        """``source``'s trees rewritten (quantized): its AUC is checked, its timing is ``source``'s (same trees and
        engine, so the same work per prediction) and not paid for again."""
        predict = lightgbm_predictor(model_text, self.num_threads)
        return Candidate(name, technique, LIGHTGBM, model_text, self._auc(predict), source.inference)

    def measure_compiled(self, source: Candidate, engine: str) -> Candidate:
        """``source``'s text compiled with ``engine``; unavailable, with the reason, if it cannot be compiled."""
        compiled = compile_model(source.model_text, engine, self.energy, self.num_threads)
        name = f"{source.name}+{engine}"
        if not isinstance(compiled, CompiledModel):
            return Candidate(
                name, "compilation", engine, source.model_text, None, None, unavailable_reason=compiled.reason
            )
        return Candidate(
            name,
            "compilation",
            engine,
            source.model_text,
            self._auc(compiled.predict),
            self._inference(compiled.predict),
            build_s=compiled.build.duration_s,
            build_energy_kwh=compiled.build.energy_kwh,
            build_source=compiled.source,
        )

    def _auc(self, predict: Predict) -> float:
        return float(roc_auc_score(self.labels, predict(self.features)))

    def _inference(self, predict: Predict) -> InferenceFigures:
        return measure_inference(predict, self.timing_batch, self.min_timing_s, self.energy)
