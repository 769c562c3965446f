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
from dataclasses import dataclass
from pathlib import Path

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


def gated_arm(stream: Stream) -> GatedRun:
    """The pipeline over the stream's CSV files on an ephemeral instance, as ``green-pipeline run`` runs it."""
    names = [name for name, _ in stream.batches]
    assert names == sorted(names), "batch files must sort in processing order, as the CLI runs them"
    previous = os.getcwd()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as root:
        os.chdir(root)  # anything a step writes to a default relative path stays in here
        try:
            Path(root, "data").mkdir()
            for name, frame in stream.batches:
                frame.to_csv(Path(root, "data", name), index=False)
            settings = {
                "dataset": {"data_url": f"{root}/data", "label": stream.label},
                "model_store": {"store_url": f"{root}/store", "model_name": stream.name},
                "artifacts": {"base_url": f"{root}/artifacts"},
            }
            scorer = ServedAuc(ModelStore(f"{root}/store", stream.name), stream)
            results = []
            with DagsterInstance.ephemeral() as instance:
                for outcome in process_batches(defs, instance, names, {**run_config(settings), **QUIET_CONSOLE}):
                    results.append(Gated(outcome, scorer.score(outcome), run_entries(instance, outcome.run_id)))
                    _progress(stream.name, results[-1])
        finally:
            os.chdir(previous)
    return GatedRun(results, time.perf_counter() - started, scorer.models)


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
        f"[{stream} gated] {outcome.batch}: served AUC {served}, {outcome.energy_kwh * 1e6:.1f} mWh, "
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
