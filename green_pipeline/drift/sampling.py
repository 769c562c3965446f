"""Sampling for drift detection at scale: which rows Evidently sees, which test it runs, and how far off it can be.

Above ``sample_rows`` rows a side is replaced by a seeded uniform sample without replacement (row order kept).
The reference side is sampled and profiled once per deployed reference (``ReferenceProfiles`` caches it
in-process under the model version and the reference's checksum), so later batches only sample themselves.

Each column's test is the one Evidently would pick on the full data (its documented default: K-S or
chi-square/Z p-values when the reference has at most 1,000 values, normalised Wasserstein for numbers with
more than 5 distinct values, Jensen-Shannon otherwise), named explicitly so Evidently neither counts
distinct values on the full batch nor re-derives the choice.

Error bound of a sampled distance, at confidence ``1 - alpha`` (z = two-sided normal quantile):

* normalised Wasserstein: by the triangle inequality |W(F_n, G_m) - W(F, G)| <= W1(F_n, F) + W1(G_m, G), and
  the root-mean-square of W1(F_n, F) is at most J(F) / sqrt(n) with J(F) = integral of sqrt(F (1 - F)) dx
  (Bobkov and Ledoux 2019, Thm 3.5), times sqrt(1 - n/N) for a sample without replacement of N rows. We take
  delta = z (J_ref sqrt(fpc_ref / n_ref) + J_cur sqrt(fpc_cur / n_cur)) / std_ref; J is estimated on the samples.
  J / sqrt(n) overstates the typical error about twofold, so z times it is conservative (tests/unit/test_drift.py).
* Jensen-Shannon distance (a metric): |d(p^, q^) - d(p, q)| <= d(p^, p) + d(q^, q), and d(p^, p)^2 ~ X^2 / (8 n)
  with Pearson's X^2 ~ chi-square(k - 1) for k categories, so delta = sqrt(chi2_{k-1}(1 - alpha/2) / 8)
  (sqrt(fpc_ref / n_ref) + sqrt(fpc_cur / n_cur)).
* p-value tests (small references): no bound on the p-value; the DKW bound on each sampled CDF,
  sqrt(ln(2/alpha) / (2 n)), bounds the K-S statistic's error instead.

An unsampled side contributes 0 (fpc = 0), so small data gets delta = 0 and exactly the full-data verdict.
A column whose sampled score is within delta of its threshold may be decided differently on all rows.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd
from evidently.legacy.calculations.stattests import (
    StatTest,
    chi_stat_test,
    jensenshannon_stat_test,
    ks_stat_test,
    wasserstein_stat_test,
    z_stat_test,
)
from scipy import stats

from green_pipeline.data.schema import FeatureSchema
from green_pipeline.errors import InvalidConfigError

#: Evidently switches from p-value tests to distances above this many reference values.
SMALL_REFERENCE_ROWS = 1000
#: Evidently treats a column with at most this many distinct values (reference and batch) as categorical.
FEW_VALUES = 5
#: Evidently's floor on the reference standard deviation that normalises the Wasserstein distance.
MIN_NORM = 0.001
DISTANCE_TESTS = frozenset({wasserstein_stat_test.name, jensenshannon_stat_test.name})


class HtmlReport(StrEnum):
    """When the drift step renders Evidently's HTML report, most of its cost: ``when_needed`` only for a report
    someone will read (a retrain, or a decision the sampling leaves uncertain); any batch's on demand."""

    WHEN_NEEDED = "when_needed"
    ALWAYS = "always"
    NEVER = "never"


