from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from green_pipeline import files


def test_write_bytes_atomic_creates_parent_folders_and_writes_content(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "model.txt"

    files.write_bytes_atomic(str(target), b"first")

    assert target.read_bytes() == b"first"
    assert files.read_bytes(str(target)) == b"first"


def test_write_bytes_atomic_replaces_content_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "current.json"
    files.write_bytes_atomic(str(target), b'{"version": "v0001"}')

    files.write_bytes_atomic(str(target), b'{"version": "v0002"}')

    assert target.read_bytes() == b'{"version": "v0002"}'
    assert sorted(os.listdir(tmp_path)) == ["current.json"]


def test_write_bytes_atomic_failure_removes_its_temp_file(tmp_path: Path) -> None:
    """A destination that cannot be replaced (a folder) fails the write without litter left behind."""
    (tmp_path / "taken").mkdir()

    with pytest.raises(OSError):
        files.write_bytes_atomic(str(tmp_path / "taken"), b"payload")

    assert sorted(os.listdir(tmp_path)) == ["taken"]
    assert os.listdir(tmp_path / "taken") == []


def test_write_bytes_atomic_gives_the_permissions_of_a_normally_created_file(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        files.write_bytes_atomic(str(tmp_path / "batch.parquet"), b"data")
        (tmp_path / "plain.parquet").write_bytes(b"data")
    finally:
        os.umask(previous)

    written_mode = stat.S_IMODE((tmp_path / "batch.parquet").stat().st_mode)
    assert written_mode == stat.S_IMODE((tmp_path / "plain.parquet").stat().st_mode) == 0o644


def test_list_files_gives_sizes_and_skips_hidden_temporary_files_and_folders(tmp_path: Path) -> None:
    (tmp_path / "b.parquet").write_bytes(b"12345")
    (tmp_path / "a.csv").write_bytes(b"")
    (tmp_path / ".tmp-upload.parquet").write_bytes(b"partial")
    (tmp_path / "_SUCCESS").write_bytes(b"")
    (tmp_path / "_part-0001.parquet").write_bytes(b"partial")
    (tmp_path / "subfolder").mkdir()

    listing = files.list_files(str(tmp_path))

    assert listing == {"a.csv": 0, "b.parquet": 5}
    assert list(listing) == ["a.csv", "b.parquet"]


def test_list_files_of_a_missing_folder_is_empty(tmp_path: Path) -> None:
    assert files.list_files(str(tmp_path / "not-there")) == {}


def test_exists_reports_files(tmp_path: Path) -> None:
    (tmp_path / "present.txt").write_bytes(b"x")

    assert files.exists(str(tmp_path / "present.txt"))
    assert not files.exists(str(tmp_path / "absent.txt"))


def test_read_bytes_of_a_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        files.read_bytes(str(tmp_path / "absent.txt"))


@pytest.mark.parametrize(
    ("url", "parts", "expected"),
    [
        ("s3://bucket/prefix/", ("models", "churn"), "s3://bucket/prefix/models/churn"),
        ("s3://bucket", ("batch.parquet",), "s3://bucket/batch.parquet"),
        ("/data/", ("batch.csv",), "/data/batch.csv"),
        ("", ("models", "current.json"), "models/current.json"),
    ],
)
def test_join_uses_slashes_whatever_the_scheme(url: str, parts: tuple[str, ...], expected: str) -> None:
    assert files.join(url, *parts) == expected
