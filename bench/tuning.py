"""Tuning: TPE with pruning against random search and a grid over the same 144 points (issue 16).

The space: num_leaves {15, 31, 63, 127} x learning_rate {0.03, 0.1, 0.3} x min_data_in_leaf (LightGBM's name of
min_child_samples) {10, 20, 50, 100} x feature_fraction {0.6, 0.8, 1.0}. Each point of a task, and the pipeline's
default parameters, is trained once as the pipeline's full retrain (``trainer.full_retrain``: early-stopped, at most
500 trees), its energy measured, every round's validation AUC and the model's test AUC kept. The grid is that table.
The studies replay it through the pipeline's own study loop (``training.study.run_study``: its budget stop, its
enqueued trials, its warm start): TPE and random search choose parameters in the grid's box, each trial snapped to
the nearest point (on a log scale but feature_fraction), its recorded validation curve fed round by round to Optuna's
``LightGBMPruningCallback``, and a pruned trial charged its point's energy pro rata to the rounds it ran. So five
seeds of every study cost a replay, not a training, and the bench prints its JSON in minutes on 2 cores.

Tasks: the built-in stream (day 0, 20,000 rows; the drifted batch is day 11, after its concept drift) and a harder
one, ``make_classification(n_samples=200_000, n_features=40, n_informative=12, n_redundant=8, flip_y=0.05,
class_sep=0.6, random_state=0)``, subsampled (``--harder-rows``) so that its grid fits the time; its drifted batch
is the same call with flip_y 0.10 and class_sep 0.5 (same random_state: the same informative directions, noisier).
Each batch is split 60/20/20 as the pipeline splits; AUC is on the test rows, which no study sees.

Figures, medians over 5 seeds: the energy TPE+pruning spends until its incumbent (best validation AUC so far) comes
within 0.002 test AUC of the grid's best point (best validation AUC) / the grid's energy; the incumbent's test AUC
over the default parameters' after the study; and a study warm-started from a first study (on the first batch)
against a cold one with the same budget on the drifted batch: the energy until each comes within 0.002 test AUC of
the cold study's final incumbent.

    python bench/tuning.py [--json] [--harder-rows 6000] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import product
from typing import Any

#: LightGBM's OpenMP threads otherwise spin while they wait, which counts as CPU time, i.e. energy (see bench/arms.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import lightgbm as lgb
import optuna
import pandas as pd
from optuna.pruners import NopPruner
from optuna.samplers import RandomSampler
from optuna_integration.lightgbm import LightGBMPruningCallback
from sklearn.datasets import make_classification
from tasks import HARDER_TASK

from green_pipeline.data.schema import DatasetSpec, FeatureSchema, infer_schema
from green_pipeline.demo.stream import LABEL, StreamSpec, generate_day
from green_pipeline.energy.measurement import EnergySettings, measure_energy
from green_pipeline.training.evaluation import auc
from green_pipeline.training.study import Evaluated, TuningStudy, run_study
from green_pipeline.training.trainer import BatchSplit, TrainingSettings, full_retrain, split_batch
from green_pipeline.training.tuning import LOG_SCALE, TunedParams, TuningHistory, TuningSettings

GRID = {
    "learning_rate": (0.03, 0.1, 0.3),
    "num_leaves": (15, 31, 63, 127),
    "min_data_in_leaf": (10, 20, 50, 100),
    "feature_fraction": (0.6, 0.8, 1.0),
}
POINTS = [TunedParams(*values) for values in product(*GRID.values())]
#: One thread per point, two points at once: on small batches LightGBM's second thread adds little but overhead.
SETTINGS = TrainingSettings(num_threads=1)
DEFAULTS = TunedParams.of(TrainingSettings())
ENERGY = EnergySettings()
SEEDS = (0, 1, 2, 3, 4)
#: Trials of the studies compared with the grid (a quarter of its points), and of the warm and cold studies.
SEARCH_TRIALS = 36
WARM_TRIALS = 12
WITHIN_AUC = 0.002
#: A budget no study reaches: trial counts limit these studies, so that each is followed to the same length.
NO_KWH_LIMIT = 1.0
HARDER_DRIFTED = {**HARDER_TASK, "flip_y": 0.10, "class_sep": 0.5}
BUILTIN_DRIFTED_DAY = 11
TARGETS = {
    "tuning_energy_to_reach_grid_best_ratio": ("<=", 0.20),
    "tuning_auc_gain_vs_default": (">=", 0.005),
    "warm_started_study_energy_ratio": ("<=", 0.5),
}


@dataclass(frozen=True)
class Point:
    """One parameter set trained once: its validation curve (one AUC per round), the early-stopped model's validation
    and test AUC and trees, and what training it cost."""

    curve: tuple[float, ...]
    valid_auc: float
    test_auc: float
    trees: int
    energy_kwh: float
    duration_s: float


def batch(name: str, harder_rows: int) -> tuple[BatchSplit, FeatureSchema]:
    """A task's batch split as the pipeline splits it (60/20/20, seeded by its name)."""
    if name.startswith("builtin"):
        frame, label = generate_day(StreamSpec(), BUILTIN_DRIFTED_DAY if name.endswith("drifted") else 0), LABEL
    else:
        features, labels = make_classification(**(HARDER_DRIFTED if name.endswith("drifted") else HARDER_TASK))
        frame = pd.DataFrame(features, columns=[f"x{i}" for i in range(features.shape[1])]).assign(label=labels)
        frame, label = frame.head(harder_rows), "label"  # make_classification shuffles its rows
    schema = infer_schema(frame, DatasetSpec(label=label), name)
    return split_batch(frame, label, name, name), schema


