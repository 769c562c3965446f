"""The built-in data stream and the reading of batch files from a folder or prefix URL.

The generator simulates daily customer-churn batches: a stable stretch, then a covariate shift
(a price rise moves spend and usage), then a concept drift (customers start reacting differently).
It is seeded per day, so every run of the demo and the tests sees identical files.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

from green_pipeline import files
from green_pipeline.errors import InvalidBatchError, InvalidConfigError

BATCH_SUFFIXES = (".parquet", ".pq", ".csv")
CSV_DELIMITERS = (",", ";", "\t", "|")
LABEL = "churned"
PLANS = ("basic", "standard", "premium")
CHANNELS = ("web", "mobile", "store")
REGIONS = ("north", "south", "east", "west")
#: Rows decoded first to estimate the memory a batch takes before the whole file is decoded.
ESTIMATE_ROWS = 1000


@dataclass(frozen=True)
class StreamSpec:
    """Shape of the generated stream; days count from 0 and shifts apply from their day onwards."""

    days: int = 16
    rows_per_day: int = 20000
    seed: int = 7
    covariate_shift_day: int | None = 5
    concept_drift_day: int | None = 11
    start: date = date(2026, 1, 1)
    file_format: str = "parquet"

    def __post_init__(self) -> None:
        if self.days < 1 or self.rows_per_day < 50:
            raise InvalidConfigError("generate: --days must be >= 1 and --rows-per-day >= 50.")
        if self.file_format not in ("parquet", "csv"):
            raise InvalidConfigError(f"generate: format {self.file_format!r} is not one of parquet, csv.")

    def batch_name(self, day: int) -> str:
        return f"batch-{self.start + timedelta(days=day):%Y-%m-%d}.{self.file_format}"


def generate_day(spec: StreamSpec, day: int) -> pd.DataFrame:
    """One day's batch: 8 numeric and 3 categorical features and a binary label."""
    rng = np.random.default_rng([spec.seed, day])
    n = spec.rows_per_day
    shifted = spec.covariate_shift_day is not None and day >= spec.covariate_shift_day
    new_concept = spec.concept_drift_day is not None and day >= spec.concept_drift_day

    plan = rng.choice(PLANS, n, p=[0.65, 0.25, 0.10] if shifted else [0.45, 0.38, 0.17])
    channel = rng.choice(CHANNELS, n, p=[0.30, 0.60, 0.10] if shifted else [0.45, 0.40, 0.15])
    region = rng.choice(REGIONS, n)
    tenure = np.clip(rng.gamma(2.0, 12.0, n), 0, 120).round()
    charges = np.clip(rng.normal(95.0 if shifted else 65.0, 20.0, n), 10, 250).round(2)
    support_calls = rng.poisson(2.4 if shifted else 1.5, n).astype("int64")
    sessions = np.clip(rng.gamma(3.0, 1.2 if shifted else 2.0, n), 0, 40).round(1)
    idle_days = rng.exponential(12.0 if shifted else 7.0, n).round(1)
    discount = (rng.beta(2, 8, n) * 50).round(1)
    age = np.clip(rng.normal(42, 12, n), 18, 90).round()
    usage_gb = rng.lognormal(2.5, 0.6, n).round(2)

    def z(x: np.ndarray, mean: float, sd: float) -> np.ndarray:
        return (x - mean) / sd

    price = z(charges, 65.0, 20.0)
    logit = (
        -0.9
        + 0.75 * z(support_calls, 1.5, 1.2)
        - 0.9 * z(tenure, 24.0, 17.0)
        + 0.55 * z(idle_days, 7.0, 7.0)
        - 0.45 * z(sessions, 6.0, 3.5)
        - 0.35 * z(discount, 10.0, 6.0)
        + 0.45 * price * (plan == "basic")
        + 0.5 * np.maximum(price - 1.0, 0.0) ** 2
        + np.select([plan == "premium", plan == "basic"], [-0.5, 0.3], 0.0)
        - 0.4 * (channel == "store")
    )
    if new_concept:
        # Loyalty stops protecting customers and the south reacts to a competitor's launch.
        logit = logit + 0.9 * z(tenure, 24.0, 17.0) + 1.1 * (region == "south") - 0.6 * z(usage_gb, 14.0, 9.0)
    churned = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype("int64")
    return pd.DataFrame(
        {
            "tenure_months": tenure,
            "monthly_charges": charges,
            "support_calls": support_calls,
            "sessions_per_week": sessions,
            "days_since_last_login": idle_days,
            "discount_pct": discount,
            "age": age,
            "data_usage_gb": usage_gb,
            "plan": plan,
            "channel": channel,
            "region": region,
            LABEL: churned,
        }
    )


