from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import pandas as pd
import psutil
import pyarrow.parquet as pq
import pytest

from green_pipeline.data.batches import (
    check_batch_name,
    list_batches,
    load_batch,
    memory_budget,
    new_batches,
    read_batch,
)
from green_pipeline.data.schema import FeatureSchema
from green_pipeline.demo.stream import LABEL, StreamSpec, encode_batch, generate_day, write_stream
from green_pipeline.errors import InvalidBatchError, InvalidConfigError
from green_pipeline.store import files
from green_pipeline.training.evaluation import auc
from green_pipeline.training.trainer import TrainingSettings, full_retrain, split_batch

if TYPE_CHECKING:
    from conftest import TrainedModel

FEATURES = [
    "tenure_months",
    "monthly_charges",
    "support_calls",
    "sessions_per_week",
    "days_since_last_login",
    "discount_pct",
    "age",
    "data_usage_gb",
    "plan",
    "channel",
    "region",
]


def test_generate_day_is_deterministic_for_the_same_seed_and_day(stream_spec: StreamSpec) -> None:
    pd.testing.assert_frame_equal(generate_day(stream_spec, 3), generate_day(stream_spec, 3))


def test_generate_day_differs_across_days_and_seeds(stream_spec: StreamSpec) -> None:
    day3 = generate_day(stream_spec, 3)

    assert not day3.equals(generate_day(stream_spec, 4))
    assert not day3.equals(generate_day(dataclasses.replace(stream_spec, seed=8), 3))


def test_generate_day_has_the_documented_columns_rows_and_binary_label(stream_spec: StreamSpec) -> None:
    frame = generate_day(stream_spec, 0)

    assert list(frame.columns) == [*FEATURES, LABEL]
    assert len(frame) == stream_spec.rows_per_day
    assert set(frame[LABEL].unique()) == {0, 1}
    assert not frame.isna().any().any()


def test_covariate_shift_day_raises_monthly_charges(stream_spec: StreamSpec) -> None:
    (shift,) = stream_spec.covariate_shift_days
    before = generate_day(stream_spec, shift - 1)
    after = generate_day(stream_spec, shift)
    never_shifted = generate_day(dataclasses.replace(stream_spec, covariate_shift_days=()), 5)

    assert after["monthly_charges"].mean() - before["monthly_charges"].mean() > 20
    assert abs(never_shifted["monthly_charges"].mean() - before["monthly_charges"].mean()) < 3


def test_concept_drift_keeps_features_but_breaks_an_older_model(
    stream_spec: StreamSpec, shifted_model: TrainedModel, schema: FeatureSchema
) -> None:
    """Same seed and day with and without the drift: identical features, only the labels react differently."""
    day = stream_spec.concept_drift_days[0] + 1
    drifted = generate_day(stream_spec, day)
    undrifted = generate_day(dataclasses.replace(stream_spec, concept_drift_days=()), day)

    pd.testing.assert_frame_equal(drifted[FEATURES], undrifted[FEATURES])
    booster = shifted_model.result.booster
    assert auc(booster, undrifted, schema) - auc(booster, drifted, schema) > 0.05


#: sha256 of days 0, 6 and 12 of the default stream as CSV, recorded before several events per kind existed: the
#: demo's files (covariate shift from day 5, concept drift from day 11) must stay byte-identical.
DEFAULT_STREAM_SHA256 = {
    0: "58b568aadb37fee1257ff95c2a5e47173a95d1ae3e5f1c8a9f7ede4e409264e7",
    6: "c12b4c0459bc80e243069cf54c9d3196f74155756adc19c2d4632c74bba8eea3",
    12: "09bb9ee404ddc8fd29edcf911c3d5feb51b7ad3c993744d9d19ed0d85d055e65",
}


def test_the_default_stream_is_unchanged() -> None:
    spec = StreamSpec()

    digests = {
        day: hashlib.sha256(generate_day(spec, day).to_csv(index=False).encode()).hexdigest()
        for day in DEFAULT_STREAM_SHA256
    }

    assert digests == DEFAULT_STREAM_SHA256


def test_every_covariate_shift_day_moves_the_features() -> None:
    spec = StreamSpec(days=12, rows_per_day=3000, covariate_shift_days=(3, 6, 9), concept_drift_days=())
    charges = [generate_day(spec, day)["monthly_charges"].mean() for day in (2, 3, 5, 6, 8, 9)]

    # Up with the price rise, down with the price war, up again: each event day differs from the day before it.
    assert [round(after - before) for before, after in zip(charges[::2], charges[1::2], strict=True)] == [30, -55, 55]
    assert abs(charges[1] - charges[2]) < 3 and abs(charges[3] - charges[4]) < 3


