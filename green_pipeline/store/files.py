"""One code path for local paths, file:// and s3:// URLs (through fsspec/s3fs).

Writes are atomic: a reader sees either the previous object or the complete new one, never a
half-written file. Locally that is a temporary sibling plus ``os.replace``; on object stores a
single PUT of the whole body is atomic by the protocol.

Writers racing each other use the conditional writes: ``write_bytes_exclusive`` (create only if absent:
a hard link locally, ``If-None-Match: *`` on S3) and ``replace_bytes_if`` (replace only if unchanged since a
``read_snapshot``: a lock plus a checksum locally, ``If-Match`` on the ETag on S3). s3fs caches listings
for the life of the process, so existence checks drop the cache first: another process may have written since.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import posixpath
import tempfile
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from green_pipeline.errors import InvalidBatchKeyError

StorageOptions = Mapping[str, Any]
FILE_MODE = 0o644
#: S3 error codes of a conditional write that lost: the object changed, or a concurrent one is in flight.
LOST_CONDITION_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})


@dataclass(frozen=True)
class Snapshot:
    """A file's bytes and a tag of that state (the ETag on S3, the sha256 elsewhere), for ``replace_bytes_if``."""

    data: bytes
    tag: str


def filesystem(url: str, storage_options: StorageOptions | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return the filesystem serving ``url`` and the path inside it."""
    fs, path = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    return fs, path


def join(url: str, *parts: str) -> str:
    """Join URL segments with ``/`` whatever the scheme (``os.path.join`` would break s3://)."""
    return posixpath.join(url.rstrip("/"), *parts) if url else posixpath.join(*parts)


def validate_batch_key(key: str) -> str:
    """Refuse a partition key that could leave its folder once joined to a URL: the data folder, artifacts, reports.

    The one check of keys, applied wherever one becomes part of a path. Percent-encoded forms (``%2E%2E/x.csv``,
    ``..%2Fx.csv``) are checked decoded too: some filesystems unquote.
    """
    for form in (key, urllib.parse.unquote(key)):
        if not form or form != posixpath.basename(form) or form in (".", "..") or "\\" in form or "\x00" in form:
            raise InvalidBatchKeyError(
                f"batch name {key!r} is not a plain file name; partitions must name a file directly under "
                "dataset.data_url, and their outputs are files under artifacts.base_url: no '/', '\\', '..', "
                "NUL or absolute paths, even percent-encoded. Delete the partition and rename the batch file."
            )
    return key


def read_bytes(url: str, storage_options: StorageOptions | None = None) -> bytes:
    fs, path = filesystem(url, storage_options)
    payload: bytes = fs.cat_file(path)
    return payload


def exists(url: str, storage_options: StorageOptions | None = None) -> bool:
    fs, path = filesystem(url, storage_options)
    fs.invalidate_cache(path)
    return bool(fs.exists(path))


def read_snapshot(url: str, storage_options: StorageOptions | None = None) -> Snapshot | None:
    """The file's bytes and state tag, or None if it does not exist; read from the server, never from a cache."""
    fs, path = filesystem(url, storage_options)
    try:
        # The ETag is read before the body: if the object changes in between, the tag is the older one and a
        # conditional replace based on it fails, which is the safe side.
        tag = fs.info(path, refresh=True).get("ETag") if _is_s3(fs) else None
        data = fs.cat_file(path)
    except FileNotFoundError:
        return None
    return Snapshot(data, tag or hashlib.sha256(data).hexdigest())


def write_bytes_atomic(url: str, data: bytes, storage_options: StorageOptions | None = None) -> None:
    """Write ``data`` to ``url`` so that no reader ever sees a partial file."""
    fs, path = filesystem(url, storage_options)
    if isinstance(fs, LocalFileSystem):
        tmp = _local_temp_file(os.path.dirname(path), data)
        try:
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    else:
        fs.pipe_file(path, data)
        fs.invalidate_cache(posixpath.dirname(path))


def write_bytes_exclusive(url: str, data: bytes, storage_options: StorageOptions | None = None) -> bool:
    """Create ``url`` with ``data`` only if nothing is there; False (nothing written) if another writer was first.

    Atomic as well: the complete file appears at once, locally by hard-linking a finished temporary file
    (``link`` fails if the name exists), on S3 by a PUT with ``If-None-Match: *``.
    """
    fs, path = filesystem(url, storage_options)
    if isinstance(fs, LocalFileSystem):
        tmp = _local_temp_file(os.path.dirname(path), data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        return True
    return _conditional_put(fs, url, path, data, {"mode": "create"})


def replace_bytes_if(
    url: str, data: bytes, expected: Snapshot | None, storage_options: StorageOptions | None = None
) -> bool:
    """Replace ``url`` with ``data`` only if it is still as ``expected`` was read (None: still absent).

    Returns False, writing nothing, when another writer changed it first. Locally the check and the rename
    happen under an exclusive ``flock`` (released by the OS if the holder dies); on S3 the PUT carries
    ``If-Match`` with the ETag read (or ``If-None-Match: *``), so the server decides and two writers cannot both win.
    """
    fs, path = filesystem(url, storage_options)
    if isinstance(fs, LocalFileSystem):
        with _local_lock(path):
            current = read_snapshot(url, storage_options)
            if (current and current.tag) != (expected and expected.tag):
                return False
            write_bytes_atomic(url, data, storage_options)
            return True
    condition: dict[str, str] = {"IfMatch": expected.tag} if expected else {"mode": "create"}
    return _conditional_put(fs, url, path, data, condition)


def list_files(url: str, storage_options: StorageOptions | None = None) -> dict[str, int]:
    """Names and sizes of the files directly under ``url``, hidden and temporary files excluded.

    Names starting with ``.`` or ``_`` are skipped: uploaders and Spark use them for partial files.
    The listing cache is dropped first so a polling caller sees new objects.
    """
    fs, path = filesystem(url, storage_options)
    fs.invalidate_cache(path)
    if not fs.exists(path):
        return {}
    entries = fs.ls(path, detail=True)
    files: dict[str, int] = {}
    for entry in entries:
        name = posixpath.basename(entry["name"].rstrip("/"))
        if entry.get("type") != "file" or name.startswith((".", "_")):
            continue
        files[name] = int(entry.get("size") or 0)
    return dict(sorted(files.items()))


def _local_temp_file(directory: str, data: bytes) -> str:
    """A complete, fsynced temporary sibling (hidden: listings skip it) for the caller to rename or link."""
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, FILE_MODE)  # mkstemp creates 0600; others (e.g. the webserver's user) must read it
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


@contextlib.contextmanager
def _local_lock(path: str) -> Iterator[None]:
    """Hold an exclusive lock on a hidden sibling of ``path`` (threads and processes alike wait for it)."""
    directory, name = os.path.split(path)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, f".{name}.lock"), "ab") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        yield


