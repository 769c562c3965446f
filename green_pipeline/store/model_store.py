"""A versioned model store at a URL (local path or s3://) that never serves a half-written model.

Layout under ``<url>/models/<name>/``: one folder per version holding ``model.txt`` (LightGBM text),
``reference.parquet`` (the rows the model was trained on, for drift detection), ``metadata.json``,
and ``manifest.json`` with the sha256 of each file, written last. ``current.json`` names the serving
version; it is switched only after the version is complete and verified, and every read verifies the
checksums before loading. Nothing is ever unpickled, and no machine code is stored or read: a compiled
engine is built where it serves, from the verified ``model.txt`` (``green_pipeline.compression.engines``).

Concurrent writers (two runs of one batch, a rollback during a run) cannot corrupt each other: a version
is claimed by creating its ``metadata.json`` exclusively, so two publishers never share a number, and
``current.json`` is replaced only if nobody changed it since it was read, so of two promotions one wins
and the other raises ``StoreConflictError``.
"""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import lightgbm as lgb
import pandas as pd

from green_pipeline.data.schema import FeatureSchema
from green_pipeline.errors import StoreConflictError, StoreError, StoreIntegrityError
from green_pipeline.store import files

MODEL_FILE = "model.txt"
REFERENCE_FILE = "reference.parquet"
METADATA_FILE = "metadata.json"
MANIFEST_FILE = "manifest.json"
#: The files of a version, the only ones read: another file listed in an old manifest (``model.lleaves.o``) is ignored.
VERSION_FILES = (METADATA_FILE, MODEL_FILE, REFERENCE_FILE)
POINTER_FILE = "current.json"
VERSION_PATTERN = re.compile(r"^v(\d{4,})$")
#: ``promote``'s default: replace whichever version serves (rollback, or a caller that judged nothing).
WHATEVER_SERVES = "*"
#: Numbers tried by one ``publish`` before it gives up: each failure means another publisher took that one.
MAX_CLAIM_ATTEMPTS = 100
#: The metadata key listing the columns a feature selection left out of a version's schema, its ancestors' included.
DROPPED_FEATURES_KEY = "dropped_features"


@dataclass(frozen=True)
class DeployedModel:
    version: str
    model_text: str
    booster: lgb.Booster
    schema: FeatureSchema
    reference: pd.DataFrame
    metadata: dict[str, Any]
    #: From the verified manifest; identifies the reference across loads (None for a model built outside a store).
    reference_sha256: str | None = None


def schema_to_dict(schema: FeatureSchema) -> dict[str, Any]:
    """Categories as an ordered list of pairs: the column order is the model's, and JSON objects get sorted."""
    return {
        "label": schema.label,
        "numeric": list(schema.numeric),
        "categorical": [[column, list(values)] for column, values in schema.categories.items()],
    }


def dropped_features(metadata: dict[str, Any] | None) -> tuple[str, ...]:
    """The columns a version's feature selection dropped (none for a version published before selection existed)."""
    return tuple((metadata or {}).get(DROPPED_FEATURES_KEY, ()))


def schema_from_dict(data: dict[str, Any]) -> FeatureSchema:
    return FeatureSchema(
        label=data["label"],
        numeric=tuple(data["numeric"]),
        categories={column: tuple(values) for column, values in data["categorical"]},
    )


