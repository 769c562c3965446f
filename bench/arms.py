"""The arms the benches compare, shared by bench/realdata.py and bench/lifecycle.py.

- Gated: the pipeline itself (``runner.process_batches`` over CSV batch files on an ephemeral Dagster instance,
  default settings but for the data, label and storage), as ``green-pipeline run`` runs it. Each batch keeps its
  run's per-step energy entries, read from the event log as ``green-pipeline ledger`` reads them.
- Scheduled: ``green_pipeline.training.scheduled``, the core's scheduled retraining that ``green-pipeline demo``
  compares with too.

Served AUC is each serving model's AUC on all rows of a batch before learning from it. The gated arm's serving
version is loaded from its model store and scored with the drift step's own AUC function: the drift step pools
batches smaller than ``policy.min_rows_for_decision`` and reports the AUC of the pooled rows, which would not compare
batch by batch.
"""

from __future__ import annotations

import os

#: Read once when LightGBM loads its OpenMP runtime. By default its threads spin while they wait: with other work on
#: the 2 cores, one 100-tree fit of 365 rows took 2-76 s instead of 0.2 s, and the spinning counts as CPU time,
#: i.e. energy, in both arms. Passive waiting measures the work rather than the machine's load; set it to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import sys
import tempfile
import time
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from dagster import DagsterInstance

from green_pipeline.app.cli import QUIET_CONSOLE
from green_pipeline.app.definitions import defs
from green_pipeline.app.runner import BatchOutcome, process_batches, run_config
from green_pipeline.energy.measurement import EnergySettings
from green_pipeline.orchestration.ledger import EnergyEntry, run_entries
from green_pipeline.store.model_store import DeployedModel, ModelStore
from green_pipeline.training.evaluation import auc
from green_pipeline.training.scheduled import ScheduledBatch, ScheduledSettings, scheduled_retraining
from green_pipeline.training.tuning import TuningHistory

#: The pipeline's default (``EnergyResource``), so both arms are measured alike.
ENERGY = EnergySettings()
PROMOTION = {True: "promoted", False: "rejected", None: "not deployed"}


@dataclass(frozen=True)
class Stream:
    """Batches in processing order, the label, and the name of the injected corrupt batch (real streams only)."""

    name: str
    label: str
    batches: list[tuple[str, pd.DataFrame]]
    available_batches: int
    corrupt: str | None

    @property
    def capped(self) -> bool:
        return len(self.batches) - (self.corrupt is not None) < self.available_batches


@dataclass(frozen=True)
class Gated:
    """One batch of the gated arm: the runner's outcome, the AUC of the version serving when the batch came, and the
    energy of each step its run materialized."""

    outcome: BatchOutcome
    served_auc: float | None
    entries: list[EnergyEntry]


@dataclass(frozen=True)
class GatedRun:
    """The gated arm over a stream: its batches, wall seconds, and every version that served a batch, by name."""

    batches: list[Gated]
    seconds: float
    served_versions: dict[str, DeployedModel]


def gated_arm(stream: Stream, compression: Mapping[str, Any] | None = None, arm: str = "gated") -> GatedRun:
    """The pipeline over the stream's batch files (CSV, or Parquet where the name says so) on an ephemeral instance,
    as ``green-pipeline run`` runs it; ``compression`` is ``compressed_model``'s run config."""
    return gated_arms(stream, {arm: compression})[arm]


def gated_arms(stream: Stream, compressions: Mapping[str, Mapping[str, Any] | None]) -> dict[str, GatedRun]:
    """One pipeline per ``compressed_model`` run config, by arm name, each in its own folder and instance, run in
    lockstep (every arm's batch 1, then every arm's batch 2, ...) so the arms share whatever else loads the machine."""
    names = [name for name, _ in stream.batches]
    assert names == sorted(names), "batch files must sort in processing order, as the CLI runs them"
    with ExitStack() as stack:
        arms = {name: _Arm(stream, stack, name, config) for name, config in compressions.items()}
        stack.callback(os.chdir, os.getcwd())  # back before the arms' folders are removed
        for _ in names:
            for arm in arms.values():
                arm.step()
    return {name: GatedRun(arm.results, arm.seconds, arm.scorer.models) for name, arm in arms.items()}


