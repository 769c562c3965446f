"""One code path for local paths, file:// and s3:// URLs (through fsspec/s3fs).

Writes are atomic: a reader sees either the previous object or the complete new one, never a
half-written file. Locally that is a temporary sibling plus ``os.replace``; on object stores a
single PUT of the whole body is atomic by the protocol.
"""

from __future__ import annotations

import os
import posixpath
import tempfile
from collections.abc import Mapping
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

StorageOptions = Mapping[str, Any]
FILE_MODE = 0o644


def filesystem(url: str, storage_options: StorageOptions | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return the filesystem serving ``url`` and the path inside it."""
    fs, path = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    return fs, path


def join(url: str, *parts: str) -> str:
    """Join URL segments with ``/`` whatever the scheme (``os.path.join`` would break s3://)."""
    return posixpath.join(url.rstrip("/"), *parts) if url else posixpath.join(*parts)


def read_bytes(url: str, storage_options: StorageOptions | None = None) -> bytes:
    fs, path = filesystem(url, storage_options)
    return fs.cat_file(path)


def exists(url: str, storage_options: StorageOptions | None = None) -> bool:
    fs, path = filesystem(url, storage_options)
    return fs.exists(path)


def write_bytes_atomic(url: str, data: bytes, storage_options: StorageOptions | None = None) -> None:
    """Write ``data`` to ``url`` so that no reader ever sees a partial file."""
    fs, path = filesystem(url, storage_options)
    if isinstance(fs, LocalFileSystem):
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, FILE_MODE)  # mkstemp creates 0600; others (e.g. the webserver's user) must read it
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    else:
        fs.pipe_file(path, data)
        fs.invalidate_cache(posixpath.dirname(path))


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
