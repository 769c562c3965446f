"""The steps' work on a dataset batch, one task per part file on the cluster's workers.

Each task reads its own part (only the columns the steps need), so a worker holds one part at a time, never the
batch. Every row gets a draw in [0, 1) seeded by the batch's name and its part's position
(``row_draws``): the same rows fall in the drift sample, the held-out rows and the training rows whichever step
asks and however many workers there are, as ``training.trainer.split_batch`` makes a single-file batch's split
reproducible.

- validation: each part validated and written, the report summed; errors name the part file;
- samples: the drift step's rows, and the held-out rows (validation, test) and a training sample as pandas frames;
- training rows: the rest of the batch, as float32 ``dask.array`` chunks for ``lightgbm.dask``;
- scoring: each part's scores written as a part of the predictions dataset.

Outputs are complete or absent: each part file is written atomically, and ``_SUCCESS`` is written last.
"""

from __future__ import annotations

import io
import operator
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import dask.array as da
import lightgbm as lgb
import numpy as np
import pandas as pd
from dask.delayed import delayed
from distributed import Client, Future

from green_pipeline.data.datasets import SUCCESS_MARKER, DatasetBatch, PartFile, read_part
from green_pipeline.data.schema import FeatureSchema
from green_pipeline.data.validation import ValidationReport, validate_batch
from green_pipeline.errors import TrainingError
from green_pipeline.serving.scoring import ROW_HASH, SCORE, row_hashes
from green_pipeline.store import files

#: Rows of each held-out side (validation, test) at most: 20% of the batch below 500,000 rows, as a single file's
#: split holds, and no more above, so the held-out rows always fit the step's process.
MAX_HOLDOUT_ROWS = 100_000
HOLDOUT_SHARE = 0.2
#: Training rows handed to the steps that need them in one process (compression's smaller models), at most.
MAX_TRAIN_SAMPLE_ROWS = 100_000


def batch_seed(batch_name: str) -> int:
    """The batch's seed, from its name (as ``split_batch`` seeds a single file's split)."""
    return zlib.crc32(batch_name.encode())


def row_draws(seed: int, part_index: int, rows: int) -> np.ndarray:
    """One uniform draw per row of part ``part_index``: where that row falls (sample, held out, training)."""
    return np.random.default_rng([seed, part_index]).random(rows)


@dataclass(frozen=True)
class DatasetSplit:
    """The held-out rows of a dataset batch and a sample of its training rows, as pandas frames.

    A row is held out for testing when its draw is below ``holdout``, for validation when below ``2 * holdout``,
    and trains otherwise (``training_arrays``); ``train_sample`` holds up to ``MAX_TRAIN_SAMPLE_ROWS`` of those.
    """

    holdout: float
    valid: pd.DataFrame
    test: pd.DataFrame
    train_sample: pd.DataFrame
    train_rows: int


def holdout_fraction(rows: int) -> float:
    """The share of the batch held out on each side: 20%, capped at ``MAX_HOLDOUT_ROWS`` rows."""
    return min(HOLDOUT_SHARE, MAX_HOLDOUT_ROWS / rows)


def validate_parts(
    client: Client,
    batch: DatasetBatch,
    schema: FeatureSchema,
    out_url: str,
    storage_options: files.StorageOptions | None = None,
    out_storage_options: files.StorageOptions | None = None,
) -> tuple[DatasetBatch, ValidationReport]:
    """Each part validated against ``schema`` on a worker and written under ``out_url``; the validated dataset and
    the whole batch's report. The first invalid part fails the step with its error, naming that part file."""
    targets = [files.join(out_url, f"part-{index:05d}.parquet") for index in range(len(batch.parts))]
    futures = client.map(
        _validate_part,
        [part.url for part in batch.parts],
        targets,
        columns=batch.columns,
        schema=schema,
        storage_options=storage_options,
        out_storage_options=out_storage_options,
        pure=False,
    )
    checked: list[_CheckedPart] = client.gather(futures)
    files.write_bytes_atomic(files.join(out_url, SUCCESS_MARKER), b"", out_storage_options)
    rows = sum(part.rows for part in checked)
    warnings = tuple(dict.fromkeys(warning for part in checked for warning in part.warnings))
    report = ValidationReport(
        rows=rows,
        columns=len(schema.features),
        positive_rate=sum(part.positives for part in checked) / rows,
        warnings=warnings,
    )
    validated = DatasetBatch(
        url=out_url,
        parts=tuple(PartFile(url, part.rows) for url, part in zip(targets, checked, strict=True)),
        columns=checked[0].columns,
        unread_columns=(),
        in_memory_bytes=sum(part.memory_bytes for part in checked),
    )
    return validated, report


def sample_parts(
    client: Client,
    batch: DatasetBatch,
    fraction: float,
    seed: int,
    storage_options: files.StorageOptions | None = None,
) -> pd.DataFrame:
    """The rows whose draw is below ``fraction``: a uniform sample of the batch, in part order."""
    futures = client.map(
        _sampled_part,
        [part.url for part in batch.parts],
        range(len(batch.parts)),
        columns=batch.columns,
        fraction=fraction,
        seed=seed,
        storage_options=storage_options,
        pure=False,
    )
    return pd.concat(client.gather(futures), ignore_index=True)


