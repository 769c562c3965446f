"""Compression benchmark: the pipeline's own early-stopped model against the model compression keeps, in one process.

The teacher is what ``retrained_model`` trains first with today's defaults: a full retrain of one built-in batch
(``--rows-per-day`` rows, split 60/20/20) with early stopping. ``compress_model`` (the pipeline's settings but a
0.01 AUC budget, lleaves offered, ``--expected-predictions``) skips the candidates that cannot pay back their search,
builds and measures the others on validation rows and keeps the cheapest within budget; then the uncompressed and
the chosen model (its engine loaded as serving would, from the local engine cache that compression filled) predict
the same 100k-row batch of unseen test rows ``--repeats`` times, interleaved, each inside ``measure_energy``.
Medians are reported as ratios; a compile's energy is amortized over ``--expected-predictions``. The retrain and the
compression are measured too (``compression_to_retrain_energy_ratio``). A figure not measured is null, never 0.

    python bench/compression.py [--json] [--rows-per-day 20000] [--expected-predictions 1000000] [--repeats 5]

With ``--json`` the last line printed is one JSON object with size_ratio, speedup, energy_per_1k_ratio, auc_delta and
compression_to_retrain_energy_ratio (and the figures behind them).
"""

import os

#: LightGBM's OpenMP threads spin while they wait by default, which counts as CPU time (energy) on a shared machine
#: (bench/arms.py); passive waiting measures the work. Read when LightGBM loads: set before it is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import dataclasses
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from green_pipeline.compression.engines import (
    LIGHTGBM,
    LLEAVES,
    CompiledModel,
    Predict,
    compile_model,
    lightgbm_predictor,
)
from green_pipeline.compression.measure import InferenceFigures, measure_inference
from green_pipeline.compression.search import CompressionOutcome, CompressionSettings, compress_model
from green_pipeline.compression.table import candidates_table
from green_pipeline.data.schema import DatasetSpec, FeatureSchema, infer_schema
from green_pipeline.demo.stream import LABEL, StreamSpec, generate_day
from green_pipeline.energy.measurement import EnergyReport, EnergySettings, measure_energy
from green_pipeline.training.trainer import BatchSplit, TrainingSettings, full_retrain, split_batch

ENERGY = EnergySettings()
#: ``RetrainPolicy``'s training defaults: what ``retrained_model`` trains a first model with, early-stopped.
TEACHER = TrainingSettings()
AUC_BUDGET = 0.01
TARGETS = {"size_ratio_max": 0.2, "speedup_min": 5.0, "auc_delta_min": -AUC_BUDGET}
BATCH_ROWS = 100_000


@dataclass(frozen=True)
class HeadToHead:
    """Median figures of the two models on the same test batch, and their AUC on the test rows."""

    baseline: InferenceFigures
    chosen: InferenceFigures
    baseline_auc: float
    chosen_auc: float


def main() -> None:
    args = _arguments()
    started = time.perf_counter()
    split, schema = _data(args.rows_per_day)
    with measure_energy(ENERGY):  # the meter's first block in a process pays its set-up: not charged to either step
        pass
    teacher, retrain = _measured(lambda: full_retrain(split, schema, TEACHER))
    print(f"teacher: {teacher.trees} trees x {TEACHER.num_leaves} leaves (early-stopped), {retrain.duration_s:.1f} s")
    settings = dataclasses.replace(
        CompressionSettings(),
        auc_budget=AUC_BUDGET,
        expected_predictions=args.expected_predictions,
        compile_engine=LLEAVES,
    )
    outcome, compression = _measured(
        lambda: compress_model(teacher.booster, split.train, split.valid, schema, settings, ENERGY)
    )
    print(f"\ncandidates on {len(split.valid):,} validation rows ({outcome.compile_status}):\n")
    print(candidates_table(outcome))
    result = _head_to_head(outcome, split.test, schema, args.repeats)
    summary = _summary(outcome, result, retrain, compression) | {"bench_s": time.perf_counter() - started}
    _print_summary(summary)
    if args.json:
        print(json.dumps(summary))


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    parser.add_argument("--rows-per-day", type=int, default=StreamSpec().rows_per_day, help="rows of the batch")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timings of each model")
    parser.add_argument(
        "--expected-predictions",
        type=int,
        default=1_000_000,
        help="predictions before the next retrain: what candidates must pay back, and a compile is amortized over",
    )
    return parser.parse_args()


def _data(rows_per_day: int) -> tuple[BatchSplit, FeatureSchema]:
    frame = generate_day(StreamSpec(rows_per_day=rows_per_day), 0)
    schema = infer_schema(frame, DatasetSpec(label=LABEL), "bench")
    return split_batch(frame, LABEL, "bench", "bench"), schema


Measured = TypeVar("Measured")


def _measured(work: Callable[[], Measured]) -> tuple[Measured, EnergyReport]:
    with measure_energy(ENERGY) as measurement:
        result = work()
    assert measurement.report is not None
    return result, measurement.report


def _head_to_head(outcome: CompressionOutcome, test: pd.DataFrame, schema: FeatureSchema, repeats: int) -> HeadToHead:
    """Both models on the same unseen rows, timed alternately so drifts of the machine hit both alike."""
    features = schema.encode(test).reset_index(drop=True)
    batch = features.iloc[np.resize(np.arange(len(features)), BATCH_ROWS)].reset_index(drop=True)
    baseline = lightgbm_predictor(outcome.baseline.model_text, outcome.settings.num_threads)
    chosen = _serving_predictor(outcome)
    runs: dict[str, list[InferenceFigures]] = {"baseline": [], "chosen": []}
    for _ in range(repeats):
        runs["baseline"].append(measure_inference(baseline, batch, 1.0, ENERGY))
        runs["chosen"].append(measure_inference(chosen, batch, 1.0, ENERGY))
    labels = schema.labels(test).to_numpy()
    return HeadToHead(
        baseline=_median(runs["baseline"]),
        chosen=_median(runs["chosen"]),
        baseline_auc=float(roc_auc_score(labels, baseline(features))),
        chosen_auc=float(roc_auc_score(labels, chosen(features))),
    )