def test_every_concept_drift_day_breaks_the_model_of_the_concept_before(
    schema: FeatureSchema, training_settings: TrainingSettings
) -> None:
    """Same features as without the event; a model of the concept before it loses AUC on the event's day."""
    spec = StreamSpec(days=10, rows_per_day=6000, covariate_shift_days=(), concept_drift_days=(3, 6))
    for index, event in enumerate(spec.concept_drift_days):
        without_event = dataclasses.replace(spec, concept_drift_days=spec.concept_drift_days[:index])
        split = split_batch(generate_day(spec, event - 1), LABEL, "before", "before")
        model = full_retrain(split, schema, training_settings).booster
        after, unchanged = generate_day(spec, event), generate_day(without_event, event)

        pd.testing.assert_frame_equal(after[FEATURES], unchanged[FEATURES])
        assert auc(model, unchanged, schema) - auc(model, after, schema) > 0.05, event


@pytest.mark.parametrize("days", [(5, 5), (7, 3), (-1,)])
def test_stream_spec_refuses_event_days_out_of_order(days: tuple[int, ...]) -> None:
    with pytest.raises(InvalidConfigError, match="--concept-drift-day"):
        StreamSpec(concept_drift_days=days)


@pytest.mark.parametrize(
    ("changes", "named"),
    [({"rows_per_day": 49}, "rows-per-day"), ({"days": 0}, "days"), ({"file_format": "json"}, "'json'")],
)
def test_stream_spec_refuses_bad_settings(changes: dict[str, object], named: str) -> None:
    with pytest.raises(InvalidConfigError, match=named):
        StreamSpec(**changes)


def test_batch_names_sort_in_day_order() -> None:
    spec = StreamSpec(start=pd.Timestamp("2026-01-30").date(), file_format="csv")

    names = [spec.batch_name(day) for day in range(4)]

    assert names[0] == "batch-2026-01-30.csv"
    assert names[2] == "batch-2026-02-01.csv"
    assert names == sorted(names)


@pytest.mark.parametrize("file_format", ["parquet", "csv"])
def test_write_stream_list_batches_read_batch_round_trip(tmp_path: Path, file_format: str) -> None:
    spec = StreamSpec(days=3, rows_per_day=200, file_format=file_format)
    url = str(tmp_path / "data")

    names = write_stream(spec, url)

    assert names == [spec.batch_name(day) for day in range(3)]
    assert all(name.endswith(f".{file_format}") for name in names)
    assert list_batches(url) == names
    for day, name in enumerate(names):
        read = read_batch(url, name)
        pd.testing.assert_frame_equal(read, generate_day(spec, day), check_dtype=False, check_categorical=False)
        # Parquet text is decoded straight to categoricals (one copy of each distinct string); CSV text as read.
        assert isinstance(read["plan"].dtype, pd.CategoricalDtype) is (file_format == "parquet")


def test_list_batches_ignores_other_files_and_partial_uploads(tmp_path: Path) -> None:
    for name in ("b.csv", "a.parquet", "c.PQ", "notes.txt", ".upload.parquet", "_tmp.parquet"):
        (tmp_path / name).write_bytes(b"x")

    assert list_batches(str(tmp_path)) == ["a.parquet", "b.csv", "c.PQ"]


def test_read_batch_of_an_empty_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "batch-empty.parquet").write_bytes(b"")

    with pytest.raises(InvalidBatchError, match=r"batch-empty\.parquet: the file is empty"):
        read_batch(str(tmp_path), "batch-empty.parquet")


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_read_batch_of_a_corrupted_parquet_names_the_file(tmp_path: Path, cut: float) -> None:
    payload = encode_batch(generate_day(StreamSpec(rows_per_day=100), 0), "parquet")
    (tmp_path / "batch-broken.parquet").write_bytes(payload[: int(len(payload) * cut)])

    with pytest.raises(InvalidBatchError, match=r"batch-broken\.parquet: cannot be read as parquet"):
        read_batch(str(tmp_path), "batch-broken.parquet")


def test_read_batch_of_a_csv_that_is_not_text_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "batch-binary.csv").write_bytes(b"\xff\xfe\x00\x81binary")

    with pytest.raises(InvalidBatchError, match=r"batch-binary\.csv: cannot be read as csv"):
        read_batch(str(tmp_path), "batch-binary.csv")


