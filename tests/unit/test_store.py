from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from green_pipeline.data.schema import FeatureSchema
from green_pipeline.errors import StoreConflictError, StoreError, StoreIntegrityError
from green_pipeline.store.model_store import ModelStore

if TYPE_CHECKING:
    from conftest import TrainedModel

METADATA = {"metrics": {"test_auc": 0.81, "trees": 42}, "lineage": {"batch": "batch-2026-01-01.parquet"}}


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(str(tmp_path), name="churn")


@pytest.fixture
def reference(make_clean_batch: Callable[[int], pd.DataFrame]) -> pd.DataFrame:
    return make_clean_batch(0).head(300)


def version_folder(tmp_path: Path, version: str) -> Path:
    return tmp_path / "models" / "churn" / version


def test_publish_promote_load_round_trip(
    store: ModelStore, day0_model: TrainedModel, schema: FeatureSchema, reference: pd.DataFrame
) -> None:
    booster = day0_model.result.booster

    version = store.publish(booster.model_to_string(), schema, reference, METADATA)
    store.promote(version)
    deployed = store.load()

    assert version == "v0001"
    assert store.current_version() == deployed.version == version
    features = schema.encode(day0_model.split.test)
    np.testing.assert_array_equal(deployed.booster.predict(features), booster.predict(features))
    assert deployed.schema == schema
    pd.testing.assert_frame_equal(deployed.reference, reference)
    assert deployed.metadata["metrics"] == METADATA["metrics"]
    assert deployed.metadata["lineage"] == METADATA["lineage"]
    assert deployed.metadata["version"] == "v0001"
    assert deployed.metadata["model_name"] == "churn"
    assert store.metadata(version)["metrics"]["test_auc"] == 0.81


def test_loaded_model_predicts_like_the_published_one_through_its_own_schema(
    store: ModelStore, day0_model: TrainedModel, schema: FeatureSchema, reference: pd.DataFrame
) -> None:
    booster = day0_model.result.booster
    store.promote(store.publish(booster.model_to_string(), schema, reference, METADATA))

    deployed = store.load()

    assert deployed.schema.features == schema.features
    np.testing.assert_array_equal(
        deployed.booster.predict(deployed.schema.encode(day0_model.split.test)),
        booster.predict(schema.encode(day0_model.split.test)),
    )


def test_published_version_is_not_serving_until_promoted(
    store: ModelStore, day0_model: TrainedModel, schema: FeatureSchema, reference: pd.DataFrame
) -> None:
    version = store.publish(day0_model.result.booster.model_to_string(), schema, reference, METADATA)

    assert store.versions() == [version]
    assert store.current_version() is None
    assert store.load_current() is None
    assert store.load(version).version == version


def test_load_with_nothing_deployed_names_the_store(store: ModelStore) -> None:
    with pytest.raises(StoreError, match=r"no model is deployed in .*models/churn"):
        store.load()


def test_versions_are_numbered_in_order(
    store: ModelStore,
    day0_model: TrainedModel,
    shifted_model: TrainedModel,
    schema: FeatureSchema,
    reference: pd.DataFrame,
) -> None:
    first = store.publish(day0_model.result.booster.model_to_string(), schema, reference, METADATA)
    second = store.publish(shifted_model.result.booster.model_to_string(), schema, reference, METADATA)

    assert (first, second) == ("v0001", "v0002")
    assert store.versions() == ["v0001", "v0002"]


def test_tampered_model_is_refused_on_load_and_on_promote(
    store: ModelStore,
    tmp_path: Path,
    day0_model: TrainedModel,
    shifted_model: TrainedModel,
    schema: FeatureSchema,
    reference: pd.DataFrame,
) -> None:
    serving = store.publish(day0_model.result.booster.model_to_string(), schema, reference, METADATA)
    store.promote(serving)
    tampered = store.publish(shifted_model.result.booster.model_to_string(), schema, reference, METADATA)
    model_file = version_folder(tmp_path, tampered) / "model.txt"
    model_file.write_text(model_file.read_text().replace("learning_rate", "learning_rate_", 1))
    pointer = tmp_path / "models" / "churn" / "current.json"
    pointer_before = pointer.read_bytes()

    with pytest.raises(StoreIntegrityError, match=rf"{tampered}/model\.txt does not match its sha256"):
        store.load(tampered)
    with pytest.raises(StoreIntegrityError, match=rf"{tampered}/model\.txt does not match its sha256"):
        store.promote(tampered)

    assert pointer.read_bytes() == pointer_before
    assert store.current_version() == serving
    assert store.load().version == serving


