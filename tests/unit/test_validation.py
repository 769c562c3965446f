from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from green_pipeline.data.schema import FeatureSchema
from green_pipeline.data.validation import compact_numbers, validate_batch
from green_pipeline.demo.stream import LABEL
from green_pipeline.errors import InvalidBatchError

SOURCE = "s3://bucket/data/batch-2026-01-02.parquet"
SOURCE_RE = re.escape(SOURCE)


def test_a_clean_batch_passes_with_its_figures(batch: pd.DataFrame, schema: FeatureSchema) -> None:
    clean, report = validate_batch(batch, schema, SOURCE)

    assert list(clean.columns) == [*schema.features, LABEL]
    assert len(clean) == len(batch)
    assert report.rows == len(batch)
    assert report.columns == len(schema.features)
    assert report.positive_rate == pytest.approx(batch[LABEL].mean())
    assert report.warnings == ()
    assert clean[LABEL].dtype == np.int64
    for column in schema.numeric:
        assert clean[column].tolist() == batch[column].tolist(), column
    # Whole numbers fit float32 exactly; cents and tenths do not, so those columns stay float64.
    assert {c for c in schema.numeric if clean[c].dtype == np.float32} == {"tenure_months", "support_calls", "age"}
    assert all(clean[c].dtype == np.float64 for c in ("monthly_charges", "sessions_per_week", "data_usage_gb"))
    assert all(isinstance(clean[c].dtype, pd.CategoricalDtype) for c in schema.categorical)
    assert clean["plan"].tolist() == batch["plan"].tolist()
    assert clean.memory_usage(deep=True).sum() < 0.5 * batch.memory_usage(deep=True).sum()


def test_numeric_strings_from_a_csv_are_converted(batch: pd.DataFrame, schema: FeatureSchema) -> None:
    batch["age"] = batch["age"].astype(str)
    batch[LABEL] = batch[LABEL].astype(str)

    clean, _ = validate_batch(batch, schema, SOURCE)

    assert clean["age"].tolist() == batch["age"].astype(float).tolist()
    assert clean[LABEL].isin([0, 1]).all()


def test_missing_label_column_is_named(batch: pd.DataFrame, schema: FeatureSchema) -> None:
    with pytest.raises(InvalidBatchError, match=rf"{SOURCE_RE}: label column 'churned' is missing"):
        validate_batch(batch.drop(columns=[LABEL]), schema, SOURCE)


def test_missing_feature_column_is_named(batch: pd.DataFrame, schema: FeatureSchema) -> None:
    with pytest.raises(InvalidBatchError, match=rf"{SOURCE_RE}: feature columns \['region'\] are missing"):
        validate_batch(batch.drop(columns=["region"]), schema, SOURCE)


def test_text_in_a_numeric_column_is_named_with_examples(batch: pd.DataFrame, schema: FeatureSchema) -> None:
    batch["monthly_charges"] = batch["monthly_charges"].astype(object)
    batch.loc[[3, 7], "monthly_charges"] = ["n/a", "12,50"]

    with pytest.raises(InvalidBatchError, match=r"numeric column 'monthly_charges' .*'n/a'.* in 2 rows") as caught:
        validate_batch(batch, schema, SOURCE)
    assert SOURCE in str(caught.value)


def test_missing_labels_are_refused(batch: pd.DataFrame, schema: FeatureSchema) -> None:
    batch[LABEL] = batch[LABEL].astype(float)
    batch.loc[[0, 1, 2], LABEL] = np.nan

    with pytest.raises(InvalidBatchError, match=rf"{SOURCE_RE}: label column 'churned' has 3 missing values"):
        validate_batch(batch, schema, SOURCE)


@pytest.mark.parametrize(("bad", "shown"), [(2, "'2'"), ("yes", "'yes'"), (0.5, "'0.5'")])
def test_labels_other_than_0_and_1_are_refused(
    batch: pd.DataFrame, schema: FeatureSchema, bad: object, shown: str
) -> None:
    batch[LABEL] = batch[LABEL].astype(object)
    batch.loc[5, LABEL] = bad

    with pytest.raises(InvalidBatchError, match=rf"label column 'churned' must hold 0 or 1; found \[{shown}\]"):
        validate_batch(batch, schema, SOURCE)


@pytest.mark.parametrize("column", ["discount_pct", "channel"])
def test_an_all_missing_feature_is_refused(batch: pd.DataFrame, schema: FeatureSchema, column: str) -> None:
    batch[column] = None

    with pytest.raises(InvalidBatchError, match=rf"{SOURCE_RE}: column '{column}' has no values"):
        validate_batch(batch, schema, SOURCE)


def test_some_missing_feature_values_are_kept_as_missing(batch: pd.DataFrame, schema: FeatureSchema) -> None:
    batch.loc[[1, 2], "discount_pct"] = np.nan
    batch.loc[[4], "plan"] = None

    clean, _ = validate_batch(batch, schema, SOURCE)

    assert clean["discount_pct"].isna().sum() == 2
    assert clean["plan"].isna().sum() == 1


def test_duplicate_column_names_are_refused(batch: pd.DataFrame, schema: FeatureSchema) -> None:
    duplicated = pd.concat([batch, batch[["age"]]], axis=1)

    with pytest.raises(InvalidBatchError, match=rf"{SOURCE_RE}: duplicate column names \['age'\]"):
        validate_batch(duplicated, schema, SOURCE)


def test_a_batch_without_rows_is_refused(batch: pd.DataFrame, schema: FeatureSchema) -> None:
    with pytest.raises(InvalidBatchError, match=rf"{SOURCE_RE}: the batch has no rows"):
        validate_batch(batch.iloc[0:0], schema, SOURCE)


def test_extra_columns_are_dropped_with_a_warning(batch: pd.DataFrame, schema: FeatureSchema) -> None:
    batch["customer_id"] = range(len(batch))
    batch["ingested_at"] = "2026-01-02"

    clean, report = validate_batch(batch, schema, SOURCE)

    assert "customer_id" not in clean.columns
    assert "ingested_at" not in clean.columns
    assert report.warnings == ("columns ['customer_id', 'ingested_at'] are not features of the model and were ignored",)


def test_columns_are_returned_in_schema_order_with_a_fresh_index(batch: pd.DataFrame, schema: FeatureSchema) -> None:
    shuffled = batch[list(reversed(batch.columns))].iloc[::2]

    clean, _ = validate_batch(shuffled, schema, SOURCE)

    assert list(clean.columns) == [*schema.features, LABEL]
    assert list(clean.index) == list(range(len(shuffled)))


@pytest.mark.parametrize(
    ("values", "compact"),
    [
        ([0.0, 3.0, 120.0, np.nan], True),
        ([0.5, 0.25, -2.0], True),
        ([65.23, 10.5], False),
        ([float(2**24 + 1), 1.0], False),
        ([1e39, 1.0], False),
    ],
)
def test_numbers_become_float32_only_when_every_value_survives(values: list[float], compact: bool) -> None:
    column = pd.Series(values, dtype="float64")

    result = compact_numbers(column)

    assert (result.dtype == np.float32) is compact
    np.testing.assert_array_equal(result.to_numpy("float64"), column.to_numpy())
