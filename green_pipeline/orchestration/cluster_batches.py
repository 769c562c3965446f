"""The steps' work on a dataset batch past ``dataset.max_local_bytes``, on the run's Dask cluster, metered per worker.

Each function runs one core call (``green_pipeline.distributed``) on the ``dask`` resource's client, inside
``metered_on_cluster``: the workers' energy is charged to the step, and the returned metadata names the workers
and hosts it ran on. The held-out rows of a batch (``held_out``) are computed once, by the first step that needs
them, and read back by the others from the artefacts.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Mapping
from typing import TypeVar

import pandas as pd
from distributed import Client

from green_pipeline.data.datasets import DatasetBatch
from green_pipeline.data.schema import DatasetSpec, FeatureSchema
from green_pipeline.data.validation import ValidationReport
from green_pipeline.distributed.metering import metered_on_cluster
from green_pipeline.distributed.partitions import (
    DatasetSplit,
    batch_seed,
    sample_parts,
    score_parts,
    split_parts,
    validate_parts,
)
from green_pipeline.distributed.retraining import ClusterBatch, retrain_dataset
from green_pipeline.drift.sampling import DriftSettings
from green_pipeline.orchestration.resources import ArtifactStorage, DaskResource, EnergyResource, RetrainPolicy
from green_pipeline.records import DriftAssessment
from green_pipeline.store import files
from green_pipeline.store.model_store import DeployedModel
from green_pipeline.training.retraining import Retrained

T = TypeVar("T")
#: The split's frames, in ``DatasetSplit``'s order.
_SPLIT_SIDES = ("valid", "test", "train_sample")


def on_cluster(dask: DaskResource, energy: EnergyResource, work: Callable[[Client], T]) -> tuple[T, dict[str, object]]:
    """``work(client)`` on the run's cluster, with the workers' energy charged to the step; its result and the
    metadata naming the workers, hosts and their energy."""
    client = dask.client()
    with metered_on_cluster(client, energy.to_settings()) as meter:
        result = work(client)
    return result, ({"engine": "dask", **meter.energy.as_metadata()} if meter.energy else {"engine": "dask"})


def validate_dataset(
    dask: DaskResource,
    energy: EnergyResource,
    artifacts: ArtifactStorage,
    batch: DatasetBatch,
    schema: FeatureSchema,
    storage_options: files.StorageOptions,
    out_url: str,
) -> tuple[DatasetBatch, ValidationReport, dict[str, object]]:
    """Each part validated on a worker and written under ``out_url`` (an artefact folder of this run)."""
    out_options = artifacts.options(out_url)
    (validated, report), metadata = on_cluster(
        dask, energy, lambda client: validate_parts(client, batch, schema, out_url, storage_options, out_options)
    )
    return validated, report, metadata


def drift_sample(
    dask: DaskResource,
    energy: EnergyResource,
    artifacts: ArtifactStorage,
    batch: DatasetBatch,
    settings: DriftSettings,
    name: str,
) -> tuple[pd.DataFrame, dict[str, object]]:
    """The rows the drift step judges: a uniform sample of ``settings.sample_rows`` rows on average (all rows when
    0), drawn part by part; the drift tests' error bounds then count the whole batch as the population."""
    fraction = 1.0 if not settings.caps(batch.rows) else settings.sample_rows / batch.rows
    options = artifacts.options(batch.url)
    return on_cluster(dask, energy, lambda client: sample_parts(client, batch, fraction, batch_seed(name), options))


def held_out(
    dask: DaskResource, energy: EnergyResource, artifacts: ArtifactStorage, batch: DatasetBatch, name: str
) -> tuple[DatasetSplit, dict[str, object]]:
    """The batch's held-out rows and training sample: read from the artefacts if a step of this batch's validated
    dataset computed them already, else computed on the cluster (one pass over the parts) and stored."""
    urls = {side: _split_url(artifacts, batch, name, f"{side}.parquet") for side in _SPLIT_SIDES}
    summary_url = _split_url(artifacts, batch, name, "split.json")
    summary = artifacts.read(summary_url)
    if summary is not None:
        figures = json.loads(summary)
        valid, test, train_sample = (pd.read_parquet(io.BytesIO(artifacts.read(urls[s]) or b"")) for s in _SPLIT_SIDES)
        split = DatasetSplit(figures["holdout"], valid, test, train_sample, figures["train_rows"])
        return split, {"held_out_rows": "stored"}
    options = artifacts.options(batch.url)
    split, metadata = on_cluster(dask, energy, lambda client: split_parts(client, batch, batch_seed(name), options))
    for side in _SPLIT_SIDES:
        buffer = io.BytesIO()
        getattr(split, side).to_parquet(buffer, index=False)
        artifacts.write(urls[side], buffer.getvalue())
    # Written last: a reader finds every frame, or computes them again.
    artifacts.write(summary_url, json.dumps({"holdout": split.holdout, "train_rows": split.train_rows}).encode())
    return split, {**metadata, "held_out_rows": "computed"}


def retrain_on_cluster(
    dask: DaskResource,
    energy: EnergyResource,
    artifacts: ArtifactStorage,
    batch: DatasetBatch,
    assessment: DriftAssessment,
    champion: DeployedModel | None,
    spec: DatasetSpec,
    policy: RetrainPolicy,
    pooled: Mapping[str, pd.DataFrame],
) -> tuple[Retrained, dict[str, object]]:
    """A challenger trained with ``lightgbm.dask`` on the batch's training rows, judged on its held-out rows (each
    attempt metered on the workers: ``distributed.retraining``)."""
    split, metadata = held_out(dask, energy, artifacts, batch, assessment.batch)
    retrained = retrain_dataset(
        dask.client(),
        ClusterBatch(batch, split, artifacts.options(batch.url)),
        assessment,
        champion,
        spec,
        policy.thresholds(),
        policy.training_settings(),
        energy.to_settings(),
        pooled,
    )
    return retrained, metadata


def score_dataset(
    dask: DaskResource,
    energy: EnergyResource,
    artifacts: ArtifactStorage,
    batch: DatasetBatch,
    model_text: str,
    schema: FeatureSchema,
    out_url: str,
) -> tuple[DatasetBatch, dict[str, object]]:
    """Each part scored on a worker, the scores written as a Parquet dataset under ``out_url``."""
    options, out_options = artifacts.options(batch.url), artifacts.options(out_url)
    return on_cluster(
        dask,
        energy,
        lambda client: score_parts(client, batch, model_text, schema, out_url, options, out_options),
    )


def _split_url(artifacts: ArtifactStorage, batch: DatasetBatch, name: str, file: str) -> str:
    """Keyed by the validated dataset's URL: another run's validation of the batch has other held-out rows."""
    digest = hashlib.sha256(batch.url.encode()).hexdigest()[:16]
    return artifacts.url("held_out", name, f"{digest}-{file}")
