from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest

from green_pipeline.assets.monitoring import drift_metadata
from green_pipeline.data.schema import FeatureSchema
from green_pipeline.demo.stream import StreamSpec
from green_pipeline.drift.assessment import MonitoringThresholds, assess_batch, reference_key
from green_pipeline.drift.sampling import DriftSettings
from green_pipeline.store.model_store import REFERENCE_FILE, DeployedModel, ModelStore
from green_pipeline.training.evaluation import auc
from green_pipeline.training.policy import Strategy

if TYPE_CHECKING:
    from conftest import TrainedModel

#: The day-6 champion loses at most ~0.06 AUC on another day of its regime and over 0.11 after the concept drift.
THRESHOLDS = MonitoringThresholds(drift_share=0.3, quality_drop_auc=0.08)
SAME_REGIME_DAY = 7
CONCEPT_DRIFT_DAY = 12
BEFORE_SHIFT_DAY = 1


def test_without_champion_the_first_model_is_trained_from_scratch(
    make_clean_batch: Callable[[int], pd.DataFrame],
) -> None:
    frame = make_clean_batch(0)

    assessment, html = assess_batch("batch-2026-01-01.parquet", frame, None, THRESHOLDS)

    assert assessment.batch == "batch-2026-01-01.parquet"
    assert assessment.decision.retrain
    assert assessment.decision.strategy is Strategy.FULL
    assert not assessment.drift.compared
    assert assessment.drift.current_rows == len(frame)
    assert assessment.champion_version is None
    assert assessment.champion_auc is None
    assert html is None


def test_a_batch_of_the_champions_regime_keeps_it_serving(
    stream_spec: StreamSpec, make_clean_batch: Callable[[int], pd.DataFrame], deployed_shifted_model: DeployedModel
) -> None:
    name = stream_spec.batch_name(SAME_REGIME_DAY)

    assessment, html = assess_batch(name, make_clean_batch(SAME_REGIME_DAY), deployed_shifted_model, THRESHOLDS)

    assert not assessment.decision.retrain, assessment.decision.reason
    assert assessment.decision.strategy is None
    assert assessment.drift.compared
    assert assessment.drift.drifted_share < THRESHOLDS.drift_share
    assert assessment.champion_version == deployed_shifted_model.version
    assert assessment.champion_deployed_auc == deployed_shifted_model.metadata["metrics"]["test_auc"]
    assert assessment.champion_deployed_auc - assessment.champion_auc < THRESHOLDS.quality_drop_auc
    assert html is None  # a certain decision to keep serving is not worth rendering (policy.drift_report_html)


def test_concept_drift_is_caught_by_the_auc_drop(
    stream_spec: StreamSpec, make_clean_batch: Callable[[int], pd.DataFrame], deployed_shifted_model: DeployedModel
) -> None:
    """Features look like the champion's data (no feature drift), yet customers react differently."""
    assert stream_spec.concept_drift_days[0] < CONCEPT_DRIFT_DAY
    name = stream_spec.batch_name(CONCEPT_DRIFT_DAY)

    assessment, _ = assess_batch(name, make_clean_batch(CONCEPT_DRIFT_DAY), deployed_shifted_model, THRESHOLDS)

    assert assessment.drift.drifted_share < THRESHOLDS.drift_share
    assert assessment.champion_deployed_auc - assessment.champion_auc > THRESHOLDS.quality_drop_auc
    assert assessment.decision.retrain
    assert assessment.decision.strategy is Strategy.WARM_START
    assert "AUC fell" in assessment.decision.reason


def test_feature_drift_against_the_champion_triggers_a_warm_start(
    stream_spec: StreamSpec, make_clean_batch: Callable[[int], pd.DataFrame], deployed_shifted_model: DeployedModel
) -> None:
    name = stream_spec.batch_name(BEFORE_SHIFT_DAY)

    assessment, _ = assess_batch(name, make_clean_batch(BEFORE_SHIFT_DAY), deployed_shifted_model, THRESHOLDS)

    assert assessment.drift.drifted_share > THRESHOLDS.drift_share
    assert assessment.decision.retrain
    assert assessment.decision.strategy is Strategy.WARM_START
    assert "drifted share" in assessment.decision.reason


def test_always_retrain_baseline_retrains_a_stable_batch_from_scratch(
    stream_spec: StreamSpec, make_clean_batch: Callable[[int], pd.DataFrame], deployed_shifted_model: DeployedModel
) -> None:
    thresholds = MonitoringThresholds(drift_share=0.3, quality_drop_auc=0.08, always_retrain=True)

    assessment, _ = assess_batch(
        stream_spec.batch_name(SAME_REGIME_DAY), make_clean_batch(SAME_REGIME_DAY), deployed_shifted_model, thresholds
    )

    assert assessment.decision.retrain
    assert assessment.decision.strategy is Strategy.FULL


