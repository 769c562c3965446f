from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from green_pipeline.data.schema import MAX_INFERRED_CATEGORIES, DatasetSpec, FeatureSchema, batch_columns, infer_schema
from green_pipeline.data.validation import validate_batch
from green_pipeline.demo.stream import CHANNELS, LABEL, PLANS, REGIONS
from green_pipeline.errors import InvalidBatchError, InvalidConfigError

NUMERIC = (
    "tenure_months",
    "monthly_charges",
    "support_calls",
    "sessions_per_week",
    "days_since_last_login",
    "discount_pct",
    "age",
    "data_usage_gb",
)


def test_infer_schema_splits_numeric_and_categorical_columns(batch: pd.DataFrame) -> None:
    schema = infer_schema(batch, DatasetSpec(label=LABEL), "batch.parquet")

    assert schema.label == LABEL
    assert schema.numeric == NUMERIC
    assert schema.categories == {
        "plan": tuple(sorted(PLANS)),
        "channel": tuple(sorted(CHANNELS)),
        "region": tuple(sorted(REGIONS)),
    }
    assert schema.features == (*NUMERIC, "plan", "channel", "region")
    assert LABEL not in schema.features


def test_explicit_categorical_list_overrides_dtypes(batch: pd.DataFrame) -> None:
    spec = DatasetSpec(label=LABEL, categorical=("support_calls", "plan", "channel", "region"))

    schema = infer_schema(batch, spec, "batch.parquet")

    assert "support_calls" not in schema.numeric
    assert schema.categorical == ("support_calls", "plan", "channel", "region")
    assert set(schema.categories["support_calls"]) == {str(v) for v in batch["support_calls"].unique()}


def test_explicit_feature_list_keeps_only_those_columns(batch: pd.DataFrame) -> None:
    schema = infer_schema(batch, DatasetSpec(label=LABEL, features=("tenure_months", "plan")), "batch.parquet")

    assert schema.numeric == ("tenure_months",)
    assert schema.categorical == ("plan",)


def test_boolean_columns_are_categorical() -> None:
    frame = pd.DataFrame({"autopay": [True, False, True], "spend": [1.0, 2.0, 3.0], LABEL: [0, 1, 0]})

    schema = infer_schema(frame, DatasetSpec(label=LABEL), "batch.parquet")

    assert schema.numeric == ("spend",)
    assert schema.categories == {"autopay": ("False", "True")}


def test_label_listed_in_features_is_a_config_error() -> None:
    with pytest.raises(InvalidConfigError, match=r"dataset\.features lists the label column 'churned'"):
        DatasetSpec(label=LABEL, features=("tenure_months", LABEL))


def test_categorical_outside_the_features_is_a_config_error() -> None:
    with pytest.raises(InvalidConfigError, match=r"dataset\.categorical .*\['region'\]"):
        DatasetSpec(label=LABEL, features=("tenure_months", "plan"), categorical=("plan", "region"))


def test_empty_label_is_a_config_error() -> None:
    with pytest.raises(InvalidConfigError, match=r"dataset\.label is empty"):
        DatasetSpec(label="")


def test_an_id_like_text_column_is_refused_with_its_name_and_source() -> None:
    rows = MAX_INFERRED_CATEGORIES + 1
    frame = pd.DataFrame(
        {
            "customer_id": [f"c-{i}" for i in range(rows)],
            "spend": np.arange(rows, dtype=float),
            LABEL: [0, 1] * 25 + [0],
        }
    )

    with pytest.raises(InvalidBatchError, match=r"batch-1\.csv: column 'customer_id' has 51 distinct text values"):
        infer_schema(frame, DatasetSpec(label=LABEL), "batch-1.csv")


def test_a_batch_with_only_the_label_has_no_features() -> None:
    with pytest.raises(InvalidBatchError, match=r"batch-1\.csv: no feature columns besides the label 'churned'"):
        infer_schema(pd.DataFrame({LABEL: [0, 1]}), DatasetSpec(label=LABEL), "batch-1.csv")


def test_encode_maps_unseen_categories_to_missing_and_keeps_known_ones(schema: FeatureSchema) -> None:
    frame = pd.DataFrame(
        {
            **{column: [1, 2, 3] for column in schema.numeric},
            "plan": ["basic", "enterprise", "premium"],
            "channel": ["web", "web", "kiosk"],
            "region": ["north", None, "south"],
        }
    )

    encoded = schema.encode(frame)

    assert list(encoded.columns) == list(schema.features)
    assert encoded["plan"].tolist()[0] == "basic"
    assert math.isnan(encoded["plan"].tolist()[1])
    assert encoded["plan"].tolist()[2] == "premium"
    assert encoded["channel"].isna().tolist() == [False, False, True]
    assert encoded["region"].isna().tolist() == [False, True, False]
    assert list(encoded["plan"].cat.categories) == list(schema.categories["plan"])
    assert all(encoded[column].dtype == np.float64 for column in schema.numeric)


def test_encode_gives_the_same_codes_whatever_the_categories_seen_in_the_batch(schema: FeatureSchema) -> None:
    """A batch holding only some plans must not renumber them, or a stored model would misread it."""
    numeric = {column: [1.0, 2.0] for column in schema.numeric}
    only_premium = pd.DataFrame({**numeric, "plan": ["premium"] * 2, "channel": ["web"] * 2, "region": ["west"] * 2})
    all_plans = pd.DataFrame({**numeric, "plan": ["basic", "premium"], "channel": ["web"] * 2, "region": ["west"] * 2})

    assert schema.encode(only_premium)["plan"].cat.codes.tolist()[0] == schema.encode(all_plans)["plan"].cat.codes[1]


def test_labels_are_int64(schema: FeatureSchema) -> None:
    labels = schema.labels(pd.DataFrame({LABEL: [1.0, 0.0, 1.0]}))

    assert labels.dtype == np.int64
    assert labels.tolist() == [1, 0, 1]


def test_a_configured_feature_missing_from_the_batch_names_file_and_column(batch: pd.DataFrame) -> None:
    spec = DatasetSpec(label=LABEL, features=("tenure_months", "tenure_mnths"))

    with pytest.raises(InvalidBatchError, match=r"batch-1\.parquet.*'tenure_mnths'"):
        infer_schema(batch, spec, "batch-1.parquet")


def test_numeric_coded_categories_survive_a_missing_value_in_a_later_batch() -> None:
    first = pd.DataFrame({"store_id": [1, 2, 3, 1], "spend": [1.0, 2.0, 3.0, 4.0], LABEL: [0, 1, 0, 1]})
    schema = infer_schema(first, DatasetSpec(label=LABEL, categorical=("store_id",)), "batch-1.csv")
    later = pd.DataFrame({"store_id": [1, 2, None, 3], "spend": [1.0, 2.0, 3.0, 4.0], LABEL: [0, 1, 0, 1]})

    clean, _ = validate_batch(later, schema, "batch-2.csv")

    assert schema.encode(clean)["store_id"].isna().tolist() == [False, False, True, False]


def test_batch_columns_are_the_models_else_the_configured_ones_else_all(schema: FeatureSchema) -> None:
    assert batch_columns(schema, DatasetSpec(label=LABEL)) == (*schema.features, LABEL)
    assert batch_columns(None, DatasetSpec(label=LABEL, features=("age", "plan"))) == ("age", "plan", LABEL)
    assert batch_columns(None, DatasetSpec(label=LABEL)) is None