class _Arm:
    """One pipeline over the stream in a temporary folder and an ephemeral instance, advanced one batch at a time."""

    def __init__(self, stream: Stream, stack: ExitStack, name: str, compression: Mapping[str, Any] | None) -> None:
        self.root = stack.enter_context(tempfile.TemporaryDirectory())
        self.label = f"{stream.name} {name}"
        Path(self.root, "data").mkdir()
        for batch, frame in stream.batches:
            path = Path(self.root, "data", batch)
            if batch.endswith(".parquet"):
                frame.to_parquet(path, index=False)
            else:
                frame.to_csv(path, index=False)
        settings = {
            "dataset": {"data_url": f"{self.root}/data", "label": stream.label},
            "model_store": {"store_url": f"{self.root}/store", "model_name": stream.name},
            "artifacts": {"base_url": f"{self.root}/artifacts"},
        }
        config = {**run_config(settings), **QUIET_CONSOLE}
        if compression:
            config["ops"] = {"compressed_model": {"config": dict(compression)}}
        self.scorer = ServedAuc(ModelStore(f"{self.root}/store", stream.name), stream)
        self.instance = stack.enter_context(DagsterInstance.ephemeral())
        self.outcomes = process_batches(defs, self.instance, [batch for batch, _ in stream.batches], config)
        self.results: list[Gated] = []
        self.seconds = 0.0

    def step(self) -> None:
        """The next batch, unless a failed run stopped the stream (``process_batches`` then yields no more)."""
        os.chdir(self.root)  # anything a step writes to a default relative path stays in here
        started = time.perf_counter()
        outcome = next(self.outcomes, None)
        if outcome is None:
            return
        self.results.append(Gated(outcome, self.scorer.score(outcome), run_entries(self.instance, outcome.run_id)))
        self.seconds += time.perf_counter() - started
        _progress(self.label, self.results[-1])


class ServedAuc:
    """The AUC on each batch of the version that served when it came, scored as the drift step scores it.

    Not the outcome's ``served_auc``: the drift step judges a small batch pooled with the next ones (AUC on the
    pooled rows, or none yet), while the scheduled arm is scored batch by batch.
    """

    def __init__(self, store: ModelStore, stream: Stream) -> None:
        self.store, self.frames, self.label = store, dict(stream.batches), stream.label
        self.serving: str | None = None
        self.models: dict[str, DeployedModel] = {}

    def score(self, outcome: BatchOutcome) -> float | None:
        version, frame = self.serving, self.frames[outcome.batch]
        self.serving = outcome.serving_version or self.serving
        if version is None or outcome.quarantined or frame[self.label].nunique() < 2:
            return None
        if version not in self.models:
            self.models[version] = self.store.load(version)
        return auc(self.models[version].booster, frame, self.models[version].schema)


def _progress(stream: str, gated: Gated) -> None:
    outcome = gated.outcome
    served = "-" if gated.served_auc is None else f"{gated.served_auc:.4f}"
    error = f": {outcome.error}" if outcome.error else ""
    print(
        f"[{stream}] {outcome.batch}: served AUC {served}, {outcome.energy_kwh * 1e6:.1f} mWh, "
        f"{action(outcome)}{error}",
        file=sys.stderr,
        flush=True,
    )


def action(outcome: BatchOutcome) -> str:
    if outcome.quarantined:
        return "quarantined"
    if not outcome.success:
        return "failed"
    if not outcome.retrained:
        return "skipped"
    return f"{outcome.strategy or 'retrained'}:{PROMOTION[outcome.promoted]}"


def tuned_like(settings: ScheduledSettings, run: GatedRun) -> ScheduledSettings:
    """``settings`` with the parameters the gated arm's first served version was tuned to (issue 16): where tuning
    changes the pipeline's models, the scheduled job learns with the same parameters. Unchanged without tuning."""
    first = min(run.served_versions, default=None)
    history = TuningHistory.from_metadata(run.served_versions[first].metadata) if first else None
    return history.best_params.applied_to(settings) if history else settings


def scheduled_arm(
    stream: Stream, settings: ScheduledSettings | None = None, arm: str = "scheduled"
) -> tuple[list[ScheduledBatch], float]:
    """The core's scheduled retraining over the stream, every batch; the corrupt batch is skipped (no model trained,
    nothing spent), as the gated arm quarantines it, so both serve the same batches."""
    started = time.perf_counter()
    kept = [(name, frame) for name, frame in stream.batches if name != stream.corrupt]
    done = {s.batch: s for s in scheduled_retraining(kept, stream.label, settings, ENERGY)}
    skipped = ScheduledBatch(stream.corrupt or "", None, 0.0, 0.0, 0.0, training_rows=0)
    results = [done.get(name, skipped) for name, _ in stream.batches]
    seconds = time.perf_counter() - started
    print(f"[{stream.name} {arm}] {len(results)} batches in {seconds:.1f} s", file=sys.stderr, flush=True)
    return results, seconds