_BATCHES: dict[str, tuple[BatchSplit, FeatureSchema]] = {}


def measure_point(name: str, harder_rows: int, params: TunedParams) -> Point:
    """Train ``params`` on the batch as the pipeline's full retrain, in a worker process that keeps the batch."""
    if name not in _BATCHES:
        _BATCHES[name] = batch(name, harder_rows)
        with measure_energy(ENERGY):
            pass  # the first measurement in a process loads the machine's power model: keep it out of the figures
    split, schema = _BATCHES[name]
    curve: list[float] = []

    def record(env: lgb.callback.CallbackEnv) -> None:
        curve.append(next(value for _, metric, value, *_ in env.evaluation_result_list if metric == "auc"))

    with measure_energy(ENERGY) as measurement:
        result = full_retrain(split, schema, params.applied_to(SETTINGS), callbacks=[record])
    report = measurement.report
    assert report is not None and report.energy_kwh is not None, "the bench needs energy figures"
    test = auc(result.booster, split.test, schema)
    return Point(tuple(curve), result.valid_auc, test, result.trees, report.energy_kwh, report.duration_s)


def tables(names: Sequence[str], harder_rows: int, workers: int) -> dict[str, dict[TunedParams, Point]]:
    """Every grid point and the defaults of each batch, trained ``workers`` at a time."""
    jobs = [(name, params) for name in names for params in [*POINTS, DEFAULTS]]
    done: dict[str, dict[TunedParams, Point]] = {name: {} for name in names}
    with ProcessPoolExecutor(workers) as pool:
        futures = [(name, params, pool.submit(measure_point, name, harder_rows, params)) for name, params in jobs]
        for index, (name, params, future) in enumerate(futures, 1):
            done[name][params] = future.result()
            if index % 29 == 0 or index == len(futures):
                print(f"[tables] {index}/{len(futures)} points trained", file=sys.stderr, flush=True)
    return done


def snapped(params: TunedParams) -> TunedParams:
    """The grid point nearest ``params``, per parameter (log scale but feature_fraction)."""

    def distance(name: str, a: float, b: float) -> float:
        return abs(math.log(a) - math.log(b)) if name in LOG_SCALE else abs(a - b)

    return TunedParams(
        **{name: min(choices, key=lambda c: distance(name, getattr(params, name), c)) for name, choices in GRID.items()}
    )