def split_parts(
    client: Client, batch: DatasetBatch, seed: int, storage_options: files.StorageOptions | None = None
) -> DatasetSplit:
    """The held-out rows and a training sample, read in one pass over the parts."""
    holdout = holdout_fraction(batch.rows)
    train_rows_expected = batch.rows * (1 - 2 * holdout)
    sample_share = min(1.0, MAX_TRAIN_SAMPLE_ROWS / max(train_rows_expected, 1.0))
    futures = client.map(
        _split_part,
        [part.url for part in batch.parts],
        range(len(batch.parts)),
        columns=batch.columns,
        holdout=holdout,
        sample_share=sample_share,
        seed=seed,
        storage_options=storage_options,
        pure=False,
    )
    pieces: list[tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, int]] = client.gather(futures)
    valid, test, sample = (pd.concat([piece[side] for piece in pieces], ignore_index=True) for side in range(3))
    return DatasetSplit(holdout, valid, test, sample, sum(piece[3] for piece in pieces))


@dataclass(frozen=True)
class TrainingArrays:
    """The rows that train, as ``lightgbm.dask`` takes them with the least memory per worker: float32 features
    (categoricals as their codes in the schema's categories, NaN when missing; ``feature_matrix``), labels, and the
    champion's raw scores for a warm start. One chunk per part, each read once."""

    features: da.Array
    labels: da.Array
    init_scores: da.Array | None
    rows: int


def feature_matrix(frame: pd.DataFrame, schema: FeatureSchema) -> np.ndarray:
    """``schema.encode(frame)`` as one float32 matrix, categoricals as category codes (NaN when missing): what
    LightGBM builds from a pandas frame itself, without the copies (``categorical_indices`` marks them)."""
    encoded = schema.encode(frame)
    matrix = np.empty((len(frame), len(schema.features)), dtype=np.float32)
    for index, column in enumerate(schema.features):
        values = encoded[column]
        if column in schema.categories:
            codes = values.cat.codes.to_numpy()
            matrix[:, index] = np.where(codes < 0, np.nan, codes)
        else:
            matrix[:, index] = values.to_numpy(dtype=np.float32, na_value=np.nan)
    return matrix


def categorical_indices(schema: FeatureSchema) -> list[int]:
    """The columns of ``feature_matrix`` holding category codes."""
    return [index for index, column in enumerate(schema.features) if column in schema.categories]


def training_arrays(
    client: Client,
    batch: DatasetBatch,
    holdout: float,
    seed: int,
    schema: FeatureSchema,
    storage_options: files.StorageOptions | None = None,
    champion_text: str | None = None,
    extra: pd.DataFrame | None = None,
) -> TrainingArrays:
    """The rows that train (draw at or above ``2 * holdout``) of every part, and the ``extra`` rows (the pooled
    batches'), computed on the workers, each part read once. With ``champion_text`` each task scores its rows with the
    champion too (the warm start's ``init_score``).

    Each part's training row count comes from its draws, known without reading it, and the parts are placed so that
    every worker holds as many rows as the others: ``lightgbm.dask`` trains each worker on the rows it holds, so the
    fullest worker sets the step's peak memory and its time."""
    model = client.scatter(champion_text, broadcast=True) if champion_text else None
    workers = sorted(client.scheduler_info()["workers"])
    if not workers:
        raise TrainingError("the Dask cluster has no worker to train on; check the dask resource's scheduler.")
    rows_on = dict.fromkeys(workers, 0)
    chunks: list[tuple[list[Future[Any]], int]] = []

    def place(rows: int, work: Callable[..., object], *args: object) -> None:
        worker = min(workers, key=rows_on.__getitem__)
        rows_on[worker] += rows
        arrays = client.submit(work, *args, workers=[worker], allow_other_workers=False, pure=False)
        pinned = {"workers": [worker], "allow_other_workers": False, "pure": False}
        chunks.append(([client.submit(operator.getitem, arrays, side, **pinned) for side in range(3)], rows))

    for index, part in enumerate(batch.parts):
        rows = int((row_draws(seed, index, part.rows) >= 2 * holdout).sum())
        if rows:
            place(rows, _part_arrays, part.url, index, batch.columns, holdout, seed, storage_options, schema, model)
    if extra is not None and len(extra):
        place(len(extra), _arrays, extra, schema, model)
    width = len(schema.features)

    def stacked(side: int, shape: tuple[int, ...], dtype: type) -> da.Array:
        pieces = [
            da.from_delayed(delayed(futures[side]), shape=(rows, *shape), dtype=dtype) for futures, rows in chunks
        ]
        joined: da.Array = da.concatenate(pieces)
        return joined

    return TrainingArrays(
        features=stacked(0, (width,), np.float32),
        labels=stacked(1, (), np.int64),
        init_scores=stacked(2, (), np.float64) if champion_text else None,
        rows=sum(rows for _, rows in chunks),
    )


