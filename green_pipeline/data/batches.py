"""Reading batch files from a folder or prefix URL: listing, names, limits, CSV and Parquet decoding."""

from __future__ import annotations

import csv
import io
import posixpath
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

from green_pipeline.data.datasets import DatasetBatch, dataset_size, is_dataset, open_dataset, read_dataset
from green_pipeline.errors import InvalidBatchError
from green_pipeline.store import files

BATCH_SUFFIXES = (".parquet", ".pq", ".csv")
CSV_DELIMITERS = (",", ";", "\t", "|")
#: Past this estimated in-memory size a Parquet dataset batch runs on the Dask cluster (dataset.max_local_bytes).
DEFAULT_MAX_LOCAL_BYTES = 2 * 2**30
#: Rows decoded first to estimate the memory a batch takes before the whole file is decoded.
ESTIMATE_ROWS = 1000


def list_batches(url: str, storage_options: files.StorageOptions | None = None) -> list[str]:
    """Batch names under ``url`` in processing (name) order; other files, and datasets still being written, are
    ignored."""
    return list(batch_sizes(url, storage_options))


def batch_sizes(url: str, storage_options: files.StorageOptions | None = None) -> dict[str, int]:
    """Batches under ``url`` and their sizes in bytes, in name order: batch files, and Parquet dataset folders named
    like one (``events.parquet/``) once their ``_SUCCESS`` marker exists (the size of a dataset is its parts')."""
    fs, path = files.filesystem(url, storage_options)
    fs.invalidate_cache(path)
    if not fs.exists(path):
        return {}
    sizes: dict[str, int] = {}
    for entry in fs.ls(path, detail=True):
        name = posixpath.basename(entry["name"].rstrip("/"))
        if name.startswith((".", "_")) or not name.lower().endswith(BATCH_SUFFIXES):
            continue
        if entry.get("type") == "directory":
            size = dataset_size(files.join(url, name), storage_options)
            if size is not None:
                sizes[name] = size
        elif entry.get("type") == "file":
            sizes[name] = int(entry.get("size") or 0)
    return dict(sorted(sizes.items()))


def check_batch_name(name: str) -> str:
    """Refuse names that could escape the data folder when joined to its URL, before any join, or are no batch file."""
    files.validate_batch_key(name)
    if not name.lower().endswith(BATCH_SUFFIXES):
        raise InvalidBatchError(f"batch {name!r}: unsupported extension; use one of {', '.join(BATCH_SUFFIXES)}.")
    return name


def check_batch_limits(
    source: str,
    *,
    size_bytes: int | None = None,
    rows: int | None = None,
    max_bytes: int | None = None,
    max_rows: int | None = None,
    memory_bytes: int | None = None,
    max_memory_bytes: int | None = None,
) -> None:
    """Refuse a batch over the configured size, so one oversized upload cannot exhaust memory or a training budget."""
    if max_bytes is not None and size_bytes is not None and size_bytes > max_bytes:
        raise InvalidBatchError(
            f"{source}: the file is {size_bytes} bytes, over dataset.max_bytes={max_bytes}; "
            "split it into smaller batch files or raise dataset.max_bytes."
        )
    if max_rows is not None and rows is not None and rows > max_rows:
        raise InvalidBatchError(
            f"{source}: the batch has more than {max_rows} rows (dataset.max_rows); "
            "split it into smaller batch files or raise dataset.max_rows."
        )
    if max_memory_bytes is not None and memory_bytes is not None and memory_bytes > max_memory_bytes:
        raise InvalidBatchError(
            f"{source}: reading the batch would take about {memory_bytes / 1e9:.2f} GB of memory, over the "
            f"{max_memory_bytes / 1e9:.2f} GB allowed (dataset.max_memory_fraction of the memory available); "
            "split it into smaller batch files, list only the model's columns in dataset.features, "
            "or raise dataset.max_memory_fraction."
        )


def memory_budget(fraction: float) -> int:
    """``fraction`` of the memory available now: the default ceiling on what reading one batch may take."""
    return int(psutil.virtual_memory().available * fraction)


@dataclass(frozen=True)
class BatchFile:
    """A batch as read: the wanted columns, the file's other columns (not decoded) and the memory estimate."""

    frame: pd.DataFrame
    unread_columns: tuple[str, ...]
    estimated_bytes: int


