"""The event log's contract: this code location's asset keys, and the metadata its assets write and read back.

The event log is the ledger's database. An asset writes a record's ``as_metadata()``; the ledger, the runner, the
sensors and the checks read it back with ``from_metadata``, so each key is spelled once: a record's field names are
its keys. The energy keys are written by ``EnergyReport.as_metadata`` (``metered_asset``) and named next to it, in
``green_pipeline.energy.measurement``. Metadata only shown in the UI (tables, sampling figures, attempts) stays with
the asset that writes it. Assets declare their ``key=`` from the constants here, so nothing below them imports them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from dagster import AssetKey, MetadataValue

from green_pipeline.energy.measurement import (
    DURATION_KEY,
    EMISSIONS_KEY,
    ENERGY_KWH_KEY,
    ENERGY_STATUS_KEY,
    EnergyStatus,
)
from green_pipeline.errors import EventLogError
from green_pipeline.records import ChampionComparison, CompressedModel, Deployment, DriftAssessment
from green_pipeline.serving.release import EnergyKpis
from green_pipeline.training.confidence import Interval
from green_pipeline.training.promotion import PromotionDecision
from green_pipeline.training.retraining import Retrained

INGESTED_BATCH = AssetKey("ingested_batch")
VALIDATED_BATCH = AssetKey("validated_batch")
DRIFT_REPORT = AssetKey("drift_report")
RETRAINED_MODEL = AssetKey("retrained_model")
MODEL_EVALUATION = AssetKey("model_evaluation")
COMPRESSED_MODEL = AssetKey("compressed_model")
DEPLOYED_MODEL = AssetKey("deployed_model")
PREDICTIONS = AssetKey("predictions")
ENERGY_LEDGER = AssetKey("energy_ledger")
#: On demand only (drift_report_html_job, ``green-pipeline report``): the HTML the drift step did not render.
DRIFT_REPORT_HTML = AssetKey("drift_report_html")

#: The steps of monitoring_job and of retraining_job; green_pipeline_job runs both.
MONITORING_STEPS = (INGESTED_BATCH, VALIDATED_BATCH, DRIFT_REPORT, PREDICTIONS)
RETRAINING_STEPS = (RETRAINED_MODEL, MODEL_EVALUATION, COMPRESSED_MODEL, DEPLOYED_MODEL)
#: This code location's assets, the only ones the ledger reads: on an instance shared with other code locations,
#: their materializations are not steps of this pipeline (tests/integration/test_ledger_scope.py). Exactly the
#: assets of the Definitions (tests/unit/test_metadata_contract.py).
PROJECT_ASSETS = (*MONITORING_STEPS, *RETRAINING_STEPS, DRIFT_REPORT_HTML, ENERGY_LEDGER)
#: The steps whose energy produced a version: its quality_per_kwh divides the AUC gain by their sum.
PRODUCING_STEPS = (RETRAINED_MODEL, COMPRESSED_MODEL)

#: How an absent model version is written: the UI then says there was none rather than leaving the key out.
NO_VERSION = "none"
#: Units stripped from a figure's key to name its "unmeasured" sibling.
_UNITS = ("_kwh", "_kg_co2eq")


def energy_figure(key: str, value: float | None) -> dict[str, float | str]:
    """``{key: value}``, or ``key`` without its unit saying "unmeasured": a key the UI plots only ever holds numbers."""
    if value is not None:
        return {key: value}
    unitless = next((key.removesuffix(unit) for unit in _UNITS if key.endswith(unit)), key)
    return {unitless: EnergyStatus.UNMEASURED.value}


def _plain_values(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Metadata as read from the event log (``MetadataValue`` objects) or as written (plain values), as plain values."""
    return {key: value.value if isinstance(value, MetadataValue) else value for key, value in metadata.items()}


def _is_version(name: str) -> bool:
    return name == "version" or name.endswith("_version")


class MetadataRecord:
    """A record whose field names are its metadata keys; subclasses are frozen dataclasses naming their ``asset``.

    A field left None is not written, except a version (``version``, ``*_version``), written ``"none"``, and the
    kWh figures named in ``said_unmeasured``, whose unitless sibling key then says ``unmeasured``.
    """

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]
    asset: ClassVar[AssetKey]
    said_unmeasured: ClassVar[tuple[str, ...]] = ()

    def as_metadata(self) -> dict[str, Any]:
        written: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name in self.said_unmeasured:
                written |= energy_figure(field.name, value)
            elif value is None and _is_version(field.name):
                written[field.name] = NO_VERSION
            elif value is not None:
                written[field.name] = value
        return written

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> Self:
        """The record a materialization of ``asset`` was written with; raises EventLogError if a field is missing."""
        values = _plain_values(metadata)
        fields = dataclasses.fields(cls)
        missing = [f.name for f in fields if f.name not in values and f.default is dataclasses.MISSING]
        if missing:
            raise EventLogError(
                f"a {cls.asset.to_user_string()} materialization has no {', '.join(missing)} in its metadata: it was "
                f"not written by this version of green_pipeline's assets ({cls.__name__}, orchestration/metadata.py)."
            )
        read = {f.name: values[f.name] for f in fields if f.name in values}
        return cls(**{name: None if _is_version(name) and read[name] == NO_VERSION else read[name] for name in read})

    @classmethod
    def from_steps(cls, metadata_by_asset: Mapping[AssetKey, Mapping[str, Any]]) -> Self | None:
        """The record among several steps' metadata (e.g. one run's), or None when ``asset`` did not materialize."""
        metadata = metadata_by_asset.get(cls.asset)
        return None if metadata is None else cls.from_metadata(metadata)


