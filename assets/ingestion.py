"""Ingestion group: read a batch file from the data URL, then validate it against the model's schema."""

from typing import Any

import pandas as pd
from dagster import AssetExecutionContext, AssetIn, MetadataValue, Output

from green_pipeline.assets.metering import metered_asset
from green_pipeline.assets.partitions import batch_partitions
from green_pipeline.data.batches import open_batch
from green_pipeline.data.datasets import DatasetBatch, read_part
from green_pipeline.data.schema import batch_columns, infer_schema
from green_pipeline.data.validation import ignored_columns_warning, validate_batch
from green_pipeline.orchestration.cluster_batches import validate_dataset
from green_pipeline.orchestration.metadata import INGESTED_BATCH, VALIDATED_BATCH
from green_pipeline.orchestration.resources import (
    ArtifactStorage,
    DaskResource,
    DatasetResource,
    EnergyResource,
    ModelStoreResource,
)
from green_pipeline.store import files
from green_pipeline.store.model_store import dropped_features, schema_from_dict


@metered_asset(
    key=INGESTED_BATCH, partitions_def=batch_partitions, group_name="ingestion", io_manager_key="artifact_io_manager"
)
def ingested_batch(
    context: AssetExecutionContext, dataset: DatasetResource, model_store: ModelStoreResource
) -> Output[pd.DataFrame | DatasetBatch]:
    """The batch (a file, or a Parquet dataset folder), reduced on read to the serving model's (or the configured)
    columns. A dataset past ``dataset.max_local_bytes`` is only opened (its footers read): the steps after this one
    process it part by part on the Dask cluster.

    The columns a feature selection dropped are left unread without a warning: the serving version chose not to
    need them (its ``dropped_features``)."""
    source = _source(dataset, context.partition_key)
    serving = model_store.store().current_metadata()
    batch = open_batch(
        dataset.data_url,
        context.partition_key,
        dataset.storage_options(),
        max_rows=dataset.max_rows,
        max_bytes=dataset.max_bytes,
        max_memory_bytes=dataset.memory_budget(),
        max_local_bytes=dataset.max_local_bytes,
        columns=batch_columns(schema_from_dict(serving["schema"]) if serving else None, dataset.to_settings()),
    )
    unexpected = [column for column in batch.unread_columns if column not in dropped_features(serving)]
    if unexpected:
        context.log.warning(f"{source}: {ignored_columns_warning(unexpected)}")
    if isinstance(batch, DatasetBatch):
        return Output(batch, metadata={**dataset_metadata(batch), "source": MetadataValue.path(source)})
    frame = batch.frame
    return Output(
        frame,
        metadata={
            "rows": len(frame),
            "columns": len(frame.columns),
            "unread_columns": MetadataValue.json(list(batch.unread_columns)),
            "estimated_read_bytes": batch.estimated_bytes,
            "memory_bytes": int(frame.memory_usage(index=False, deep=True).sum()),
            "source": MetadataValue.path(source),
            "engine": "in_process",
        },
    )


@metered_asset(
    key=VALIDATED_BATCH,
    ins={"ingested_batch": AssetIn(INGESTED_BATCH, dagster_type=Any)},
    partitions_def=batch_partitions,
    group_name="ingestion",
    io_manager_key="artifact_io_manager",
)
def validated_batch(
    context: AssetExecutionContext,
    ingested_batch: pd.DataFrame | DatasetBatch,
    dataset: DatasetResource,
    model_store: ModelStoreResource,
    dask: DaskResource,
    energy: EnergyResource,
    artifacts: ArtifactStorage,
) -> Output[pd.DataFrame | DatasetBatch]:
    """The batch checked against the serving model's schema (or the dataset config for the first model). A dataset
    batch is validated part by part on the cluster, into a validated dataset among this run's artefacts."""
    source = _source(dataset, context.partition_key)
    schema = model_store.store().current_schema() or infer_schema(
        first_rows(ingested_batch, dataset.storage_options()), dataset.to_settings(), source
    )
    if isinstance(ingested_batch, DatasetBatch):
        out_url = artifacts.url(*VALIDATED_BATCH.path, context.partition_key, context.run.run_id)
        clean, report, cluster = validate_dataset(
            dask, energy, artifacts, ingested_batch, schema, dataset.storage_options(), out_url
        )
        memory_bytes = clean.in_memory_bytes
    else:
        clean, report = validate_batch(ingested_batch, schema, source)
        memory_bytes, cluster = int(clean.memory_usage(index=False, deep=True).sum()), {}
    for warning in report.warnings:
        context.log.warning(f"{source}: {warning}")
    return Output(
        clean,
        metadata={
            "rows": report.rows,
            "feature_columns": report.columns,
            "positive_rate": report.positive_rate,
            "memory_bytes": memory_bytes,
            "warnings": MetadataValue.json(list(report.warnings)),
            **cluster,
        },
    )


def dataset_metadata(batch: DatasetBatch) -> dict[str, object]:
    """What the UI shows of a dataset batch the cluster processes."""
    return {
        "rows": batch.rows,
        "columns": len(batch.columns),
        "parts": len(batch.parts),
        "unread_columns": MetadataValue.json(list(batch.unread_columns)),
        "estimated_memory_bytes": batch.in_memory_bytes,
        "engine": "dask",
    }


def first_rows(batch: pd.DataFrame | DatasetBatch, storage_options: dict[str, Any]) -> pd.DataFrame:
    """The rows a first model's schema is inferred from: the batch, or a dataset's first part."""
    if isinstance(batch, pd.DataFrame):
        return batch
    return read_part(batch.parts[0].url, batch.columns, storage_options)


def _source(dataset: DatasetResource, partition_key: str) -> str:
    """The batch file's URL, the key checked before it is joined to the data URL."""
    return files.join(dataset.data_url, files.validate_batch_key(partition_key))
