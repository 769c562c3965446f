"""The exceptions green-pipeline raises: each names the file, column or setting at fault."""

from __future__ import annotations

from typing import ClassVar


class GreenPipelineError(Exception):
    """Base class: anything the pipeline refuses on purpose, with a message saying what to do."""

    #: True when the fault lies in one batch alone: that batch is quarantined and ``green-pipeline run`` goes on with
    #: the later ones. Any other refusal (a setting, the store's integrity) would meet every later batch too, so it
    #: stops the run.
    quarantines_batch: ClassVar[bool] = False


class InvalidConfigError(GreenPipelineError):
    """A setting is missing, unknown or out of range."""


class InvalidBatchError(GreenPipelineError):
    """A batch file cannot be used: unreadable, empty, or not matching the dataset schema."""

    quarantines_batch = True


class InvalidBatchKeyError(InvalidBatchError):
    """A partition key is not a plain file name: joined to the data or artifacts URL it would leave that folder."""


class DriftDetectionError(GreenPipelineError):
    """Evidently could not compare the batch with the reference data."""


class TrainingError(GreenPipelineError):
    """A model could not be trained on the data given (e.g. a single class in the labels)."""


class IncompatibleSourceError(TrainingError):
    """The model a new model name transfers from (``model_store.transfer_from``) learned from a column the new
    segment's batches lack: its trees cannot score them. Every later batch would lack it too, so the run stops."""


class StorageAccessError(GreenPipelineError):
    """A folder or object store cannot be reached or refuses the request: its endpoint, credentials or bucket."""


class StoreError(GreenPipelineError):
    """The model store cannot serve the request (no such version, nothing deployed yet)."""


class StoreIntegrityError(StoreError):
    """A stored file does not match its recorded checksum: it is refused, never loaded."""


class StoreConflictError(StoreError):
    """Another writer changed the store first (e.g. a concurrent promotion won); nothing of theirs was overwritten."""


class EventLogError(GreenPipelineError):
    """A materialization in the event log lacks a field of the metadata contract (orchestration.metadata)."""