@dataclass(frozen=True)
class StepEnergy:
    """The energy figures ``metered_asset`` adds to every materialization; a figure is None when unmeasured."""

    status: EnergyStatus
    energy_kwh: float | None
    emissions_kg_co2eq: float | None
    duration_s: float | None

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> StepEnergy:
        """Read back what ``EnergyReport.as_metadata`` wrote; a materialization without figures is unmeasured."""
        values = _plain_values(metadata)

        def number(key: str) -> float | None:
            return None if values.get(key) is None else float(values[key])

        return cls(
            status=EnergyStatus(values.get(ENERGY_STATUS_KEY, EnergyStatus.UNMEASURED)),
            energy_kwh=number(ENERGY_KWH_KEY),
            emissions_kg_co2eq=number(EMISSIONS_KEY),
            duration_s=number(DURATION_KEY),
        )


@dataclass(frozen=True)
class DriftDecision(MetadataRecord):
    """What ``drift_report`` decided: read by the drift sensor, the ledger, the runner and the drift check."""

    asset: ClassVar[AssetKey] = DRIFT_REPORT

    retrain_required: bool
    decision: str
    drift_threshold: float
    drifted_columns: int
    columns_tested: int
    reference_rows: int
    current_rows: int
    #: The version serving when the batch was judged: every later step of the run loads it.
    champion_version: str | None = None
    drifted_share: float | None = None
    #: The champion's AUC on this batch, and its drop from the AUC it had when deployed.
    champion_auc: float | None = None
    champion_auc_drop: float | None = None
    #: retrain, keep_serving or pooled (too few labelled rows: judged with the next batch); what opened the gate.
    outcome: str | None = None
    trigger: str | None = None
    #: The serving model's share of gain on the drifted columns: what the gate compares (``drifted_share`` is plain).
    weighted_drifted_share: float | None = None
    #: Whether this batch's drift and quality signals held: the gate's history counts consecutive ones.
    drift_signal: bool | None = None
    quality_signal: bool | None = None
    #: Upper bound of the champion AUC's interval, which the quality-drop trigger compares.
    champion_auc_upper: float | None = None
    labelled_rows: int | None = None
    #: Earlier batches whose rows were judged with this one's, and how many rows they added.
    pooled_batches: list[str] | None = None
    pooled_rows: int | None = None

    @classmethod
    def of(cls, assessment: DriftAssessment) -> DriftDecision:
        drift, served, deployed = assessment.drift, assessment.champion_auc, assessment.champion_deployed_auc
        decision, interval = assessment.decision, assessment.champion_auc_interval
        evidence = decision.evidence
        return cls(
            retrain_required=decision.retrain,
            decision=decision.reason,
            drift_threshold=drift.threshold,
            drifted_columns=drift.drifted_count,
            columns_tested=drift.column_count,
            reference_rows=drift.reference_rows,
            current_rows=drift.current_rows,
            champion_version=assessment.champion_version,
            drifted_share=drift.drifted_share,
            champion_auc=served,
            champion_auc_drop=deployed - served if served is not None and deployed is not None else None,
            outcome=decision.outcome.value,
            trigger=decision.trigger.value if decision.trigger else None,
            weighted_drifted_share=drift.weighted_share,
            drift_signal=evidence.drift_signal if evidence else None,
            quality_signal=evidence.quality_signal if evidence else None,
            champion_auc_upper=interval.upper if interval else None,
            labelled_rows=assessment.labelled_rows,
            pooled_batches=list(assessment.pooled_batches) or None,
            pooled_rows=assessment.pooled_rows or None,
        )


@dataclass(frozen=True)
class TrainingRecord(MetadataRecord):
    """The challenger ``retrained_model`` handed on: read by the ledger and the runner (its strategy)."""

    asset: ClassVar[AssetKey] = RETRAINED_MODEL

    strategy: str
    trees: int
    new_trees: int
    train_rows: int
    valid_auc: float
    parent_version: str | None = None

    @classmethod
    def of(cls, retrained: Retrained) -> TrainingRecord:
        candidate = retrained.candidate
        return cls(
            strategy=candidate.strategy.value,
            trees=candidate.trees,
            new_trees=candidate.new_trees,
            train_rows=candidate.train_rows,
            valid_auc=retrained.outcome.result.valid_auc,
            parent_version=candidate.parent_version,
        )


@dataclass(frozen=True)
class CompressionRecord(MetadataRecord):
    """The model ``compressed_model`` chose; model_evaluation then puts an interval on its test AUC."""

    asset: ClassVar[AssetKey] = COMPRESSED_MODEL

    technique: str
    engine: str
    test_auc: float

    @classmethod
    def of(cls, compressed: CompressedModel) -> CompressionRecord:
        return cls(technique=compressed.technique, engine=compressed.engine, test_auc=compressed.test_auc)


