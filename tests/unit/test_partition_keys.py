"""One check of partition keys: a key that is a path is refused wherever it would become part of a URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from green_pipeline.errors import InvalidBatchKeyError
from green_pipeline.orchestration.resources import ArtifactStorage, ObjectStorage
from green_pipeline.store.files import validate_batch_key

PATH_KEYS = [
    "../../x",
    "../x.csv",
    "a/b.csv",
    "/etc/x.csv",
    "%2E%2E/x.csv",
    "..%2Fx.csv",
    "..",
    ".",
    "",
    "a\\b",
    "x\x00",
]


@pytest.mark.parametrize("key", PATH_KEYS)
def test_a_key_that_is_a_path_is_refused_naming_it_and_what_is_allowed(key: str) -> None:
    with pytest.raises(InvalidBatchKeyError, match=r"is not a plain file name.*no '/'.*even percent-encoded") as caught:
        validate_batch_key(key)
    assert f"batch name {key!r}" in str(caught.value)


@pytest.mark.parametrize("key", ["batch-2026-01-01.parquet", "day 5 (v2).csv", "batch-2026-01-05%20v2.csv", "x..y.pq"])
def test_a_plain_file_name_is_a_valid_key(key: str) -> None:
    assert validate_batch_key(key) == key


@pytest.mark.parametrize("key", ["../../x", "%2E%2E%2Fx"])
def test_artifact_urls_refuse_a_key_before_anything_is_joined(tmp_path: Path, key: str) -> None:
    artifacts = ArtifactStorage(base_url=str(tmp_path / "artifacts"), storage=ObjectStorage())
    assert (
        artifacts.url("drift_report", "batch-1.csv", "run.json")
        == f"{tmp_path}/artifacts/drift_report/batch-1.csv/run.json"
    )
    with pytest.raises(InvalidBatchKeyError, match=f"batch name {key!r}"):
        artifacts.url("drift_report", key, "run.json")
    with pytest.raises(InvalidBatchKeyError):
        artifacts.url("reports", "drift_report", f"{key}.html")
