"""Batches stored as a Parquet dataset: part files under one folder or ``s3://`` prefix, complete once ``_SUCCESS``
exists (what Spark, Dask and pyarrow writers leave when a job finishes).

Opening one reads the part files' footers only: their rows, their columns (every part must have the same ones)
and, from the first rows of the first part, an estimate of the memory the wanted columns take once decoded. That
estimate decides where the steps run (``dataset.max_local_bytes``): below it the parts are read into one frame and
nothing changes; above it the steps work part by part on a Dask cluster (``green_pipeline.distributed``).
"""

from __future__ import annotations

import io
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from green_pipeline.errors import InvalidBatchError
from green_pipeline.store import files

SUCCESS_MARKER = "_SUCCESS"
PART_SUFFIXES = (".parquet", ".pq")
#: Rows of the first part decoded to estimate what the whole dataset takes in memory.
ESTIMATE_ROWS = 1000


@dataclass(frozen=True)
class PartFile:
    """One part file of a dataset: its URL and its row count (from its footer)."""

    url: str
    rows: int


@dataclass(frozen=True)
class DatasetBatch:
    """A batch stored as part files: the columns the steps read, the others (never decoded), and the estimated
    memory of the wanted columns once decoded (``in_memory_bytes``)."""

    url: str
    parts: tuple[PartFile, ...]
    columns: tuple[str, ...]
    unread_columns: tuple[str, ...]
    in_memory_bytes: int

    @property
    def rows(self) -> int:
        return sum(part.rows for part in self.parts)


def is_dataset(url: str, storage_options: files.StorageOptions | None = None) -> bool:
    """Whether ``url`` is a folder (or prefix) rather than a file: a dataset batch, complete or not."""
    fs, path = files.filesystem(url, storage_options)
    fs.invalidate_cache(path)
    return bool(fs.isdir(path))


def dataset_size(url: str, storage_options: files.StorageOptions | None = None) -> int | None:
    """The dataset's total part-file bytes once its ``_SUCCESS`` marker exists, else None (still being written)."""
    listing = files.list_files(url, storage_options)
    if not files.exists(files.join(url, SUCCESS_MARKER), storage_options):
        return None
    return sum(size for name, size in listing.items() if name.lower().endswith(PART_SUFFIXES))


def open_dataset(
    url: str, storage_options: files.StorageOptions | None = None, columns: Collection[str] | None = None
) -> DatasetBatch:
    """The dataset's parts, from their footers; ``columns`` (all when None) are the ones the steps will read.

    Refused, naming the dataset or the part file: no ``_SUCCESS`` marker (a writer may still be adding parts), no
    part file, a part that is not Parquet, parts whose columns differ, repeated column names, or no rows at all.
    """
    if not files.exists(files.join(url, SUCCESS_MARKER), storage_options):
        raise InvalidBatchError(
            f"{url}: the Parquet dataset has no {SUCCESS_MARKER} marker, so its writer has not finished; the batch "
            f"is read once the marker exists. Write {SUCCESS_MARKER} last, after every part file."
        )
    names = [name for name in files.list_files(url, storage_options) if name.lower().endswith(PART_SUFFIXES)]
    if not names:
        raise InvalidBatchError(
            f"{url}: the dataset holds no part file ({', '.join(PART_SUFFIXES)}); write its parts under this prefix."
        )
    parts, schema = [], None
    for name in names:
        part_url = files.join(url, name)
        part_schema, rows = _footer(part_url, storage_options)
        if schema is None:
            schema = part_schema
        elif part_schema != schema:
            raise InvalidBatchError(
                f"{part_url}: its columns {part_schema} differ from the first part's {schema}; every part file of "
                "a dataset must have the same columns."
            )
        parts.append(PartFile(part_url, rows))
    assert schema is not None
    wanted = tuple(name for name in schema if columns is None or name in columns)
    if not any(part.rows for part in parts):
        raise InvalidBatchError(f"{url}: the dataset's part files hold no rows; check the job that wrote them.")
    unread = tuple(name for name in schema if name not in wanted)
    return DatasetBatch(url, tuple(parts), wanted, unread, _memory_estimate(parts, wanted, storage_options))


def read_part(url: str, columns: Collection[str], storage_options: files.StorageOptions | None = None) -> pd.DataFrame:
    """One part file's ``columns``, text as categoricals (as single batch files are read), errors naming the part."""
    try:
        table = pq.read_table(io.BytesIO(files.read_bytes(url, storage_options)), columns=list(columns))
    except FileNotFoundError as exc:
        raise InvalidBatchError(f"{url}: the part file disappeared after its dataset was listed.") from exc
    except (ValueError, OSError, pa.ArrowException) as exc:
        raise InvalidBatchError(f"{url}: cannot be read as parquet (corrupted or truncated?): {exc}") from exc
    return table.to_pandas(strings_to_categorical=True)


def read_dataset(batch: DatasetBatch, storage_options: files.StorageOptions | None = None) -> pd.DataFrame:
    """All parts in one frame, for a dataset below ``dataset.max_local_bytes``: then the steps run as for a file."""
    frames = [read_part(part.url, batch.columns, storage_options) for part in batch.parts]
    return pd.concat(frames, ignore_index=True)


def _footer(url: str, storage_options: files.StorageOptions | None) -> tuple[tuple[str, ...], int]:
    fs, path = files.filesystem(url, storage_options)
    try:
        with fs.open(path, "rb") as handle:
            parquet = pq.ParquetFile(handle)
            names = tuple(parquet.schema_arrow.names)
            rows = parquet.metadata.num_rows
    except (ValueError, OSError, pa.ArrowException) as exc:
        raise InvalidBatchError(f"{url}: cannot be read as parquet (corrupted or truncated?): {exc}") from exc
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise InvalidBatchError(f"{url}: duplicate column names {duplicated}; each column must appear once.")
    return names, int(rows)


def _memory_estimate(
    parts: Sequence[PartFile], columns: Sequence[str], storage_options: files.StorageOptions | None
) -> int:
    """Bytes of ``columns`` decoded, extrapolated from the first rows of the first non-empty part."""
    first = next(part for part in parts if part.rows)
    fs, path = files.filesystem(first.url, storage_options)
    with fs.open(path, "rb") as handle:
        head = next(pq.ParquetFile(handle).iter_batches(batch_size=ESTIMATE_ROWS, columns=list(columns)))
    sample = pa.Table.from_batches([head]).to_pandas(strings_to_categorical=True)
    per_row = float(sample.memory_usage(index=False, deep=True).sum()) / max(len(sample), 1)
    return int(per_row * sum(part.rows for part in parts))