@dataclass(frozen=True)
class DriftSettings:
    """Rows per side the tests see (0: all), the sampling seed, the confidence of the bounds, how many columns
    the HTML report details, and when the drift step renders it."""

    sample_rows: int = 50_000
    seed: int = 0
    confidence: float = 0.99
    report_columns: int = 12
    report_html: HtmlReport = HtmlReport.WHEN_NEEDED

    def __post_init__(self) -> None:
        if self.sample_rows != 0 and self.sample_rows <= SMALL_REFERENCE_ROWS:
            raise InvalidConfigError(
                f"policy.drift_sample_rows={self.sample_rows}: use 0 (test every row) or more than "
                f"{SMALL_REFERENCE_ROWS} rows, so a sample never switches Evidently to its small-data tests."
            )
        if not 0.5 <= self.confidence < 1.0:
            raise InvalidConfigError(f"policy.drift_confidence={self.confidence} must be in [0.5, 1).")
        if self.report_columns < 1:
            raise InvalidConfigError(f"policy.drift_report_columns={self.report_columns} must be at least 1.")
        if self.report_html not in tuple(HtmlReport):
            raise InvalidConfigError(
                f"policy.drift_report_html={self.report_html!r} must be one of {', '.join(HtmlReport)}."
            )

    def caps(self, rows: int) -> bool:
        """Whether a side of ``rows`` rows is sampled."""
        return self.sample_rows > 0 and rows > self.sample_rows


@dataclass(frozen=True)
class ReferenceProfile:
    """What the drift step needs of a reference, computed once: its sample and per-column statistics."""

    rows: int
    sample: pd.DataFrame
    #: Non-missing values per feature in the whole reference (Evidently's small-data switch counts these).
    present: dict[str, int]
    #: Distinct values of features with at most FEW_VALUES of them in the whole reference; None: more.
    levels: dict[str, frozenset[object] | None]
    #: Standard deviation (Evidently's norm) and J functional of each numeric feature, on the sample.
    spread: dict[str, tuple[float, float]]


def build_profile(reference: pd.DataFrame, schema: FeatureSchema, settings: DriftSettings) -> ReferenceProfile:
    """Sample the reference and compute the statistics later batches reuse."""
    sample = evidently_frame(take_sample(reference, settings, stream=1), schema)
    present = {column: int(reference[column].notna().sum()) for column in schema.features}
    levels: dict[str, frozenset[object] | None] = {}
    for column in schema.features:
        numeric = column in schema.numeric
        if (numeric or present[column] <= SMALL_REFERENCE_ROWS) and sample[column].nunique() <= FEW_VALUES:
            # The sample has few values, so the whole reference might too: count them there (rare, cheap).
            known = distinct_values(reference[column], numeric)
            levels[column] = frozenset(known) if len(known) <= FEW_VALUES else None
        else:
            levels[column] = None
    return ReferenceProfile(
        rows=len(reference),
        sample=sample,
        present=present,
        levels=levels,
        spread={column: _spread(sample[column]) for column in schema.numeric},
    )


def choose_test(profile: ReferenceProfile, column: str, current: pd.Series, numeric: bool) -> StatTest:
    """Evidently's default test for this column on the full data (``_get_default_stattest`` in evidently 0.7).

    Distinct values are counted on the full batch only where they change the choice: few in the reference.
    """
    small = profile.present[column] <= SMALL_REFERENCE_ROWS
    if not numeric and not small:
        return jensenshannon_stat_test
    known = profile.levels[column]
    values = FEW_VALUES + 1 if known is None else len(known | distinct_values(current, numeric))
    if small:
        if numeric and values > FEW_VALUES:
            return ks_stat_test
        return chi_stat_test if values > 2 else z_stat_test
    return wasserstein_stat_test if values > FEW_VALUES else jensenshannon_stat_test


def score_error_bound(
    test: StatTest,
    reference: pd.Series,
    current: pd.Series,
    population: tuple[int, int],
    confidence: float,
    reference_spread: tuple[float, float] | None = None,
) -> float | None:
    """Half-width of the interval around the sampled score that holds the full-data score (module docstring).

    ``reference`` and ``current`` are the sampled columns, ``population`` the rows they were drawn from.
    """
    if test.name not in DISTANCE_TESTS:
        return None
    fpc = [_finite_population_factor(len(s), rows) for s, rows in zip((reference, current), population, strict=True)]
    if not any(fpc):
        return 0.0
    alpha = 1.0 - confidence
    if test.name == wasserstein_stat_test.name:
        norm, j_reference = reference_spread or _spread(reference)
        _, j_current = _spread(current)
        z = float(stats.norm.ppf(1.0 - alpha / 2.0))
        return z * (j_reference * fpc[0] + j_current * fpc[1]) / norm
    categories = len(set(reference.dropna().unique()) | set(current.dropna().unique()))
    if categories < 2:
        return 0.0
    quantile = float(stats.chi2.ppf(1.0 - alpha / 2.0, categories - 1))
    return math.sqrt(quantile / 8.0) * (fpc[0] + fpc[1])


