"""The IO manager of every asset: step outputs stored as artefacts, per asset, partition and run.

Dagster's default IO manager pickles and writes in place; this one never unpickles and never leaves a truncated
file where the event log says a complete one is.
"""

import contextlib
import dataclasses
import io
import json
from collections.abc import Iterator
from typing import Any

import pandas as pd
from dagster import (
    AssetRecordsFilter,
    Failure,
    InitResourceContext,
    InputContext,
    IOManager,
    OutputContext,
    io_manager,
)
from pydantic import TypeAdapter

from green_pipeline.errors import GreenPipelineError
from green_pipeline.orchestration.resources import ArtifactStorage
from green_pipeline.records import RECORD_TYPES

#: Materialization metadata naming the stored output, which later runs read back.
ARTIFACT_URL = "artifact_url"


class ArtifactIOManager(IOManager):
    """Stores step outputs as artefacts: DataFrames as Parquet, records as JSON; every write is atomic.

    Each output is kept per asset, partition and run (``<asset>/<partition>/<run id>.<suffix>``), so two runs of
    one batch never read each other's outputs: a step reads what its own run produced, and a run that did not
    produce an input (a retraining job after a monitoring run) reads the one its latest materialization recorded.
    Dagster's default IO manager pickles and writes in place; this one never unpickles and never leaves a
    truncated file where the event log says a complete one is.
    """

    def __init__(self, artifacts: ArtifactStorage) -> None:
        self.artifacts = artifacts

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        with refusals_not_retried():
            self._store(context, obj)

    def load_input(self, context: InputContext) -> Any:
        with refusals_not_retried():
            return self._load(context)

    def _store(self, context: OutputContext, obj: Any) -> None:
        if isinstance(obj, pd.DataFrame):
            buffer = io.BytesIO()
            obj.to_parquet(buffer, index=False)
            payload, suffix = buffer.getvalue(), "parquet"
        elif dataclasses.is_dataclass(obj) and type(obj).__name__ in RECORD_TYPES:
            body = TypeAdapter(type(obj)).dump_python(obj, mode="json")
            payload, suffix = json.dumps({"type": type(obj).__name__, "value": body}).encode(), "json"
        else:
            raise GreenPipelineError(f"{context.asset_key.to_user_string()}: cannot store a {type(obj).__name__}.")
        url = self.artifacts.url(*context.asset_key.path, _partition(context), f"{context.run_id}.{suffix}")
        self.artifacts.write(url, payload)
        context.add_output_metadata({ARTIFACT_URL: url})

    def _load(self, context: InputContext) -> Any:
        url = self._source_url(context)
        payload = self.artifacts.read(url) if url else None
        if url is None or payload is None:
            # Retrying cannot make a missing upstream output appear: fail at once, past the jobs' RetryPolicy.
            raise Failure(
                description=f"{context.asset_key.to_user_string()}: no stored output under "
                f"{self.artifacts.base_url}; materialize the upstream asset for this partition first.",
                allow_retries=False,
            )
        if url.endswith(".parquet"):
            return pd.read_parquet(io.BytesIO(payload))
        document = json.loads(payload)
        return TypeAdapter(RECORD_TYPES[document["type"]]).validate_python(document["value"])

    def _source_url(self, context: InputContext) -> str | None:
        """This run's output of the upstream asset if it made one, else the one its latest materialization names."""
        partition = _partition(context)
        this_run = context.step_context.run_id
        for suffix in ("parquet", "json"):
            url = self.artifacts.url(*context.asset_key.path, partition, f"{this_run}.{suffix}")
            if self.artifacts.exists(url):
                return url
        records = context.instance.fetch_materializations(
            AssetRecordsFilter(
                asset_key=context.asset_key, asset_partitions=[partition] if context.has_asset_partitions else None
            ),
            limit=1,
        ).records
        materialization = records[0].asset_materialization if records else None
        recorded = materialization.metadata.get(ARTIFACT_URL) if materialization else None
        return str(recorded.value) if recorded is not None else None


#: Failure metadata of a refused step: the error's class, and whether only its batch is at fault (quarantined).
ERROR_CLASS = "error_class"
QUARANTINED = "quarantined"


@contextlib.contextmanager
def refusals_not_retried() -> Iterator[None]:
    """A ``GreenPipelineError`` (bad input, integrity, config) would fail the same way again: it becomes a ``Failure``
    that the jobs' ``RetryPolicy`` does not retry, prefixed by the error's class so the UI says what kind it is.

    Its metadata names the class and says whether the batch is quarantined (``quarantines_batch``): the runner reads
    that from the step failure event to go on with later batches, rather than parsing the message.
    """
    try:
        yield
    except GreenPipelineError as exc:
        raise Failure(
            description=f"{type(exc).__name__}: {exc}",
            metadata={ERROR_CLASS: type(exc).__name__, QUARANTINED: exc.quarantines_batch},
            allow_retries=False,
        ) from exc


def _partition(context: InputContext | OutputContext) -> str:
    return context.asset_partition_key if context.has_asset_partitions else "__all__"


@io_manager(required_resource_keys={"artifacts"})
def artifact_io_manager(init_context: InitResourceContext) -> ArtifactIOManager:
    """Built on the run's configured ``artifacts`` resource, so its base URL is the one the run was given."""
    return ArtifactIOManager(init_context.resources.artifacts)
