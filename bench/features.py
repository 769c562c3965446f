"""Feature selection as a compression step: the pipeline's monitoring cost per batch with and without it.

The harder task: ``make_classification(n_samples=200_000, n_features=40, n_informative=12, n_redundant=8,
flip_y=0.05, class_sep=0.6, random_state=0)``, i.e. 20 columns that carry the signal and 20 of pure noise, cut into
``--days`` daily Parquet batch files with a label column. Both arms are the pipeline itself (``runner.process_batches``
on an ephemeral instance each, bench/arms.py) with today's defaults, run in lockstep (batch by batch, alternating) so
they share the machine's load; one sets ``compressed_model``'s ``feature_selection``.
The first batch trains (and, with selection, narrows the schema); every later batch is read, validated and
drift-tested against the serving version.

- ``feature_selection_monitoring_energy_ratio``: the median energy of ingested_batch + validated_batch + drift_report
  per batch judged against a champion, with selection over without (the ``energy_kwh`` each step recorded);
- ``feature_selection_auc_delta``: the mean over those batches of the served version's AUC on the whole batch, with
  selection minus without.

Why the setting is off by default (``concept_drift_risk``): on the built-in stream, the features the rule keeps on day 0
lose little AUC that day, and much more after the day-11 concept drift moves the signal onto columns it dropped, which
no later retrain can see again. Each model is a full retrain with the pipeline's settings, tested on held-out rows.

    python bench/features.py [--json] [--days 20] [--gain-share 0.85]

Progress goes to stderr; with ``--json`` the last line printed is one JSON object holding every figure. A figure that
was not measured is null, never 0.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from typing import Any

import pandas as pd
from arms import ENERGY, Gated, GatedRun, Stream, action, gated_arms
from lifecycle import _median, step_energy
from sklearn.datasets import make_classification
from tasks import HARDER_TASK

from green_pipeline.compression.search import CompressionSettings
from green_pipeline.compression.selection import gain_prefix
from green_pipeline.data.schema import DatasetSpec, FeatureSchema, infer_schema
from green_pipeline.data.validation import validate_batch
from green_pipeline.demo.stream import LABEL as DEMO_LABEL
from green_pipeline.demo.stream import StreamSpec, generate_day
from green_pipeline.drift.assessment import feature_importance
from green_pipeline.energy.measurement import MeasuredSum, measure_energy
from green_pipeline.orchestration.metadata import DRIFT_REPORT, INGESTED_BATCH, VALIDATED_BATCH
from green_pipeline.store.model_store import DROPPED_FEATURES_KEY
from green_pipeline.training.evaluation import auc
from green_pipeline.training.trainer import TrainingSettings, full_retrain, split_batch

LABEL = "label"
DEFAULT_DAYS = 20
START = date(2026, 1, 1)
STEPS = {"ingest": INGESTED_BATCH, "validate": VALIDATED_BATCH, "drift": DRIFT_REPORT}
#: The built-in stream's concept drift starts on day 11; day 12 is after it.
DEMO = StreamSpec()
DRIFTED_DAY = 12
RISK_SHARES = (0.9, 0.95)
TARGETS: dict[str, tuple[str, Callable[[float], bool]]] = {
    "feature_selection_monitoring_energy_ratio": ("<= 0.6", lambda v: v <= 0.6),
    "feature_selection_auc_delta": (">= -0.005", lambda v: v >= -0.005),
}


def stream(days: int) -> Stream:
    """The task's rows in ``days`` daily batches (make_classification shuffles rows and columns)."""
    features, labels = make_classification(**HARDER_TASK)
    frame = pd.DataFrame(features, columns=[f"x{i:02d}" for i in range(features.shape[1])]).assign(**{LABEL: labels})
    rows = len(frame) // days
    batches = [
        (f"batch-{START + timedelta(days=day):%Y-%m-%d}.parquet", frame.iloc[day * rows : (day + 1) * rows])
        for day in range(days)
    ]
    return Stream("features", LABEL, [(name, part.reset_index(drop=True)) for name, part in batches], days, None)


