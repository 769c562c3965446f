"""A tuned first model through real Dagster runs: the study's figures on retrained_model, its history in the
published version, and no tuning on a batch whose retrain was skipped."""

from __future__ import annotations

import json

import pytest
from dagster import DagsterInstance

from green_pipeline.app.definitions import defs
from green_pipeline.app.runner import process_batches
from green_pipeline.orchestration.metadata import RETRAINED_MODEL
from green_pipeline.store import files
from green_pipeline.store.model_store import ModelStore
from green_pipeline.training.tuning import TunedParams, TuningHistory

pytestmark = pytest.mark.integration

TRIALS = 3


def test_the_first_model_is_tuned_and_publishes_its_study(workspace, instance: DagsterInstance) -> None:
    batches = workspace.batches[:2]  # day 1 is like day 0: its retrain is skipped

    outcomes = list(process_batches(defs, instance, batches, workspace.config(tuning_max_trials=TRIALS)))

    first, second = outcomes
    assert first.success and first.retrained and first.strategy == "full_retrain"
    assert second.success and not second.retrained
    records = instance.fetch_materializations(RETRAINED_MODEL, limit=10).records
    assert [r.partition_key for r in records] == [first.batch]  # nothing tuned, nor trained, on the skipped batch
    metadata = {key: value.value for key, value in records[0].asset_materialization.metadata.items()}
    assert metadata["tuning_trials"] == TRIALS
    assert 0 <= metadata["tuning_trials_pruned"] < TRIALS
    assert 0 < metadata["tuning_energy_kwh"] <= metadata["attempt_full_retrain_energy_kwh"]
    assert metadata["tuning_energy_per_trial_kwh"] == pytest.approx(metadata["tuning_energy_kwh"] / TRIALS)
    assert metadata["tuning_auc_gain_vs_default"] >= 0
    assert "first model: tuned" in metadata["reason"]
    assert metadata["tuning_trials_table"].count("\n| ") == TRIALS
    best = TunedParams.from_json(metadata["tuning_best_params"])
    published = ModelStore(workspace.store_url).load(first.deployed_version)
    history = TuningHistory.from_metadata(published.metadata)
    assert history is not None and history.best_params == best and len(history.trials) == TRIALS
    assert history.trainings_since_tuning == 0
    # The trained model has the best parameters (compression may publish a student trained with its own).
    trained = json.loads(files.read_bytes(metadata["artifact_url"]))["value"]["model_text"]
    assert f"[num_leaves: {best.num_leaves}]" in trained
    json.dumps(published.metadata)  # plain JSON: nothing pickled travels with the version