def test_a_single_class_batch_skips_the_quality_check(
    stream_spec: StreamSpec, make_clean_batch: Callable[[int], pd.DataFrame], deployed_shifted_model: DeployedModel
) -> None:
    frame = make_clean_batch(CONCEPT_DRIFT_DAY)
    frame = frame[frame["churned"] == 1].reset_index(drop=True)

    assessment, _ = assess_batch(stream_spec.batch_name(CONCEPT_DRIFT_DAY), frame, deployed_shifted_model, THRESHOLDS)

    assert assessment.champion_auc is None
    assert assessment.champion_deployed_auc is None
    assert assessment.drift.compared


@pytest.mark.parametrize("metrics", [{}, {"metrics": {}}])
def test_a_champion_without_a_recorded_auc_is_judged_on_drift_only(
    stream_spec: StreamSpec,
    make_clean_batch: Callable[[int], pd.DataFrame],
    deployed_shifted_model: DeployedModel,
    metrics: dict[str, object],
) -> None:
    unrated = dataclasses.replace(deployed_shifted_model, metadata=metrics)

    assessment, _ = assess_batch(
        stream_spec.batch_name(CONCEPT_DRIFT_DAY), make_clean_batch(CONCEPT_DRIFT_DAY), unrated, THRESHOLDS
    )

    assert assessment.champion_auc is None
    assert not assessment.decision.retrain


def test_champion_auc_on_the_batch_is_the_auc_of_the_model_that_was_deployed(
    stream_spec: StreamSpec,
    make_clean_batch: Callable[[int], pd.DataFrame],
    deployed_shifted_model: DeployedModel,
    shifted_model: TrainedModel,
    schema: FeatureSchema,
) -> None:
    frame = make_clean_batch(SAME_REGIME_DAY)

    assessment, _ = assess_batch(stream_spec.batch_name(SAME_REGIME_DAY), frame, deployed_shifted_model, THRESHOLDS)

    assert assessment.champion_auc == pytest.approx(auc(shifted_model.result.booster, frame, schema))


def test_reference_key_names_the_store_the_version_and_the_reference_checksum(
    tmp_path: Path, shifted_model: TrainedModel, schema: FeatureSchema, make_clean_batch: Callable[[int], pd.DataFrame]
) -> None:
    store = ModelStore(str(tmp_path))
    text = shifted_model.result.booster.model_to_string()
    first = store.publish(text, schema, make_clean_batch(6), {})
    second = store.publish(text, schema, make_clean_batch(7), {})

    key = reference_key(store, store.load(first))

    checksum = hashlib.sha256((tmp_path / "models" / "churn" / first / REFERENCE_FILE).read_bytes()).hexdigest()
    assert key == f"{store.root}@{first}#{checksum}"
    assert reference_key(store, store.load(second)) != key


def test_sampled_drift_is_described_in_the_report_metadata(
    stream_spec: StreamSpec, make_clean_batch: Callable[[int], pd.DataFrame], deployed_shifted_model: DeployedModel
) -> None:
    settings = DriftSettings(sample_rows=1500, seed=5)
    frame = make_clean_batch(SAME_REGIME_DAY)

    assessment, _ = assess_batch(
        stream_spec.batch_name(SAME_REGIME_DAY), frame, deployed_shifted_model, THRESHOLDS, settings, "v-test#1"
    )
    again, _ = assess_batch(
        stream_spec.batch_name(SAME_REGIME_DAY), frame, deployed_shifted_model, THRESHOLDS, settings, "v-test#1"
    )

    metadata = drift_metadata(assessment, THRESHOLDS)
    assert metadata["drift_sampled"] is True
    assert metadata["drift_rows_tested_current"] == metadata["drift_rows_tested_reference"] == 1500
    assert metadata["current_rows"] == len(frame)
    assert metadata["drift_sample_seed"] == 5 and metadata["drift_confidence"] == 0.99
    assert 0 < metadata["drift_score_error_bound"] == max(c.error_bound for c in assessment.drift.columns)
    assert metadata["drift_decision_certain"] is assessment.drift.decision_certain
    assert metadata["drift_reference_profile"] == "computed"
    assert drift_metadata(again, THRESHOLDS)["drift_reference_profile"] == "cached"
    assert "± bound" in metadata["top_drifted_columns"].value
