"""Feature selection through the real pipeline: the first version is deployed on the columns that carry the gain, and a
later batch without a dropped column is read, validated, drift-tested and scored on the kept ones alone."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance, instance_for_test
from sklearn.datasets import make_classification

from green_pipeline.app.definitions import defs
from green_pipeline.app.runner import BatchOutcome, process_batches, run_config
from green_pipeline.orchestration.ledger import latest_metadata, run_materializations
from green_pipeline.store.model_store import ModelStore

pytestmark = pytest.mark.integration

ROWS = 3000
#: 6 informative columns then 6 of pure noise (``shuffle=False``): the noise holds little of the model's gain.
COLUMNS = [*(f"signal_{i}" for i in range(6)), *(f"noise_{i}" for i in range(6))]
BATCHES = ("batch-2026-01-01.parquet", "batch-2026-01-02.parquet")
#: The noise holds about a tenth of the gain: at the default share (0.85) the rule would drop a weak signal column too.
SELECTION = {"feature_selection": True, "feature_gain_share": 0.9}


@dataclass(frozen=True)
class Selected:
    root: Path
    instance: DagsterInstance
    config: dict[str, Any]
    first: BatchOutcome
    store: ModelStore

    def metadata(self, outcome: BatchOutcome, asset: str) -> dict[str, Any]:
        steps = latest_metadata(run_materializations(self.instance, outcome.run_id))
        return {key: value.value for key, value in steps[AssetKey(asset)].items()}


def _day(day: int) -> pd.DataFrame:
    """Both days from one draw, so the second is like the first (no drift to retrain on)."""
    features, labels = make_classification(
        n_samples=2 * ROWS, n_features=12, n_informative=6, n_redundant=0, shuffle=False, class_sep=1.0, random_state=0
    )
    frame = pd.DataFrame(features, columns=COLUMNS).assign(label=labels)
    # Rows shuffled (make_classification's own shuffle would also shuffle the columns): its rows come class by class.
    rows = np.random.default_rng(0).permutation(len(frame))[day * ROWS : (day + 1) * ROWS]
    return frame.iloc[rows].reset_index(drop=True)


@pytest.fixture(scope="module")
def selected(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Selected]:
    root = tmp_path_factory.mktemp("features")
    (root / "data").mkdir()
    _day(0).to_parquet(root / "data" / BATCHES[0], index=False)
    resources = {
        "dataset": {"data_url": str(root / "data"), "label": "label"},
        "model_store": {"store_url": str(root / "store")},
        "artifacts": {"base_url": str(root / "artifacts")},
    }
    config = run_config(resources) | {"ops": {"compressed_model": {"config": SELECTION}}}
    with instance_for_test() as instance:
        [first] = process_batches(defs, instance, [BATCHES[0]], config)
        yield Selected(root, instance, config, first, ModelStore(str(root / "store")))


def test_the_first_version_is_deployed_on_the_selected_features_and_lists_the_dropped_ones(selected: Selected) -> None:
    assert selected.first.success and selected.first.promoted, selected.first.error
    version = selected.store.load()
    dropped = version.metadata["dropped_features"]

    assert dropped and set(dropped) <= {c for c in COLUMNS if c.startswith("noise_")}
    assert set(version.schema.features) == set(COLUMNS) - set(dropped)
    assert tuple(version.booster.feature_name()) == version.schema.features
    # The reference holds the model's columns only: the drift step and a warm start read nothing else.
    assert list(version.reference.columns) == [*version.schema.features, "label"]
    compression = selected.metadata(selected.first, "compressed_model")
    assert compression["feature_selection_status"].startswith("kept ")
    assert compression["dropped_features"] == dropped
    assert compression["features"] == len(version.schema.features)


def test_a_later_batch_without_a_dropped_column_is_validated_drift_tested_and_scored_on_the_kept_ones(
    selected: Selected,
) -> None:
    version = selected.store.load()
    kept, dropped = version.schema.features, version.metadata["dropped_features"]
    _day(1).drop(columns=[dropped[0]]).to_parquet(selected.root / "data" / BATCHES[1], index=False)

    [outcome] = process_batches(defs, selected.instance, [BATCHES[1]], selected.config)

    assert outcome.success and not outcome.quarantined, outcome.error
    assert outcome.serving_version == version.version
    ingested = selected.metadata(outcome, "ingested_batch")
    assert ingested["columns"] == len(kept) + 1  # the kept features and the label, nothing else decoded
    assert set(ingested["unread_columns"]) == set(dropped) - {dropped[0]}
    logs = [entry.user_message for entry in selected.instance.all_logs(outcome.run_id)]
    assert not [m for m in logs if "not features of the model" in m]  # left unread on purpose: no warning
    assert selected.metadata(outcome, "validated_batch")["feature_columns"] == len(kept)
    drift = selected.metadata(outcome, "drift_report")
    assert drift["columns_tested"] == len(kept) and drift["champion_auc"] > 0.9
    scoring = selected.metadata(outcome, "predictions")
    assert scoring["rows_scored"] == ROWS and scoring["model_version"] == version.version
