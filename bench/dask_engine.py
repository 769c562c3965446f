"""The pipeline in process vs on a local Dask cluster of two worker processes, and lightgbm.dask vs one process.

Three batches (a first training, a quiet batch, a covariate shift) go through ``process_batches`` in process,
then twice on the cluster (cold workers, then warm ones, as on a long-lived cluster); each figure is wall
seconds for the three runs, cluster start-up excluded, with the energy the steps measured. Then a full retrain
of one batch with ``full_retrain_on_dask`` against ``full_retrain``, with both models' AUC on the same test rows.

    python bench/dask_engine.py [--json] [--rows-per-day 3000] [--train-rows 100000]

With ``--json`` the last line printed is one JSON object holding every figure.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import dask.dataframe as dd
from dagster import instance_for_test
from distributed import Client, LocalCluster

from green_pipeline.assets.dask_executor import local_cluster
from green_pipeline.data import LABEL, StreamSpec, generate_day, write_stream
from green_pipeline.definitions import defs
from green_pipeline.distributed_training import full_retrain_on_dask
from green_pipeline.evaluation import auc
from green_pipeline.runner import process_batches, run_config
from green_pipeline.schema import DatasetSpec, infer_schema
from green_pipeline.training import TrainingSettings, full_retrain, split_batch
from green_pipeline.validation import validate_batch


def pipeline(engine: str, rows_per_day: int, cluster: LocalCluster | None) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="bench-distributed-"))
    spec = StreamSpec(days=3, rows_per_day=rows_per_day, covariate_shift_day=2, concept_drift_day=None)
    batches = write_stream(spec, str(root / "data"))
    config = run_config(
        {
            "dataset": {"data_url": str(root / "data")},
            "model_store": {"store_url": str(root / "store")},
            "artifacts": {"base_url": str(root / "artifacts")},
        }
    )
    if cluster is not None:
        config["execution"] = {"config": {"cluster": {"existing": {"address": cluster.scheduler_address}}}}
    with instance_for_test() as instance:
        started = time.perf_counter()
        outcomes = list(process_batches(defs, instance, batches, config, engine=engine))
        wall = time.perf_counter() - started
    return {
        "wall_s": round(wall, 2),
        "energy_kwh": sum(o.energy_kwh for o in outcomes),
        "strategies": [o.strategy for o in outcomes],
        "success": all(o.success for o in outcomes),
        "errors": [o.error for o in outcomes if o.error],
    }


def training(client: Client, rows: int) -> dict[str, Any]:
    frame = generate_day(StreamSpec(rows_per_day=rows), 0)
    schema = infer_schema(frame, DatasetSpec(label=LABEL), "bench")
    split = split_batch(validate_batch(frame, schema, "bench")[0], LABEL, "bench", "bench")
    settings = TrainingSettings()
    started = time.perf_counter()
    single = full_retrain(split, schema, settings)
    single_s = time.perf_counter() - started
    started = time.perf_counter()
    spread = full_retrain_on_dask(dd.from_pandas(split.train, npartitions=4), split.valid, schema, settings, client)
    dask_s = time.perf_counter() - started
    return {
        "rows": rows,
        "single_s": round(single_s, 2),
        "dask_s": round(dask_s, 2),
        "single_trees": single.trees,
        "dask_trees": spread.trees,
        "single_test_auc": round(auc(single.booster, split.test, schema), 4),
        "dask_test_auc": round(auc(spread.booster, split.test, schema), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rows-per-day", type=int, default=3000)
    parser.add_argument("--train-rows", type=int, default=100_000)
    args = parser.parse_args()
    with (
        local_cluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1") as c,
        Client(c) as client,
    ):
        figures: dict[str, Any] = {"in_process": pipeline("in_process", args.rows_per_day, None)}
        figures["dask_cold_workers"] = pipeline("dask", args.rows_per_day, c)
        figures["dask_warm_workers"] = pipeline("dask", args.rows_per_day, c)
        figures["training"] = training(client, args.train_rows)
    for name, value in figures.items():
        print(f"{name}: {value}")
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
