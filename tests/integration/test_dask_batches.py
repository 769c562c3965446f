"""A multi-file Parquet dataset batch through the Dask path (a local cluster of 2 workers) and the same rows as
single files through the plain path: the same decisions, and the cluster's outputs complete and metered."""

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, instance_for_test

from green_pipeline.app.definitions import defs
from green_pipeline.app.runner import BatchOutcome, process_batches
from green_pipeline.data.datasets import SUCCESS_MARKER
from green_pipeline.demo.stream import StreamSpec, write_stream
from green_pipeline.errors import EventLogError
from green_pipeline.orchestration.history import load_batches
from green_pipeline.orchestration.resources import ArtifactStorage, ObjectStorage

from .conftest import Workspace

pytestmark = pytest.mark.integration

#: Day 0 trains the first model, day 1 is like day 0, day 2 starts a covariate shift.
STREAM = StreamSpec(days=3, rows_per_day=3000, covariate_shift_days=(2,), concept_drift_days=())
PARTS = 3
#: Two single-threaded workers with a small memory limit: the batch is spread, never gathered on one worker.
CLUSTER = {"n_workers": 2, "threads_per_worker": 1, "memory_limit": "1GiB"}


def as_dataset(file: Path, folder: Path, parts: int) -> None:
    """The batch file rewritten as a Parquet dataset: ``parts`` part files, then ``_SUCCESS``."""
    frame = pq.read_table(file).to_pandas()
    folder.mkdir(parents=True)
    for index, rows in enumerate(range(0, len(frame), -(-len(frame) // parts))):
        frame.iloc[rows : rows + -(-len(frame) // parts)].to_parquet(folder / f"part-{index}.parquet", index=False)
    (folder / SUCCESS_MARKER).write_bytes(b"")


def run(workspace: Workspace, **dataset: object) -> tuple[DagsterInstance, list[BatchOutcome]]:
    config = workspace.config()
    config["resources"]["dataset"]["config"] |= dataset
    config["resources"]["dask"] = {"config": CLUSTER}
    with instance_for_test() as instance:
        yield instance, list(process_batches(defs, instance, workspace.batches, config))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple]]:
    files_root, dataset_root = tmp_path_factory.mktemp("files"), tmp_path_factory.mktemp("datasets")
    names = write_stream(STREAM, str(files_root / "data"))
    for name in names:
        as_dataset(files_root / "data" / name, dataset_root / "data" / name, PARTS)
    plain = run(Workspace(files_root, names))
    dask = run(Workspace(dataset_root, names), max_local_bytes=1)
    yield {"plain": next(plain), "dask": next(dask)}
    for finished in (plain, dask):
        next(finished, None)


def _metadata(instance: DagsterInstance, asset: str, batch: str) -> dict:
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[batch]), limit=1
    ).records
    assert records, f"{asset} was never materialized for {batch}"
    return {key: value.value for key, value in records[0].asset_materialization.metadata.items()}


def test_the_dask_path_takes_the_same_decisions_as_the_plain_one(runs: dict[str, tuple]) -> None:
    (_, plain), (_, dask) = runs["plain"], runs["dask"]
    assert [o.success for o in dask] == [True] * STREAM.days, [o.error for o in dask]
    assert [o.retrained for o in dask] == [o.retrained for o in plain]
    assert [o.promoted for o in dask] == [o.promoted for o in plain]
    assert [o.serving_version for o in dask] == [o.serving_version for o in plain]
    # The drift step judged every row of these small batches (below policy.drift_sample_rows): the same share.
    assert [o.drifted_share for o in dask] == pytest.approx([o.drifted_share for o in plain])


def test_every_step_of_a_dataset_batch_ran_on_the_cluster_and_was_metered_there(runs: dict[str, tuple]) -> None:
    instance, outcomes = runs["dask"]
    first, shifted = outcomes[0].batch, outcomes[2].batch
    assert _metadata(instance, "ingested_batch", first)["engine"] == "dask"
    assert _metadata(instance, "ingested_batch", first)["parts"] == PARTS
    for asset, batch in (("validated_batch", first), ("drift_report", shifted), ("predictions", shifted)):
        metadata = _metadata(instance, asset, batch)
        assert metadata["engine"] == "dask", asset
        workers = metadata["cluster_workers"]
        assert len(workers) == CLUSTER["n_workers"], asset
        assert metadata["cluster_hosts"], asset
        assert all(worker["status"] in ("measured", "estimated") for worker in workers), asset
        # The step's figure is its own process's plus the workers'.
        assert metadata["energy_kwh"] >= metadata["cluster_energy_kwh"] > 0, asset
    training = _metadata(instance, "retrained_model", first)
    assert training["train_rows"] > 0 and "on Dask" in training["reason"]


def test_a_dataset_batch_writes_complete_parquet_datasets(runs: dict[str, tuple]) -> None:
    instance, outcomes = runs["dask"]
    batch = outcomes[1].batch
    predictions = _metadata(instance, "predictions", batch)
    assert predictions["rows_scored"] == STREAM.rows_per_day
    validated = Path(_metadata(instance, "validated_batch", batch)["artifact_url"].removesuffix(".json"))
    scores_url = _metadata(instance, "predictions", batch)["artifact_url"]
    assert scores_url.endswith(".json")
    for folder in (validated, Path(scores_url.removesuffix(".json"))):
        assert (folder / SUCCESS_MARKER).exists()
        parts = sorted(folder.glob("part-*.parquet"))
        assert len(parts) == PARTS
        assert sum(len(pd.read_parquet(part)) for part in parts) == STREAM.rows_per_day


def test_a_dataset_batch_is_never_loaded_into_one_process(runs: dict[str, tuple], tmp_path: Path) -> None:
    instance, outcomes = runs["dask"]
    artifacts = ArtifactStorage(storage=ObjectStorage(), base_url=str(tmp_path))
    with pytest.raises(EventLogError, match="is a Parquet dataset processed on the Dask cluster"):
        load_batches(instance, artifacts, [outcomes[0].batch])