def _serving_predictor(outcome: CompressionOutcome) -> Predict:
    """The chosen model as serving would load it: its compiled engine if one won, else LightGBM on the text."""
    chosen, threads = outcome.chosen, outcome.settings.num_threads
    if chosen.engine == LIGHTGBM:
        return lightgbm_predictor(chosen.model_text, threads)
    compiled = compile_model(chosen.model_text, chosen.engine, ENERGY, threads)
    if not isinstance(compiled, CompiledModel):
        raise SystemExit(f"{chosen.name}: compression compiled it, serving cannot: {compiled.reason}")
    return compiled.predict


def _median(runs: list[InferenceFigures]) -> InferenceFigures:
    """Medians scaled to the rows of the first run; energy only if codecarbon measured every run."""
    rows = runs[0].rows
    energies = [r.energy_per_1k_kwh for r in runs if r.energy_per_1k_kwh is not None]
    return InferenceFigures(
        rows=rows,
        duration_s=statistics.median(r.duration_s * rows / r.rows for r in runs),
        energy_kwh=statistics.median(energies) * rows / 1000.0 if len(energies) == len(runs) else None,
    )


def _summary(
    outcome: CompressionOutcome, result: HeadToHead, retrain: EnergyReport, compression: EnergyReport
) -> dict[str, Any]:
    chosen, baseline = outcome.chosen, outcome.baseline
    compile_per_1k = _ratio(chosen.build_energy_kwh, outcome.settings.expected_predictions / 1000.0)
    inference_ratio = _ratio(result.chosen.energy_per_1k_kwh, result.baseline.energy_per_1k_kwh)
    energy_ratio = None
    if inference_ratio is not None and compile_per_1k is not None:
        assert result.chosen.energy_per_1k_kwh is not None
        energy_ratio = _ratio(result.chosen.energy_per_1k_kwh + compile_per_1k, result.baseline.energy_per_1k_kwh)
    summary = {
        "size_ratio": chosen.size_bytes / baseline.size_bytes,
        "speedup": result.chosen.rows_per_s / result.baseline.rows_per_s,
        "energy_per_1k_ratio": energy_ratio,
        "auc_delta": result.chosen_auc - result.baseline_auc,
        "chosen": chosen.name,
        "engine": chosen.engine,
        "size_bytes": chosen.size_bytes,
        "size_bytes_before": baseline.size_bytes,
        "trees": chosen.trees,
        "trees_before": baseline.trees,
        "rows_per_s": result.chosen.rows_per_s,
        "rows_per_s_before": result.baseline.rows_per_s,
        "compression_to_retrain_energy_ratio": _ratio(compression.energy_kwh, retrain.energy_kwh),
        "energy_per_1k_kwh": (
            None if energy_ratio is None else (result.chosen.energy_per_1k_kwh or 0.0) + (compile_per_1k or 0.0)
        ),
        "energy_per_1k_kwh_before": result.baseline.energy_per_1k_kwh,
        "inference_energy_per_1k_kwh": result.chosen.energy_per_1k_kwh,
        "inference_energy_per_1k_ratio": inference_ratio,
        "compile_s": chosen.build_s,
        "compile_energy_kwh": chosen.build_energy_kwh,
        "expected_predictions": outcome.settings.expected_predictions,
        "test_auc": result.chosen_auc,
        "test_auc_before": result.baseline_auc,
        "candidates_skipped": [s.name for s in outcome.skipped],
        "retrain_energy_kwh": retrain.energy_kwh,
        "retrain_s": retrain.duration_s,
        "compression_energy_kwh": compression.energy_kwh,
        "compression_s": compression.duration_s,
        "energy_status": [retrain.status.value, compression.status.value],
        "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
    }
    summary["targets_met"] = {
        "size_ratio": summary["size_ratio"] <= TARGETS["size_ratio_max"],
        "speedup": summary["speedup"] >= TARGETS["speedup_min"],
        "auc_delta": summary["auc_delta"] >= TARGETS["auc_delta_min"],
    }
    return summary


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    """None when either figure is missing (unmeasured) or the denominator is 0: never a made-up 0."""
    return None if numerator is None or not denominator else numerator / denominator


def _figure(value: float | None) -> str:
    return "unmeasured" if value is None else f"{value:.3f}"


def _print_summary(s: dict[str, Any]) -> None:
    energy = _figure(s["energy_per_1k_ratio"])
    print(f"\nchosen: {s['chosen']} ({s['engine']}), {s['trees']} of {s['trees_before']} trees")
    print(f"test rows in a {BATCH_ROWS:,}-row batch, medians of interleaved runs:")
    print(f"  size ratio        {s['size_ratio']:.3f}")
    print(f"  speedup           {s['speedup']:.1f}x ({s['rows_per_s_before']:,.0f} -> {s['rows_per_s']:,.0f} rows/s)")
    print(f"  energy/1k ratio   {energy} (compile amortized over {s['expected_predictions']:,} predictions)")
    print(f"  AUC delta         {s['auc_delta']:+.4f} ({s['test_auc_before']:.4f} -> {s['test_auc']:.4f})")
    print(f"  compression / retrain energy {_figure(s['compression_to_retrain_energy_ratio'])}")
    print(f"  targets met       {s['targets_met']}")


if __name__ == "__main__":
    main()