def test_read_batch_of_a_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(InvalidBatchError, match=r"batch-gone\.parquet: batch file not found"):
        read_batch(str(tmp_path), "batch-gone.parquet")


@pytest.mark.parametrize(
    ("name", "complaint"),
    [
        ("../x.parquet", "not a plain file name"),
        ("a/b.parquet", "not a plain file name"),
        ("..", "not a plain file name"),
        ("", "not a plain file name"),
        ("dir\\x.parquet", "not a plain file name"),
        ("x.txt", "unsupported extension"),
    ],
)
def test_check_batch_name_refuses_paths_and_other_extensions(name: str, complaint: str) -> None:
    with pytest.raises(InvalidBatchError, match=complaint) as caught:
        check_batch_name(name)
    assert repr(name) in str(caught.value)


@pytest.mark.parametrize("name", ["batch-2026-01-01.parquet", "x.pq", "DAY.CSV"])
def test_check_batch_name_accepts_plain_batch_files(name: str) -> None:
    assert check_batch_name(name) == name


def test_read_batch_refuses_a_name_escaping_the_data_folder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    files.write_bytes_atomic(str(tmp_path / "secret.parquet"), encode_batch(pd.DataFrame({"a": [1]}), "parquet"))

    with pytest.raises(InvalidBatchError, match=r"'\.\./secret\.parquet'"):
        read_batch(str(data), "../secret.parquet")


def test_new_batches_returns_new_names_and_resized_files_only() -> None:
    seen = {"batch-1.parquet": 100, "batch-2.parquet": 200}
    listing = {"batch-3.csv": 50, "batch-2.parquet": 250, "batch-1.parquet": 100, "readme.txt": 10}

    assert new_batches(listing, seen) == {"batch-2.parquet": 250, "batch-3.csv": 50}
    assert list(new_batches(listing, seen)) == ["batch-2.parquet", "batch-3.csv"]
    assert new_batches(seen, seen) == {}


def _write_batch(tmp_path: Path, frame: pd.DataFrame, file_format: str) -> tuple[str, str]:
    name = f"batch.{file_format}"
    files.write_bytes_atomic(str(tmp_path / name), encode_batch(frame, file_format))
    return str(tmp_path), name


@pytest.mark.parametrize("file_format", ["parquet", "csv"])
def test_load_batch_decodes_only_the_wanted_columns_and_names_the_others(tmp_path: Path, file_format: str) -> None:
    frame = generate_day(StreamSpec(rows_per_day=200), 0).assign(coupon_code="X1", customer_id=range(200))
    url, name = _write_batch(tmp_path, frame, file_format)

    batch = load_batch(url, name, columns=("age", "plan", LABEL, "absent_column"))

    assert list(batch.frame.columns) == ["age", "plan", LABEL]
    assert sorted(batch.unread_columns) == sorted(set(frame.columns) - {"age", "plan", LABEL})
    assert batch.frame["age"].tolist() == frame["age"].tolist()
    assert batch.frame["plan"].astype(str).tolist() == frame["plan"].tolist()


@pytest.mark.parametrize("file_format", ["parquet", "csv"])
def test_load_batch_estimates_the_memory_of_the_read(tmp_path: Path, file_format: str) -> None:
    frame = generate_day(StreamSpec(rows_per_day=5000), 0)
    url, name = _write_batch(tmp_path, frame, file_format)

    batch = load_batch(url, name)

    decoded = batch.frame.memory_usage(index=False, deep=True).sum()
    file_size = (tmp_path / name).stat().st_size
    assert decoded + file_size <= batch.estimated_bytes <= 3 * (decoded + file_size)


def test_a_batch_too_big_for_memory_is_refused_before_it_is_decoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, name = _write_batch(tmp_path, generate_day(StreamSpec(rows_per_day=5000), 0), "parquet")
    estimate = load_batch(url, name).estimated_bytes

    def decode_everything(*args: object, **kwargs: object) -> None:
        raise AssertionError("the whole file was decoded")

    monkeypatch.setattr(pq.ParquetFile, "read", decode_everything)
    with pytest.raises(InvalidBatchError, match=r"batch\.parquet: reading the batch would take about .* GB of memory"):
        load_batch(url, name, max_memory_bytes=estimate - 1)


def test_the_memory_budget_is_a_share_of_the_memory_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=8_000_000_000))

    assert memory_budget(0.25) == 2_000_000_000
