"""Judging a new batch against the serving model: Evidently drift, champion quality, and the decision."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from green_pipeline.drift.detection import DriftResult, detect_drift, no_reference
from green_pipeline.drift.sampling import DriftSettings
from green_pipeline.records import DriftAssessment
from green_pipeline.store.model_store import DeployedModel, ModelStore
from green_pipeline.training.confidence import DEFAULT_CONFIDENCE
from green_pipeline.training.evaluation import auc
from green_pipeline.training.policy import QualityDrop, StrategyRules, decide_retraining


@dataclass(frozen=True)
class MonitoringThresholds:
    """What makes a batch call for a retrain and how its first strategy is chosen; ``RetrainPolicy`` takes these."""

    #: Share of drifted feature columns that triggers a retrain.
    drift_share: float = 0.3
    #: Drop of the serving model's AUC on a labelled batch, vs at deployment, that triggers a retrain.
    quality_drop_auc: float = 0.05
    always_retrain: bool = False
    rules: StrategyRules = field(default_factory=StrategyRules)
    #: Confidence of every interval a decision rests on (champion AUC on a batch, challenger vs champion).
    decision_confidence: float = DEFAULT_CONFIDENCE
    #: Labelled rows a quality decision needs; a smaller batch is pooled with the next ones until they add up.
    min_rows_for_decision: int = 1000


def assess_batch(
    batch: str,
    frame: pd.DataFrame,
    champion: DeployedModel | None,
    thresholds: MonitoringThresholds,
    drift_settings: DriftSettings | None = None,
    reference_key: str | None = None,
) -> tuple[DriftAssessment, str | None]:
    """Drift vs the champion's reference data and the champion's AUC on the batch; returns the HTML report too.

    ``reference_key`` (see ``reference_key``) lets the drift step reuse the reference's profile across batches.
    """
    html: str | None = None
    drift: DriftResult
    quality: QualityDrop | None = None
    if champion is None:
        drift = no_reference(len(frame), thresholds.drift_share)
    else:
        drift, html = detect_drift(
            frame, champion.reference, champion.schema, thresholds.drift_share, drift_settings, reference_key
        )
        deployed_auc = champion.metadata.get("metrics", {}).get("test_auc")
        if deployed_auc is not None and frame[champion.schema.label].nunique() > 1:
            batch_auc = auc(champion.booster, frame, champion.schema)
            quality = QualityDrop(float(deployed_auc), batch_auc, thresholds.quality_drop_auc)
    assessment = DriftAssessment(
        batch=batch,
        drift=drift,
        decision=decide_retraining(
            drift, champion is not None, quality, thresholds.always_retrain, thresholds.rules, len(frame)
        ),
        champion_version=champion.version if champion else None,
        champion_auc=quality.batch_auc if quality else None,
        champion_deployed_auc=quality.deployed_auc if quality else None,
        report_url=None,
    )
    return assessment, html


def reference_key(store: ModelStore, champion: DeployedModel) -> str:
    """The store, the version and the sha256 of its reference file (verified when the champion was loaded)."""
    return f"{store.root}@{champion.version}#{champion.reference_sha256}"
