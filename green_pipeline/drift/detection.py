"""Data drift of a batch against the deployed model's reference data, decided by Evidently 0.7's tests.

Every feature is decided by the test Evidently would pick itself (K-S or chi-square p-values on small data,
normalised Wasserstein or Jensen-Shannon distances on large), called directly as Evidently's ``StatTest`` (the
function its ``ValueDrift`` metric runs), on a sample of each large side with a stated error bound (see
``drift_sampling``), columns in parallel threads. The HTML report is Evidently's ``ValueDrift`` for the columns
worth reading (drifted, near their threshold, then the highest scores; all of them up to ``report_columns``):
its plots cost a fixed ~40 ms per column whatever the rows, most of the step's cost, so ``render_report`` is
separate from the tests and called only for a report someone will read. The whole ``DataDriftPreset`` is not
used: it runs every test three times and counts distinct values to choose tests.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.legacy.calculations.stattests import StatTest
from evidently.legacy.core import ColumnType
from evidently.metrics import ValueDrift

from green_pipeline.data.schema import FeatureSchema
from green_pipeline.drift.sampling import (
    DriftSettings,
    ReferenceProfile,
    ReferenceProfiles,
    cdf_error_bound,
    choose_test,
    evidently_frame,
    score_error_bound,
    take_sample,
)
from green_pipeline.errors import DriftDetectionError

#: Columns are tested in parallel threads: the tests spend most of their time in NumPy sorts, outside the GIL.
TEST_THREADS = min(4, os.cpu_count() or 1)
#: Reference profiles of the models deployed recently, shared by every drift step of this process.
PROFILES = ReferenceProfiles()


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    method: str
    score: float
    threshold: float
    drifted: bool
    #: Half-width of the interval holding the full-data score at the sampling confidence: 0.0 when every row
    #: was tested, None for p-value tests (see ``drift_sampling``).
    error_bound: float | None = 0.0
    #: The serving model's share of gain on this column (all columns sum to 1); None when not weighed.
    importance: float | None = None

    @property
    def severity(self) -> float:
        """How far past its threshold the column is, comparable across p-value and distance tests."""
        if "p_value" in self.method:
            return self.threshold / max(self.score, 1e-300)
        return self.score / self.threshold if self.threshold else self.score

    @property
    def near_threshold(self) -> bool:
        """The full data could have decided this column the other way (its score is within the bound)."""
        return bool(self.error_bound) and abs(self.score - self.threshold) <= (self.error_bound or 0.0)


@dataclass(frozen=True)
class DriftSample:
    """What Evidently was shown: rows tested per side, the seed, the confidence of the bounds, cache use."""

    sampled: bool
    current_rows: int
    reference_rows: int
    seed: int
    confidence: float
    #: DKW bound on the sup distance between a sampled side's empirical CDF and its full data's (0: no sampling).
    cdf_error_bound: float
    reference_cached: bool
    #: Columns the HTML report details (all, up to the ``report_columns`` setting), rendered or not.
    report_columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class DriftResult:
    """Outcome of comparing a batch with the reference; ``drifted_share`` is None when there is no reference."""

    drifted_share: float | None
    drifted_count: int
    column_count: int
    threshold: float
    reference_rows: int
    current_rows: int
    columns: tuple[ColumnDrift, ...] = ()
    sample: DriftSample | None = None

    @property
    def compared(self) -> bool:
        return self.drifted_share is not None

    @property
    def weighed(self) -> bool:
        """Whether the columns carry the serving model's importance (see ``weigh``)."""
        return bool(self.columns) and all(c.importance is not None for c in self.columns)

    @property
    def weighted_share(self) -> float | None:
        """The serving model's share of gain on drifted columns: what the gate compares; the plain share unweighed."""
        if self.drifted_share is None or not self.weighed:
            return self.drifted_share
        return min(1.0, sum(c.importance or 0.0 for c in self.columns if c.drifted))

    @property
    def passes_threshold(self) -> bool:
        share = self.weighted_share
        return share is not None and share >= self.threshold

    @property
    def near_threshold_columns(self) -> tuple[ColumnDrift, ...]:
        return tuple(c for c in self.columns if c.near_threshold)

    @property
    def decision_certain(self) -> bool:
        """Whether the decision would stand even if every column near its threshold flipped on the full data."""
        if not self.column_count:
            return True
        share = self.weighted_share or 0.0
        near = self.near_threshold_columns
        lowest = share - sum(self._weight(c) for c in near if c.drifted)
        highest = share + sum(self._weight(c) for c in near if not c.drifted)
        return (lowest >= self.threshold) == (highest >= self.threshold)

    def _weight(self, column: ColumnDrift) -> float:
        return column.importance if self.weighed and column.importance is not None else 1.0 / self.column_count

    def top_columns(self, limit: int = 5) -> tuple[ColumnDrift, ...]:
        ranked = sorted(self.columns, key=lambda c: (c.drifted, c.severity), reverse=True)
        return tuple(ranked[:limit])


