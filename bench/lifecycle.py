"""A model's life: 60 daily batches through the drift-gated pipeline against two scheduled retraining jobs.

The built-in stream, 60 days x 5,000 rows, seed 7: covariate shifts on days 10 (a price rise) and 40 (a price war),
a concept drift on day 25. Three arms (bench/arms.py), every training at today's defaults:

- gated: the pipeline itself (``runner.process_batches`` on an ephemeral instance), per-step energy read back from
  the run's event log, as ``green-pipeline ledger`` reads it;
- (a) scheduled, same window: plain LightGBM (100 trees, learning rate 0.05) retrained on the previous batch, every
  batch (the core's ``green_pipeline.training.scheduled``, as ``make demo`` and bench/realdata.py compare with);
- (b) scheduled, accumulated: the same job trained on the last ``--window`` batches (7 by default).

Served AUC is the serving model's AUC on each whole batch before anything learns from it. Per-batch ratios are
medians over the gated arm's skipped batches and over its retrained ones. Energy per 1,000 predictions: every
version that served a batch, timed on the same 100,000 rows (a day after the stream) with the engine it serves with,
``--repetitions`` measured blocks each, interleaved across versions, median per version. A figure that was not
measured is null, never 0.

    python bench/lifecycle.py [--json] [--window 7] [--repetitions 5]

Progress goes to stderr; with ``--json`` the last line printed is one JSON object holding every figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from arms import ENERGY, Gated, GatedRun, Stream, action, gated_arm, scheduled_arm, tuned_like

from green_pipeline.demo.stream import LABEL, StreamSpec, generate_day
from green_pipeline.energy.measurement import MeasuredSum, complete_sum, measure_energy
from green_pipeline.orchestration.metadata import (
    COMPRESSED_MODEL,
    DRIFT_REPORT,
    INGESTED_BATCH,
    MODEL_EVALUATION,
    PREDICTIONS,
    RETRAINED_MODEL,
    RETRAINING_STEPS,
    VALIDATED_BATCH,
)
from green_pipeline.serving.scoring import serving_predictor
from green_pipeline.store.model_store import DeployedModel
from green_pipeline.training.scheduled import ScheduledBatch, ScheduledSettings
from green_pipeline.training.trainer import NUM_THREADS

SPEC = StreamSpec(
    days=60, rows_per_day=5000, seed=7, covariate_shift_days=(10, 40), concept_drift_days=(25,), file_format="csv"
)
DEFAULT_WINDOW = 7
DEFAULT_REPETITIONS = 5
TIMING_ROWS = 100_000
#: The steps of each group, as the Dagster event log names them.
GROUPS = {
    "monitoring": (INGESTED_BATCH, VALIDATED_BATCH, DRIFT_REPORT),
    "training": (RETRAINED_MODEL, MODEL_EVALUATION),
    "compression": (COMPRESSED_MODEL,),
    "scoring": (PREDICTIONS,),
    "retrain_to_deploy": RETRAINING_STEPS,
    "retrain": (RETRAINED_MODEL,),
    "drift": (DRIFT_REPORT,),
}
TARGETS: dict[str, tuple[str, Callable[[float], bool]]] = {
    "monitoring_to_retrain_energy_ratio": ("<= 0.15", lambda v: v <= 0.15),
    "gated_vs_scheduled_same_window_energy_ratio": ("<= 0.45", lambda v: v <= 0.45),
    "gated_vs_scheduled_accumulated_energy_ratio": ("<= 0.20", lambda v: v <= 0.20),
    "gated_vs_scheduled_auc_delta": (">= -0.005", lambda v: v >= -0.005),
    "compression_to_retrain_energy_ratio": ("<= 1.0", lambda v: v <= 1.0),
    "final_vs_first_energy_per_1k_ratio": ("<= 1.2", lambda v: v <= 1.2),
}


def step_energy(batch: Gated, group: str) -> float | None:
    """The energy of a group's steps in the batch's run: 0 if none ran (a skipped step spends nothing), None if one
    of them was unmeasured."""
    energy = MeasuredSum.of(e.energy_kwh for e in batch.entries if e.asset_key in GROUPS[group])
    return None if energy.unmeasured else energy.total


def _median(values: Sequence[float | None]) -> float | None:
    """The median of the measured values; None when there are none or one was unmeasured (never guessed)."""
    if not values or any(v is None for v in values):
        return None
    return statistics.median(v for v in values if v is not None)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


def _mean(values: Sequence[float]) -> float | None:
    return statistics.mean(values) if values else None


def gated_figures(run: GatedRun) -> dict[str, Any]:
    """Totals per group of steps, and medians per skipped and per retrained batch."""
    done = [b for b in run.batches if b.outcome.success]
    skipped = [b for b in done if not b.outcome.retrained]
    retrained = [b for b in done if b.outcome.retrained]
    totals = {f"{group}_kwh": complete_sum(step_energy(b, group) for b in done) for group in GROUPS}
    drift = [step_energy(b, "drift") for b in done]
    return {
        "batches": len(run.batches),
        "failed": {b.outcome.batch: b.outcome.error for b in run.batches if not b.outcome.success},
        "retrains": len(retrained),
        "skipped": len(skipped),
        "energy_kwh": complete_sum(e.energy_kwh for b in run.batches for e in b.entries),
        **totals,
        "median_skipped_monitoring_kwh": _median([step_energy(b, "monitoring") for b in skipped]),
        "median_retrained_retrain_to_deploy_kwh": _median([step_energy(b, "retrain_to_deploy") for b in retrained]),
        "median_retrained_compression_kwh": _median([step_energy(b, "compression") for b in retrained]),
        "median_retrained_retrain_kwh": _median([step_energy(b, "retrain") for b in retrained]),
        "drift_mwh_per_batch": [None if kwh is None else kwh * 1e6 for kwh in drift],
        "median_drift_kwh": _median(drift),
        "actions": [action(b.outcome) for b in run.batches],
        "served_auc": [b.served_auc for b in run.batches],
        "mean_served_auc": _mean([b.served_auc for b in run.batches if b.served_auc is not None]),
        "wall_s": run.seconds,
    }


def scheduled_figures(batches: list[ScheduledBatch], seconds: float) -> dict[str, Any]:
    return {
        "retrains": len(batches),
        "energy_kwh": complete_sum(b.energy_kwh for b in batches),
        "training_kwh": complete_sum(b.training_energy_kwh for b in batches),
        "scoring_kwh": complete_sum(b.scoring_energy_kwh for b in batches),
        "served_auc": [b.served_auc for b in batches],
        "mean_served_auc": _mean([b.served_auc for b in batches if b.served_auc is not None]),
        "wall_s": seconds,
    }


def energy_per_1k(versions: dict[str, DeployedModel], repetitions: int) -> dict[str, float | None]:
    """Median kWh per 1,000 predictions of each version on the same rows, with the engine it serves with."""
    rows = generate_day(dataclasses.replace(SPEC, rows_per_day=TIMING_ROWS), SPEC.days)
    predictors = {}
    for name, model in sorted(versions.items()):
        features = model.schema.encode(rows)
        predict = serving_predictor(model, ENERGY, NUM_THREADS).predict
        predict(features.iloc[:1000])  # warm-up, outside the measurement
        predictors[name] = (predict, features)
    measured: dict[str, list[float | None]] = {name: [] for name in predictors}
    for _ in range(repetitions):
        for name, (predict, features) in predictors.items():
            with measure_energy(ENERGY) as block:
                predict(features)
            assert block.report is not None
            kwh = block.report.energy_kwh
            measured[name].append(None if kwh is None else kwh * 1000 / TIMING_ROWS)
    return {name: _median(values) for name, values in measured.items()}


def summary(
    gated: dict[str, Any], same: dict[str, Any], accumulated: dict[str, Any], per_1k: dict[str, float | None]
) -> dict[str, Any]:
    """The issue's headline keys, and each target met or missed (None when its figure is unmeasured)."""
    # Both lists start at the first batch; the gated one ends early if a run failed (``gated["failed"]``).
    pairs = zip(gated["served_auc"], same["served_auc"], strict=False)
    compared = [(g, s) for g, s in pairs if g is not None and s is not None]
    first = per_1k[min(per_1k)] if per_1k else None
    highest = None if not per_1k or None in per_1k.values() else max(v for v in per_1k.values() if v is not None)
    result: dict[str, Any] = {
        "monitoring_to_retrain_energy_ratio": _ratio(
            gated["median_skipped_monitoring_kwh"], gated["median_retrained_retrain_to_deploy_kwh"]
        ),
        "gated_vs_scheduled_same_window_energy_ratio": _ratio(gated["energy_kwh"], same["energy_kwh"]),
        "gated_vs_scheduled_accumulated_energy_ratio": _ratio(gated["energy_kwh"], accumulated["energy_kwh"]),
        "gated_vs_scheduled_auc_delta": (statistics.mean(g - s for g, s in compared) if compared else None),
        "compression_to_retrain_energy_ratio": _ratio(
            gated["median_retrained_compression_kwh"], gated["median_retrained_retrain_kwh"]
        ),
        "final_vs_first_energy_per_1k_ratio": _ratio(highest, first),
        "drift_mwh_per_batch": None if gated["median_drift_kwh"] is None else gated["median_drift_kwh"] * 1e6,
        "energy_per_1k_predictions_kwh": per_1k,
    }
    result["targets_met"] = {
        f"{key} {bound}": None if result[key] is None else bool(test(result[key]))
        for key, (bound, test) in TARGETS.items()
    }
    return result


