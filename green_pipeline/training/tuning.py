"""Energy-budgeted tuning of a full retrain: an Optuna study (TPE, median pruning on the validation curve) whose
trials are each a measured full retrain, stopped by a trial count and a kWh budget.

Tuning is an energy lever, not a cost of every retrain: it runs for the first model, for a full retrain reached by
escalation (the cheaper strategies missed the bar, so the model is rebuilt anyway) and when the policy asks for a
re-tune (``retune_every_trainings``); never on a batch whose retrain was skipped. Its best parameters and its trials
travel with the model version as JSON (``TuningHistory``): warm starts, refits and untuned full retrains keep them,
and the next study starts from them (enqueued first, its search narrowed around them, the trials added as history).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution

from green_pipeline.energy.measurement import EnergyStatus, complete_sum
from green_pipeline.errors import InvalidConfigError
from green_pipeline.training.policy import Strategy
from green_pipeline.training.trainer import TrainingSettings

#: The key of a version's tuning in its metadata.json.
METADATA_KEY = "tuning"
#: Tuned parameters searched on a log scale (a step from 15 to 31 leaves matters as much as one from 63 to 127).
LOG_SCALE = ("learning_rate", "num_leaves", "min_data_in_leaf")
INTEGERS = ("num_leaves", "min_data_in_leaf")
_Settings = TypeVar("_Settings")


@dataclass(frozen=True)
class TuningSettings:
    """The study's budget, when a re-tune is due, and the search space; ``RetrainPolicy`` takes its defaults here.

    The default budget keeps tuning cheap next to what it saves: 6 trials (the defaults and the champion's best
    among them), pruned on the validation curve, about 0.004 Wh on the built-in stream's 20,000-row batches; 0.1 Wh
    (a tenth of the per-run budget) stops a study on larger batches first (docs/RETRAINING.md).
    """

    #: Trials of one study, the enqueued ones included; 0 turns tuning off.
    max_trials: int = 6
    #: A study stops when its spend plus its dearest trial so far would pass this.
    budget_kwh: float = 0.0001
    #: Re-tune (a tuned full retrain) once the champion's parameters have served this many trainings; 0: never.
    retune_every_trainings: int = 0
    num_leaves_min: int = 15
    num_leaves_max: int = 127
    learning_rate_min: float = 0.03
    learning_rate_max: float = 0.3
    min_data_in_leaf_min: int = 10
    min_data_in_leaf_max: int = 100
    feature_fraction_min: float = 0.6
    feature_fraction_max: float = 1.0
    #: Share of each range (log scale where searched so) a warm-started study searches, centred on the champion's best.
    warm_width: float = 0.5
    #: Trials sampled at random before TPE models the results (history trials count).
    startup_trials: int = 3
    #: Boosting rounds before a trial may be pruned: early rounds rank learning rates, not models.
    pruning_warmup_rounds: int = 30
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_trials < 0 or self.retune_every_trainings < 0 or self.startup_trials < 0:
            raise InvalidConfigError(
                "policy.tuning_max_trials, policy.retune_every_trainings and policy.tuning_startup_trials must be >= 0."
            )
        if self.budget_kwh <= 0 or self.pruning_warmup_rounds < 0 or not 0.0 < self.warm_width <= 1.0:
            raise InvalidConfigError(
                f"policy.tuning_budget_kwh ({self.budget_kwh}) must be > 0, policy.tuning_warm_width "
                f"({self.warm_width}) in (0, 1] and policy.tuning_pruning_warmup_rounds >= 0."
            )
        for name, (low, high) in self.bounds().items():
            if not 0 < low <= high or (name == "feature_fraction" and high > 1.0):
                raise InvalidConfigError(
                    f"policy.tuning_{name}_min ({low}) and _max ({high}) must satisfy 0 < min <= max"
                    + (" <= 1." if name == "feature_fraction" else ".")
                )

    def bounds(self) -> dict[str, tuple[float, float]]:
        return {name: (getattr(self, f"{name}_min"), getattr(self, f"{name}_max")) for name in TUNED}


@dataclass(frozen=True)
class TunedParams:
    """The LightGBM parameters tuning chooses; ``applied_to`` sets them on any settings with these fields."""

    learning_rate: float
    num_leaves: int
    min_data_in_leaf: int
    feature_fraction: float

    @classmethod
    def of(cls, settings: TrainingSettings) -> TunedParams:
        return cls(**{name: getattr(settings, name) for name in TUNED})

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TunedParams:
        return cls(
            learning_rate=float(data["learning_rate"]),
            num_leaves=int(data["num_leaves"]),
            min_data_in_leaf=int(data["min_data_in_leaf"]),
            feature_fraction=float(data["feature_fraction"]),
        )

    def as_json(self) -> dict[str, float | int]:
        return dataclasses.asdict(self)

    def applied_to(self, settings: _Settings) -> _Settings:
        return dataclasses.replace(settings, **self.as_json())  # type: ignore[type-var]


TUNED = tuple(field.name for field in dataclasses.fields(TunedParams))


class Origin(StrEnum):
    """Why a trial ran: enqueued as the champion's best or the default parameters, or sampled."""

    CHAMPION = "champion"
    DEFAULT = "default"
    SAMPLED = "sampled"