def detect_drift(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    schema: FeatureSchema,
    threshold: float,
    settings: DriftSettings | None = None,
    reference_key: str | None = None,
    profiles: ReferenceProfiles = PROFILES,
    population: int | None = None,
) -> DriftResult:
    """Evidently's per-column drift tests on (samples of) the batch and the reference; no HTML (``render_report``).

    ``reference_key`` (model version and reference checksum) lets later batches reuse the reference's profile.
    ``population`` is the batch's size when ``current`` is already a uniform sample of it (a dataset batch sampled
    part by part on the cluster): the error bounds are then those of a sample of the whole batch.
    """
    settings = settings or DriftSettings()
    population = population or len(current)
    context, cached = _comparison(current, reference, schema, settings, reference_key, profiles, population)
    batch, profile = context.batch, context.profile
    tests = {column: _test_of(profile, column, current, schema) for column in schema.features}
    with ThreadPoolExecutor(max_workers=TEST_THREADS) as pool:
        columns = tuple(pool.map(context.test, tests.items()))
    drifted = sum(c.drifted for c in columns)
    sample = DriftSample(
        sampled=len(batch) < population or len(profile.sample) < profile.rows,
        current_rows=len(batch),
        reference_rows=len(profile.sample),
        seed=settings.seed,
        confidence=settings.confidence,
        cdf_error_bound=max(
            cdf_error_bound(len(batch), population, settings.confidence),
            cdf_error_bound(len(profile.sample), profile.rows, settings.confidence),
        ),
        reference_cached=cached,
        report_columns=tuple(c.column for c in _worth_reading(columns, settings.report_columns)),
    )
    return DriftResult(
        drifted_share=drifted / len(columns) if columns else 0.0,
        drifted_count=drifted,
        column_count=len(columns),
        threshold=threshold,
        reference_rows=len(reference),
        current_rows=population,
        columns=columns,
        sample=sample,
    )


def render_report(
    result: DriftResult,
    current: pd.DataFrame,
    reference: pd.DataFrame,
    schema: FeatureSchema,
    settings: DriftSettings | None = None,
    reference_key: str | None = None,
    profiles: ReferenceProfiles = PROFILES,
) -> str:
    """Evidently's HTML report of ``result``'s columns worth reading (``DriftSample.report_columns``), on the rows
    its tests saw: the same seeded samples and cached reference profile, so the page shows the verdicts decided."""
    if result.sample is None:
        raise DriftDetectionError(
            f"no drift report for a batch of {result.current_rows} rows that was not compared with a reference."
        )
    settings = settings or DriftSettings()
    context, _ = _comparison(current, reference, schema, settings, reference_key, profiles, result.current_rows)
    return context.report(
        {column: _test_of(context.profile, column, current, schema) for column in result.sample.report_columns}
    )


def weigh(result: DriftResult, importance: Mapping[str, float]) -> DriftResult:
    """The result with each column's importance to the serving model, so drift it barely uses barely counts.

    ``importance`` maps each feature to its share of the model's gain (summing to 1); a column it lacks weighs 0.
    """
    columns = tuple(dataclasses.replace(c, importance=float(importance.get(c.column, 0.0))) for c in result.columns)
    return dataclasses.replace(result, columns=columns)


def no_reference(current_rows: int, threshold: float) -> DriftResult:
    """The result when no model is deployed yet, so there is nothing to compare against."""
    return DriftResult(None, 0, 0, threshold, reference_rows=0, current_rows=current_rows)


