"""The bad-input matrix at the level of the pure functions: every refusal names the file and column and says
what to do; recoverable oddities are read correctly or reported as warnings. End-to-end twins live in
tests/integration/test_bad_input_runs.py."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from green_pipeline.data.batches import check_batch_limits, check_batch_name, read_batch
from green_pipeline.data.schema import DatasetSpec, FeatureSchema, infer_schema
from green_pipeline.data.validation import validate_batch
from green_pipeline.demo.stream import LABEL, StreamSpec, generate_day
from green_pipeline.drift.detection import detect_drift
from green_pipeline.errors import DriftDetectionError, InvalidBatchError

SOURCE = "s3://bucket/data/batch-2026-01-05.csv"


def _write(tmp_path: Path, name: str, payload: bytes) -> str:
    (tmp_path / name).write_bytes(payload)
    return str(tmp_path)


def _small() -> pd.DataFrame:
    return generate_day(StreamSpec(rows_per_day=60), 0)


# --- reading -------------------------------------------------------------------------------------------------


def test_empty_file_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(InvalidBatchError, match=r"b\.csv: the file is empty \(0 bytes\); upload the batch again"):
        read_batch(_write(tmp_path, "b.csv", b""), "b.csv")


def test_header_only_csv_is_refused_as_having_no_rows(tmp_path: Path) -> None:
    with pytest.raises(InvalidBatchError, match=r"b\.csv: the file has a header \(3 columns\) but no rows"):
        read_batch(_write(tmp_path, "b.csv", b"age,plan,churned\n"), "b.csv")


def test_zero_row_parquet_is_refused_as_having_no_rows(tmp_path: Path) -> None:
    _small().iloc[:0].to_parquet(tmp_path / "b.parquet", index=False)
    with pytest.raises(InvalidBatchError, match=r"b\.parquet: the file has a header \(12 columns\) but no rows"):
        read_batch(str(tmp_path), "b.parquet")


def test_repeated_csv_header_is_refused_before_pandas_renames_it(tmp_path: Path) -> None:
    with pytest.raises(InvalidBatchError, match=r"b\.csv: duplicate column names \['age'\] in the CSV header"):
        read_batch(_write(tmp_path, "b.csv", b"age,plan,age,churned\n1,basic,2,0\n"), "b.csv")


def test_repeated_parquet_column_is_refused_by_name(tmp_path: Path) -> None:
    pq.write_table(
        pa.table([pa.array([1]), pa.array([2]), pa.array([0])], names=["age", "age", "y"]), tmp_path / "b.pq"
    )
    with pytest.raises(InvalidBatchError, match=r"b\.pq: duplicate column names \['age'\] in the Parquet schema"):
        read_batch(str(tmp_path), "b.pq")


def test_corrupted_parquet_is_refused_and_says_to_upload_again(tmp_path: Path) -> None:
    _small().to_parquet(tmp_path / "b.parquet", index=False)
    payload = bytearray((tmp_path / "b.parquet").read_bytes())
    payload[-12:-4] = b"\xff" * 8  # the footer length: the file can no longer be located
    with pytest.raises(InvalidBatchError, match=r"b\.parquet: cannot be read as parquet .*Upload the file again"):
        read_batch(_write(tmp_path, "b.parquet", bytes(payload)), "b.parquet")


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_csv_with_another_delimiter_is_read_correctly(tmp_path: Path, delimiter: str) -> None:
    frame = _small()
    read = read_batch(_write(tmp_path, "b.csv", frame.to_csv(index=False, sep=delimiter).encode()), "b.csv")
    pd.testing.assert_frame_equal(read, frame, check_dtype=False)


def test_latin1_csv_is_refused_naming_the_encoding_and_the_byte(tmp_path: Path) -> None:
    payload = "age,region,churned\n30,Zürich,0\n".encode("latin-1")
    with pytest.raises(InvalidBatchError, match=r"b\.csv: .*not UTF-8 text \(byte 0xfc at offset 23; latin-1"):
        read_batch(_write(tmp_path, "b.csv", payload), "b.csv")


def test_utf8_csv_with_accents_and_a_bom_is_read_correctly(tmp_path: Path) -> None:
    payload = "\ufeffage,region,churned\n30,Zürich,0\n".encode()
    read = read_batch(_write(tmp_path, "b.csv", payload), "b.csv")
    assert list(read.columns) == ["age", "region", "churned"] and read.loc[0, "region"] == "Zürich"


@pytest.mark.parametrize(
    ("limits", "named"),
    [
        ({"size_bytes": 2001, "max_bytes": 2000}, "2001 bytes, over dataset.max_bytes=2000"),
        ({"rows": 11, "max_rows": 10}, "more than 10 rows \\(dataset.max_rows\\)"),
    ],
)
def test_limit_check_names_the_setting(limits: dict[str, int], named: str) -> None:
    with pytest.raises(InvalidBatchError, match=rf"{re.escape(SOURCE)}: .*{named}.*split it"):
        check_batch_limits(SOURCE, **limits)
    check_batch_limits(SOURCE, size_bytes=2000, rows=10, max_bytes=2000, max_rows=10)
    check_batch_limits(SOURCE, size_bytes=10**12, rows=10**9)


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_huge_batch_is_refused_by_rows_and_by_bytes(tmp_path: Path, suffix: str) -> None:
    name = f"b.{suffix}"
    frame = _small()
    frame.to_csv(tmp_path / name, index=False) if suffix == "csv" else frame.to_parquet(tmp_path / name, index=False)
    size = (tmp_path / name).stat().st_size
    with pytest.raises(InvalidBatchError, match=r"more than 59 rows \(dataset.max_rows\)"):
        read_batch(str(tmp_path), name, max_rows=59)
    with pytest.raises(InvalidBatchError, match=rf"{size} bytes, over dataset.max_bytes={size - 1}"):
        read_batch(str(tmp_path), name, max_bytes=size - 1)
    assert len(read_batch(str(tmp_path), name, max_rows=60, max_bytes=size)) == 60


@pytest.mark.parametrize(
    "name", ["../x.csv", "a/b.csv", "%2E%2E/x.csv", "..%2Fx.csv", "%2e%2e%5cx.csv", "/etc/x.csv", "x.csv\x00.csv"]
)
def test_path_traversal_in_a_batch_name_is_refused_before_any_join(tmp_path: Path, name: str) -> None:
    (tmp_path / "x.csv").write_text("age,churned\n1,0\n")
    with pytest.raises(InvalidBatchError, match=r"is not a plain file name.*dataset\.data_url") as caught:
        read_batch(str(tmp_path / "data"), name)
    assert repr(name) in str(caught.value)
    assert check_batch_name("batch-2026-01-05%20v2.csv") == "batch-2026-01-05%20v2.csv"


# --- validation ----------------------------------------------------------------------------------------------


def test_missing_label_column_names_it_and_the_setting(batch: pd.DataFrame, schema: FeatureSchema) -> None:
    with pytest.raises(InvalidBatchError, match=r"label column 'churned' is missing .*Set dataset\.label"):
        validate_batch(batch.drop(columns=[LABEL]), schema, SOURCE)


def test_missing_feature_column_names_it(batch: pd.DataFrame, schema: FeatureSchema) -> None:
    with pytest.raises(InvalidBatchError, match=r"feature columns \['age'\] are missing.*Add them to the batch"):
        validate_batch(batch.drop(columns=["age"]), schema, SOURCE)


def test_extra_column_is_ignored_with_a_warning(batch: pd.DataFrame, schema: FeatureSchema) -> None:
    clean, report = validate_batch(batch.assign(coupon_code="X1"), schema, SOURCE)
    assert "coupon_code" not in clean.columns
    assert report.warnings == ("columns ['coupon_code'] are not features of the model and were ignored",)


def test_strings_in_a_numeric_feature_are_named(batch: pd.DataFrame, schema: FeatureSchema) -> None:
    batch["age"] = batch["age"].astype(object)
    batch.loc[4, "age"] = "forty"
    with pytest.raises(InvalidBatchError, match=r"numeric column 'age' holds non-numeric values such as \['forty'\]"):
        validate_batch(batch, schema, SOURCE)


def test_infinite_values_in_a_numeric_feature_are_named(batch: pd.DataFrame, schema: FeatureSchema) -> None:
    batch.loc[[1, 2], "age"] = np.inf
    with pytest.raises(InvalidBatchError, match=r"numeric column 'age' holds infinite values in 2 rows"):
        validate_batch(batch, schema, SOURCE)


@pytest.mark.parametrize("column", ["age", "plan"])
def test_all_missing_column_is_named(batch: pd.DataFrame, schema: FeatureSchema, column: str) -> None:
    batch[column] = None
    with pytest.raises(InvalidBatchError, match=rf"column '{column}' has no values \(all missing\)"):
        validate_batch(batch, schema, SOURCE)


def test_missing_labels_are_counted_and_named(batch: pd.DataFrame, schema: FeatureSchema) -> None:
    batch[LABEL] = batch[LABEL].astype(float)
    batch.loc[[0, 9], LABEL] = np.nan
    with pytest.raises(InvalidBatchError, match=r"label column 'churned' has 2 missing values; drop the unlabelled"):
        validate_batch(batch, schema, SOURCE)


@pytest.mark.parametrize("only", [0, 1])
def test_single_class_labels_are_refused(batch: pd.DataFrame, schema: FeatureSchema, only: int) -> None:
    with pytest.raises(InvalidBatchError, match=rf"label column 'churned' holds only {only} in all \d+ rows"):
        validate_batch(batch.assign(churned=only), schema, SOURCE)


def test_unseen_categories_are_kept_encoded_as_missing_and_reported(batch: pd.DataFrame, schema: FeatureSchema) -> None:
    batch.loc[[0, 1, 2], "plan"] = "enterprise"
    clean, report = validate_batch(batch, schema, SOURCE)
    assert report.warnings == (
        "column 'plan' has categories the model never saw, ['enterprise'] in 3 rows; "
        "they are encoded as missing values",
    )
    encoded = schema.encode(clean)
    assert encoded.loc[:2, "plan"].isna().all() and encoded.loc[3:, "plan"].notna().all()


def test_duplicate_columns_in_a_frame_are_refused(batch: pd.DataFrame, schema: FeatureSchema) -> None:
    doubled = pd.concat([batch, batch[["age"]]], axis=1)
    with pytest.raises(InvalidBatchError, match=r"duplicate column names \['age'\]; .*Rename or drop"):
        validate_batch(doubled, schema, SOURCE)
    with pytest.raises(InvalidBatchError, match=r"duplicate column names \['age'\]"):
        infer_schema(doubled, DatasetSpec(label=LABEL), SOURCE)


def test_first_batch_with_text_in_a_number_column_is_not_frozen_as_a_category(batch: pd.DataFrame) -> None:
    batch["monthly_charges"] = batch["monthly_charges"].astype(object)
    batch.loc[[5, 6], "monthly_charges"] = "n/a"
    with pytest.raises(InvalidBatchError, match=r"column 'monthly_charges' is mostly numbers .*\['n/a'\] in 2 rows"):
        infer_schema(batch, DatasetSpec(label=LABEL), SOURCE)
    explicit = infer_schema(batch, DatasetSpec(label=LABEL, categorical=("monthly_charges", "plan")), SOURCE)
    assert "monthly_charges" in explicit.categorical


# --- Evidently -----------------------------------------------------------------------------------------------


# Evidently divides by the column's zero count on the way to its error; that RuntimeWarning is its own.
@pytest.mark.filterwarnings("ignore:invalid value encountered in scalar divide:RuntimeWarning")
def test_evidently_failure_on_an_empty_column_becomes_a_drift_detection_error(
    make_clean_batch, schema: FeatureSchema
) -> None:
    reference, current = make_clean_batch(0).iloc[:300], make_clean_batch(1).iloc[:300]
    with pytest.raises(DriftDetectionError, match=r"Evidently could not compare .*'discount_pct'.*empty column"):
        detect_drift(current.assign(discount_pct=np.nan), reference, schema, 0.3)