@dataclass(frozen=True)
class EvaluationRecord(MetadataRecord):
    """The intervals ``model_evaluation`` measured: read by the quality_floor check, which applies the gate's rule."""

    asset: ClassVar[AssetKey] = MODEL_EVALUATION

    #: The compressed challenger's test AUC and its interval at ``confidence``.
    challenger_auc: float
    challenger_auc_lower: float
    challenger_auc_upper: float
    confidence: float
    test_rows: int
    champion_version: str | None = None
    champion_auc: float | None = None
    champion_auc_lower: float | None = None
    champion_auc_upper: float | None = None
    #: Challenger minus champion on the same rows, with the paired interval the promotion rests on.
    auc_gain: float | None = None
    auc_gain_lower: float | None = None
    auc_gain_upper: float | None = None

    @classmethod
    def of(cls, comparison: ChampionComparison) -> EvaluationRecord:
        challenger, champion, gain = comparison.challenger, comparison.champion, comparison.difference
        return cls(
            challenger_auc=challenger.estimate,
            challenger_auc_lower=challenger.lower,
            challenger_auc_upper=challenger.upper,
            confidence=challenger.confidence,
            test_rows=comparison.test_rows,
            champion_version=comparison.champion_version,
            champion_auc=champion.estimate if champion else None,
            champion_auc_lower=champion.lower if champion else None,
            champion_auc_upper=champion.upper if champion else None,
            auc_gain=gain.estimate if gain else None,
            auc_gain_lower=gain.lower if gain else None,
            auc_gain_upper=gain.upper if gain else None,
        )

    def challenger(self) -> Interval:
        return Interval(self.challenger_auc, self.challenger_auc_lower, self.challenger_auc_upper, self.confidence)


@dataclass(frozen=True)
class DeploymentRecord(MetadataRecord):
    """The version ``deployed_model`` published, the promotion decision and the energy KPIs: read by the ledger
    (``quality_per_kwh``; ``production_energy_kwh`` for the per-run budget) and the runner."""

    asset: ClassVar[AssetKey] = DEPLOYED_MODEL
    said_unmeasured: ClassVar[tuple[str, ...]] = ("energy_per_1k_predictions_kwh",)

    version: str
    promoted: bool
    #: "promoted" or "rejected": a rejection is a normal outcome, not a failure.
    decision: str
    reason: str
    test_auc: float
    auc_gain: float
    auc_gain_baseline: str
    quality_per_kwh_status: str
    serving_version: str | None = None
    production_energy_kwh: float | None = None
    quality_per_kwh: float | None = None
    energy_per_1k_predictions_kwh: float | None = None

    @classmethod
    def of(
        cls, deployment: Deployment, decision: PromotionDecision, compressed: CompressedModel, kpis: EnergyKpis
    ) -> DeploymentRecord:
        return cls(
            version=deployment.version,
            promoted=deployment.promoted,
            decision=decision.outcome,
            reason=deployment.reason,
            test_auc=compressed.test_auc,
            auc_gain=kpis.auc_gain,
            auc_gain_baseline=kpis.baseline,
            quality_per_kwh_status=kpis.quality_per_kwh_status.value,
            serving_version=deployment.serving_version,
            production_energy_kwh=kpis.production_energy_kwh,
            quality_per_kwh=kpis.quality_per_kwh,
            energy_per_1k_predictions_kwh=kpis.energy_per_1k_predictions_kwh,
        )


@dataclass(frozen=True)
class ScoringRecord(MetadataRecord):
    """What ``predictions`` scored: read by the ledger (energy per 1,000 predictions, weighted by rows scored)."""

    asset: ClassVar[AssetKey] = PREDICTIONS
    said_unmeasured: ClassVar[tuple[str, ...]] = ("energy_per_1k_predictions_kwh",)

    model_version: str
    rows_scored: int
    rows_computed: int
    cache_hits: int
    cache_hit_rate: float
    scoring_duration_s: float
    energy_per_1k_predictions_kwh: float | None = None
    #: Rows the drift step computed when it scored the batch (and cached) for its quality check; None without one.
    rows_computed_by_drift_step: int | None = None


@dataclass(frozen=True)
class LedgerRecord(MetadataRecord):
    """The totals ``energy_ledger`` records: read by the CLI after it refreshes the ledger."""

    asset: ClassVar[AssetKey] = ENERGY_LEDGER

    total_energy_kwh: float
    total_emissions_kg_co2eq: float
    unmeasured_steps: int
    batches: int
    retrains: int
    skipped_retrains: int
    #: Each skipped retrain at the cost of the last measured retrain; skips before any are counted apart.
    avoided_energy_kwh: float
    skipped_retrains_without_estimate: int
    max_run_energy_kwh: float
    #: Retrains trained but not promoted (orchestration.ledger.is_wasted_retrain) and their retraining steps' energy.
    wasted_retrains: int
    wasted_retrain_energy_kwh: float
