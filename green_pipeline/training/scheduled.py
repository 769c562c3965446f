"""Scheduled retraining: the baseline the drift-gated pipeline is compared with, as practitioners run it.

A scheduled job retrains on every batch, whatever the data did: plain LightGBM (100 trees at learning rate 0.05,
the pipeline's threads, LightGBM's other defaults), trained on all rows of the last ``window_batches`` batches, with
no drift step, no evaluation, compression or model store. Before it learns from a batch, the model trained on the
batches before it scores that batch (prequential served AUC). Scoring and training are each measured with the
pipeline's own energy meter, so both sides of a comparison are metered alike. ``green-pipeline demo`` and the
benches (bench/realdata.py, bench/lifecycle.py) all use this one implementation.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import lightgbm as lgb
import pandas as pd
from sklearn.metrics import roc_auc_score

from green_pipeline.energy.measurement import EnergySettings, complete_sum, measure_energy
from green_pipeline.errors import InvalidConfigError
from green_pipeline.training.trainer import NUM_THREADS


@dataclass(frozen=True)
class ScheduledSettings:
    """The scheduled job's model and training window (1: the previous batch only)."""

    trees: int = 100
    learning_rate: float = 0.05
    #: LightGBM's defaults; a bench sets the pipeline's tuned parameters here (``TunedParams.applied_to``), so both
    #: arms learn with the same ones.
    num_leaves: int = 31
    min_data_in_leaf: int = 20
    feature_fraction: float = 1.0
    window_batches: int = 1
    num_threads: int = NUM_THREADS

    def __post_init__(self) -> None:
        if self.trees < 1 or self.window_batches < 1 or self.num_threads < 1:
            raise InvalidConfigError(
                f"scheduled retraining: trees ({self.trees}), window_batches ({self.window_batches}) and "
                f"num_threads ({self.num_threads}) must be >= 1."
            )
        if self.learning_rate <= 0:
            raise InvalidConfigError(f"scheduled retraining: learning_rate {self.learning_rate} must be > 0.")

    def params(self) -> dict[str, object]:
        return {
            "objective": "binary",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "num_threads": self.num_threads,
            "verbosity": -1,
        }


@dataclass(frozen=True)
class ScheduledBatch:
    """One batch of the job: the AUC of the model serving it (None without a model or with one class), and the
    energy of scoring it and of training on it; None where a block was unmeasured, never 0."""

    batch: str
    served_auc: float | None
    scoring_energy_kwh: float | None
    training_energy_kwh: float | None
    emissions_kg_co2eq: float | None
    training_rows: int

    @property
    def energy_kwh(self) -> float | None:
        return complete_sum([self.scoring_energy_kwh, self.training_energy_kwh])


class ScheduledRetraining:
    """The job over one stream: ``process`` each batch in order; ``booster_`` is the model serving the next one."""

    def __init__(
        self, label: str, settings: ScheduledSettings | None = None, energy: EnergySettings | None = None
    ) -> None:
        self.label = label
        self.settings = settings or ScheduledSettings()
        self.energy = energy or EnergySettings()
        self.booster_: lgb.Booster | None = None
        self._window: deque[pd.DataFrame] = deque(maxlen=self.settings.window_batches)

    def process(self, batch: str, frame: pd.DataFrame) -> ScheduledBatch:
        """Score ``frame`` with the serving model, then retrain on the window that now ends with ``frame``."""
        with measure_energy(self.energy) as scoring:
            served = self._served_auc(frame)
        self._window.append(frame)
        with measure_energy(self.energy) as training:
            rows = pd.concat(self._window, ignore_index=True) if len(self._window) > 1 else frame
            features, labels = self._features(rows), rows[self.label]
            self.booster_ = lgb.train(
                self.settings.params(), lgb.Dataset(features, labels), num_boost_round=self.settings.trees
            )
        assert scoring.report is not None and training.report is not None
        return ScheduledBatch(
            batch=batch,
            served_auc=served,
            scoring_energy_kwh=scoring.report.energy_kwh,
            training_energy_kwh=training.report.energy_kwh,
            emissions_kg_co2eq=complete_sum([scoring.report.emissions_kg_co2eq, training.report.emissions_kg_co2eq]),
            training_rows=len(rows),
        )

    def _served_auc(self, frame: pd.DataFrame) -> float | None:
        labels = frame[self.label]
        if self.booster_ is None or labels.nunique() < 2:
            return None
        return float(roc_auc_score(labels, self.booster_.predict(self._features(frame))))

    def _features(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Every column but the label; text columns as pandas categories, which LightGBM splits on natively."""
        features = frame.drop(columns=[self.label])
        return features.astype({c: "category" for c in features.columns if features[c].dtype == object})


def scheduled_retraining(
    batches: Iterable[tuple[str, pd.DataFrame]],
    label: str,
    settings: ScheduledSettings | None = None,
    energy: EnergySettings | None = None,
) -> Iterator[ScheduledBatch]:
    """The job over ``batches`` (name, rows) in order, one outcome per batch."""
    job = ScheduledRetraining(label, settings, energy)
    for name, frame in batches:
        yield job.process(name, frame)