def print_report(
    gated: dict[str, Any], same: dict[str, Any], accumulated: dict[str, Any], window: int, result: dict[str, Any]
) -> None:
    mwh = lambda kwh: "-" if kwh is None else f"{kwh * 1e6:.2f}"  # noqa: E731
    auc = lambda value: "-" if value is None else f"{value:.4f}"  # noqa: E731
    print(
        f"{'arm':<28} {'retrains':>8} {'total mWh':>10} {'monitoring':>10} {'training':>9} {'compression':>11} "
        f"{'scoring':>8} {'mean AUC':>8}"
    )
    print(
        f"{'gated':<28} {gated['retrains']:>8} {mwh(gated['energy_kwh']):>10} {mwh(gated['monitoring_kwh']):>10} "
        f"{mwh(gated['training_kwh']):>9} {mwh(gated['compression_kwh']):>11} {mwh(gated['scoring_kwh']):>8} "
        f"{auc(gated['mean_served_auc']):>8}"
    )
    for label, arm in (("(a) scheduled, last batch", same), (f"(b) scheduled, last {window}", accumulated)):
        print(
            f"{label:<28} {arm['retrains']:>8} {mwh(arm['energy_kwh']):>10} {'-':>10} {mwh(arm['training_kwh']):>9} "
            f"{'-':>11} {mwh(arm['scoring_kwh']):>8} {auc(arm['mean_served_auc']):>8}"
        )
    drift = [f"{v:.2f}" if v is not None else "-" for v in gated["drift_mwh_per_batch"]]
    print(f"drift step, mWh per batch: {' '.join(drift)}")
    per_1k = ", ".join(
        f"{name} {'-' if kwh is None else format(kwh * 1e6, '.4g')}"
        for name, kwh in result["energy_per_1k_predictions_kwh"].items()
    )
    print(f"mWh per 1,000 predictions of each version that served: {per_1k}")
    print(f"gated actions: {', '.join(f'{i}:{a}' for i, a in enumerate(gated['actions']) if a != 'skipped')}")
    for key, value in result.items():
        if key not in ("targets_met", "energy_per_1k_predictions_kwh"):
            print(f"{key}: {'null' if value is None else format(value, '.4g')}")
    print("targets: " + ", ".join(f"{key} {value}" for key, value in result["targets_met"].items()))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print every figure as one JSON object, last")
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW, help="batches the accumulated job trains on")
    parser.add_argument("--repetitions", type=int, default=DEFAULT_REPETITIONS, help="timings per version (>= 5)")
    args = parser.parse_args(argv)
    if args.repetitions < DEFAULT_REPETITIONS or args.window < 2:
        parser.error("--repetitions must be >= 5 and --window >= 2")
    started = time.perf_counter()
    with measure_energy(ENERGY):
        pass  # the first measurement in a process loads the machine's power model: keep it out of the figures
    batches = [(SPEC.batch_name(day), generate_day(SPEC, day)) for day in range(SPEC.days)]
    stream = Stream("lifecycle", LABEL, batches, SPEC.days, None)
    run = gated_arm(stream)
    tuned = tuned_like(ScheduledSettings(), run)
    same, same_s = scheduled_arm(stream, tuned, "scheduled (a)")
    accumulated, accumulated_s = scheduled_arm(
        stream, dataclasses.replace(tuned, window_batches=args.window), "scheduled (b)"
    )
    print(f"timing {len(run.served_versions)} served versions on {TIMING_ROWS} rows", file=sys.stderr, flush=True)
    per_1k = energy_per_1k(run.served_versions, args.repetitions)
    gated = gated_figures(run)
    same_figures, accumulated_figures = scheduled_figures(same, same_s), scheduled_figures(accumulated, accumulated_s)
    result = summary(gated, same_figures, accumulated_figures, per_1k)
    print_report(gated, same_figures, accumulated_figures, args.window, result)
    seconds = time.perf_counter() - started
    print(f"total {seconds:.0f} s")
    if args.json:
        extra = {
            "gated": gated,
            "scheduled_same_window": same_figures,
            "scheduled_accumulated": accumulated_figures,
            "window": args.window,
            "repetitions": args.repetitions,
            "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
            "seconds": seconds,
        }
        print(json.dumps(result | extra))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
