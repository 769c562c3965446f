"""The tuning study: trials run one by one, each a measured early-stopped full retrain, until the trial count or
the kWh budget (``tuning.budget_allows``); TPE chooses the parameters and a median pruner stops a trial whose
validation curve falls behind. The policy of when to tune and what travels with a version is ``training.tuning``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import optuna
import pandas as pd
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution
from optuna.pruners import BasePruner, MedianPruner
from optuna.samplers import BaseSampler, TPESampler
from optuna.trial import FrozenTrial, TrialState
from optuna_integration.lightgbm import LightGBMPruningCallback

from green_pipeline.data.schema import FeatureSchema
from green_pipeline.energy.measurement import EnergySettings, EnergyStatus, complete_sum, measure_energy
from green_pipeline.training.trainer import BatchSplit, TrainingSettings, TrainResult, full_retrain
from green_pipeline.training.tuning import (
    Origin,
    TrialRecord,
    TunedParams,
    TuningHistory,
    TuningSettings,
    budget_allows,
    search_space,
)

_ORIGIN = "origin"


@dataclass(frozen=True)
class Evaluated:
    """What one trial's training gave: its validation AUC and trees (None when pruned) and its energy."""

    valid_auc: float | None
    trees: int | None
    energy_kwh: float | None
    duration_s: float


#: Trains a trial's parameters; the Optuna trial receives the validation curve (``pruning_callback``).
Evaluate = Callable[[TunedParams, optuna.Trial], Evaluated]


