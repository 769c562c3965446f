"""The rows a candidate learned from, as compression, evaluation and deployment see them: its batch's and its
pooled batches', split the way training split them, so no model is tested on rows it trained on.

A batch file is split by ``training.retraining.split_batches``. A dataset batch is represented by its held-out rows
and a sample of its training rows (``cluster_batches.held_out``), which fit one process: compression's smaller
models train on that sample, evaluation tests on its test rows, and the deployed version's reference (the rows the
next drift step compares with) is that sample.
"""

from __future__ import annotations

import pandas as pd
from dagster import DagsterInstance

from green_pipeline.data.datasets import DatasetBatch
from green_pipeline.distributed.retraining import held_out_split
from green_pipeline.orchestration.cluster_batches import held_out
from green_pipeline.orchestration.history import load_batches
from green_pipeline.orchestration.resources import ArtifactStorage, DaskResource, EnergyResource
from green_pipeline.records import CandidateModel
from green_pipeline.training.retraining import split_batches
from green_pipeline.training.trainer import BatchSplit


def learning_split(
    instance: DagsterInstance,
    artifacts: ArtifactStorage,
    dask: DaskResource,
    energy: EnergyResource,
    candidate: CandidateModel,
    batch: pd.DataFrame | DatasetBatch,
) -> tuple[BatchSplit, dict[str, object]]:
    """The candidate's training, validation and test rows, and the cluster's metadata when it computed them."""
    pooled = load_batches(instance, artifacts, candidate.pooled_batches)
    label = candidate.schema.label
    if isinstance(batch, DatasetBatch):
        split, metadata = held_out(dask, energy, artifacts, batch, candidate.batch)
        return held_out_split(split, pooled, label, candidate.batch), metadata
    return split_batches({**pooled, candidate.batch: batch}, label, candidate.batch), {}


def learned_rows(
    instance: DagsterInstance,
    artifacts: ArtifactStorage,
    dask: DaskResource,
    energy: EnergyResource,
    candidate: CandidateModel,
    batch: pd.DataFrame | DatasetBatch,
) -> pd.DataFrame:
    """Every row the candidate learned from (a dataset batch's: its sample and held-out rows), in one frame."""
    if isinstance(batch, DatasetBatch):
        split, _ = learning_split(instance, artifacts, dask, energy, candidate, batch)
        return pd.concat([split.train, split.valid, split.test], ignore_index=True)
    frames = {**load_batches(instance, artifacts, candidate.pooled_batches), candidate.batch: batch}
    return pd.concat(frames.values(), ignore_index=True)
