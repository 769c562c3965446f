"""A compiled engine planted in the model store is never read or run: `predictions` builds its own from model.txt.

The manifest's sha256 lives in the same bucket as the files it covers, so whoever can write the bucket can plant
an object file with a matching checksum. The one planted here is real machine code for this CPU, compiled by
lleaves from a model trained on inverted labels, and the version's metadata names it the way versions used to
(`engine.file`, `engine.target` of this CPU): had it been loaded, every score of the batch would be inverted.
Two detectors watch: the interpreter's `open` audit event (every file opened by io, os or pathlib, so also by
lleaves and llvmlite) and the scores themselves. The positive control loads the planted file as the old code did
and shows both detectors fire.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import lleaves
import llvmlite.binding as llvm
import numpy as np
import pandas as pd
import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, instance_for_test

from green_pipeline.app.definitions import defs
from green_pipeline.app.runner import process_batches, run_config
from green_pipeline.compression.engines import COMPILED_HERE, LLEAVES
from green_pipeline.data.schema import FeatureSchema
from green_pipeline.demo.stream import StreamSpec, write_stream
from green_pipeline.serving.scoring import ROW_HASH, SCORE, row_hashes
from green_pipeline.store.model_store import MANIFEST_FILE, METADATA_FILE, MODEL_FILE, ModelStore

pytestmark = pytest.mark.integration

PLANTED = "model.lleaves.o"
#: Day 0 deploys v0001; day 1 is like it (no retrain), so `predictions` scores it with the tampered v0001.
STREAM = StreamSpec(days=2, rows_per_day=3000, covariate_shift_days=(), concept_drift_days=())


class OpenedFiles:
    """Paths this process opens while recording, from the interpreter's ``open`` audit event."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.recording = False

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if self.recording and event == "open" and isinstance(args[0], str | bytes):
            self.paths.append(os.fsdecode(args[0]))

    @contextmanager
    def record(self) -> Iterator[list[str]]:
        self.paths.clear()
        self.recording = True
        try:
            yield self.paths
        finally:
            self.recording = False


#: An audit hook cannot be removed: one is installed for the session, and records only inside ``record()``.
OPENED = OpenedFiles()
sys.addaudithook(OPENED)


@dataclass(frozen=True)
class TamperedStore:
    root: Path
    instance: DagsterInstance
    config: dict[str, Any]
    batches: list[str]
    version: Path
    schema: FeatureSchema
    model_text: str

    @property
    def planted(self) -> Path:
        return self.version / PLANTED

    def next_batch(self) -> pd.DataFrame:
        return pd.read_parquet(self.root / "data" / self.batches[1])


def _inverted_engine(folder: Path, schema: FeatureSchema, batch: pd.DataFrame) -> bytes:
    """Machine code for this CPU from a model of the same features trained on inverted labels."""
    data = lgb.Dataset(schema.encode(batch), 1 - schema.labels(batch))
    inverted = lgb.train({"objective": "binary", "verbosity": -1}, data, num_boost_round=20)
    model_file, object_file = folder / "inverted.txt", folder / "inverted.o"
    model_file.write_text(inverted.model_to_string(), encoding="utf-8")
    lleaves.Model(model_file=str(model_file)).compile(cache=str(object_file))
    return object_file.read_bytes()


def _plant(version: Path, payload: bytes) -> None:
    """The engine file, the old-style metadata naming it for this CPU, and a manifest whose sha256s match."""
    features = llvm.get_host_cpu_features().flatten()
    this_cpu = f"{llvm.get_host_cpu_name()}-{hashlib.sha256(features.encode()).hexdigest()[:12]}"
    metadata = json.loads((version / METADATA_FILE).read_text())
    metadata["engine"] = {"name": LLEAVES, "file": PLANTED, "target": this_cpu}
    (version / METADATA_FILE).write_text(json.dumps(metadata))
    (version / PLANTED).write_bytes(payload)
    manifest = json.loads((version / MANIFEST_FILE).read_text())
    for name in (METADATA_FILE, PLANTED):
        manifest["sha256"][name] = hashlib.sha256((version / name).read_bytes()).hexdigest()
    (version / MANIFEST_FILE).write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def tampered(tmp_path_factory: pytest.TempPathFactory, engine_cache: Path) -> Iterator[TamperedStore]:
    root = tmp_path_factory.mktemp("tampered")
    batches = write_stream(STREAM, str(root / "data"))
    resources = {
        "dataset": {"data_url": str(root / "data")},
        "model_store": {"store_url": str(root / "store")},
        "artifacts": {"base_url": str(root / "artifacts")},
    }
    with instance_for_test() as instance:
        [first] = process_batches(defs, instance, batches[:1], run_config(resources))
        assert first.success and first.serving_version == "v0001", first.error
        deployed = ModelStore(str(root / "store")).load("v0001")
        version = root / "store" / "models" / "churn" / "v0001"
        _plant(version, _inverted_engine(root, deployed.schema, pd.read_parquet(root / "data" / batches[0])))
        yield TamperedStore(
            root, instance, run_config(resources), batches, version, deployed.schema, deployed.model_text
        )