def _is_s3(fs: fsspec.AbstractFileSystem) -> bool:
    protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
    return bool(protocols & {"s3", "s3a"})


def _conditional_put(
    fs: fsspec.AbstractFileSystem, url: str, path: str, data: bytes, condition: dict[str, str]
) -> bool:
    """One PUT that the server applies only if ``condition`` holds; False if it did not.

    s3fs passes ``IfMatch`` and (for ``mode="create"``) ``IfNoneMatch: *`` to ``put_object``, but switches to a
    multipart upload above 100 MB, where it drops them: only small files (claims, pointers) are written this way.
    """
    if not _is_s3(fs):
        raise NotImplementedError(f"{url}: exclusive and conditional writes need a local path or an s3:// URL.")
    try:
        fs.pipe_file(path, data, **condition)
    except (FileExistsError, FileNotFoundError):  # If-None-Match lost / the object If-Match named is gone
        return False
    except OSError as exc:
        if _error_code(exc) in LOST_CONDITION_CODES:
            return False
        raise
    finally:
        fs.invalidate_cache(path)
    return True


def _error_code(exc: BaseException) -> str | None:
    """The S3 error code behind an exception s3fs translated (it keeps botocore's ClientError as the cause)."""
    response = getattr(exc.__cause__, "response", None) or getattr(exc, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None