def read_batch(
    data_url: str,
    name: str,
    storage_options: files.StorageOptions | None = None,
    *,
    max_rows: int | None = None,
    max_bytes: int | None = None,
) -> pd.DataFrame:
    """Read one batch file (Parquet or CSV) from the data URL, with errors that name the file and say what to do."""
    return load_batch(data_url, name, storage_options, max_rows=max_rows, max_bytes=max_bytes).frame


def open_batch(
    data_url: str,
    name: str,
    storage_options: files.StorageOptions | None = None,
    *,
    max_rows: int | None = None,
    max_bytes: int | None = None,
    max_memory_bytes: int | None = None,
    max_local_bytes: int = DEFAULT_MAX_LOCAL_BYTES,
    columns: Collection[str] | None = None,
) -> BatchFile | DatasetBatch:
    """A batch file read as ``load_batch`` reads it, or a Parquet dataset batch: read into one frame as well when
    its wanted columns fit in ``max_local_bytes`` once decoded, else opened only (footers read, nothing decoded)
    for the steps to process part by part on the cluster. ``max_rows`` bounds a dataset too; ``max_bytes`` and
    ``max_memory_bytes`` bound what one process reads."""
    url = files.join(data_url, check_batch_name(name))
    if not is_dataset(url, storage_options):
        return load_batch(
            data_url,
            name,
            storage_options,
            max_rows=max_rows,
            max_bytes=max_bytes,
            max_memory_bytes=max_memory_bytes,
            columns=columns,
        )
    dataset = open_dataset(url, storage_options, columns)
    check_batch_limits(url, rows=dataset.rows, max_rows=max_rows)
    if dataset.in_memory_bytes > max_local_bytes:
        return dataset
    check_batch_limits(url, memory_bytes=dataset.in_memory_bytes, max_memory_bytes=max_memory_bytes)
    return BatchFile(read_dataset(dataset, storage_options), dataset.unread_columns, dataset.in_memory_bytes)


def load_batch(
    data_url: str,
    name: str,
    storage_options: files.StorageOptions | None = None,
    *,
    max_rows: int | None = None,
    max_bytes: int | None = None,
    max_memory_bytes: int | None = None,
    columns: Collection[str] | None = None,
) -> BatchFile:
    """Like ``read_batch``, decoding only ``columns`` (all when None) and reporting the columns left unread.

    The memory a read takes (the file's bytes plus the decoded frame, extrapolated from its first
    ESTIMATE_ROWS rows) is checked against ``max_memory_bytes`` before the whole file is decoded.
    """
    url = files.join(data_url, check_batch_name(name))
    payload = _fetch_batch(url, storage_options, max_bytes)
    limits = _Limits(max_rows, max_memory_bytes, None if columns is None else frozenset(columns))
    batch = _parse_csv(payload, url, limits) if name.lower().endswith(".csv") else _parse_parquet(payload, url, limits)
    if len(batch.frame) == 0:
        raise InvalidBatchError(
            f"{url}: the file has a header ({len(batch.frame.columns) + len(batch.unread_columns)} columns) "
            "but no rows; check the export that wrote it and upload the batch again."
        )
    return batch


@dataclass(frozen=True)
class _Limits:
    max_rows: int | None
    max_memory_bytes: int | None
    columns: frozenset[str] | None

    def split(self, names: Sequence[str]) -> tuple[list[str], tuple[str, ...]]:
        """The file's columns to decode, and the others."""
        wanted = [n for n in names if self.columns is None or n in self.columns]
        return wanted, tuple(n for n in names if n not in wanted)

    def check_memory(self, url: str, fixed_bytes: int, head: pd.DataFrame, rows: int) -> int:
        """Estimated bytes of the whole read, refused over the limit before the file is decoded."""
        per_row = head.memory_usage(index=False, deep=True).sum() / max(len(head), 1)
        estimate = int(fixed_bytes + per_row * rows)
        check_batch_limits(url, memory_bytes=estimate, max_memory_bytes=self.max_memory_bytes)
        return estimate