def score_parts(
    client: Client,
    batch: DatasetBatch,
    model_text: str,
    schema: FeatureSchema,
    out_url: str,
    storage_options: files.StorageOptions | None = None,
    out_storage_options: files.StorageOptions | None = None,
) -> DatasetBatch:
    """Each part scored on a worker (one LightGBM thread per task) and written as a part of the predictions
    dataset under ``out_url`` (``row_hash``, ``score``)."""
    model = client.scatter(model_text, broadcast=True)
    targets = [files.join(out_url, f"part-{index:05d}.parquet") for index in range(len(batch.parts))]
    futures = client.map(
        _scored_part,
        [part.url for part in batch.parts],
        targets,
        model_text=model,
        schema=schema,
        storage_options=storage_options,
        out_storage_options=out_storage_options,
        pure=False,
    )
    rows: list[int] = client.gather(futures)
    files.write_bytes_atomic(files.join(out_url, SUCCESS_MARKER), b"", out_storage_options)
    parts = tuple(PartFile(url, count) for url, count in zip(targets, rows, strict=True))
    return DatasetBatch(out_url, parts, (ROW_HASH, SCORE), (), sum(rows) * 16)


@dataclass(frozen=True)
class _CheckedPart:
    rows: int
    positives: int
    memory_bytes: int
    columns: tuple[str, ...]
    warnings: tuple[str, ...]


def _validate_part(
    url: str,
    target: str,
    *,
    columns: Sequence[str],
    schema: FeatureSchema,
    storage_options: files.StorageOptions | None,
    out_storage_options: files.StorageOptions | None,
) -> _CheckedPart:
    clean, report = validate_batch(read_part(url, columns, storage_options), schema, url)
    _write_parquet(target, clean, out_storage_options)
    return _CheckedPart(
        rows=report.rows,
        positives=int(clean[schema.label].sum()),
        memory_bytes=int(clean.memory_usage(index=False, deep=True).sum()),
        columns=tuple(map(str, clean.columns)),
        warnings=report.warnings,
    )


def _sampled_part(
    url: str,
    index: int,
    *,
    columns: Sequence[str],
    fraction: float,
    seed: int,
    storage_options: files.StorageOptions | None,
) -> pd.DataFrame:
    frame = read_part(url, columns, storage_options)
    return frame[row_draws(seed, index, len(frame)) < fraction]


def _split_part(
    url: str,
    index: int,
    *,
    columns: Sequence[str],
    holdout: float,
    sample_share: float,
    seed: int,
    storage_options: files.StorageOptions | None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, int]:
    frame = read_part(url, columns, storage_options)
    draws = row_draws(seed, index, len(frame))
    trains = draws >= 2 * holdout
    # Training draws are uniform on [2h, 1): the lowest sample_share of that range is a uniform sample of them.
    sampled = trains & (draws < 2 * holdout + sample_share * (1 - 2 * holdout))
    return frame[(draws >= holdout) & ~trains], frame[draws < holdout], frame[sampled], int(trains.sum())


def _part_arrays(
    url: str,
    index: int,
    columns: Sequence[str],
    holdout: float,
    seed: int,
    storage_options: files.StorageOptions | None,
    schema: FeatureSchema,
    champion_text: str | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    frame = read_part(url, columns, storage_options)
    return _arrays(frame[row_draws(seed, index, len(frame)) >= 2 * holdout], schema, champion_text)


def _arrays(
    frame: pd.DataFrame, schema: FeatureSchema, champion_text: str | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    features = feature_matrix(frame, schema)
    labels = schema.labels(frame).to_numpy()
    if champion_text is None:
        return features, labels, None
    return features, labels, _raw_scores(frame, champion_text, schema).to_numpy()


def _scored_part(
    url: str,
    target: str,
    *,
    model_text: str,
    schema: FeatureSchema,
    storage_options: files.StorageOptions | None,
    out_storage_options: files.StorageOptions | None,
) -> int:
    frame = read_part(url, schema.features, storage_options)
    booster = lgb.Booster(model_str=model_text)
    scores = booster.predict(schema.encode(frame), num_threads=1)
    _write_parquet(target, pd.DataFrame({ROW_HASH: row_hashes(frame, schema), SCORE: scores}), out_storage_options)
    return len(frame)


def _raw_scores(frame: pd.DataFrame, model_text: str, schema: FeatureSchema) -> pd.Series:
    booster = lgb.Booster(model_str=model_text)
    raw = booster.predict(schema.encode(frame), raw_score=True, num_threads=1)
    return pd.Series(raw, index=frame.index, dtype="float64")


def _write_parquet(url: str, frame: pd.DataFrame, storage_options: files.StorageOptions | None) -> None:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    files.write_bytes_atomic(url, buffer.getvalue(), storage_options)
