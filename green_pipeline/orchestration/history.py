"""The gate's memory, read back from the event log: earlier batches' decisions and deployments, and pooled rows.

Hysteresis, learning from wasted retrains and pooling all need what happened to the batches before this one. The
event log already holds it, written through the metadata contract (``DriftDecision``, ``DeploymentRecord``), so
nothing else is stored; the core (``gate_history``) turns it into the figures the decision uses.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pandas as pd
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

from green_pipeline.errors import EventLogError
from green_pipeline.orchestration.io_manager import ARTIFACT_URL
from green_pipeline.orchestration.metadata import (
    DEPLOYED_MODEL,
    DRIFT_REPORT,
    VALIDATED_BATCH,
    DeploymentRecord,
    DriftDecision,
)
from green_pipeline.orchestration.resources import ArtifactStorage
from green_pipeline.training.policy import GateHistory, Outcome, PastBatch, Trigger, gate_history

#: Drift reports read per query: a decision usually needs only those since the last promotion.
HISTORY_PAGE = 10


def gate_history_of(instance: DagsterInstance, batch: str) -> GateHistory:
    """What the batches judged before ``batch`` (in the order their latest drift reports were written) tell the gate.

    Read newest first, back to the last promoted retrain only: every figure of the history counts from there or
    later (streaks from the last retrain, wasted retrains from the last promotion, the pool at the end). Reading
    every report made each decision dearer as the stream grew (a drift report's metadata takes about 6 ms of CPU to
    deserialize; the lifecycle bench's drift step rose from about 0.2 to 0.4 mWh over 60 batches).

    A drift report this code location did not write (no decision in its metadata) is passed over, as the drift
    sensor does; ``batch``'s own earlier reports are left out, so a rerun is judged like the first run.
    """
    deployments = dict(_latest_first(instance, DEPLOYED_MODEL))
    recent: list[PastBatch] = []
    for partition, metadata in _latest_first(instance, DRIFT_REPORT):
        if partition == batch:
            continue
        try:
            decision = DriftDecision.from_metadata(metadata)
        except EventLogError:
            continue
        deployment = deployments.get(partition)
        promoted = DeploymentRecord.from_metadata(deployment).promoted if deployment is not None else None
        recent.append(past_batch(partition, decision, promoted))
        if promoted:
            break
    return gate_history(recent[::-1])


def past_batch(batch: str, decision: DriftDecision, promoted: bool | None) -> PastBatch:
    """An earlier batch as the gate needs it; a report written before the gate recorded its outcome counts as
    retrain or keep serving, with no signal."""
    retrained = Outcome.RETRAIN if decision.retrain_required else Outcome.KEEP_SERVING
    return PastBatch(
        batch=batch,
        outcome=Outcome(decision.outcome) if decision.outcome else retrained,
        trigger=Trigger(decision.trigger) if decision.trigger else None,
        drift_signal=bool(decision.drift_signal),
        quality_signal=bool(decision.quality_signal),
        promoted=promoted,
    )


def load_batches(
    instance: DagsterInstance, artifacts: ArtifactStorage, batches: Sequence[str]
) -> dict[str, pd.DataFrame]:
    """The validated rows of each of ``batches``, as their latest ``validated_batch`` materialization stored them.

    Used by the drift step to judge pooled batches with the current one, and by ``retrained_model`` to train on them.
    """
    frames = {}
    for batch in batches:
        metadata = latest_metadata(instance, VALIDATED_BATCH, batch)
        url = metadata.get(ARTIFACT_URL) if metadata is not None else None
        if url is not None and str(url.value).endswith(".json"):
            raise EventLogError(
                f"batch {batch!r} is a Parquet dataset processed on the Dask cluster (past dataset.max_local_bytes): "
                "its rows are never loaded into one process, so it cannot be pooled with other batches nor its HTML "
                "drift report rendered on demand (its drift step renders it: policy.drift_report_html: always). "
                "Raise dataset.max_local_bytes for datasets this small."
            )
        payload = artifacts.read(str(url.value)) if url is not None else None
        if payload is None:
            raise EventLogError(
                f"pooled batch {batch!r}: no stored validated_batch under {artifacts.base_url} (its latest "
                f"materialization names {url.value if url is not None else 'no artifact_url'}); rerun that batch's "
                "monitoring_job, or delete its partition to drop its rows from the pool."
            )
        frames[batch] = pd.read_parquet(io.BytesIO(payload))
    return frames


def latest_metadata(instance: DagsterInstance, key: AssetKey, batch: str) -> Mapping[str, Any] | None:
    """The metadata of ``batch``'s latest materialization of ``key``; None if it was never materialized."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, asset_partitions=[batch]), limit=1
    ).records
    materialization = records[0].asset_materialization if records else None
    return materialization.metadata if materialization is not None else None


def _latest_first(instance: DagsterInstance, key: AssetKey) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Each partition's latest materialization of ``key``, newest first, read a page at a time as it is consumed."""
    seen: set[str] = set()
    cursor = None
    while True:
        page = instance.fetch_materializations(
            AssetRecordsFilter(key), limit=HISTORY_PAGE, cursor=cursor, ascending=False
        )
        for record in page.records:
            partition, materialization = record.partition_key, record.asset_materialization
            if partition is not None and materialization is not None and partition not in seen:
                seen.add(partition)
                yield partition, materialization.metadata
        if not page.has_more:
            return
        cursor = page.cursor