def _fetch_batch(url: str, storage_options: files.StorageOptions | None, max_bytes: int | None) -> bytes:
    """The file's bytes, its size checked against the limit before it is downloaded."""
    fs, path = files.filesystem(url, storage_options)
    try:
        check_batch_limits(url, size_bytes=fs.size(path), max_bytes=max_bytes)
        payload: bytes = fs.cat_file(path)
    except FileNotFoundError as exc:
        raise InvalidBatchError(f"{url}: batch file not found.") from exc
    if not payload:
        raise InvalidBatchError(f"{url}: the file is empty (0 bytes); upload the batch again.")
    check_batch_limits(url, size_bytes=len(payload), max_bytes=max_bytes)
    return payload


def _parse_csv(payload: bytes, url: str, limits: _Limits) -> BatchFile:
    """UTF-8 only (a guessed encoding would silently turn 'Zürich' into another category); the delimiter is
    detected from the header among ``, ; tab |`` and repeated header names are refused (pandas would rename them)."""
    try:
        text = payload.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidBatchError(
            f"{url}: cannot be read as csv: it is not UTF-8 text (byte 0x{payload[exc.start]:02x} at offset "
            f"{exc.start}; latin-1/cp1252 exports look like this). Re-export the file with UTF-8 encoding."
        ) from exc
    header_line = text.split("\n", 1)[0].rstrip("\r")
    delimiter = max(CSV_DELIMITERS, key=header_line.count)
    header = next(csv.reader([header_line], delimiter=delimiter), [])
    duplicated = sorted({column for column in header if header.count(column) > 1})
    if duplicated:
        raise InvalidBatchError(
            f"{url}: duplicate column names {duplicated} in the CSV header; each column must appear once. "
            "Rename or drop the repeated columns."
        )
    wanted, unread = limits.split(header)
    # By name through a predicate: pandas renames unnamed header cells, so a list of names could miss.
    usecols = frozenset(wanted).__contains__ if unread else None
    max_rows = limits.max_rows
    try:
        head = pd.read_csv(io.StringIO(text), sep=delimiter, nrows=ESTIMATE_ROWS, usecols=usecols)
        estimate = limits.check_memory(url, len(payload) + len(text), head, text.count("\n"))
        frame = pd.read_csv(
            io.StringIO(text),
            sep=delimiter,
            nrows=None if max_rows is None else max_rows + 1,
            usecols=usecols,
        )
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InvalidBatchError(f"{url}: cannot be read as csv (delimiter {delimiter!r}): {exc}") from exc
    check_batch_limits(url, rows=len(frame), max_rows=max_rows)
    return BatchFile(frame, unread, estimate)


def _parse_parquet(payload: bytes, url: str, limits: _Limits) -> BatchFile:
    """Duplicate names, the row count and the memory estimate come from the footer and the first rows, before
    the file is decoded; text columns are decoded as categoricals (one copy of each distinct string)."""
    try:
        parquet = pq.ParquetFile(io.BytesIO(payload))
        names = parquet.schema_arrow.names
        duplicated = sorted({column for column in names if names.count(column) > 1})
        if duplicated:
            raise InvalidBatchError(
                f"{url}: duplicate column names {duplicated} in the Parquet schema; each column must appear once. "
                "Rename or drop the repeated columns."
            )
        rows = parquet.metadata.num_rows
        check_batch_limits(url, rows=rows, max_rows=limits.max_rows)
        index = [c for c in (parquet.schema_arrow.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)]
        wanted, unread = limits.split([n for n in names if n not in index])
        head = next(parquet.iter_batches(batch_size=ESTIMATE_ROWS, columns=wanted), None)
        estimate = len(payload)
        if head is not None:
            sample = pa.Table.from_batches([head]).to_pandas(strings_to_categorical=True)
            estimate = limits.check_memory(url, len(payload), sample, rows)
        table = parquet.read(columns=wanted + index, use_pandas_metadata=True)
        return BatchFile(table.to_pandas(strings_to_categorical=True), unread, estimate)
    except (ValueError, OSError) as exc:
        raise InvalidBatchError(
            f"{url}: cannot be read as parquet (corrupted or truncated?): {exc}. Upload the file again."
        ) from exc


def new_batches(listing: dict[str, int], seen: dict[str, int]) -> dict[str, int]:
    """Batch files not seen before, or seen with another size (re-uploaded), in processing order."""
    return {
        name: size
        for name, size in sorted(listing.items())
        if name.lower().endswith(BATCH_SUFFIXES) and seen.get(name) != size
    }
