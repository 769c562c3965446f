"""Issue 17's scale benchmark: a Parquet dataset batch larger than one Dask worker's memory, end to end on a cluster.

It generates a dataset batch of ``--rows`` rows x ``--features`` float64 features plus the label (``--parts`` part
files and ``_SUCCESS``), a reference sample the champion (the serving model, ``--champion-rounds`` trees at most) is
trained on, and a common test set. Every training, on every side, uses ``policy.feature_fraction``
``--feature-fraction`` (0.5: each round reads half the features, so the whole bench fits in 10 minutes here).
Then, through the functions the pipeline's steps call on a dataset batch (``green_pipeline.distributed``), each step
metered on the step's process and on every worker (``metered_on_cluster``):

    ingest (footers) -> validate (per part) -> drift (a uniform sample, Evidently) -> full retrain
    (lightgbm.dask, capped at ``--rounds`` rounds, cut at the best validation round) -> score (per part)

1. on a local cluster of 2 workers, one thread each, each with ``--worker-memory`` (below the batch's in-memory
   size): the batch cannot fit one worker;
2. on 1 worker, one thread, with twice that memory (it holds the whole training set): drift and scoring timed
   against (1) for the speedup (its full retrain only with ``--one-worker-retrain``: 4 more minutes here);
3. on a ``--small-rows`` batch that fits, first and ``--repeats`` times each, interleaved: the same steps in a single
   process (the in-process path of the steps: one frame, LightGBM on 2 threads, early-stopped, outputs written as the
   IO manager writes them) and on the 2-worker cluster; the least energy of each side gives the energy ratio, and
   their full retrains' test AUC on the common test set the AUC delta.

    python bench/scale.py [--json] [--rows 5000000] [--features 40] [--parts 40] [--worker-memory 1.5GiB]
                          [--rounds 200] [--feature-fraction 0.5] [--champion-rounds 100]

With ``--json`` the last line printed is one JSON object holding every figure.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from dask.utils import parse_bytes
from distributed import Client

from green_pipeline.data.batches import load_batch
from green_pipeline.data.datasets import SUCCESS_MARKER, DatasetBatch, open_dataset
from green_pipeline.data.schema import DatasetSpec, infer_schema
from green_pipeline.data.validation import validate_batch
from green_pipeline.distributed.cluster import ClusterSettings, connect
from green_pipeline.distributed.metering import metered_on_cluster
from green_pipeline.distributed.partitions import (
    batch_seed,
    sample_parts,
    score_parts,
    split_parts,
    training_arrays,
    validate_parts,
)
from green_pipeline.distributed.training import full_retrain_on_dask
from green_pipeline.drift.assessment import MonitoringThresholds, assess_batch
from green_pipeline.drift.sampling import DriftSettings
from green_pipeline.energy.measurement import EnergySettings, measure_energy
from green_pipeline.serving.scoring import score_batch
from green_pipeline.store.model_store import DeployedModel
from green_pipeline.training.evaluation import auc
from green_pipeline.training.trainer import TrainingSettings, full_retrain, split_batch

LABEL = "label"
#: The grid does not change the ratios; a country keeps codecarbon from warning that it uses the world average.
ENERGY = EnergySettings(country_iso_code="FRA")
THRESHOLDS = MonitoringThresholds()
DRIFT = DriftSettings()
REFERENCE_ROWS = 200_000
TEST_ROWS = 200_000


@dataclass
class Step:
    seconds: float = 0.0
    energy_kwh: float | None = None
    status: str = ""


@dataclass
class Run:
    """One run of the steps: each step's figures, the model it trained, and what the workers went through."""

    steps: dict[str, Step] = field(default_factory=dict)
    test_auc: float | None = None
    peak_worker_rss_gb: float | None = None
    worker_restarts: int = 0

    def seconds(self, *names: str) -> float:
        return sum(self.steps[name].seconds for name in names)

    def energy_kwh(self) -> float | None:
        parts = [step.energy_kwh for step in self.steps.values()]
        return None if any(part is None for part in parts) else sum(p for p in parts if p is not None)

    def as_json(self) -> dict[str, Any]:
        return {
            "steps": {name: vars(step) for name, step in self.steps.items()},
            "test_auc": self.test_auc,
            "energy_kwh": self.energy_kwh(),
            "peak_worker_rss_gb": self.peak_worker_rss_gb,
            "worker_restarts": self.worker_restarts,
        }