def _step(batch: Gated, step: str) -> float | None:
    """One monitoring step's energy in the batch's run, as ``lifecycle.step_energy`` sums a group's."""
    energy = MeasuredSum.of(e.energy_kwh for e in batch.entries if e.asset_key == STEPS[step])
    return None if energy.unmeasured else energy.total


def arm_figures(run: GatedRun) -> dict[str, Any]:
    """Monitoring energy per batch judged against a champion (all but the first), per step too, and served AUCs."""
    judged = [b for b in run.batches[1:] if b.outcome.success]
    versions = list(run.served_versions.values())
    first = versions[0] if versions else None
    return {
        "batches": len(run.batches),
        "failed": {b.outcome.batch: b.outcome.error for b in run.batches if not b.outcome.success},
        "actions": [action(b.outcome) for b in run.batches],
        "monitoring_mwh_per_batch": [None if (e := step_energy(b, "monitoring")) is None else e * 1e6 for b in judged],
        "median_monitoring_kwh": _median([step_energy(b, "monitoring") for b in judged]),
        **{f"median_{step}_kwh": _median([_step(b, step) for b in judged]) for step in STEPS},
        "served_auc": [b.served_auc for b in run.batches],
        "features": None if first is None else len(first.schema.features),
        "dropped_features": [] if first is None else first.metadata.get(DROPPED_FEATURES_KEY, []),
        "first_version_trees": None if first is None else first.metadata["metrics"]["trees"],
        "first_version_energy_per_1k_predictions_kwh": (
            None if first is None else first.metadata["metrics"]["energy_per_1k_predictions_kwh"]
        ),
        "wall_s": run.seconds,
    }


def summary(without: dict[str, Any], with_: dict[str, Any]) -> dict[str, Any]:
    """The issue's keys and each target met or missed (None when a figure is unmeasured)."""
    pairs = zip(with_["served_auc"][1:], without["served_auc"][1:], strict=False)
    compared = [(w, o) for w, o in pairs if w is not None and o is not None]
    base, selected = without["median_monitoring_kwh"], with_["median_monitoring_kwh"]
    result: dict[str, Any] = {
        "feature_selection_monitoring_energy_ratio": selected / base if selected is not None and base else None,
        "feature_selection_auc_delta": statistics.mean(w - o for w, o in compared) if compared else None,
        **{
            f"feature_selection_{step}_energy_ratio": (
                with_[f"median_{step}_kwh"] / without[f"median_{step}_kwh"]
                if with_[f"median_{step}_kwh"] is not None and without[f"median_{step}_kwh"]
                else None
            )
            for step in STEPS
        },
        "features_kept": with_["features"],
        "features_total": without["features"],
    }
    result["targets_met"] = {
        f"{key} {bound}": None if result[key] is None else bool(test(result[key]))
        for key, (bound, test) in TARGETS.items()
    }
    return result


def monitoring_to_prediction(without: dict[str, Any], rows: int) -> float | None:
    """Monitoring one value (a row of one column) in predictions of one row through one tree: the calibration of
    ``payback.MONITOR_TO_PREDICT``, from the arm without selection (its monitoring and its first version's timing)."""
    monitoring, per_1k = without["median_monitoring_kwh"], without["first_version_energy_per_1k_predictions_kwh"]
    if monitoring is None or not isinstance(per_1k, float) or not without["first_version_trees"]:
        return None
    per_row_tree = per_1k / 1000.0 / without["first_version_trees"]
    return monitoring / (rows * without["features"]) / per_row_tree


