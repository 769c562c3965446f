from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from green_pipeline.store import files


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


def test_read_snapshot_of_a_missing_file_is_none_and_of_a_file_its_bytes(tmp_path: Path) -> None:
    files.write_bytes_atomic(str(tmp_path / "current.json"), b"v1")

    assert files.read_snapshot(str(tmp_path / "absent.json")) is None
    assert files.read_snapshot(str(tmp_path / "current.json")).data == b"v1"


def test_replace_bytes_if_writes_only_over_the_state_that_was_read(tmp_path: Path) -> None:
    pointer = str(tmp_path / "current.json")
    files.write_bytes_atomic(pointer, b"v1")
    read = files.read_snapshot(pointer)
    files.write_bytes_atomic(pointer, b"v2")  # another writer, after our read

    assert not files.replace_bytes_if(pointer, b"v3", read)
    assert files.read_bytes(pointer) == b"v2"
    assert files.replace_bytes_if(pointer, b"v3", files.read_snapshot(pointer))
    assert files.read_bytes(pointer) == b"v3"


def test_replace_bytes_if_expecting_no_file_creates_it_only_if_still_absent(tmp_path: Path) -> None:
    pointer = str(tmp_path / "current.json")

    assert files.replace_bytes_if(pointer, b"v1", None)
    assert not files.replace_bytes_if(pointer, b"v2", None)
    assert files.read_bytes(pointer) == b"v1"
    assert files.list_files(str(tmp_path)) == {"current.json": 2}  # the lock file is hidden, no temp file is left


def test_write_bytes_exclusive_never_replaces_and_leaves_no_temp_files(tmp_path: Path) -> None:
    claim = str(tmp_path / "v0001" / "metadata.json")

    assert files.write_bytes_exclusive(claim, b"first")
    assert not files.write_bytes_exclusive(claim, b"second")
    assert files.read_bytes(claim) == b"first"
    assert os.listdir(tmp_path / "v0001") == ["metadata.json"]
    assert stat.S_IMODE(os.stat(claim).st_mode) == files.FILE_MODE
