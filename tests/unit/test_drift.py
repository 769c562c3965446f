from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from evidently import DataDefinition, Dataset, Report
from evidently.legacy.calculations.stattests import jensenshannon_stat_test, wasserstein_stat_test
from evidently.legacy.core import ColumnType
from evidently.presets import DataDriftPreset
from scipy import stats

from green_pipeline.data.schema import FeatureSchema
from green_pipeline.data.validation import validate_batch
from green_pipeline.demo.stream import StreamSpec, generate_day
from green_pipeline.drift.detection import ColumnDrift, DriftResult, detect_drift, no_reference, render_report
from green_pipeline.drift.sampling import DriftSettings, ReferenceProfiles, evidently_frame, score_error_bound
from green_pipeline.errors import InvalidConfigError

THRESHOLD = 0.3


@pytest.fixture(scope="module")
def same_regime(make_clean_batch: Callable[[int], pd.DataFrame], schema: FeatureSchema) -> DriftResult:
    return detect_drift(make_clean_batch(2), make_clean_batch(1), schema, THRESHOLD)


@pytest.fixture(scope="module")
def covariate_shift(make_clean_batch: Callable[[int], pd.DataFrame], schema: FeatureSchema) -> DriftResult:
    return detect_drift(make_clean_batch(5), make_clean_batch(0), schema, THRESHOLD)


def test_two_batches_of_the_same_regime_do_not_drift(same_regime: DriftResult) -> None:
    result = same_regime

    assert result.compared
    assert result.drifted_share < THRESHOLD
    assert not result.passes_threshold


def test_covariate_shift_day_drifts_on_monthly_charges(covariate_shift: DriftResult) -> None:
    result = covariate_shift

    assert result.drifted_share > THRESHOLD
    assert result.passes_threshold
    drifted = {c.column for c in result.columns if c.drifted}
    assert "monthly_charges" in drifted
    assert result.drifted_count == len(drifted)
    assert result.drifted_share == pytest.approx(len(drifted) / result.column_count)


def test_features_that_did_not_shift_are_not_flagged(covariate_shift: DriftResult) -> None:
    """The generator leaves age, region and discount untouched by the price rise."""
    result = covariate_shift

    verdicts = {c.column: c.drifted for c in result.columns}
    assert not verdicts["age"]
    assert not verdicts["region"]
    assert not verdicts["discount_pct"]


def test_result_covers_every_feature_and_counts_rows(
    covariate_shift: DriftResult, schema: FeatureSchema, stream_spec: StreamSpec
) -> None:
    result = covariate_shift

    assert sorted(c.column for c in result.columns) == sorted(schema.features)
    assert result.column_count == len(schema.features)
    assert result.reference_rows == result.current_rows == stream_spec.rows_per_day
    assert result.threshold == THRESHOLD
    assert all(c.method and c.threshold > 0 for c in result.columns)


def test_top_columns_lists_drifted_columns_first(covariate_shift: DriftResult) -> None:
    result = covariate_shift

    top = result.top_columns(limit=3)

    assert len(top) == 3
    assert all(c.drifted for c in top)


def test_html_report_is_a_full_page(
    same_regime: DriftResult,
    covariate_shift: DriftResult,
    make_clean_batch: Callable[[int], pd.DataFrame],
    schema: FeatureSchema,
) -> None:
    for result, (current, reference) in ((same_regime, (2, 1)), (covariate_shift, (5, 0))):
        html = render_report(result, make_clean_batch(current), make_clean_batch(reference), schema)
        assert len(html) > 1000
        assert "<html" in html.lower()


def test_no_reference_is_not_compared_and_never_passes() -> None:
    result = no_reference(current_rows=1500, threshold=THRESHOLD)

    assert result.drifted_share is None
    assert not result.compared
    assert not result.passes_threshold
    assert result.current_rows == 1500
    assert result.reference_rows == 0
    assert result.columns == ()


def test_drifted_share_equal_to_the_threshold_passes() -> None:
    assert DriftResult(0.3, 3, 10, threshold=0.3, reference_rows=10, current_rows=10).passes_threshold


@pytest.mark.parametrize(
    ("column", "severity"),
    [
        (ColumnDrift("a", "K-S p_value", score=0.0005, threshold=0.05, drifted=True), 100.0),
        (ColumnDrift("b", "Wasserstein distance (normed)", score=0.3, threshold=0.1, drifted=True), 3.0),
    ],
)
def test_severity_grows_with_distance_past_the_threshold(column: ColumnDrift, severity: float) -> None:
    assert column.severity == pytest.approx(severity)


# --- Evidently's own choice of test, and sampling at scale ---------------------------------------------------


