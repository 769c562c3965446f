"""Jobs over the batch-partitioned assets; all of them run in one process (one codecarbon start, no forks)."""

from dagster import AssetSelection, define_asset_job, in_process_executor

#: Runs sharing this tag value are serialized by the queued run coordinator (see dagster.yaml), because
#: each batch is judged against the model the previous batch deployed.
MODEL_LANE_TAG = {"green_pipeline/lane": "model"}

MONITORING_ASSETS = AssetSelection.assets("ingested_batch", "validated_batch", "drift_report", "predictions")
RETRAINING_ASSETS = AssetSelection.assets("retrained_model", "model_evaluation", "compressed_model", "deployed_model")

green_pipeline_job = define_asset_job(
    "green_pipeline_job",
    selection=MONITORING_ASSETS | RETRAINING_ASSETS,
    executor_def=in_process_executor,
    tags=MODEL_LANE_TAG,
    description="A batch end to end: ingest, validate, drift; retrain, evaluate, compress, deploy only if needed.",
)

monitoring_job = define_asset_job(
    "monitoring_job",
    selection=MONITORING_ASSETS,
    executor_def=in_process_executor,
    tags=MODEL_LANE_TAG,
    description="Ingest, validate and check drift; the drift sensor launches retraining when it is needed.",
)

retraining_job = define_asset_job(
    "retraining_job",
    selection=RETRAINING_ASSETS,
    executor_def=in_process_executor,
    tags=MODEL_LANE_TAG,
    description="Retrain, evaluate, compress and deploy for a batch whose drift report asks for it.",
)

energy_ledger_job = define_asset_job(
    "energy_ledger_job",
    selection=AssetSelection.assets("energy_ledger"),
    executor_def=in_process_executor,
    description="Refresh the energy ledger (per asset, per run, avoided energy, chart) from the event log.",
)
