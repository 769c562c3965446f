"""Transfer to a new segment: a new model name's first model starts from another model's serving version when that
beats training from scratch on the same rows, and says which it kept and where it came from."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from green_pipeline.app.report import models_row, version_summary
from green_pipeline.data.schema import DatasetSpec, infer_schema
from green_pipeline.demo.stream import DOMAIN_LABEL, DomainPairSpec, generate_domain_batch
from green_pipeline.drift.assessment import MonitoringThresholds
from green_pipeline.drift.detection import no_reference
from green_pipeline.energy.measurement import EnergySettings
from green_pipeline.errors import IncompatibleSourceError, InvalidConfigError, StoreError
from green_pipeline.records import DriftAssessment
from green_pipeline.store.model_store import ModelStore
from green_pipeline.training.evaluation import auc
from green_pipeline.training.policy import Outcome, RetrainDecision, Strategy, Trigger
from green_pipeline.training.retraining import Retrained, retrain_batch, scratch_valid_auc
from green_pipeline.training.trainer import TrainingSettings, full_retrain, split_batch
from green_pipeline.training.transfer import SourceVersion, TransferSource, keep_transfer, load_source
from green_pipeline.training.tuning import TuningSettings

SETTINGS = TrainingSettings(num_threads=1)
PAIR = DomainPairSpec(source_rows=6000, target_rows=800, relationship_shift=0.3)
TARGET_BATCH = "batch-2026-03-01.parquet"


@pytest.fixture(scope="module")
def source_store(tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    """A store serving model ``segment-a``, trained on the source segment."""
    rows = generate_domain_batch(PAIR, "source", PAIR.source_rows)
    schema = infer_schema(rows, DatasetSpec(label=DOMAIN_LABEL), "source")
    trained = full_retrain(split_batch(rows, DOMAIN_LABEL, "source", "source"), schema, SETTINGS)
    store = ModelStore(str(tmp_path_factory.mktemp("store")), "segment-a")
    store.promote(store.publish(trained.booster.model_to_string(), schema, rows, {}))
    return store


@pytest.fixture(scope="module")
def source(source_store: ModelStore) -> TransferSource:
    return load_source(source_store, "segment-b")


def first_training(
    frame: pd.DataFrame, source: TransferSource | None, tuning: TuningSettings | None = None
) -> Retrained:
    """``retrain_batch`` as ``retrained_model`` calls it on a new model name's first batch."""
    assessment = DriftAssessment(
        batch=TARGET_BATCH,
        drift=no_reference(len(frame), 0.3),
        decision=RetrainDecision(True, Strategy.FULL, "nothing deployed", Outcome.RETRAIN, Trigger.NO_CHAMPION),
        champion_version=None,
        champion_auc=None,
        champion_deployed_auc=None,
        report_url=None,
    )
    spec = DatasetSpec(label=DOMAIN_LABEL)
    energy = EnergySettings(enabled=False)
    thresholds = MonitoringThresholds()
    return retrain_batch(frame, assessment, None, spec, thresholds, SETTINGS, energy, source=source, tuning=tuning)


def test_a_first_model_keeps_the_better_of_a_transfer_and_scratch_and_names_its_source(
    source: TransferSource,
) -> None:
    target = generate_domain_batch(PAIR, "target", PAIR.target_rows)

    retrained = first_training(target, source)

    outcome, candidate = retrained.outcome, retrained.candidate
    assert outcome.strategies_tried == (Strategy.TRANSFER, Strategy.FULL) and outcome.bar is None
    transfer, scratch = (attempt.result.valid_auc for attempt in outcome.attempts)
    assert candidate.strategy is (Strategy.TRANSFER if transfer > scratch else Strategy.FULL)
    assert candidate.transfer_source == SourceVersion("segment-a", "v0001") and candidate.parent_version is None
    assert "segment-a v0001" in outcome.reason and "| transfer |" in outcome.attempts_table()
    # The kept model scores with the schema it learned: the transfer the source's columns and category codes.
    kept_schema = source.model.schema if candidate.strategy is Strategy.TRANSFER else candidate.schema
    assert candidate.schema.features == kept_schema.features and candidate.schema.label == DOMAIN_LABEL
    later = generate_domain_batch(PAIR, "target", 2000, part=1)
    assert auc(candidate.booster(), later, candidate.schema) > 0.7


def test_a_tuned_scratch_model_is_compared_at_the_transfers_settings_not_at_its_best_trial(
    source: TransferSource,
) -> None:
    retrained = first_training(generate_domain_batch(PAIR, "target", PAIR.target_rows), source, TuningSettings())

    outcome = retrained.outcome
    transfer, scratch = outcome.attempts
    assert scratch.study is not None and scratch.study.default is not None and "first model: tuned" in outcome.reason
    kept, why = keep_transfer(transfer.result.valid_auc, scratch.study.default.valid_auc, source.ref)
    assert why in outcome.reason and scratch_valid_auc(scratch) == scratch.study.default.valid_auc
    assert outcome.result is (transfer if kept else scratch).result
    # A kept scratch model is the study's best trial and carries its parameters on; a transfer has none to carry.
    assert (retrained.candidate.tuning is None) == kept


def test_without_a_source_the_first_model_is_trained_from_scratch_as_before() -> None:
    retrained = first_training(generate_domain_batch(PAIR, "target", PAIR.target_rows), None)

    assert retrained.outcome.strategies_tried == (Strategy.FULL,)
    assert retrained.candidate.transfer_source is None


def test_a_target_batch_missing_a_source_feature_is_refused_naming_the_column_and_the_source(
    source: TransferSource,
) -> None:
    target = generate_domain_batch(PAIR, "target", PAIR.target_rows).drop(columns=["signal_03"])

    with pytest.raises(IncompatibleSourceError) as refused:
        first_training(target, source)

    message = str(refused.value)
    assert message.startswith(f"{TARGET_BATCH}: lacks column(s) ['signal_03']")
    assert "model_store.transfer_from segment-a v0001" in message


def test_a_source_must_be_another_model_that_serves(source_store: ModelStore, tmp_path: Path) -> None:
    with pytest.raises(InvalidConfigError, match="names the model being trained"):
        load_source(source_store, "segment-a")
    with pytest.raises(StoreError, match="no version of it serves"):
        load_source(ModelStore(source_store.url, "segment-c"), "segment-b")


def test_a_tie_keeps_the_model_from_scratch() -> None:
    ref = SourceVersion("segment-a", "v0003")

    kept, why = keep_transfer(0.81, 0.80, ref)
    assert kept and why == "transfer from segment-a v0003 (valid AUC 0.8100 > 0.8000 from scratch, same settings)"
    kept, why = keep_transfer(0.80, 0.80, ref)
    assert not kept and why.startswith("full_retrain from scratch") and "segment-a v0003" in why


@pytest.mark.parametrize(
    ("strategy", "note"),
    [
        ("transfer", "transferred from segment-a v0003"),
        ("full_retrain", "trained from scratch, kept over a transfer from segment-a v0003"),
    ],
)
def test_the_models_listing_shows_the_transfer_source(strategy: str, note: str) -> None:
    lineage = {"strategy": strategy, "transfer_source": {"model": "segment-a", "version": "v0003"}}
    row = version_summary({"version": "v0001", "lineage": lineage}, serving="v0001")

    assert row["transfer_source"] == {"model": "segment-a", "version": "v0003"}
    line, shown = models_row(row).splitlines()
    assert line.startswith("* v0001") and shown.strip().startswith(note)
    assert "\n" not in models_row(version_summary({"version": "v0002", "lineage": {}}, serving=None))