@dataclass(frozen=True)
class TuningStudy:
    """The trials of a study in the order run, and why it stopped."""

    trials: tuple[TrialRecord, ...]
    stopped: str
    warm_started: bool

    @property
    def best(self) -> TrialRecord:
        return max((t for t in self.trials if not t.pruned), key=lambda t: t.valid_auc)

    @property
    def default(self) -> TrialRecord | None:
        return next((t for t in self.trials if t.origin == Origin.DEFAULT and not t.pruned), None)

    @property
    def auc_gain_vs_default(self) -> float | None:
        """Validation AUC of the best trial over the default parameters' (0.0 when the defaults won)."""
        return None if self.default is None else self.best.valid_auc - self.default.valid_auc

    @property
    def energy_kwh(self) -> float | None:
        return complete_sum(trial.energy_kwh for trial in self.trials)

    def history(self) -> TuningHistory:
        return TuningHistory(self.best.params, self.trials)

    def metadata(self) -> dict[str, float | int | str | bool]:
        """Flat figures for ``retrained_model``; an unmeasured energy is said, never zeroed."""
        energy = self.energy_kwh
        values: dict[str, float | int | str | bool | None] = {
            "tuning_trials": len(self.trials),
            "tuning_trials_pruned": sum(trial.pruned for trial in self.trials),
            "tuning_best_valid_auc": self.best.valid_auc,
            "tuning_auc_gain_vs_default": self.auc_gain_vs_default,
            "tuning_warm_started": self.warm_started,
            "tuning_stopped": self.stopped,
            "tuning_energy_kwh": energy,
            "tuning_energy_per_trial_kwh": None if energy is None else energy / len(self.trials),
        }
        if energy is None:
            values["tuning_energy"] = EnergyStatus.UNMEASURED.value
        return {key: value for key, value in values.items() if value is not None}

    def trials_table(self) -> str:
        """The trials as a Markdown table, best marked, for reading in the UI."""
        lines = [
            "| trial | origin | learning_rate | num_leaves | min_data_in_leaf | feature_fraction | state | valid AUC "
            "| trees | energy kWh | seconds |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        best = self.best.number
        for t in self.trials:
            kwh = EnergyStatus.UNMEASURED.value if t.energy_kwh is None else f"{t.energy_kwh:.3g}"
            state = "pruned" if t.pruned else "best" if t.number == best else "complete"
            p = t.params
            lines.append(
                f"| {t.number} | {t.origin} | {p.learning_rate:.4g} | {p.num_leaves} | {p.min_data_in_leaf} | "
                f"{p.feature_fraction:.3g} | {state} | {t.valid_auc:.4f} | {t.trees} | {kwh} | {t.duration_s:.2f} |"
            )
        gain = self.auc_gain_vs_default
        said = "not measured (no default trial)" if gain is None else f"{gain:+.4f} validation AUC"
        return "\n".join([*lines, "", f"Gain over the default parameters: {said}.", "", f"Stopped: {self.stopped}."])


def default_pruner(tuning: TuningSettings) -> BasePruner:
    """Prune a trial whose validation AUC falls below the median of the trials before it at the same round."""
    return MedianPruner(n_startup_trials=1, n_warmup_steps=tuning.pruning_warmup_rounds)


class _SparingBaselines(BasePruner):
    """Never prunes an enqueued trial: the default parameters' AUC must be measured to the end for the gain."""

    def __init__(self, inner: BasePruner) -> None:
        self.inner = inner

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        return trial.user_attrs.get(_ORIGIN, Origin.SAMPLED) == Origin.SAMPLED and self.inner.prune(study, trial)


def run_study(
    evaluate: Evaluate,
    tuning: TuningSettings,
    defaults: TunedParams | None,
    history: TuningHistory | None = None,
    sampler: BaseSampler | None = None,
    pruner: BasePruner | None = None,
) -> TuningStudy:
    """Trials until ``max_trials`` or the budget: the champion's best and ``defaults`` first, then TPE's choices.

    ``history`` (the champion's study) warm-starts it: its complete trials are added, its best is enqueued and the
    search narrowed around it. ``sampler`` and ``pruner`` replace TPE and the median pruner (bench/tuning.py).
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the trials are reported in metadata, not as log lines
    study = optuna.create_study(
        direction="maximize",
        sampler=sampler or TPESampler(seed=tuning.seed, n_startup_trials=tuning.startup_trials, multivariate=True),
        pruner=_SparingBaselines(pruner or default_pruner(tuning)),
    )
    if history is not None:
        study.add_trials(_past_trials(history, search_space(tuning)))
    space = search_space(tuning, history.best_params if history else None)
    baselines = _baselines(history, defaults)
    for params, origin in baselines:
        study.enqueue_trial(params.as_json(), user_attrs={_ORIGIN: origin.value})
    records: list[TrialRecord] = []
    stopped = f"policy.tuning_max_trials {tuning.max_trials} reached"
    while len(records) < tuning.max_trials:
        if not budget_allows([r.energy_kwh for r in records], tuning.budget_kwh):
            stopped = (
                f"{len(records)} trials spent {complete_sum(r.energy_kwh for r in records):.3g} kWh; the next could "
                f"pass policy.tuning_budget_kwh {tuning.budget_kwh:.3g}"
            )
            break
        queued = baselines[len(records)][0] if len(records) < len(baselines) else None
        trial = study.ask(space if queued is None else _containing(space, queued))
        evaluated = evaluate(TunedParams.from_json(trial.params), trial)
        if evaluated.valid_auc is None:
            frozen = study.tell(trial, state=TrialState.PRUNED)
        else:
            frozen = study.tell(trial, evaluated.valid_auc)
        records.append(_record(len(records), frozen, evaluated))
    return TuningStudy(tuple(records), stopped, history is not None)


def _baselines(history: TuningHistory | None, defaults: TunedParams | None) -> list[tuple[TunedParams, Origin]]:
    """The champion's best, then the defaults; once only when they are the same (then it is the default trial)."""
    queued = [] if history is None or history.best_params == defaults else [(history.best_params, Origin.CHAMPION)]
    return queued if defaults is None else [*queued, (defaults, Origin.DEFAULT)]


def _past_trials(history: TuningHistory, space: Mapping[str, BaseDistribution]) -> list[FrozenTrial]:
    """The champion study's complete trials, as evidence for TPE (their AUCs are of an older batch)."""
    return [
        optuna.trial.create_trial(
            params=trial.params.as_json(),
            distributions=_containing(space, trial.params),
            value=trial.valid_auc,
            user_attrs={_ORIGIN: "history"},
        )
        for trial in history.trials
        if not trial.pruned
    ]


def _containing(space: Mapping[str, BaseDistribution], params: TunedParams) -> dict[str, BaseDistribution]:
    """``space`` widened to hold ``params`` (defaults or old trials may lie outside the bounds or the narrowed box)."""
    widened: dict[str, BaseDistribution] = {}
    for name, distribution in space.items():
        value = getattr(params, name)
        if isinstance(distribution, IntDistribution):
            low, high = min(distribution.low, int(value)), max(distribution.high, int(value))
            widened[name] = IntDistribution(low, high, log=distribution.log)
        elif isinstance(distribution, FloatDistribution):
            low_f, high_f = min(distribution.low, float(value)), max(distribution.high, float(value))
            widened[name] = FloatDistribution(low_f, high_f, log=distribution.log)
        else:
            widened[name] = distribution
    return widened


def _record(number: int, frozen: FrozenTrial, evaluated: Evaluated) -> TrialRecord:
    pruned = evaluated.valid_auc is None
    last = max(frozen.intermediate_values, default=None)
    return TrialRecord(
        number=number,
        origin=str(frozen.user_attrs.get(_ORIGIN, Origin.SAMPLED.value)),
        params=TunedParams.from_json(frozen.params),
        pruned=pruned,
        valid_auc=frozen.intermediate_values[last] if pruned and last is not None else float(frozen.value or 0.0),
        trees=last + 1 if pruned and last is not None else evaluated.trees or 0,
        energy_kwh=evaluated.energy_kwh,
        duration_s=evaluated.duration_s,
    )


def tune(
    split: BatchSplit,
    schema: FeatureSchema,
    settings: TrainingSettings,
    tuning: TuningSettings,
    energy: EnergySettings,
    extra_rows: pd.DataFrame | None = None,
    history: TuningHistory | None = None,
) -> tuple[TrainResult, TuningStudy]:
    """A tuned full retrain: each trial an early-stopped full retrain of ``split`` (plus ``extra_rows``) with its
    energy measured, pruned when its validation curve falls below the median of the trials before it. Returns the
    best trial's model and the study."""
    best: list[TrainResult] = []

    def evaluate(params: TunedParams, trial: optuna.Trial) -> Evaluated:
        pruning = LightGBMPruningCallback(trial, "auc", valid_name="valid")
        result = None
        # A pruned trial leaves no model, only its cost.
        with measure_energy(energy) as measurement, contextlib.suppress(optuna.TrialPruned):
            result = full_retrain(split, schema, params.applied_to(settings), extra_rows, [pruning])
        assert measurement.report is not None
        if result is not None and (not best or result.valid_auc > best[0].valid_auc):
            best[:] = [result]
        trees = None if result is None else result.trees
        valid_auc = None if result is None else result.valid_auc
        return Evaluated(valid_auc, trees, measurement.report.energy_kwh, measurement.report.duration_s)

    study = run_study(evaluate, tuning, TunedParams.of(settings), history)
    return best[0], study