def _comparison(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    schema: FeatureSchema,
    settings: DriftSettings,
    key: str | None,
    profiles: ReferenceProfiles,
    population: int,
) -> tuple[_Comparison, bool]:
    """The sampled batch against the reference's profile, and whether the profile came from the cache."""
    profile, cached = profiles.get(key, reference, schema, settings)
    batch = evidently_frame(take_sample(current, settings, stream=0), schema)
    return _Comparison(batch, profile, schema, (population, len(reference)), settings.confidence), cached


def _test_of(profile: ReferenceProfile, column: str, current: pd.DataFrame, schema: FeatureSchema) -> StatTest:
    return choose_test(profile, column, current[column], column in schema.numeric)


@dataclass(frozen=True)
class _Comparison:
    """The sampled batch against the reference profile: one column's test, and the report of some columns."""

    batch: pd.DataFrame
    profile: ReferenceProfile
    schema: FeatureSchema
    rows: tuple[int, int]
    confidence: float

    def test(self, item: tuple[str, StatTest]) -> ColumnDrift:
        """What Evidently's ``get_one_column_drift`` does for the verdict: infinities and missing values out, then
        the test at its default threshold."""
        column, test = item
        numeric = column in self.schema.numeric
        reference, current = (_present(frame[column]) for frame in (self.profile.sample, self.batch))
        for side, values in (("reference", reference), ("batch", current)):
            if values.empty:
                raise self._failure(f"column {column!r} is an empty column in the {side} (no values)")
        try:
            verdict = test(reference, current, ColumnType.Numerical if numeric else ColumnType.Categorical, None)
        except (ValueError, TypeError, KeyError, ZeroDivisionError) as exc:
            raise self._failure(exc) from exc
        bound = score_error_bound(
            test,
            reference,
            current,
            (self.profile.rows, self.rows[0]),
            self.confidence,
            self.profile.spread.get(column),
        )
        return ColumnDrift(
            column,
            test.display_name,
            float(verdict.drift_score),
            verdict.actual_threshold,
            bool(verdict.drifted),
            bound,
        )

    def report(self, tests: dict[str, StatTest]) -> str:
        """Evidently's ValueDrift report (its plots and verdicts) of the given columns, as a standalone HTML page."""
        numeric = [c for c in tests if c in self.schema.numeric]
        definition = DataDefinition(
            numerical_columns=numeric, categorical_columns=[c for c in tests if c not in self.schema.numeric]
        )
        metrics = [
            ValueDrift(column=c, method=_method(t, c in numeric), threshold=t.default_threshold)
            for c, t in tests.items()
        ]
        columns = list(tests)
        try:
            snapshot = Report(metrics, include_tests=True).run(
                Dataset.from_pandas(self.batch[columns], data_definition=definition),
                Dataset.from_pandas(self.profile.sample[columns], data_definition=definition),
            )
            html: str = snapshot.get_html_str(as_iframe=False)
            return html
        except (ValueError, TypeError, KeyError, ZeroDivisionError) as exc:
            raise self._failure(exc) from exc

    def _failure(self, cause: Exception | str) -> DriftDetectionError:
        return DriftDetectionError(
            f"Evidently could not compare the batch ({self.rows[0]} rows) with the reference "
            f"({self.rows[1]} rows) on columns {list(self.schema.features)}: {cause}"
        )


def _worth_reading(columns: Sequence[ColumnDrift], limit: int) -> list[ColumnDrift]:
    """Drifted and near-threshold columns first, then by how close to drifting: the report's columns."""
    ranked = sorted(columns, key=lambda c: (c.drifted or c.near_threshold, c.severity), reverse=True)
    return ranked[:limit]


def _present(values: pd.Series) -> pd.Series:
    return values.replace([np.inf, -np.inf], np.nan).dropna()


def _method(test: StatTest, numeric: bool) -> str | None:
    """The test by name; None where Evidently refuses it by name although its own default picks it (chi-square or
    Z on a number with few values, only ever chosen for small references), so it picks the same test itself."""
    kind = ColumnType.Numerical if numeric else ColumnType.Categorical
    return test.name if kind in test.allowed_feature_types else None
