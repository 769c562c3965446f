"""The assets' decisions, taken by calling each asset on its inputs (no job run): skip, retrain, reject, promote.

The end-to-end runs in tests/integration prove the wiring; these prove what each step decides from its inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pytest
from dagster import (
    AssetMaterialization,
    AssetsDefinition,
    DagsterInstance,
    Output,
    build_asset_context,
    instance_for_test,
)

from green_pipeline.assets.deployment import deployed_model
from green_pipeline.assets.monitoring import drift_report
from green_pipeline.assets.training import retrained_model
from green_pipeline.data.schema import FeatureSchema
from green_pipeline.demo.stream import StreamSpec
from green_pipeline.drift.assessment import MonitoringThresholds, assess_batch
from green_pipeline.energy.measurement import EnergyReport, EnergyStatus
from green_pipeline.orchestration.metadata import DRIFT_REPORT, DeploymentRecord, DriftDecision, TrainingRecord
from green_pipeline.orchestration.resources import (
    ArtifactStorage,
    CarbonAwareScheduling,
    CheckThresholds,
    DaskResource,
    DatasetResource,
    EnergyResource,
    MlflowTracking,
    ModelStoreResource,
    ObjectStorage,
    RetrainPolicy,
)
from green_pipeline.records import CandidateModel, ChampionComparison, CompressedModel, Deployment, DriftAssessment
from green_pipeline.store.model_store import ModelStore
from green_pipeline.training.confidence import auc_interval
from green_pipeline.training.policy import Strategy

if TYPE_CHECKING:
    from conftest import TrainedModel

#: A day of the champion's own regime (after the covariate shift of day 5), and a day before that shift.
SAME_REGIME_DAY, FIRST_DAY = 7, 0


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with instance_for_test() as test_instance:
        yield test_instance


def _resources(root: Path, **overrides: Any) -> dict[str, Any]:
    storage = ObjectStorage()
    return {
        "model_store": ModelStoreResource(storage=storage, store_url=str(root / "store")),
        "artifacts": ArtifactStorage(storage=storage, base_url=str(root / "artifacts")),
        "dataset": DatasetResource(storage=storage, data_url=str(root / "data")),
        "policy": RetrainPolicy(),
        "energy": EnergyResource(),
        "carbon_aware": CarbonAwareScheduling(),
        "check_thresholds": CheckThresholds(),
        "mlflow_tracking": MlflowTracking(),
        # Never connected: these batches are frames, below dataset.max_local_bytes.
        "dask": DaskResource(),
        **overrides,
    }


def _call(
    asset: AssetsDefinition, instance: DagsterInstance, batch: str, resources: dict[str, Any], **inputs: Any
) -> list[Output[Any]]:
    """The outputs of one asset body, metered as in a run; an empty list is a skipped step."""
    with build_asset_context(partition_key=batch, resources=resources, instance=instance) as context:
        return list(asset(context, **inputs))


def _serve(root: Path, model: TrainedModel, schema: FeatureSchema, reference: pd.DataFrame) -> str:
    store = ModelStore(str(root / "store"))
    version = store.publish(
        model.result.booster.model_to_string(), schema, reference, {"metrics": {"test_auc": model.test_auc}}
    )
    store.promote(version)
    return version


def test_the_first_batch_asks_for_a_model_trained_from_scratch(
    tmp_path: Path, instance: DagsterInstance, stream_spec: StreamSpec, make_clean_batch: Callable[[int], pd.DataFrame]
) -> None:
    batch = stream_spec.batch_name(FIRST_DAY)

    [output] = _call(drift_report, instance, batch, _resources(tmp_path), validated_batch=make_clean_batch(FIRST_DAY))

    decision = DriftDecision.from_metadata(output.metadata)
    assert decision.retrain_required and "no model is deployed yet" in decision.decision
    assert decision.champion_version is None and output.value.decision.strategy is Strategy.FULL
    assert "energy_status" in output.metadata  # metered like every asset


def test_a_batch_of_the_champions_regime_keeps_it_serving_and_skips_retraining(
    tmp_path: Path,
    instance: DagsterInstance,
    stream_spec: StreamSpec,
    make_clean_batch: Callable[[int], pd.DataFrame],
    shifted_model: TrainedModel,
    schema: FeatureSchema,
) -> None:
    champion = _serve(tmp_path, shifted_model, schema, make_clean_batch(shifted_model.day))
    batch, frame, resources = (
        stream_spec.batch_name(SAME_REGIME_DAY),
        make_clean_batch(SAME_REGIME_DAY),
        _resources(tmp_path),
    )

    [report] = _call(drift_report, instance, batch, resources, validated_batch=frame)
    decision = DriftDecision.from_metadata(report.metadata)
    assert not decision.retrain_required, decision.decision
    assert decision.champion_version == champion and decision.drifted_share < decision.drift_threshold

    assert _call(retrained_model, instance, batch, resources, validated_batch=frame, drift_report=report.value) == []


def _first_batch_report(frame: pd.DataFrame, batch: str) -> DriftAssessment:
    assessment, _ = assess_batch(batch, frame, None, MonitoringThresholds(drift_share=0.3, quality_drop_auc=0.05))
    return assessment


@pytest.mark.parametrize("severity", ["block", "warn"])
def test_an_exhausted_blocking_monthly_budget_skips_retraining_a_warning_one_does_not(
    severity: str,
    tmp_path: Path,
    instance: DagsterInstance,
    stream_spec: StreamSpec,
    make_clean_batch: Callable[[int], pd.DataFrame],
) -> None:
    spent = EnergyReport(status=EnergyStatus.ESTIMATED, duration_s=60.0, method="estimated: earlier", energy_kwh=1e-3)
    instance.report_runless_asset_event(AssetMaterialization(DRIFT_REPORT, metadata=spent.as_metadata()))
    thresholds = CheckThresholds(energy_budget_per_month_kwh=1e-4, energy_budget_per_month_severity=severity)
    batch, frame = stream_spec.batch_name(FIRST_DAY), make_clean_batch(FIRST_DAY)
    report = _first_batch_report(frame, batch)
    assert report.decision.retrain  # only the budget can stop it

    outputs = _call(
        retrained_model,
        instance,
        batch,
        _resources(tmp_path, check_thresholds=thresholds),
        validated_batch=frame,
        drift_report=report,
    )

    if severity == "block":
        assert outputs == []
    else:
        [output] = outputs
        assert TrainingRecord.from_metadata(output.metadata).strategy == Strategy.FULL
        assert output.value.parent_version is None and output.value.batch == batch


@pytest.mark.parametrize(("floor", "promoted"), [(0.99, False), (0.6, True)])
def test_a_version_under_the_quality_floor_is_published_but_not_promoted(
    floor: float,
    promoted: bool,
    tmp_path: Path,
    instance: DagsterInstance,
    make_clean_batch: Callable[[int], pd.DataFrame],
    day0_model: TrainedModel,
    schema: FeatureSchema,
) -> None:
    result = day0_model.result
    candidate = CandidateModel(
        day0_model.batch_name,
        result.booster.model_to_string(),
        schema,
        result.strategy,
        None,
        result.trees,
        result.new_trees,
        result.train_rows,
    )
    compressed = CompressedModel(
        candidate, "uncompressed", result.trees, result.valid_auc, result.valid_auc, day0_model.test_auc, 1, 1
    )
    test = day0_model.split.test
    challenger = auc_interval(schema.labels(test), result.booster.predict(schema.encode(test)))
    first = ChampionComparison(challenger, None, None, None, len(test))
    resources = _resources(tmp_path, check_thresholds=CheckThresholds(quality_floor_auc=floor))

    [output] = _call(
        deployed_model,
        instance,
        day0_model.batch_name,
        resources,
        validated_batch=make_clean_batch(day0_model.day),
        compressed_model=compressed,
        model_evaluation=first,
    )

    record = DeploymentRecord.from_metadata(output.metadata)
    deployment: Deployment = output.value
    assert deployment.version == record.version == "v0001" and record.promoted is promoted
    assert record.decision == ("promoted" if promoted else "rejected")
    assert (
        ModelStore(str(tmp_path / "store")).current_version()
        == record.serving_version
        == ("v0001" if promoted else None)
    )
    if not promoted:
        assert "quality floor" in record.reason
    assert record.quality_per_kwh_status == EnergyStatus.UNMEASURED  # no producing step ran in this (direct) call