class Replay:
    """A study's trials answered from a table: the point's validation curve goes through the pruning callback round
    by round; ``test_auc`` keeps each trial's test AUC (NaN when pruned), in the order run."""

    def __init__(self, table: dict[TunedParams, Point]) -> None:
        self.table = table
        self.test_auc: list[float] = []

    def __call__(self, params: TunedParams, trial: optuna.Trial) -> Evaluated:
        point = self.table.get(params) or self.table[snapped(params)]
        pruning = LightGBMPruningCallback(trial, "auc", valid_name="valid")
        for round_, value in enumerate(point.curve):
            env = lgb.callback.CallbackEnv(None, {}, round_, 0, len(point.curve), [("valid", "auc", value, True)])
            try:
                pruning(env)
            except optuna.TrialPruned:
                self.test_auc.append(math.nan)
                share = (round_ + 1) / len(point.curve)
                return Evaluated(None, None, point.energy_kwh * share, point.duration_s * share)
        self.test_auc.append(point.test_auc)
        return Evaluated(point.valid_auc, point.trees, point.energy_kwh, point.duration_s)


@dataclass(frozen=True)
class Replayed:
    study: TuningStudy
    test_auc: list[float]

    def incumbents(self) -> list[tuple[float, float | None]]:
        """(energy spent, the incumbent's test AUC) after each trial; the incumbent is the best validation AUC yet."""
        spent, best, incumbent, path = 0.0, -math.inf, None, []
        for trial, test in zip(self.study.trials, self.test_auc, strict=True):
            spent += trial.energy_kwh or 0.0
            if not trial.pruned and trial.valid_auc > best:
                best, incumbent = trial.valid_auc, test
            path.append((spent, incumbent))
        return path

    def energy_to_reach(self, target_auc: float) -> float | None:
        """Energy until the incumbent's test AUC is within ``WITHIN_AUC`` of ``target_auc``; None if it never is."""
        return next(
            (kwh for kwh, test in self.incumbents() if test is not None and test >= target_auc - WITHIN_AUC), None
        )

    @property
    def final_auc(self) -> float:
        final = self.incumbents()[-1][1]
        assert final is not None
        return final


def replay(
    table: dict[TunedParams, Point], trials: int, seed: int, history: TuningHistory | None = None, **kwargs: Any
) -> Replayed:
    """The pipeline's study (TPE, median pruning, the defaults enqueued) on ``table``; ``kwargs`` for other arms."""
    evaluate = Replay(table)
    settings = TuningSettings(max_trials=trials, budget_kwh=NO_KWH_LIMIT, seed=seed)
    defaults = kwargs.pop("defaults", DEFAULTS)
    return Replayed(run_study(evaluate, settings, defaults, history, **kwargs), evaluate.test_auc)


def median(values: Sequence[float | None]) -> float | None:
    """The median with a study that never got there counted as infinite; None when that is the median."""
    middle = statistics.median(math.inf if value is None else value for value in values)
    return None if math.isinf(middle) else middle


def search_figures(name: str, table: dict[TunedParams, Point]) -> dict[str, Any]:
    """TPE+pruning and random search against the grid on one batch, medians over the seeds."""
    grid = {params: table[params] for params in POINTS}
    grid_energy = sum(point.energy_kwh for point in grid.values())
    best = max(grid.values(), key=lambda point: point.valid_auc)
    runs: dict[str, list[Replayed]] = {"tpe": [], "random": []}
    for seed in SEEDS:
        runs["tpe"].append(replay(table, SEARCH_TRIALS, seed))
        random_arm = {"sampler": RandomSampler(seed=seed), "pruner": NopPruner(), "defaults": None}
        runs["random"].append(replay(table, SEARCH_TRIALS, seed, **random_arm))
    figures: dict[str, Any] = {
        "grid_points": len(grid),
        "grid_energy_kwh": grid_energy,
        "grid_best_test_auc": best.test_auc,
        "grid_best_valid_auc": best.valid_auc,
        "oracle_best_test_auc": max(point.test_auc for point in grid.values()),
        "default_test_auc": table[DEFAULTS].test_auc,
        "default_energy_kwh": table[DEFAULTS].energy_kwh,
    }
    for arm, replays in runs.items():
        reach = [r.energy_to_reach(best.test_auc) for r in replays]
        ratio = median([None if kwh is None else kwh / grid_energy for kwh in reach])
        figures |= {
            f"{arm}_energy_to_reach_grid_best_ratio": ratio,
            f"{arm}_reached_seeds": sum(kwh is not None for kwh in reach),
            f"{arm}_study_energy_ratio": median([r.incumbents()[-1][0] / grid_energy for r in replays]),
            f"{arm}_final_test_auc": median([r.final_auc for r in replays]),
            f"{arm}_auc_gain_vs_default": median([r.final_auc - table[DEFAULTS].test_auc for r in replays]),
        }
    figures["tpe_trials_pruned"] = median([sum(t.pruned for t in r.study.trials) for r in runs["tpe"]])
    print(f"[{name}] {json.dumps(figures)}", file=sys.stderr, flush=True)
    return figures


