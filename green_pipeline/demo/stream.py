"""The built-in data stream: generated daily batches for the demo, the tests and the benchmarks.

The generator simulates daily customer-churn batches: a stable stretch, then covariate shifts (a price
rise moves spend and usage; a later price war moves them the other way) and concept drifts (customers start
reacting differently), each from its day on. It is seeded per day, so every run sees identical files.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd

from green_pipeline.errors import InvalidConfigError
from green_pipeline.store import files

LABEL = "churned"
PLANS = ("basic", "standard", "premium")
CHANNELS = ("web", "mobile", "store")
REGIONS = ("north", "south", "east", "west")


@dataclass(frozen=True)
class _Market:
    """The feature distributions of one covariate regime."""

    plan_p: tuple[float, float, float]
    channel_p: tuple[float, float, float]
    charges_mean: float
    support_rate: float
    sessions_scale: float
    idle_scale: float


#: Regime 0, then the one each covariate shift moves to: a price rise, then a price war that undercuts it. Shifts past
#: the last regime cycle through the shifted ones again, so every event day moves the features.
MARKETS = (
    _Market((0.45, 0.38, 0.17), (0.45, 0.40, 0.15), 65.0, 1.5, 2.0, 7.0),
    _Market((0.65, 0.25, 0.10), (0.30, 0.60, 0.10), 95.0, 2.4, 1.2, 12.0),
    _Market((0.30, 0.35, 0.35), (0.20, 0.70, 0.10), 40.0, 0.8, 3.0, 4.0),
)
#: Concept 0, then the ones each concept drift moves to (cycling likewise): the branches at the end of ``generate_day``.
CONCEPTS = 3


@dataclass(frozen=True)
class StreamSpec:
    """Shape of the generated stream; days count from 0 and each event applies from its day until the next one.

    Every day in ``covariate_shift_days`` moves the features to the next regime of ``MARKETS``; every day in
    ``concept_drift_days`` changes how customers react to them. The defaults are the demo's: one of each.
    """

    days: int = 16
    rows_per_day: int = 20000
    seed: int = 7
    covariate_shift_days: tuple[int, ...] = (5,)
    concept_drift_days: tuple[int, ...] = (11,)
    start: date = date(2026, 1, 1)
    file_format: str = "parquet"

    def __post_init__(self) -> None:
        if self.days < 1 or self.rows_per_day < 50:
            raise InvalidConfigError("generate: --days must be >= 1 and --rows-per-day >= 50.")
        if self.file_format not in ("parquet", "csv"):
            raise InvalidConfigError(f"generate: format {self.file_format!r} is not one of parquet, csv.")
        for option, days in (
            ("--covariate-shift-day", self.covariate_shift_days),
            ("--concept-drift-day", self.concept_drift_days),
        ):
            if any(day < 0 for day in days) or list(days) != sorted(set(days)):
                raise InvalidConfigError(f"generate: {option} days {list(days)} must be >= 0 and strictly ascending.")

    def batch_name(self, day: int) -> str:
        return f"batch-{self.start + timedelta(days=day):%Y-%m-%d}.{self.file_format}"

    def covariate_regime(self, day: int) -> int:
        """How many covariate shifts have happened by ``day`` (0: none yet)."""
        return sum(day >= event for event in self.covariate_shift_days)

    def concept(self, day: int) -> int:
        """How many concept drifts have happened by ``day`` (0: none yet)."""
        return sum(day >= event for event in self.concept_drift_days)


def _cycled(events: int, regimes: int) -> int:
    """The regime after ``events`` events: 0 before any, then 1..regimes-1, starting over at 1."""
    return 0 if events == 0 else 1 + (events - 1) % (regimes - 1)


def generate_day(spec: StreamSpec, day: int) -> pd.DataFrame:
    """One day's batch: 8 numeric and 3 categorical features and a binary label."""
    rng = np.random.default_rng([spec.seed, day])
    n = spec.rows_per_day
    market = MARKETS[_cycled(spec.covariate_regime(day), len(MARKETS))]

    plan = rng.choice(PLANS, n, p=market.plan_p)
    channel = rng.choice(CHANNELS, n, p=market.channel_p)
    region = rng.choice(REGIONS, n)
    tenure = np.clip(rng.gamma(2.0, 12.0, n), 0, 120).round()
    charges = np.clip(rng.normal(market.charges_mean, 20.0, n), 10, 250).round(2)
    support_calls = rng.poisson(market.support_rate, n).astype("int64")
    sessions = np.clip(rng.gamma(3.0, market.sessions_scale, n), 0, 40).round(1)
    idle_days = rng.exponential(market.idle_scale, n).round(1)
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
    concept = _cycled(spec.concept(day), CONCEPTS)
    if concept == 1:
        # Loyalty stops protecting customers and the south reacts to a competitor's launch.
        logit = logit + 0.9 * z(tenure, 24.0, 17.0) + 1.1 * (region == "south") - 0.6 * z(usage_gb, 14.0, 9.0)
    elif concept == 2:
        # A self-service portal makes support calls harmless, and premium and heavy users leave for a new rival.
        logit = logit - 0.75 * z(support_calls, 1.5, 1.2) + 1.2 * (plan == "premium") + 0.7 * z(usage_gb, 14.0, 9.0)
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
