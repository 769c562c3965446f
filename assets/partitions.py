"""One dynamic partition per batch file, keyed by the file name (registered by the sensor or the CLI)."""

from dagster import DynamicPartitionsDefinition

BATCHES_PARTITIONS_NAME = "batches"
batch_partitions = DynamicPartitionsDefinition(name=BATCHES_PARTITIONS_NAME)