def warm_figures(name: str, first: dict[TunedParams, Point], drifted: dict[TunedParams, Point]) -> dict[str, Any]:
    """A study on the drifted batch warm-started from one on the first batch, against a cold one with its budget."""
    ratios, gaps, warm_kwh, cold_kwh = [], [], [], []
    for seed in SEEDS:
        history = replay(first, WARM_TRIALS, seed).study.history()
        warm, cold = replay(drifted, WARM_TRIALS, seed, history), replay(drifted, WARM_TRIALS, seed)
        target = cold.final_auc
        warm_reach, cold_reach = warm.energy_to_reach(target), cold.energy_to_reach(target)
        assert cold_reach is not None  # the cold study reaches its own final incumbent
        ratios.append(None if warm_reach is None else warm_reach / cold_reach)
        gaps.append(warm.final_auc - cold.final_auc)
        warm_kwh.append(warm_reach)
        cold_kwh.append(cold_reach)
    figures = {
        "warm_started_study_energy_ratio": median(ratios),
        "warm_minus_cold_final_test_auc": statistics.median(gaps),
        "warm_energy_to_reach_kwh": median(warm_kwh),
        "cold_energy_to_reach_kwh": median(cold_kwh),
        "trials_per_study": WARM_TRIALS,
    }
    print(f"[{name} warm] {json.dumps(figures)}", file=sys.stderr, flush=True)
    return figures


def worst(values: Sequence[float | None], higher_is_better: bool = False) -> float | None:
    """The figure furthest from its target over the tasks (a study that never got there: None)."""
    if any(value is None for value in values):
        return None
    numbers = [value for value in values if value is not None]
    return min(numbers) if higher_is_better else max(numbers)


def met(key: str, value: float | None) -> bool:
    op, target = TARGETS[key]
    return value is not None and (value <= target if op == "<=" else value >= target)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print every figure as one JSON object, last")
    parser.add_argument("--harder-rows", type=int, default=6_000, help="rows of the 200k-row task each batch keeps")
    parser.add_argument("--workers", type=int, default=2, help="points trained at once (one thread each)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = ["builtin", "builtin-drifted", "harder", "harder-drifted"]
    table = tables(names, args.harder_rows, args.workers)
    search = {task: search_figures(task, table[task]) for task in ("builtin", "harder")}
    warm = {task: warm_figures(task, table[task], table[f"{task}-drifted"]) for task in ("builtin", "harder")}
    tasks = ("builtin", "harder")
    result: dict[str, Any] = {
        "tuning_energy_to_reach_grid_best_ratio": worst(
            [search[t]["tpe_energy_to_reach_grid_best_ratio"] for t in tasks]
        ),
        "tuning_auc_gain_vs_default": search["harder"]["tpe_auc_gain_vs_default"],
        "warm_started_study_energy_ratio": worst([warm[t]["warm_started_study_energy_ratio"] for t in tasks]),
    }
    result["targets_met"] = {key: met(key, result[key]) for key in TARGETS}
    seconds = time.perf_counter() - started
    for key, value in result.items():
        print(f"{key}: {value}")
    print(f"total {seconds:.0f} s")
    if args.json:
        extra = {
            "search": search,
            "warm": warm,
            "harder_rows": args.harder_rows,
            "workers": args.workers,
            "seeds": len(SEEDS),
            "search_trials": SEARCH_TRIALS,
            "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
            "seconds": seconds,
        }
        print(json.dumps(result | extra))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