def _scores_by_row(
    predict_frame: pd.DataFrame, schema: FeatureSchema, batch: pd.DataFrame, model_text: str
) -> tuple[np.ndarray, np.ndarray]:
    """The asset's scores and LightGBM's on ``model_text``, aligned by the row hash both are keyed by."""
    expected = pd.DataFrame(
        {
            ROW_HASH: row_hashes(batch, schema),
            "expected": lgb.Booster(model_str=model_text).predict(schema.encode(batch)),
        }
    ).drop_duplicates(ROW_HASH)
    joined = predict_frame.merge(expected, on=ROW_HASH, validate="many_to_one")
    assert len(joined) == len(predict_frame) == len(batch)
    return joined[SCORE].to_numpy(), joined["expected"].to_numpy()


def _metadata(instance: DagsterInstance, asset: str, partition: str) -> dict[str, Any]:
    """The metadata of the latest materialization of ``asset`` for ``partition``."""
    [record] = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[partition]), limit=1
    ).records
    materialization = record.asset_materialization
    assert materialization is not None
    return {key: value.value for key, value in materialization.metadata.items()}


def _materialized(instance: DagsterInstance, asset: str, partition: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The stored (Parquet) output of ``asset`` for ``partition`` and its metadata."""
    metadata = _metadata(instance, asset, partition)
    return pd.read_parquet(metadata["artifact_url"]), metadata


def test_a_compiled_engine_planted_in_the_store_is_never_read_and_predictions_build_their_own(
    tampered: TamperedStore,
) -> None:
    with OPENED.record() as opened:
        [outcome] = process_batches(defs, tampered.instance, tampered.batches[1:], tampered.config)

    assert outcome.success, outcome.error
    assert any(Path(path) == tampered.version / MODEL_FILE for path in opened), "the recorder saw no store read"
    assert not [path for path in opened if Path(path).name == PLANTED]
    frame, metadata = _materialized(tampered.instance, "predictions", tampered.batches[1])
    assert metadata["model_version"] == "v0001" and metadata["engine"] == LLEAVES
    # The drift step computed the scores (predictions read them from the cache), so it built the engine.
    drift = _metadata(tampered.instance, "drift_report", tampered.batches[1])
    assert drift["scoring_engine"] == LLEAVES and drift["scoring_engine_source"] == COMPILED_HERE
    validated, _ = _materialized(tampered.instance, "validated_batch", tampered.batches[1])
    scores, expected = _scores_by_row(frame, tampered.schema, validated, tampered.model_text)
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-6)


def test_positive_control_loading_the_planted_engine_is_seen_by_both_detectors(tampered: TamperedStore) -> None:
    """What the code before this fix did with a version like this one: hand the store's object file to lleaves."""
    model = lleaves.Model(model_file=str(tampered.version / MODEL_FILE))
    batch = tampered.next_batch()

    with OPENED.record() as opened:
        model.compile(cache=str(tampered.planted))
        scores = model.predict(tampered.schema.encode(batch), n_jobs=2)

    assert str(tampered.planted) in opened
    frame = pd.DataFrame({ROW_HASH: row_hashes(batch, tampered.schema), SCORE: scores})
    planted_scores, expected = _scores_by_row(frame, tampered.schema, batch, tampered.model_text)
    assert np.corrcoef(planted_scores, expected)[0, 1] < -0.5, "the planted engine would have inverted the scores"