def cdf_error_bound(rows: int, population: int, confidence: float) -> float:
    """DKW: with probability ``confidence`` the sample's empirical CDF is within this of the population's."""
    if rows >= population:
        return 0.0
    return math.sqrt(math.log(2.0 / (1.0 - confidence)) / (2.0 * rows))


def take_sample(frame: pd.DataFrame, settings: DriftSettings, stream: int) -> pd.DataFrame:
    """A seeded uniform sample of ``settings.sample_rows`` rows in their original order, or the frame itself."""
    if not settings.caps(len(frame)):
        return frame
    rng = np.random.default_rng([settings.seed, stream])
    rows = np.sort(rng.choice(len(frame), settings.sample_rows, replace=False))
    return frame.take(rows).reset_index(drop=True)


def evidently_frame(frame: pd.DataFrame, schema: FeatureSchema) -> pd.DataFrame:
    """The features as Evidently 0.7 expects them: float64 numbers, categories as plain Python objects."""
    return pd.DataFrame(
        {column: evidently_column(frame[column], column in schema.numeric) for column in schema.features}
    )


def distinct_values(values: pd.Series, numeric: bool) -> set[object]:
    """Distinct non-missing values as Evidently sees them, hashed on the raw column and converted once each."""
    return set(evidently_column(pd.Series(values.dropna().unique()), numeric))


def evidently_column(values: pd.Series, numeric: bool) -> pd.Series:
    """Evidently's type checks know neither pandas' nullable string dtype nor categoricals of it."""
    return values.astype("float64") if numeric else values.astype("string").astype(object)


class ReferenceProfiles:
    """A small in-process cache of reference profiles keyed by model version and reference checksum.

    The CLI, the runner and the sensors' runs process batches in one process, so a deployed reference is
    profiled once; a fresh process (multiprocess executor) profiles it again on its first batch.
    """

    def __init__(self, max_entries: int = 4) -> None:
        self._entries: OrderedDict[tuple[object, ...], ReferenceProfile] = OrderedDict()
        self._max_entries = max_entries
        self._lock = threading.Lock()

    def get(
        self, key: str | None, reference: pd.DataFrame, schema: FeatureSchema, settings: DriftSettings
    ) -> tuple[ReferenceProfile, bool]:
        """The profile of ``reference`` and whether it came from the cache; ``key`` None disables caching."""
        if key is None:
            return build_profile(reference, schema, settings), False
        full_key = (key, settings.sample_rows, settings.seed, schema.features)
        with self._lock:
            cached = self._entries.get(full_key)
            if cached is not None:
                self._entries.move_to_end(full_key)
                return cached, True
        profile = build_profile(reference, schema, settings)
        with self._lock:
            self._entries[full_key] = profile
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        return profile, False


def _spread(values: pd.Series) -> tuple[float, float]:
    """Evidently's norm (the standard deviation, floored) and J = integral of sqrt(F (1 - F)) dx, from a sample."""
    finite = np.sort(values.to_numpy(dtype="float64", na_value=np.nan))
    finite = finite[np.isfinite(finite)]
    if finite.size < 2:
        return MIN_NORM, 0.0
    cdf = np.arange(1, finite.size) / finite.size
    return max(float(np.std(finite)), MIN_NORM), float(np.sum(np.sqrt(cdf * (1.0 - cdf)) * np.diff(finite)))


def _finite_population_factor(rows: int, population: int) -> float:
    """sqrt((1 - n/N) / n): the standard-error factor of a mean of n rows drawn without replacement from N."""
    if rows >= population or rows == 0:
        return 0.0
    return math.sqrt((1.0 - rows / population) / rows)
