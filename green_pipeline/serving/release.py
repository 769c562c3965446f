"""What a published model version records: metrics, energy KPIs, lineage, the engine, the promotion decision."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from green_pipeline.energy.measurement import EnergyStatus, complete_sum
from green_pipeline.records import ChampionComparison, CompressedModel, Deployment
from green_pipeline.store.model_store import DROPPED_FEATURES_KEY, ModelStore
from green_pipeline.training.promotion import PromotionDecision
from green_pipeline.training.tuning import METADATA_KEY as TUNING_KEY

#: AUC of random guessing: what the first version, which has no champion, is measured against.
RANDOM_AUC = 0.5


@dataclass(frozen=True)
class EnergyKpis:
    """Quality bought per kWh and the serving cost of a version; energy figures are None when unmeasured.

    ``auc_gain`` is the version's test AUC minus the champion's on the same test rows (minus 0.5, random
    guessing, for the first version); ``production_energy_kwh`` is what retraining and compression spent
    to produce it. ``quality_per_kwh`` is their ratio: it is negative for a version worse than its champion.
    """

    auc_gain: float
    baseline: str
    production_energy_kwh: float | None
    energy_per_1k_predictions_kwh: float | None

    @property
    def quality_per_kwh(self) -> float | None:
        if self.production_energy_kwh is None or self.production_energy_kwh <= 0:
            return None
        return self.auc_gain / self.production_energy_kwh

    @property
    def quality_per_kwh_status(self) -> EnergyStatus:
        """``estimated`` whenever there is a figure: the steps' own ``energy_status`` says which were measured."""
        return EnergyStatus.ESTIMATED if self.quality_per_kwh is not None else EnergyStatus.UNMEASURED

    def as_json(self) -> dict[str, Any]:
        """For metadata.json: an unmeasured figure is the string "unmeasured", never a guess or a zero."""
        return {
            "auc_gain": self.auc_gain,
            "auc_gain_baseline": self.baseline,
            "production_energy_kwh": _or_unmeasured(self.production_energy_kwh),
            "quality_per_kwh": _or_unmeasured(self.quality_per_kwh),
            "energy_per_1k_predictions_kwh": _or_unmeasured(self.energy_per_1k_predictions_kwh),
        }


def _or_unmeasured(value: float | None) -> float | str:
    return EnergyStatus.UNMEASURED.value if value is None else value


def step_energy_key(step: str) -> str:
    """The key of a producing step's energy in a version's ``energy`` section (metadata.json)."""
    return f"{step}_energy_kwh"


def energy_kpis(
    compressed: CompressedModel,
    comparison: ChampionComparison,
    energy_kwh: Mapping[str, float | None],
    producing_steps: Sequence[str],
) -> EnergyKpis:
    """The KPIs of a version from its test AUCs and the energy (measured or estimated) of the steps that produced it.

    Production energy is unmeasured if any of ``producing_steps`` has no ``step_energy_key(step)``.
    """
    if comparison.champion_auc is None:
        gain, baseline = compressed.test_auc - RANDOM_AUC, f"random guessing (AUC {RANDOM_AUC}): first version"
    else:
        gain = compressed.test_auc - comparison.champion_auc
        baseline = f"champion {comparison.champion_version} on the same test rows"
    return EnergyKpis(
        auc_gain=gain,
        baseline=baseline,
        production_energy_kwh=complete_sum(energy_kwh.get(step_energy_key(step)) for step in producing_steps),
        energy_per_1k_predictions_kwh=compressed.energy_per_1k_predictions_kwh,
    )


def release_metadata(
    compressed: CompressedModel,
    comparison: ChampionComparison,
    decision: PromotionDecision,
    energy_kwh: dict[str, float | None],
    kpis: EnergyKpis,
    data_url: str,
    run_id: str,
) -> dict[str, Any]:
    """The metadata.json body of a version (the store adds version, name, schema and time)."""
    candidate = compressed.model
    return {
        "metrics": {
            "test_auc": compressed.test_auc,
            "champion_auc": comparison.champion_auc,
            "trees": candidate.trees,
            "size_bytes": compressed.size_bytes_after,
            **kpis.as_json(),
        },
        "energy": energy_kwh,
        "lineage": {
            "batch": candidate.batch,
            "data_url": data_url,
            "parent_version": candidate.parent_version,
            "strategy": candidate.strategy.value,
            "transfer_source": candidate.transfer_source.as_lineage() if candidate.transfer_source else None,
            "compression": compressed.technique,
            "dagster_run_id": run_id,
        },
        # The engine's name only: serving compiles it from model.txt where it runs, never from stored machine code.
        "engine": {"name": compressed.engine},
        "promotion": _promotion(comparison, decision),
        DROPPED_FEATURES_KEY: list(compressed.dropped_features),
        # The parameters it was trained with and the study behind them: the next retrain of it starts from them.
        **({TUNING_KEY: candidate.tuning.as_json()} if candidate.tuning else {}),
    }


def _promotion(comparison: ChampionComparison, decision: PromotionDecision) -> dict[str, Any]:
    """The decision, why, and the intervals it rested on: a rejected version says so in its own metadata."""
    difference = comparison.difference
    return {
        "promoted": decision.promote,
        "decision": decision.outcome,
        "reason": decision.reason,
        "confidence": comparison.confidence,
        "test_rows": comparison.test_rows,
        "test_auc_interval": [comparison.challenger.lower, comparison.challenger.upper],
        "auc_gain_interval": None if difference is None else [difference.lower, difference.upper],
    }


def publish_version(
    store: ModelStore,
    compressed: CompressedModel,
    frame: pd.DataFrame,
    metadata: dict[str, Any],
    decision: PromotionDecision,
    champion_version: str | None,
) -> Deployment:
    """Publish the compressed model with the batch it learned from, and promote it if ``decision`` says so.

    A rejected version stays published. The promotion is judged against ``champion_version``: if another run promoted
    meanwhile, ``StoreConflictError`` and nothing is overwritten.
    """
    candidate = compressed.model
    schema = candidate.schema
    # Only the model's columns: rows learned before a feature selection narrowed the schema hold the dropped ones too.
    reference = frame[[*schema.features, schema.label]]
    version = store.publish(candidate.model_text, schema, reference, metadata)
    if decision.promote:
        store.promote(version, replacing=champion_version)
    return Deployment(version, decision.promote, decision.reason, store.current_version())
