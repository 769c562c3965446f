"""Ingestion group: read a batch file from the data URL, then validate it against the model's schema."""

import pandas as pd
from dagster import AssetExecutionContext, AssetIn, MetadataValue, Output

from green_pipeline.assets.metering import metered_asset
from green_pipeline.assets.partitions import batch_partitions
from green_pipeline.data.batches import load_batch
from green_pipeline.data.schema import batch_columns, infer_schema
from green_pipeline.data.validation import ignored_columns_warning, validate_batch
from green_pipeline.orchestration.metadata import INGESTED_BATCH, VALIDATED_BATCH
from green_pipeline.orchestration.resources import DatasetResource, ModelStoreResource
from green_pipeline.store import files
from green_pipeline.store.model_store import dropped_features, schema_from_dict


@metered_asset(
    key=INGESTED_BATCH, partitions_def=batch_partitions, group_name="ingestion", io_manager_key="artifact_io_manager"
)
def ingested_batch(
    context: AssetExecutionContext, dataset: DatasetResource, model_store: ModelStoreResource
) -> Output[pd.DataFrame]:
    """The batch file of this partition, reduced on read to the serving model's (or the configured) columns.

    The columns a feature selection dropped are left unread without a warning: the serving version chose not to
    need them (its ``dropped_features``)."""
    source = _source(dataset, context.partition_key)
    serving = model_store.store().current_metadata()
    batch = load_batch(
        dataset.data_url,
        context.partition_key,
        dataset.storage_options(),
        max_rows=dataset.max_rows,
        max_bytes=dataset.max_bytes,
        max_memory_bytes=dataset.memory_budget(),
        columns=batch_columns(schema_from_dict(serving["schema"]) if serving else None, dataset.to_settings()),
    )
    unexpected = [column for column in batch.unread_columns if column not in dropped_features(serving)]
    if unexpected:
        context.log.warning(f"{source}: {ignored_columns_warning(unexpected)}")
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
        },
    )


@metered_asset(
    key=VALIDATED_BATCH,
    ins={"ingested_batch": AssetIn(INGESTED_BATCH)},
    partitions_def=batch_partitions,
    group_name="ingestion",
    io_manager_key="artifact_io_manager",
)
def validated_batch(
    context: AssetExecutionContext,
    ingested_batch: pd.DataFrame,
    dataset: DatasetResource,
    model_store: ModelStoreResource,
) -> Output[pd.DataFrame]:
    """The batch checked against the serving model's schema (or the dataset config for the first model)."""
    source = _source(dataset, context.partition_key)
    schema = model_store.store().current_schema() or infer_schema(ingested_batch, dataset.to_settings(), source)
    clean, report = validate_batch(ingested_batch, schema, source)
    for warning in report.warnings:
        context.log.warning(f"{source}: {warning}")
    return Output(
        clean,
        metadata={
            "rows": report.rows,
            "feature_columns": report.columns,
            "positive_rate": report.positive_rate,
            "memory_bytes": int(clean.memory_usage(index=False, deep=True).sum()),
            "warnings": MetadataValue.json(list(report.warnings)),
        },
    )


def _source(dataset: DatasetResource, partition_key: str) -> str:
    """The batch file's URL, the key checked before it is joined to the data URL."""
    return files.join(dataset.data_url, files.validate_batch_key(partition_key))
