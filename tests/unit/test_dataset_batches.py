"""Parquet dataset batches: opening (marker, parts, columns), listing, and the per-part work on a local cluster."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from distributed import Client

from green_pipeline.data.batches import batch_sizes, open_batch
from green_pipeline.data.datasets import SUCCESS_MARKER, DatasetBatch, open_dataset
from green_pipeline.data.schema import DatasetSpec, infer_schema
from green_pipeline.demo.stream import LABEL, StreamSpec, generate_day
from green_pipeline.distributed.partitions import (
    MAX_HOLDOUT_ROWS,
    holdout_fraction,
    sample_parts,
    split_parts,
    validate_parts,
)
from green_pipeline.errors import InvalidBatchError

ROWS = 4000


def write_dataset(folder: Path, frame: pd.DataFrame, parts: int, complete: bool = True) -> Path:
    folder.mkdir(parents=True)
    size = -(-len(frame) // parts)
    for index in range(parts):
        frame.iloc[index * size : (index + 1) * size].to_parquet(folder / f"part-{index}.parquet", index=False)
    if complete:
        (folder / SUCCESS_MARKER).write_bytes(b"")
    return folder


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate_day(StreamSpec(rows_per_day=ROWS), 0)


@pytest.fixture(scope="module")
def client(dask_client: Client) -> Client:
    return dask_client


def test_a_dataset_is_read_only_once_its_success_marker_exists(tmp_path: Path, frame: pd.DataFrame) -> None:
    write_dataset(tmp_path / "data" / "day-1.parquet", frame, 3, complete=False)
    (tmp_path / "data" / "day-0.csv").write_text(frame.to_csv(index=False))

    assert batch_sizes(str(tmp_path / "data")) == {"day-0.csv": (tmp_path / "data" / "day-0.csv").stat().st_size}
    with pytest.raises(InvalidBatchError, match=f"day-1.parquet: the Parquet dataset has no {SUCCESS_MARKER}"):
        open_dataset(str(tmp_path / "data" / "day-1.parquet"))

    (tmp_path / "data" / "day-1.parquet" / SUCCESS_MARKER).write_bytes(b"")
    parts = sorted((tmp_path / "data" / "day-1.parquet").glob("part-*"))
    assert batch_sizes(str(tmp_path / "data"))["day-1.parquet"] == sum(p.stat().st_size for p in parts)


def test_opening_reads_footers_and_the_wanted_columns_only(tmp_path: Path, frame: pd.DataFrame) -> None:
    folder = write_dataset(tmp_path / "d.parquet", frame.assign(extra=1.0), 4)

    batch = open_dataset(str(folder), columns=[*frame.columns])

    assert batch.rows == ROWS and len(batch.parts) == 4
    assert batch.unread_columns == ("extra",) and "extra" not in batch.columns
    # Text is decoded as categoricals, as single files are.
    text = frame.select_dtypes("object").columns
    in_memory = frame.astype(dict.fromkeys(text, "category")).memory_usage(index=False, deep=True).sum()
    assert 0.5 * in_memory < batch.in_memory_bytes < 2 * in_memory


def test_below_max_local_bytes_a_dataset_is_one_frame_and_above_it_stays_parts(
    tmp_path: Path, frame: pd.DataFrame
) -> None:
    write_dataset(tmp_path / "d.parquet", frame, 3)

    local = open_batch(str(tmp_path), "d.parquet")
    remote = open_batch(str(tmp_path), "d.parquet", max_local_bytes=1)

    assert not isinstance(local, DatasetBatch)
    pd.testing.assert_frame_equal(local.frame, frame, check_dtype=False, check_categorical=False)
    assert isinstance(remote, DatasetBatch) and remote.rows == ROWS
    with pytest.raises(InvalidBatchError, match="more than 100 rows"):
        open_batch(str(tmp_path), "d.parquet", max_rows=100, max_local_bytes=1)


def test_parts_with_other_columns_are_refused_naming_the_part(tmp_path: Path, frame: pd.DataFrame) -> None:
    folder = write_dataset(tmp_path / "d.parquet", frame, 2)
    frame.drop(columns=[LABEL]).to_parquet(folder / "part-9.parquet", index=False)

    with pytest.raises(InvalidBatchError, match=r"part-9.parquet: its columns .* differ from the first part's"):
        open_dataset(str(folder))


def test_validation_runs_per_part_and_names_the_bad_part_file(
    tmp_path: Path, frame: pd.DataFrame, client: Client
) -> None:
    schema = infer_schema(frame, DatasetSpec(label=LABEL), "d")
    good = open_dataset(str(write_dataset(tmp_path / "good.parquet", frame, 3)))

    validated, report = validate_parts(client, good, schema, str(tmp_path / "out"))

    assert report.rows == ROWS and report.positive_rate == pytest.approx(frame[LABEL].mean())
    assert validated.rows == ROWS and (tmp_path / "out" / SUCCESS_MARKER).exists()
    bad_frame = frame.copy()
    bad_frame.loc[ROWS - 1, LABEL] = 7  # in the last part only
    bad = open_dataset(str(write_dataset(tmp_path / "bad.parquet", bad_frame, 3)))
    with pytest.raises(InvalidBatchError, match=r"bad.parquet/part-2.parquet: .*churned"):
        validate_parts(client, bad, schema, str(tmp_path / "bad-out"))
    assert not (tmp_path / "bad-out" / SUCCESS_MARKER).exists()


def test_samples_and_splits_are_the_same_rows_whatever_runs_them(
    tmp_path: Path, frame: pd.DataFrame, client: Client
) -> None:
    batch = open_dataset(str(write_dataset(tmp_path / "d.parquet", frame, 4)))

    sample = sample_parts(client, batch, 0.25, seed=1)
    again = sample_parts(client, batch, 0.25, seed=1)
    split = split_parts(client, batch, seed=1)

    pd.testing.assert_frame_equal(sample, again)
    assert abs(len(sample) - ROWS / 4) < 4 * np.sqrt(ROWS * 0.25 * 0.75)
    assert holdout_fraction(ROWS) == 0.2 and holdout_fraction(10 * MAX_HOLDOUT_ROWS) == 0.1
    held = len(split.valid) + len(split.test)
    assert held + split.train_rows == ROWS and abs(held - 0.4 * ROWS) < 4 * np.sqrt(ROWS * 0.4 * 0.6)
    assert len(split.train_sample) == split.train_rows  # below MAX_TRAIN_SAMPLE_ROWS: every training row
    together = pd.concat([split.valid, split.test, split.train_sample])
    assert not together.duplicated().any()