@contextmanager
def step(run: Run, name: str, client: Client | None = None) -> Iterator[None]:
    """The step's wall time and energy: its process's share, plus every worker's when it runs on ``client``."""
    started = time.perf_counter()
    with ExitStack() as stack:
        measurement = stack.enter_context(measure_energy(ENERGY))
        if client is not None:
            stack.enter_context(metered_on_cluster(client, ENERGY))
        yield
    report = measurement.report
    assert report is not None
    run.steps[name] = Step(time.perf_counter() - started, report.energy_kwh, report.status.value)
    print(f"  {name}: {run.steps[name].seconds:.1f} s, {report.energy_kwh} kWh ({report.status.value})", flush=True)


def generate(rows: int, features: int, seed: int) -> pd.DataFrame:
    """Rows of a task whose trees keep improving for hundreds of rounds: nonlinear terms and interactions of
    correlated features, and label noise."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((rows, features))
    x = base + 0.3 * base[:, [0]]  # correlated with the first feature
    logit = (
        np.sin(x[:, 0] * 1.5)
        + 0.8 * x[:, 1] * x[:, 2]
        + np.abs(x[:, 3])
        - 0.8
        + 0.5 * np.where(x[:, 4] > 0.3, x[:, 5], -x[:, 6])
        + 0.3 * x[:, 7:15].sum(axis=1) / np.sqrt(8)
        + 0.4 * np.tanh(x[:, 15] * x[:, 16])
    )
    label = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype("int64")
    frame = pd.DataFrame(x, columns=[f"f{i:02d}" for i in range(features)])
    frame[LABEL] = label
    return frame


def write_dataset(folder: Path, rows: int, features: int, parts: int, seed: int) -> None:
    folder.mkdir(parents=True)
    per_part = -(-rows // parts)
    for index in range(parts):
        size = min(per_part, rows - index * per_part)
        part = generate(size, features, seed * 100_003 + index)
        # Random floats do not compress: written plain, as quick to read as to write.
        part.to_parquet(folder / f"part-{index:05d}.parquet", index=False, compression=None)
    (folder / SUCCESS_MARKER).write_bytes(b"")


def champion_from(reference: pd.DataFrame, settings: TrainingSettings) -> DeployedModel:
    """The serving model the batch is judged and scored with: trained in process on the reference."""
    schema = infer_schema(reference, DatasetSpec(label=LABEL), "reference")
    split = split_batch(reference, LABEL, "reference", "reference")
    trained = full_retrain(split, schema, settings)
    return DeployedModel(
        version="reference",
        model_text=trained.booster.model_to_string(),
        booster=trained.booster,
        schema=schema,
        reference=reference,
        metadata={"metrics": {"test_auc": auc(trained.booster, split.test, schema)}},
    )


def on_cluster(
    cluster_settings: ClusterSettings,
    url: str,
    name: str,
    out: Path,
    champion: DeployedModel,
    settings: TrainingSettings,
    test: pd.DataFrame,
    retrain: bool = True,
) -> tuple[Run, DatasetBatch]:
    """The steps of a dataset batch on a cluster, as the assets run them (the full retrain only with ``retrain``)."""
    run, cluster = Run(), connect(cluster_settings)
    client = cluster.client
    try:
        pids = client.run(os.getpid)
        schema = champion.schema
        with step(run, "ingest"):
            batch = open_dataset(url, columns=[*schema.features, schema.label])
        with step(run, "validate", client):
            validated, _ = validate_parts(client, batch, schema, str(out / "validated"))
        with step(run, "drift", client):
            fraction = DRIFT.sample_rows / validated.rows if DRIFT.caps(validated.rows) else 1.0
            sample = sample_parts(client, validated, fraction, batch_seed(name))
            assess_batch(name, sample, champion, THRESHOLDS, DRIFT, population=validated.rows)
        if retrain:
            with step(run, "retrain", client):
                split = split_parts(client, validated, batch_seed(name))
                arrays = training_arrays(client, validated, split.holdout, batch_seed(name), schema)
                result = full_retrain_on_dask(arrays, split.valid, schema, settings, client)
            run.test_auc = auc(result.booster, test, schema)
            print(f"  trees {result.trees}, test AUC {run.test_auc:.4f}")
        with step(run, "score", client):
            score_parts(client, validated, champion.model_text, schema, str(out / "predictions"))
        peaks = client.run(_peak_rss_bytes)
        run.peak_worker_rss_gb = max(peaks.values()) / 2**30
        after = client.run(os.getpid)
        run.worker_restarts = sum(pids.get(address) != pid for address, pid in after.items()) + max(
            0, len(pids) - len(after)
        )
        print(f"  peak worker RSS {run.peak_worker_rss_gb:.2f} GiB, {run.worker_restarts} restarts")
        return run, validated
    finally:
        cluster.close()


def in_process(
    data: Path, name: str, out: Path, champion: DeployedModel, settings: TrainingSettings, test: pd.DataFrame
) -> Run:
    """The same steps on a single-file batch in one process: the path of every batch below max_local_bytes."""
    run, schema = Run(), champion.schema
    out.mkdir(parents=True)
    with step(run, "ingest"):
        frame = load_batch(str(data), name).frame
    with step(run, "validate"):
        clean, _ = validate_batch(frame, schema, name)
        _write(clean, out / "validated.parquet")  # as the IO manager stores a step's output
    with step(run, "drift"):
        assess_batch(name, clean, champion, THRESHOLDS, DRIFT)
    with step(run, "retrain"):
        result = full_retrain(split_batch(clean, LABEL, name, name), schema, settings)
    with step(run, "score"):
        threads = settings.num_threads
        scores = score_batch(lambda x: champion.booster.predict(x, num_threads=threads), schema, clean, None)
        _write(scores.predictions, out / "predictions.parquet")
    run.test_auc = auc(result.booster, test, schema)
    print(f"  trees {result.trees}, test AUC {run.test_auc:.4f}")
    return run


def _write(frame: pd.DataFrame, path: Path) -> None:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    path.write_bytes(buffer.getvalue())


def _peak_rss_bytes() -> int:
    """This worker process's peak resident memory since it started: ``VmHWM`` (``getrusage``'s ``ru_maxrss`` would
    count the parent's pages at the fork before the worker's exec)."""
    with open("/proc/self/status", encoding="ascii") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def least(runs: list[Run]) -> Run:
    """The run that spent the least energy (the least disturbed by the rest of the machine)."""
    return min(runs, key=lambda run: run.energy_kwh() or float("inf"))


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


def timed(label: str, work: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    result = work()
    print(f"{label}: {time.perf_counter() - started:.1f} s", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--small-rows", type=int, default=500_000)
    parser.add_argument("--features", type=int, default=40)
    parser.add_argument("--parts", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=200)
    # policy.feature_fraction on every side: each round reads half the features, so the runs fit in 10 minutes.
    parser.add_argument("--feature-fraction", type=float, default=0.5)
    parser.add_argument("--champion-rounds", type=int, default=100)
    # The 1-worker run is there for the drift and scoring speedup; its full retrain (about 4 minutes here) only with
    # this flag, which takes the bench past 10 minutes.
    parser.add_argument("--one-worker-retrain", action="store_true")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each side on the small batch")
    parser.add_argument("--worker-memory", default="1.5GiB")
    args = parser.parse_args()
    started = time.perf_counter()
    settings = TrainingSettings(max_trees_full=args.rounds, feature_fraction=args.feature_fraction)
    limit = parse_bytes(args.worker_memory)
    two = ClusterSettings(n_workers=2, threads_per_worker=1, memory_limit=args.worker_memory)
    one = ClusterSettings(n_workers=1, threads_per_worker=1, memory_limit=str(2 * limit))

    with tempfile.TemporaryDirectory(prefix="green-scale-") as tmp:
        root = Path(tmp)
        small_parts = max(2, args.parts * args.small_rows // args.rows)
        write_dataset(root / "data" / "small.parquet", args.small_rows, args.features, small_parts, 2)
        small_file = pd.concat(pd.read_parquet(p) for p in sorted((root / "data" / "small.parquet").glob("part-*")))
        small_file.to_parquet(root / "data" / "small-file.parquet", index=False)
        test = generate(TEST_ROWS, args.features, 3)
        reference = generate(REFERENCE_ROWS, args.features, 4)
        serving = TrainingSettings(max_trees_full=args.champion_rounds, feature_fraction=args.feature_fraction)
        champion = timed("champion", lambda: champion_from(reference, serving))

        # The small batch first, before the big one is written (the kernel writing 1.6 GB back slowed whichever run
        # came next), twice, interleaved; the least-disturbed run of each side counts: others only add work.
        small_url = str(root / "data" / "small.parquet")
        singles, clusters = [], []
        for repeat in range(args.repeats):
            print(f"{args.small_rows:,} rows in one process ({repeat + 1}/{args.repeats})", flush=True)
            out = root / f"single-{repeat}"
            singles.append(in_process(root / "data", "small-file.parquet", out, champion, settings, test))
            print(f"{args.small_rows:,} rows on 2 workers ({repeat + 1}/{args.repeats})", flush=True)
            out = root / f"small-2-{repeat}"
            clusters.append(on_cluster(two, small_url, "small", out, champion, settings, test)[0])
        single, small_cluster = least(singles), least(clusters)

        timed("generate", lambda: write_dataset(root / "data" / "big.parquet", args.rows, args.features, args.parts, 1))
        print(f"{args.rows:,} rows on 2 workers of {args.worker_memory}", flush=True)
        big_url = str(root / "data" / "big.parquet")
        big_two, validated = on_cluster(two, big_url, "big", root / "big-2", champion, settings, test)
        print(f"{args.rows:,} rows on 1 worker of {2 * limit / 2**30:.1f} GiB", flush=True)
        big_one, _ = on_cluster(
            one, big_url, "big", root / "big-1", champion, settings, test, retrain=args.one_worker_retrain
        )

    figures = {
        "rows": validated.rows,
        "features": args.features,
        "parts": args.parts,
        "rounds": args.rounds,
        "feature_fraction": args.feature_fraction,
        "champion_trees": champion.booster.num_trees(),
        "batch_in_memory_gb": validated.in_memory_bytes / 2**30,
        "worker_memory_limit_gb": limit / 2**30,
        "peak_worker_rss_gb": big_two.peak_worker_rss_gb,
        "worker_restarts": big_two.worker_restarts,
        "two_vs_one_worker_speedup": big_one.seconds("drift", "score") / big_two.seconds("drift", "score"),
        "cluster_vs_single_process_energy_ratio": ratio(small_cluster.energy_kwh(), single.energy_kwh()),
        "test_auc_delta_vs_single_process": (small_cluster.test_auc or 0.0) - (single.test_auc or 0.0),
        "bench_seconds": time.perf_counter() - started,
        "runs": {
            "big_two_workers": big_two.as_json(),
            "big_one_worker": big_one.as_json(),
            "small_two_workers": small_cluster.as_json(),
            "small_single_process": single.as_json(),
            "small_energy_kwh_per_repeat": {
                "two_workers": [run.energy_kwh() for run in clusters],
                "single_process": [run.energy_kwh() for run in singles],
            },
        },
    }
    if args.json:
        print(json.dumps(figures))
    else:
        print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
