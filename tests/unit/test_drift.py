from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest

from green_pipeline.data import StreamSpec
from green_pipeline.drift import ColumnDrift, DriftResult, detect_drift, no_reference
from green_pipeline.schema import FeatureSchema

THRESHOLD = 0.3


@pytest.fixture(scope="module")
def same_regime(make_clean_batch: Callable[[int], pd.DataFrame], schema: FeatureSchema) -> tuple[DriftResult, str]:
    return detect_drift(make_clean_batch(2), make_clean_batch(1), schema, THRESHOLD)


@pytest.fixture(scope="module")
def covariate_shift(make_clean_batch: Callable[[int], pd.DataFrame], schema: FeatureSchema) -> tuple[DriftResult, str]:
    return detect_drift(make_clean_batch(5), make_clean_batch(0), schema, THRESHOLD)


def test_two_batches_of_the_same_regime_do_not_drift(same_regime: tuple[DriftResult, str]) -> None:
    result, _ = same_regime

    assert result.compared
    assert result.drifted_share < THRESHOLD
    assert not result.passes_threshold


def test_covariate_shift_day_drifts_on_monthly_charges(covariate_shift: tuple[DriftResult, str]) -> None:
    result, _ = covariate_shift

    assert result.drifted_share > THRESHOLD
    assert result.passes_threshold
    drifted = {c.column for c in result.columns if c.drifted}
    assert "monthly_charges" in drifted
    assert result.drifted_count == len(drifted)
    assert result.drifted_share == pytest.approx(len(drifted) / result.column_count)


def test_features_that_did_not_shift_are_not_flagged(covariate_shift: tuple[DriftResult, str]) -> None:
    """The generator leaves age, region and discount untouched by the price rise."""
    result, _ = covariate_shift

    verdicts = {c.column: c.drifted for c in result.columns}
    assert not verdicts["age"]
    assert not verdicts["region"]
    assert not verdicts["discount_pct"]


def test_result_covers_every_feature_and_counts_rows(
    covariate_shift: tuple[DriftResult, str], schema: FeatureSchema, stream_spec: StreamSpec
) -> None:
    result, _ = covariate_shift

    assert sorted(c.column for c in result.columns) == sorted(schema.features)
    assert result.column_count == len(schema.features)
    assert result.reference_rows == result.current_rows == stream_spec.rows_per_day
    assert result.threshold == THRESHOLD
    assert all(c.method and c.threshold > 0 for c in result.columns)


def test_top_columns_lists_drifted_columns_first(covariate_shift: tuple[DriftResult, str]) -> None:
    result, _ = covariate_shift

    top = result.top_columns(limit=3)

    assert len(top) == 3
    assert all(c.drifted for c in top)


def test_html_report_is_a_full_page(
    same_regime: tuple[DriftResult, str], covariate_shift: tuple[DriftResult, str]
) -> None:
    for _, html in (same_regime, covariate_shift):
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
