"""The built-in data stream and the reading of batch files from a folder or prefix URL.

The generator simulates daily customer-churn batches: a stable stretch, then a covariate shift
(a price rise moves spend and usage), then a concept drift (customers start reacting differently).
It is seeded per day, so every run of the demo and the tests sees identical files.
"""

from __future__ import annotations

import io
import posixpath
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd

from green_pipeline import files
from green_pipeline.errors import InvalidBatchError, InvalidConfigError

BATCH_SUFFIXES = (".parquet", ".pq", ".csv")
LABEL = "churned"
PLANS = ("basic", "standard", "premium")
CHANNELS = ("web", "mobile", "store")
REGIONS = ("north", "south", "east", "west")


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
    """Refuse names that could escape the data folder when joined to its URL."""
    if not name or name != posixpath.basename(name) or name in (".", "..") or "\\" in name:
        raise InvalidBatchError(f"batch name {name!r} is not a plain file name; partitions must name a file.")
    if not name.lower().endswith(BATCH_SUFFIXES):
        raise InvalidBatchError(f"batch {name!r}: unsupported extension; use one of {', '.join(BATCH_SUFFIXES)}.")
    return name


def read_batch(data_url: str, name: str, storage_options: files.StorageOptions | None = None) -> pd.DataFrame:
    """Read one batch file (Parquet or CSV) from the data URL, with errors that name the file."""
    url = files.join(data_url, check_batch_name(name))
    try:
        payload = files.read_bytes(url, storage_options)
    except FileNotFoundError as exc:
        raise InvalidBatchError(f"{url}: batch file not found.") from exc
    if not payload:
        raise InvalidBatchError(f"{url}: the file is empty (0 bytes).")
    try:
        if name.lower().endswith(".csv"):
            return pd.read_csv(io.BytesIO(payload))
        return pd.read_parquet(io.BytesIO(payload))
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InvalidBatchError(f"{url}: cannot be read as {posixpath.splitext(name)[1][1:]}: {exc}") from exc


def new_batches(listing: dict[str, int], seen: dict[str, int]) -> dict[str, int]:
    """Batch files not seen before, or seen with another size (re-uploaded), in processing order."""
    return {
        name: size
        for name, size in sorted(listing.items())
        if name.lower().endswith(BATCH_SUFFIXES) and seen.get(name) != size
    }