DOMAIN_LABEL = "defaulted"
DOMAINS = ("source", "target")
SEGMENTS = ("retail", "smb", "corporate", "public")
DOMAIN_NUMERIC = tuple(f"signal_{i:02d}" for i in range(14))


@dataclass(frozen=True)
class DomainPairSpec:
    """Two domains (e.g. two markets) with the same columns: the target's feature means and effects are shifted.

    ``relationship_shift`` blends each effect of the source with an independent one (0: same relationships,
    1: unrelated); ``covariate_shift`` moves some target feature means by that many standard deviations.
    """

    source_rows: int = 40000
    target_rows: int = 20000
    seed: int = 11
    relationship_shift: float = 0.5
    covariate_shift: float = 0.5

    def __post_init__(self) -> None:
        if self.source_rows < 50 or self.target_rows < 50:
            raise InvalidConfigError("domain pair: source_rows and target_rows must be >= 50.")
        if not 0.0 <= self.relationship_shift <= 1.0:
            raise InvalidConfigError(f"domain pair: relationship_shift {self.relationship_shift} is not in [0, 1].")


def generate_domain_pair(spec: DomainPairSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A source batch to pre-train on and a target batch to adapt to (14 numeric signals, a segment, a label)."""
    return (
        generate_domain_batch(spec, "source", spec.source_rows),
        generate_domain_batch(spec, "target", spec.target_rows),
    )


def generate_domain_batch(spec: DomainPairSpec, domain: str, rows: int, part: int = 0) -> pd.DataFrame:
    """``rows`` rows of one domain; each ``part`` is an independent draw (e.g. the domain's next batch)."""
    if domain not in DOMAINS:
        raise InvalidConfigError(f"domain {domain!r} is not one of {', '.join(DOMAINS)}.")
    target = domain == "target"
    effects = np.random.default_rng([spec.seed, 0]).normal(0.0, 0.6, (2, len(DOMAIN_NUMERIC) + len(SEGMENTS) + 2))
    effects[:, 10:14] = 0.0  # four pure-noise signals
    weights = (
        effects[0] * (1.0 - spec.relationship_shift) + effects[1] * spec.relationship_shift if target else effects[0]
    )
    means = np.random.default_rng([spec.seed, 1]).choice([-1.0, 0.0, 0.0, 1.0], len(DOMAIN_NUMERIC))
    rng = np.random.default_rng([spec.seed, 2 + int(target), part])
    x = rng.standard_normal((rows, len(DOMAIN_NUMERIC))) + (spec.covariate_shift * means if target else 0.0)
    segment = rng.choice(len(SEGMENTS), rows, p=[0.2, 0.3, 0.3, 0.2] if target else [0.4, 0.3, 0.2, 0.1])
    n = len(DOMAIN_NUMERIC)
    # Linear, hinge and saturating effects plus two interactions, so trees have something to find.
    shaped = np.where(
        np.arange(n) % 3 == 0, x, np.where(np.arange(n) % 3 == 1, 2.0 * np.maximum(x - 0.5, 0.0), np.tanh(2.0 * x))
    )
    logit = (
        -1.0
        + shaped @ weights[:n]
        + weights[n : n + len(SEGMENTS)][segment]
        + weights[-2] * x[:, 0] * x[:, 1]
        + weights[-1] * x[:, 2] * (segment == 0)
    )
    frame = pd.DataFrame(x.round(4), columns=list(DOMAIN_NUMERIC))
    frame["segment"] = np.asarray(SEGMENTS)[segment]
    frame[DOMAIN_LABEL] = (rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))).astype("int64")
    return frame


def encode_batch(frame: pd.DataFrame, file_format: str) -> bytes:
    buffer = io.BytesIO()
    if file_format == "csv":
        buffer.write(frame.to_csv(index=False).encode("utf-8"))
    else:
        frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def write_stream(spec: StreamSpec, url: str, storage_options: files.StorageOptions | None = None) -> list[str]:
    """Write every day of the stream under ``url``; returns the file names in processing order."""
    names = []
    for day in range(spec.days):
        name = spec.batch_name(day)
        files.write_bytes_atomic(
            files.join(url, name), encode_batch(generate_day(spec, day), spec.file_format), storage_options
        )
        names.append(name)
    return names


def list_batches(url: str, storage_options: files.StorageOptions | None = None) -> list[str]:
    """Batch file names under ``url`` in processing (name) order; other files are ignored."""
    return [name for name in files.list_files(url, storage_options) if name.lower().endswith(BATCH_SUFFIXES)]


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
        payload = fs.cat_file(path)
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