def print_report(without: dict[str, Any], with_: dict[str, Any], result: dict[str, Any]) -> None:
    mwh = lambda kwh: "-" if kwh is None else f"{kwh * 1e6:.3f}"  # noqa: E731
    header = ("features", "monitoring mWh", "ingest", "validate", "drift", "wall s")
    print(f"{'arm':<20} {header[0]:>8} {header[1]:>14} {' '.join(f'{h:>8}' for h in header[2:])}")
    for label, arm in (("without selection", without), ("with selection", with_)):
        print(
            f"{label:<20} {arm['features']!s:>8} {mwh(arm['median_monitoring_kwh']):>14} "
            f"{mwh(arm['median_ingest_kwh']):>8} {mwh(arm['median_validate_kwh']):>8} "
            f"{mwh(arm['median_drift_kwh']):>8} {arm['wall_s']:>8.0f}"
        )
        print(f"  actions: {', '.join(f'{i}:{a}' for i, a in enumerate(arm['actions']) if a != 'skipped')}")
    print(f"dropped: {', '.join(with_['dropped_features'])}")
    for key, value in result.items():
        if key == "builtin_stream_concept_drift_risk":
            for share, figures in value.items():
                print(f"built-in stream, gain share {share}: {figures}")
        elif key != "targets_met":
            print(f"{key}: {'null' if value is None else format(value, '.4g')}")
    print("targets: " + ", ".join(f"{key} {value}" for key, value in result["targets_met"].items()))


def concept_drift_risk() -> dict[str, Any]:
    """On the built-in stream: the features the rule keeps on day 0, and the test AUC of a model retrained on them
    minus one retrained on every feature, on day 0 and after the concept drift, for each gain share."""
    print(f"built-in stream: retrains on day 0 and day {DRIFTED_DAY}", file=sys.stderr, flush=True)
    day0 = generate_day(DEMO, 0)
    schema = infer_schema(day0, DatasetSpec(label=DEMO_LABEL), "day 0")
    days = {day: validate_batch(generate_day(DEMO, day), schema, f"day {day}")[0] for day in (0, DRIFTED_DAY)}
    splits = {day: split_batch(frame, DEMO_LABEL, DEMO.batch_name(day), f"day {day}") for day, frame in days.items()}

    def test_auc(day: int, features: FeatureSchema) -> float:
        return auc(full_retrain(splits[day], features, TrainingSettings()).booster, splits[day].test, features)

    full = {day: test_auc(day, schema) for day in splits}
    importance = feature_importance(full_retrain(splits[0], schema, TrainingSettings()).booster)
    risk: dict[str, Any] = {}
    for share in RISK_SHARES:
        kept = schema.restricted_to(gain_prefix(importance, share))
        risk[str(share)] = {
            "dropped": [c for c in schema.features if c not in kept.features],
            "day_0_auc_delta": test_auc(0, kept) - full[0],
            f"day_{DRIFTED_DAY}_auc_delta": test_auc(DRIFTED_DAY, kept) - full[DRIFTED_DAY],
        }
    return risk


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print every figure as one JSON object, last")
    parser.add_argument("--days", type=int, default=DEFAULT_DAYS, help="daily batches the 200,000 rows are cut into")
    parser.add_argument(
        "--gain-share",
        type=float,
        default=CompressionSettings().feature_gain_share,
        help="feature_gain_share of the arm with selection (default: the pipeline's)",
    )
    args = parser.parse_args(argv)
    if not 2 <= args.days <= 100 or not 0.0 < args.gain_share <= 1.0:
        parser.error("--days must be between 2 and 100 and --gain-share in (0, 1]")
    started = time.perf_counter()
    with measure_energy(ENERGY):
        pass  # the first measurement in a process loads the machine's power model: keep it out of the figures
    batches = stream(args.days)
    rows = len(batches.batches[0][1])
    selection = {"feature_selection": True, "feature_gain_share": args.gain_share}
    runs = gated_arms(batches, {"without selection": None, "with selection": selection})
    without, with_ = arm_figures(runs["without selection"]), arm_figures(runs["with selection"])
    result = summary(without, with_)
    result["monitoring_value_to_row_tree_prediction"] = monitoring_to_prediction(without, rows)
    result["builtin_stream_concept_drift_risk"] = concept_drift_risk()
    print_report(without, with_, result)
    seconds = time.perf_counter() - started
    print(f"total {seconds:.0f} s")
    if args.json:
        extra = {
            "without_selection": without,
            "with_selection": with_,
            "days": args.days,
            "rows_per_batch": rows,
            "feature_gain_share": args.gain_share,
        }
        print(json.dumps(result | extra | {"seconds": seconds}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