def test_tampered_serving_version_is_refused_on_load(
    store: ModelStore, tmp_path: Path, day0_model: TrainedModel, schema: FeatureSchema, reference: pd.DataFrame
) -> None:
    version = store.publish(day0_model.result.booster.model_to_string(), schema, reference, METADATA)
    store.promote(version)
    (version_folder(tmp_path, version) / "reference.parquet").write_bytes(b"not the rows the model saw")

    with pytest.raises(StoreIntegrityError, match=r"reference\.parquet does not match"):
        store.load()


def test_an_incomplete_version_is_hidden_and_its_number_not_reused(
    store: ModelStore, tmp_path: Path, day0_model: TrainedModel, schema: FeatureSchema, reference: pd.DataFrame
) -> None:
    """A publish that crashed before writing its manifest leaves a folder that must never be served."""
    store.publish(day0_model.result.booster.model_to_string(), schema, reference, METADATA)
    crashed = version_folder(tmp_path, "v0002")
    crashed.mkdir()
    (crashed / "model.txt").write_text(day0_model.result.booster.model_to_string())

    assert store.versions() == ["v0001"]
    with pytest.raises(StoreError, match=r"version v0002 of .* does not exist or was never completed"):
        store.promote("v0002")
    assert store.publish(day0_model.result.booster.model_to_string(), schema, reference, METADATA) == "v0003"
    assert store.versions() == ["v0001", "v0003"]


def test_rollback_promotes_an_older_version(
    store: ModelStore,
    day0_model: TrainedModel,
    shifted_model: TrainedModel,
    schema: FeatureSchema,
    reference: pd.DataFrame,
) -> None:
    old = store.publish(day0_model.result.booster.model_to_string(), schema, reference, METADATA)
    new = store.publish(shifted_model.result.booster.model_to_string(), schema, reference, METADATA)
    store.promote(new)

    store.promote(old)

    assert store.current_version() == old
    features = schema.encode(day0_model.split.test)
    np.testing.assert_array_equal(store.load().booster.predict(features), day0_model.result.booster.predict(features))
    pointer = json.loads((Path(store.root) / "current.json").read_text())
    assert pointer["version"] == old


@pytest.mark.parametrize("name", ["latest", "../v0001", "v1"])
def test_names_that_are_not_versions_are_refused(store: ModelStore, name: str) -> None:
    with pytest.raises(StoreError, match="is not a version name"):
        store.load(name)


def test_stores_of_different_models_are_separate(
    tmp_path: Path, day0_model: TrainedModel, schema: FeatureSchema, reference: pd.DataFrame
) -> None:
    churn, upsell = ModelStore(str(tmp_path), "churn"), ModelStore(str(tmp_path), "upsell")

    churn.promote(churn.publish(day0_model.result.booster.model_to_string(), schema, reference, METADATA))

    assert upsell.versions() == []
    assert upsell.current_version() is None
    assert churn.current_version() == "v0001"


def test_a_promotion_judged_against_a_champion_that_no_longer_serves_is_refused(
    store: ModelStore, day0_model: TrainedModel, schema: FeatureSchema, reference: pd.DataFrame
) -> None:
    """Two runs judged their challengers against the same champion: the second to promote must not win blindly."""
    text = day0_model.result.booster.model_to_string()
    first, second, third = (store.publish(text, schema, reference, METADATA) for _ in range(3))
    store.promote(first, replacing=None)
    store.promote(second, replacing=first)

    with pytest.raises(StoreConflictError, match=rf"{second} serves, not {first}, which {third} was judged against"):
        store.promote(third, replacing=first)
    with pytest.raises(StoreConflictError, match=rf"{second} serves, not nothing"):
        store.promote(third, replacing=None)

    assert store.current_version() == second
    store.promote(third, replacing=second)
    assert store.current_version() == third
