"""Judging a new batch against the serving model: drift weighted by what the model uses, its quality, the decision."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial

import lightgbm as lgb
import numpy as np
import pandas as pd

from green_pipeline.drift.detection import DriftResult, detect_drift, no_reference, render_report, weigh
from green_pipeline.drift.sampling import DriftSettings, HtmlReport
from green_pipeline.records import DriftAssessment
from green_pipeline.store.model_store import DeployedModel, ModelStore
from green_pipeline.training.confidence import DEFAULT_CONFIDENCE, Interval, auc_interval
from green_pipeline.training.policy import (
    GateHistory,
    QualityDrop,
    RetrainDecision,
    StrategyRules,
    Trigger,
    decide_retraining,
    pooled_decision,
    provisional_decision,
)


@dataclass(frozen=True)
class MonitoringThresholds:
    """What makes a batch call for a retrain and how its first strategy is chosen; ``RetrainPolicy`` takes these."""

    #: Importance-weighted drifted share that triggers a retrain when the batch has no labels to judge quality on.
    drift_share: float = 0.3
    #: Drop of the serving model's AUC on a labelled batch, vs at deployment, that triggers a retrain once the upper
    #: bound of the batch AUC's interval is past it.
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
    history: GateHistory | None = None,
    pooled: Mapping[str, pd.DataFrame] | None = None,
    champion_scores: np.ndarray | None = None,
    population: int | None = None,
) -> tuple[DriftAssessment, str | None]:
    """Drift that matters to the champion and its AUC interval on the batch, the decision, and the HTML report if
    ``drift_settings.report_html`` wants it for this decision (``report_wanted``), else None.

    ``pooled`` holds the validated rows of the earlier pooled batches (``history.pooled_batches``), by name: they
    are judged with this batch's. Too few labelled rows in all leave the decision pooled for the next batch (no
    Evidently run is paid for); a first batch trains whatever its size, since nothing serves otherwise.
    ``reference_key`` (see ``reference_key``) lets the drift step reuse the reference's profile across batches.
    ``champion_scores`` are the champion's scores of the judged rows (``judged_rows``' order), as the drift step
    computed them once for this check and for ``predictions``; without them the champion's booster scores here.
    ``population`` is the batch's size when ``frame`` is a uniform sample of it (a dataset batch on the cluster).
    """
    history, pooled, settings = history or GateHistory(), pooled or {}, drift_settings or DriftSettings()
    judged = judged_rows(frame, pooled)
    record = partial(
        DriftAssessment,
        batch=batch,
        champion_version=champion.version if champion else None,
        report_url=None,
        pooled_batches=tuple(pooled),
        pooled_rows=len(judged) - len(frame),
    )
    if champion is None:
        drift = no_reference(len(judged), thresholds.drift_share)
        decision = decide_retraining(drift, False, None, thresholds.always_retrain, thresholds.rules, len(judged))
        return record(drift=drift, decision=decision, champion_auc=None, champion_deployed_auc=None), None
    label = champion.schema.label
    labelled = int(judged[label].notna().sum()) if label in judged else 0
    if not thresholds.always_retrain and 0 < labelled < thresholds.min_rows_for_decision:
        decision = pooled_decision(labelled, thresholds.min_rows_for_decision, tuple(pooled))
        unjudged = no_reference(len(judged), thresholds.drift_share)
        return record(
            drift=unjudged, decision=decision, champion_auc=None, champion_deployed_auc=None, labelled_rows=labelled
        ), None
    judged_population = None if population is None else population + len(judged) - len(frame)
    drift = detect_drift(
        judged,
        champion.reference,
        champion.schema,
        thresholds.drift_share,
        settings,
        reference_key,
        population=judged_population,
    )
    drift = weigh(drift, feature_importance(champion.booster))
    interval = _champion_interval(champion, judged, thresholds.decision_confidence, champion_scores)
    deployed_auc = champion.metadata.get("metrics", {}).get("test_auc")
    quality = None
    if interval is not None and deployed_auc is not None:
        quality = QualityDrop(
            float(deployed_auc), interval.estimate, thresholds.quality_drop_auc, interval.upper, interval.confidence
        )
    decision = decide_retraining(
        drift, True, quality, thresholds.always_retrain, thresholds.rules, labelled or len(judged), history
    )
    if labelled:
        learned = int(champion.reference[label].notna().sum()) if label in champion.reference else 0
        decision = provisional_decision(decision, learned, labelled, thresholds.min_rows_for_decision, history)
    assessment = record(
        drift=drift,
        decision=decision,
        champion_auc=quality.batch_auc if quality else None,
        champion_deployed_auc=quality.deployed_auc if quality else None,
        champion_auc_interval=interval,
        labelled_rows=labelled,
    )
    if not report_wanted(settings.report_html, decision, drift):
        return assessment, None
    return assessment, render_report(drift, judged, champion.reference, champion.schema, settings, reference_key)


def report_wanted(mode: HtmlReport, decision: RetrainDecision, drift: DriftResult) -> bool:
    """Whether the drift step renders the HTML report: ``when_needed``, when someone will read it, i.e. the gate
    opened on evidence (not forced by ``always_retrain``) or the full data might have decided otherwise."""
    if mode == HtmlReport.WHEN_NEEDED:
        opened = decision.retrain and decision.trigger is not Trigger.ALWAYS_RETRAIN
        return opened or not drift.decision_certain
    return mode == HtmlReport.ALWAYS


def batch_report(
    frame: pd.DataFrame,
    champion: DeployedModel,
    thresholds: MonitoringThresholds,
    drift_settings: DriftSettings | None = None,
    reference_key: str | None = None,
    pooled: Mapping[str, pd.DataFrame] | None = None,
) -> str:
    """The HTML report of a batch (with the earlier batches it was pooled with) against ``champion``, on demand:
    the drift tests run again on the same seeded samples, so it details the columns the drift step saw."""
    judged = judged_rows(frame, pooled or {})
    drift = detect_drift(
        judged, champion.reference, champion.schema, thresholds.drift_share, drift_settings, reference_key
    )
    return render_report(drift, judged, champion.reference, champion.schema, drift_settings, reference_key)


def judged_rows(frame: pd.DataFrame, pooled: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The rows a batch is judged on: the pooled batches' (oldest first), then its own."""
    return pd.concat([*pooled.values(), frame], ignore_index=True) if pooled else frame