class ModelStore:
    """Versions of one named model under a URL; see the module docstring for the layout."""

    def __init__(self, url: str, name: str = "churn", storage_options: files.StorageOptions | None = None) -> None:
        self.url = url
        self.name = name
        self.storage_options = dict(storage_options or {})
        self.root = files.join(url, "models", name)

    def current_version(self) -> str | None:
        return _pointed_version(files.read_snapshot(self._pointer(), self.storage_options))

    def versions(self) -> list[str]:
        """Complete versions (their manifest exists), oldest first."""
        return [v for v in self._version_folders() if files.exists(self._path(v, MANIFEST_FILE), self.storage_options)]

    def publish(
        self,
        model_text: str,
        schema: FeatureSchema,
        reference: pd.DataFrame,
        metadata: dict[str, Any],
    ) -> str:
        """Write a new complete version (not yet serving) and return its name.

        ``model_text`` is stored byte for byte (a quantized model must not be re-serialized at full precision).
        """
        buffer = io.BytesIO()
        reference.to_parquet(buffer, index=False)
        document = {**metadata, "model_name": self.name, "schema": schema_to_dict(schema)}
        version, metadata_payload = self._claim_version(document)
        payloads = {
            METADATA_FILE: metadata_payload,
            MODEL_FILE: model_text.encode(),
            REFERENCE_FILE: buffer.getvalue(),
        }
        for name, payload in payloads.items():
            if name != METADATA_FILE:
                files.write_bytes_atomic(self._path(version, name), payload, self.storage_options)
        manifest = {"version": version, "sha256": {n: hashlib.sha256(p).hexdigest() for n, p in payloads.items()}}
        files.write_bytes_atomic(
            self._path(version, MANIFEST_FILE), json.dumps(manifest, indent=2).encode(), self.storage_options
        )
        return version

    def promote(self, version: str, replacing: str | None = WHATEVER_SERVES) -> None:
        """Make ``version`` the serving one, after verifying every file of it (also used for rollback).

        ``replacing`` is the version the caller judged ``version`` against (None: nothing served then); if
        another one serves by now, nothing is written. Either way ``current.json`` is replaced only if it is
        still as read here, so of two concurrent promotions exactly one wins; the other gets StoreConflictError.
        """
        pointer = self._pointer()
        before = files.read_snapshot(pointer, self.storage_options)
        serving = _pointed_version(before)
        if replacing != WHATEVER_SERVES and serving != replacing:
            raise StoreConflictError(
                f"{pointer}: {serving or 'nothing'} serves, not {replacing or 'nothing'}, which {version} was judged "
                f"against; another run promoted meanwhile. {version} stays published; re-run the batch to judge "
                "it against the new champion, or promote it with `green-pipeline rollback`."
            )
        self._verified_files(version)
        document = json.dumps({"version": version, "promoted_at": datetime.now(UTC).isoformat()}).encode()
        if not files.replace_bytes_if(pointer, document, before, self.storage_options):
            raise StoreConflictError(
                f"{pointer} changed while {version} was being promoted: another promotion won and "
                f"{self.current_version() or 'nothing'} serves. Nothing was overwritten; re-run the batch."
            )

    def load(self, version: str | None = None) -> DeployedModel:
        """Load ``version`` (default: the serving one) after checking its checksums."""
        version = version or self.current_version()
        if version is None:
            raise StoreError(f"no model is deployed in {self.root}: run the pipeline once to train the first one.")
        expected = self._manifest(version)
        payloads = self._verified_files(version, expected=expected)
        metadata = json.loads(payloads[METADATA_FILE])
        model_text = payloads[MODEL_FILE].decode()
        return DeployedModel(
            version=version,
            model_text=model_text,
            booster=lgb.Booster(model_str=model_text),
            schema=schema_from_dict(metadata["schema"]),
            reference=pd.read_parquet(io.BytesIO(payloads[REFERENCE_FILE])),
            metadata=metadata,
            reference_sha256=expected[REFERENCE_FILE],
        )

    def load_current(self) -> DeployedModel | None:
        version = self.current_version()  # read once: a promotion in between must not switch the version
        return None if version is None else self.load(version)

    def metadata(self, version: str) -> dict[str, Any]:
        metadata: dict[str, Any] = json.loads(self._verified_files(version, only=(METADATA_FILE,))[METADATA_FILE])
        return metadata

    def current_metadata(self) -> dict[str, Any] | None:
        """The serving version's verified metadata (None when nothing serves); no model or reference is read."""
        version = self.current_version()
        return None if version is None else self.metadata(version)

    def current_schema(self) -> FeatureSchema | None:
        """The serving model's schema, from its verified metadata alone."""
        metadata = self.current_metadata()
        return None if metadata is None else schema_from_dict(metadata["schema"])

    def _manifest(self, version: str) -> dict[str, str]:
        """The sha256 of each file of a complete version, by file name."""
        if not VERSION_PATTERN.match(version):
            raise StoreError(f"{version!r} is not a version name (expected e.g. v0001).")
        manifest_url = self._path(version, MANIFEST_FILE)
        if not files.exists(manifest_url, self.storage_options):
            raise StoreError(f"version {version} of {self.root} does not exist or was never completed.")
        checksums: dict[str, str] = json.loads(files.read_bytes(manifest_url, self.storage_options))["sha256"]
        return checksums

    def _verified_files(
        self, version: str, only: tuple[str, ...] | None = None, expected: dict[str, str] | None = None
    ) -> dict[str, bytes]:
        expected = expected or self._manifest(version)
        payloads = {}
        for name in only or VERSION_FILES:
            if name not in expected:
                raise StoreIntegrityError(
                    f"{self._path(version, MANIFEST_FILE)} lists no sha256 for {name}; refusing to load {version}. "
                    "Roll back to another version with `green-pipeline rollback VERSION`."
                )
            payload = files.read_bytes(self._path(version, name), self.storage_options)
            if hashlib.sha256(payload).hexdigest() != expected[name]:
                raise StoreIntegrityError(
                    f"{self._path(version, name)} does not match its sha256 in the manifest; refusing to load it. "
                    "Roll back to another version with `green-pipeline rollback VERSION`."
                )
            payloads[name] = payload
        return payloads

    def _version_folders(self) -> list[str]:
        fs, path = files.filesystem(self.root, self.storage_options)
        fs.invalidate_cache(path)
        if not fs.exists(path):
            return []
        names = [posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False)]
        return sorted((n for n in names if VERSION_PATTERN.match(n)), key=lambda n: int(n[1:]))

    def _claim_version(self, document: dict[str, Any]) -> tuple[str, bytes]:
        """The next free version and its metadata.json, created exclusively: that file is the claim.

        Every number ever used keeps its folder (a crashed publish leaves one without a manifest), so a
        number is never reused; a claim lost to a concurrent publisher moves on to the next number.
        """
        folders = self._version_folders()
        number = int(folders[-1][1:]) + 1 if folders else 1
        for _ in range(MAX_CLAIM_ATTEMPTS):
            version = f"v{number:04d}"
            stamped = {**document, "version": version, "created_at": datetime.now(UTC).isoformat()}
            payload = json.dumps(stamped, indent=2, sort_keys=True, default=str).encode()
            if files.write_bytes_exclusive(self._path(version, METADATA_FILE), payload, self.storage_options):
                return version, payload
            number += 1
        raise StoreConflictError(
            f"{self.root}: no free version number in {MAX_CLAIM_ATTEMPTS} attempts; is a publisher looping?"
        )

    def _pointer(self) -> str:
        return files.join(self.root, POINTER_FILE)

    def _path(self, version: str, name: str) -> str:
        return files.join(self.root, version, name)


def _pointed_version(pointer: files.Snapshot | None) -> str | None:
    return None if pointer is None else str(json.loads(pointer.data)["version"])