@dataclass(frozen=True)
class TrialRecord:
    """One trial: its parameters, its validation AUC (at the round it was pruned, for a pruned one) and its cost."""

    number: int
    origin: str
    params: TunedParams
    pruned: bool
    valid_auc: float
    trees: int
    energy_kwh: float | None
    duration_s: float

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrialRecord:
        energy = data["energy_kwh"]
        return cls(
            number=int(data["number"]),
            origin=str(data["origin"]),
            params=TunedParams.from_json(data["params"]),
            pruned=bool(data["pruned"]),
            valid_auc=float(data["valid_auc"]),
            trees=int(data["trees"]),
            energy_kwh=None if energy == EnergyStatus.UNMEASURED.value else float(energy),
            duration_s=float(data["duration_s"]),
        )

    def as_json(self) -> dict[str, Any]:
        energy = EnergyStatus.UNMEASURED.value if self.energy_kwh is None else self.energy_kwh
        return {**dataclasses.asdict(self), "params": self.params.as_json(), "energy_kwh": energy}


@dataclass(frozen=True)
class TuningHistory:
    """What travels with a model version (metadata.json ``tuning``): the parameters it was trained with, the study
    that chose them, and how many trainings they have served since (a warm start of the version counts one)."""

    best_params: TunedParams
    trials: tuple[TrialRecord, ...]
    trainings_since_tuning: int = 0

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> TuningHistory | None:
        """A version's history; None for a version never tuned (or published before tuning existed)."""
        data = metadata.get(METADATA_KEY)
        if not data:
            return None
        return cls(
            best_params=TunedParams.from_json(data["best_params"]),
            trials=tuple(TrialRecord.from_json(trial) for trial in data["trials"]),
            trainings_since_tuning=int(data["trainings_since_tuning"]),
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "best_params": self.best_params.as_json(),
            "trials": [trial.as_json() for trial in self.trials],
            "trainings_since_tuning": self.trainings_since_tuning,
        }

    def next_training(self) -> TuningHistory:
        """The history of a model trained from this one's parameters without tuning."""
        return dataclasses.replace(self, trainings_since_tuning=self.trainings_since_tuning + 1)


@dataclass(frozen=True)
class TuningPlan:
    """The ladder once a due re-tune is applied, whether its full retrain is tuned, and why."""

    ladder: tuple[Strategy, ...]
    tune_full: bool
    reason: str = ""

    def tunes(self, strategy: Strategy) -> bool:
        return self.tune_full and strategy is Strategy.FULL


def plan_tuning(
    ladder: tuple[Strategy, ...], has_champion: bool, history: TuningHistory | None, tuning: TuningSettings | None
) -> TuningPlan:
    """Tune the first model, a full retrain reached by escalation, and a re-tune the policy asks for; nothing else.

    A full retrain first on the ladder (always-retrain, a provisional champion's replacement, a compacted chain) is
    not tuned: it reuses the champion's best parameters. A due re-tune replaces the ladder by a tuned full retrain.
    ``tuning`` None (a library caller's default) never tunes.
    """
    if tuning is None or tuning.max_trials == 0:
        return TuningPlan(ladder, False)
    if not has_champion:
        return TuningPlan(ladder, True, "first model: tuned")
    every = tuning.retune_every_trainings
    served = None if history is None else history.trainings_since_tuning + 1
    if every and (served is None or served >= every):
        since = "never tuned" if served is None else f"its parameters served {served} trainings"
        return TuningPlan(
            (Strategy.FULL,), True, f"re-tune: the champion's {since} (policy.retune_every_trainings {every})"
        )
    if Strategy.FULL in ladder[1:]:
        return TuningPlan(ladder, True, "a full retrain reached by escalation is tuned")
    return TuningPlan(ladder, False)


def search_space(tuning: TuningSettings, around: TunedParams | None = None) -> dict[str, BaseDistribution]:
    """The box a study searches: the settings' bounds, or ``warm_width`` of each range centred on ``around`` (the
    champion's best), so a warm-started study refines what worked rather than exploring again."""
    space: dict[str, BaseDistribution] = {}
    for name, (low, high) in tuning.bounds().items():
        log = name in LOG_SCALE
        if around is not None:
            low, high = _narrowed(low, high, getattr(around, name), tuning.warm_width, log)
        if name in INTEGERS:
            space[name] = IntDistribution(math.floor(low), math.ceil(high), log=log)
        else:
            space[name] = FloatDistribution(low, high, log=log)
    return space


def _narrowed(low: float, high: float, centre: float, width: float, log: bool) -> tuple[float, float]:
    scale, unscale = (math.log, math.exp) if log else (float, float)
    half = width * (scale(high) - scale(low)) / 2
    middle = scale(min(max(centre, low), high))
    return max(low, unscale(middle - half)), min(high, unscale(middle + half))


def budget_allows(spent_kwh: Sequence[float | None], budget_kwh: float) -> bool:
    """Whether one more trial fits: the spend so far plus the dearest trial so far stays within the budget.

    The first trial always runs (a model is needed); with a trial unmeasured only the trial count limits the study.
    """
    total = complete_sum(spent_kwh)
    if not spent_kwh or total is None:
        return True
    return total + max(kwh for kwh in spent_kwh if kwh is not None) <= budget_kwh