def feature_importance(booster: lgb.Booster) -> dict[str, float]:
    """Each feature's share of the model's total gain (LightGBM), summing to 1; a model without splits weighs all
    alike. Gain, not split counts: a column split often for tiny improvements barely matters to the predictions."""
    names = booster.feature_name()
    gains = booster.feature_importance(importance_type="gain")
    total = float(gains.sum())
    if total <= 0.0:
        return {name: 1.0 / len(names) for name in names}
    return {name: float(gain) / total for name, gain in zip(names, gains, strict=True)}


def _champion_interval(
    champion: DeployedModel, frame: pd.DataFrame, confidence: float, scores: np.ndarray | None
) -> Interval | None:
    """The champion's AUC on the labelled rows with DeLong's interval; None without both classes."""
    schema = champion.schema
    if schema.label not in frame or frame[schema.label].nunique() < 2:
        return None
    labelled = frame[schema.label].notna().to_numpy()
    if scores is None:
        return auc_interval(
            schema.labels(frame[labelled]), champion.booster.predict(schema.encode(frame[labelled])), confidence
        )
    if len(scores) != len(frame):
        raise ValueError(f"{len(scores)} champion scores for {len(frame)} judged rows")
    return auc_interval(schema.labels(frame[labelled]), scores[labelled], confidence)


def reference_key(store: ModelStore, champion: DeployedModel) -> str:
    """The store, the version and the sha256 of its reference file (verified when the champion was loaded)."""
    return f"{store.root}@{champion.version}#{champion.reference_sha256}"