def _preset_verdicts(current: pd.DataFrame, reference: pd.DataFrame, schema: FeatureSchema) -> dict[str, tuple]:
    """What Evidently's whole DataDriftPreset, choosing its own tests, says about each column."""
    definition = DataDefinition(numerical_columns=list(schema.numeric), categorical_columns=list(schema.categorical))
    current, reference = (evidently_frame(f, schema) for f in (current, reference))
    summary = (
        Report([DataDriftPreset(columns=list(schema.features))], include_tests=True)
        .run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(reference, data_definition=definition),
        )
        .dict()
    )
    scores = {m["id"]: m["value"] for m in summary["metrics"]}
    return {
        t["metric_config"]["params"]["column"]: (
            t["metric_config"]["params"]["method"],
            scores[t["metric_config"]["metric_id"]],
            t["status"] == "FAIL",
        )
        for t in summary["tests"]
        if t["id"] == "drift"
    }


def _with_few_valued_columns(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Adds a 3-valued number and a yes/no category: the columns for which Evidently switches tests."""
    rng = np.random.default_rng(seed)
    return frame.assign(
        tier=rng.choice([1.0, 2.0, 3.0], len(frame), p=[0.5, 0.3, 0.2]),
        promo=pd.Categorical(rng.choice(["yes", "no"], len(frame))),
    )


@pytest.mark.parametrize("rows", [800, 3000])
def test_small_batches_are_tested_on_every_row_with_the_tests_evidently_picks(schema: FeatureSchema, rows: int) -> None:
    """At most 1,000 rows: p-value tests; more: distances, Jensen-Shannon for few-valued numbers; no sampling."""
    spec = StreamSpec(rows_per_day=rows)
    wide = dataclasses.replace(
        schema, numeric=(*schema.numeric, "tier"), categories={**schema.categories, "promo": ("no", "yes")}
    )
    current, reference = (
        _with_few_valued_columns(validate_batch(generate_day(spec, day), schema, "day")[0], day) for day in (5, 0)
    )

    result = detect_drift(current, reference, wide, THRESHOLD)

    oracle = _preset_verdicts(current, reference, wide)
    assert {c.column: (c.method, c.score, c.drifted) for c in result.columns} == oracle
    assert result.sample is not None and not result.sample.sampled
    assert result.sample.current_rows == result.sample.reference_rows == rows
    expected_bound = None if rows <= 1000 else 0.0
    assert all(c.error_bound == expected_bound for c in result.columns)


SAMPLED = DriftSettings(sample_rows=1500, seed=3)


@pytest.fixture(scope="module")
def big_current(make_clean_batch: Callable[[int], pd.DataFrame]) -> pd.DataFrame:
    return pd.concat([make_clean_batch(5), make_clean_batch(6)], ignore_index=True)


@pytest.fixture(scope="module")
def sampled(
    big_current: pd.DataFrame, make_clean_batch: Callable[[int], pd.DataFrame], schema: FeatureSchema
) -> DriftResult:
    return detect_drift(big_current, make_clean_batch(0), schema, THRESHOLD, SAMPLED)


def test_sides_larger_than_the_sample_size_are_sampled_and_reported(sampled: DriftResult) -> None:
    sample = sampled.sample

    assert sample is not None and sample.sampled
    assert (sample.current_rows, sample.reference_rows) == (1500, 1500)
    assert (sampled.current_rows, sampled.reference_rows) == (4000, 2000)
    assert (sample.seed, sample.confidence) == (3, 0.99)
    assert sample.cdf_error_bound == pytest.approx(math.sqrt(math.log(200) / 3000))
    assert all(c.error_bound and c.error_bound > 0 for c in sampled.columns)


def test_the_full_data_scores_lie_within_the_sampling_bounds(
    sampled: DriftResult,
    big_current: pd.DataFrame,
    make_clean_batch: Callable[[int], pd.DataFrame],
    schema: FeatureSchema,
) -> None:
    every_row = detect_drift(big_current, make_clean_batch(0), schema, THRESHOLD, DriftSettings(sample_rows=0))

    full = {c.column: c for c in every_row.columns}
    for column in sampled.columns:
        assert abs(column.score - full[column.column].score) <= column.error_bound, column
        assert column.drifted == full[column.column].drifted or column.near_threshold, column
    assert sampled.passes_threshold == every_row.passes_threshold
    assert every_row.sample is not None and not every_row.sample.sampled


def test_sampling_is_repeatable_with_its_seed(
    sampled: DriftResult,
    big_current: pd.DataFrame,
    make_clean_batch: Callable[[int], pd.DataFrame],
    schema: FeatureSchema,
) -> None:
    again = detect_drift(big_current, make_clean_batch(0), schema, THRESHOLD, SAMPLED)
    other = detect_drift(big_current, make_clean_batch(0), schema, THRESHOLD, dataclasses.replace(SAMPLED, seed=4))

    assert again.columns == sampled.columns
    assert [c.score for c in other.columns] != [c.score for c in sampled.columns]


def test_a_reference_is_profiled_once_per_key(
    make_clean_batch: Callable[[int], pd.DataFrame], schema: FeatureSchema
) -> None:
    profiles = ReferenceProfiles(max_entries=1)
    reference = make_clean_batch(0)

    def cached(day: int, key: str) -> bool:
        result = detect_drift(make_clean_batch(day), reference, schema, THRESHOLD, SAMPLED, key, profiles)
        assert result.sample is not None
        return result.sample.reference_cached

    assert [cached(1, "v1#abc"), cached(2, "v1#abc"), cached(3, "v2#def"), cached(4, "v1#abc")] == [
        False,
        True,
        False,
        False,
    ]


@pytest.mark.parametrize("shape", ["normal", "lognormal"])
def test_the_wasserstein_bound_covers_the_full_data_score_near_the_threshold(shape: str) -> None:
    """Repeated samples of 2,000 of 20,000 rows, shifted to about the 0.1 threshold: the bound holds at 99%."""
    rng = np.random.default_rng(11)
    draw = {"normal": lambda n: rng.normal(0.0, 1.0, n), "lognormal": lambda n: rng.lognormal(0.0, 1.0, n)}[shape]
    reference = pd.Series(draw(20_000))
    current = pd.Series(draw(20_000) + 0.1 * reference.std())
    full = stats.wasserstein_distance(reference, current) / np.std(reference)
    misses = 0
    for _ in range(100):
        ref, cur = reference.sample(2000, random_state=rng), current.sample(2000, random_state=rng)
        score = stats.wasserstein_distance(ref, cur) / np.std(ref)
        bound = score_error_bound(wasserstein_stat_test, ref, cur, (20_000, 20_000), 0.99)
        misses += abs(score - full) > bound
    assert misses <= 3


def test_the_jensen_shannon_bound_covers_the_full_data_score() -> None:
    rng = np.random.default_rng(12)
    reference = pd.Series(rng.choice(list("abcd"), 20_000, p=[0.4, 0.3, 0.2, 0.1]), dtype=object)
    current = pd.Series(rng.choice(list("abcd"), 20_000, p=[0.33, 0.3, 0.22, 0.15]), dtype=object)

    def js(ref: pd.Series, cur: pd.Series) -> float:
        return jensenshannon_stat_test(ref, cur, ColumnType.Categorical, 0.1).drift_score

    full = js(reference, current)
    misses = 0
    for _ in range(100):
        ref, cur = reference.sample(2000, random_state=rng), current.sample(2000, random_state=rng)
        bound = score_error_bound(jensenshannon_stat_test, ref, cur, (20_000, 20_000), 0.99)
        misses += abs(js(ref, cur) - full) > bound
    assert misses <= 3


def _column(score: float, bound: float) -> ColumnDrift:
    return ColumnDrift("c", "Wasserstein distance (normed)", score, 0.1, score >= 0.1, bound)


@pytest.mark.parametrize(
    ("scores", "certain"),
    [
        ((0.5, 0.5, 0.5, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01), True),  # 3 of 10 drifted, none near
        ((0.5, 0.5, 0.11, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01), False),  # the third may not have drifted
        ((0.5, 0.5, 0.09, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01), False),  # a third may have drifted
        ((0.5, 0.5, 0.5, 0.5, 0.11, 0.01, 0.01, 0.01, 0.01, 0.01), True),  # 3 of 10 drift even without it
    ],
)
def test_a_decision_is_uncertain_only_if_columns_near_their_threshold_could_flip_it(
    scores: tuple[float, ...], certain: bool
) -> None:
    columns = tuple(_column(score, bound=0.02) for score in scores)
    drifted = sum(c.drifted for c in columns)

    result = DriftResult(drifted / 10, drifted, 10, THRESHOLD, 20_000, 20_000, columns)

    assert result.decision_certain is certain
    assert len(result.near_threshold_columns) == sum(abs(s - 0.1) <= 0.02 for s in scores)


@pytest.mark.parametrize(
    ("changes", "named"), [({"sample_rows": 1000}, "drift_sample_rows"), ({"confidence": 1.0}, "drift_confidence")]
)
def test_drift_settings_refuse_samples_that_would_change_the_tests(changes: dict[str, float], named: str) -> None:
    with pytest.raises(InvalidConfigError, match=named):
        DriftSettings(**changes)


def test_the_report_details_the_columns_worth_reading_and_every_column_is_tested(
    make_clean_batch: Callable[[int], pd.DataFrame], schema: FeatureSchema
) -> None:
    settings = DriftSettings(report_columns=3)

    current, reference = make_clean_batch(5), make_clean_batch(0)

    result = detect_drift(current, reference, schema, THRESHOLD, settings)
    html = render_report(result, current, reference, schema, settings)

    assert result.sample is not None
    shown = result.sample.report_columns
    assert shown == tuple(c.column for c in result.top_columns(3))
    assert all(c.drifted for c in result.columns if c.column in shown)
    assert len(result.columns) == len(schema.features)
    for column in schema.features:
        assert (f'Value Drift for column {column}"' in html) is (column in shown), column
