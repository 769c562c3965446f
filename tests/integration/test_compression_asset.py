"""The compressed_model asset in a real Dagster run: candidates table, numeric metadata, a loadable record."""

import json
from collections.abc import Iterator
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, instance_for_test
from pydantic import TypeAdapter

from green_pipeline.app.definitions import defs
from green_pipeline.app.runner import process_batches, run_config
from green_pipeline.compression.engines import LLEAVES, LOCAL_CACHE, CompiledModel, compile_model
from green_pipeline.demo.stream import StreamSpec, write_stream
from green_pipeline.energy.measurement import EnergySettings
from green_pipeline.records import CompressedModel
from green_pipeline.store import files
from green_pipeline.store.model_store import MANIFEST_FILE, VERSION_FILES

pytestmark = pytest.mark.integration

#: Day 0 trains the first model, which is compressed; day 1 gives unseen rows to predict.
STREAM = StreamSpec(days=2, rows_per_day=3000, covariate_shift_days=(), concept_drift_days=())
#: With this many predictions expected before the next retrain a compile is nearly free, so a compiled engine wins.
COMPILE_PAYS = {"compile_engine": "lleaves", "expected_predictions": 10**12}

NUMERIC_FIELDS = (
    "model_size_bytes",
    "size_ratio",
    "speedup",
    "energy_per_1k_predictions_kwh",
    "test_auc",
    "auc_delta",
)


def _run_first_batch(root: Path, compression: dict) -> dict:
    """Run day 0 through the whole job with ``compression`` as the asset's config; its metadata."""
    batches = write_stream(STREAM, str(root / "data"))
    resources = {"dataset": {"data_url": str(root / "data")}, "model_store": {"store_url": str(root / "store")}}
    config = run_config(resources) | {"ops": {"compressed_model": {"config": compression}}}
    with instance_for_test() as instance:
        [outcome] = list(process_batches(defs, instance, batches[:1], config))
        assert outcome.success, outcome.error
        extra = {"next_batch": str(root / "data" / batches[1]), "store_url": str(root / "store")}
        return _compression_metadata(instance, batches[0]) | extra


def _compression_metadata(instance: DagsterInstance, partition: str) -> dict:
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey("compressed_model"), asset_partitions=[partition]), limit=1
    ).records
    assert records, "compressed_model was not materialized"
    materialization = records[0].asset_materialization
    assert materialization is not None
    return {key: value.value for key, value in materialization.metadata.items()}


@pytest.fixture(scope="module")
def compiled_run(tmp_path_factory: pytest.TempPathFactory, engine_cache: Path) -> Iterator[dict]:
    yield _run_first_batch(tmp_path_factory.mktemp("compression"), COMPILE_PAYS)


def test_compression_reports_every_candidate_and_keeps_one_within_the_policy_budget(compiled_run: dict) -> None:
    metadata = compiled_run

    for field in NUMERIC_FIELDS:
        assert isinstance(metadata[field], float | int), field
    assert metadata["auc_budget"] == 0.005  # RetrainPolicy.compression_auc_tolerance's default
    assert metadata["auc_delta"] >= -metadata["auc_budget"] - 1e-12
    assert metadata["model_size_bytes"] <= metadata["model_size_bytes_before"]
    table = metadata["candidates"]
    for name in ("uncompressed", "tree_prefix", "smaller_retrain", "distilled", "+quantized", "+lleaves"):
        assert name in table
    assert table.count("**chosen**") == 1


def test_the_version_names_its_engine_and_stores_no_machine_code_which_stays_in_the_local_cache(
    compiled_run: dict,
) -> None:
    stored = json.loads(files.read_bytes(compiled_run["artifact_url"]))
    record = TypeAdapter(CompressedModel).validate_python(stored["value"])
    version = Path(compiled_run["store_url"], "models", "churn", "v0001")

    # Which engine wins is a timing on this machine (lleaves or LightGBM on 2,000 rows): either may, under load.
    assert compiled_run["engine"] == record.engine in (LLEAVES, "lightgbm")
    assert compiled_run["compile_status"].startswith("compiled ")
    assert sorted(p.name for p in version.iterdir()) == sorted([*VERSION_FILES, MANIFEST_FILE])
    assert json.loads((version / "metadata.json").read_text())["engine"] == {"name": record.engine}
    served = compile_model(record.model.model_text, LLEAVES, EnergySettings(enabled=False), num_threads=2)
    assert isinstance(served, CompiledModel) and served.source == LOCAL_CACHE, "compression's compile was not cached"
    features = record.model.schema.encode(pd.read_parquet(compiled_run["next_batch"]))
    expected = lgb.Booster(model_str=record.model.model_text).predict(features)
    np.testing.assert_allclose(served.predict(features), expected, rtol=0, atol=1e-6)


def test_compile_off_keeps_a_lightgbm_model_and_says_it_skipped(tmp_path: Path) -> None:
    metadata = _run_first_batch(tmp_path, {"compile_engine": None})

    assert metadata["engine"] == "lightgbm"
    assert metadata["compile_status"] == "skipped: compile_engine is off"
    assert "+lleaves" not in metadata["candidates"]
