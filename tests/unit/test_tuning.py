"""Energy-budgeted tuning on real LightGBM trials: when it runs, the budget stop, the warm start from a stored
version's history, and what it records."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

import pandas as pd
import pytest

from green_pipeline.data.schema import FeatureSchema
from green_pipeline.energy.measurement import EnergySettings
from green_pipeline.errors import InvalidConfigError
from green_pipeline.store.model_store import DeployedModel, ModelStore
from green_pipeline.training.policy import ESCALATION, RetrainPlan, Strategy, StrategyRules
from green_pipeline.training.retraining import retrain
from green_pipeline.training.study import TuningStudy, tune
from green_pipeline.training.trainer import BatchSplit, TrainingSettings, split_batch
from green_pipeline.training.tuning import (
    METADATA_KEY,
    Origin,
    TunedParams,
    TuningHistory,
    TuningSettings,
    budget_allows,
    plan_tuning,
    search_space,
)

SETTINGS = TrainingSettings(num_threads=1)
ENERGY = EnergySettings()
#: Enough trials that TPE samples some after the enqueued ones, few enough to take about a second.
TUNING = TuningSettings(max_trials=5, budget_kwh=1.0, startup_trials=2, pruning_warmup_rounds=5)
FULL_ONLY = RetrainPlan((Strategy.FULL,), 0.0, "full retrain first")


@pytest.fixture(scope="module")
def day0_split(stream_spec, make_clean_batch: Callable[[int], pd.DataFrame]) -> BatchSplit:
    name = stream_spec.batch_name(0)
    return split_batch(make_clean_batch(0), "churned", name, name)


@pytest.fixture(scope="module")
def cold(day0_split: BatchSplit, schema: FeatureSchema) -> TuningStudy:
    return tune(day0_split, schema, SETTINGS, TUNING, ENERGY)[1]


@pytest.fixture(scope="module")
def tuned_champion(
    tmp_path_factory: pytest.TempPathFactory,
    day0_split: BatchSplit,
    schema: FeatureSchema,
    cold: TuningStudy,
) -> DeployedModel:
    """The cold study's best model published with its history, as ``deployed_model`` publishes it, and loaded back."""
    model, _ = tune(day0_split, schema, SETTINGS, TUNING, ENERGY)
    store = ModelStore(str(tmp_path_factory.mktemp("tuned-store")))
    version = store.publish(
        model.booster.model_to_string(), schema, day0_split.train, {METADATA_KEY: cold.history().as_json()}
    )
    store.promote(version)
    return store.load()


def test_the_first_model_an_escalated_full_retrain_and_a_due_retune_are_tuned_and_nothing_else() -> None:
    history = TuningHistory(TunedParams(0.1, 31, 20, 0.8), (), trainings_since_tuning=2)
    every_third = TuningSettings(retune_every_trainings=3)

    assert plan_tuning((Strategy.FULL,), False, None, TUNING).tune_full
    assert plan_tuning(ESCALATION, True, history, TUNING).tunes(Strategy.FULL)
    assert not plan_tuning(ESCALATION, True, history, TUNING).tunes(Strategy.WARM_START)
    # always-retrain, a provisional champion's replacement, a compacted chain: full first, not tuned
    assert not plan_tuning((Strategy.FULL,), True, history, TUNING).tune_full
    assert not plan_tuning((Strategy.REFIT,), True, history, TUNING).tune_full
    due = plan_tuning((Strategy.REFIT, Strategy.WARM_START), True, history, every_third)
    assert due.ladder == (Strategy.FULL,) and due.tune_full and "served 3 trainings" in due.reason
    assert not plan_tuning((Strategy.REFIT,), True, history.next_training().next_training(), TuningSettings()).tune_full
    assert not plan_tuning((Strategy.FULL,), False, None, TuningSettings(max_trials=0)).tune_full
    assert not plan_tuning((Strategy.FULL,), False, None, None).tune_full


def test_one_more_trial_runs_only_while_the_spend_plus_the_dearest_trial_fits_the_budget() -> None:
    assert budget_allows([], 1e-12)  # the first trial always runs: a model is needed
    assert budget_allows([1.0, 2.0], 5.0)
    assert not budget_allows([1.0, 2.0], 4.9)
    assert budget_allows([1.0, None], 1.0)  # unmeasured: only the trial count limits the study


def test_a_study_stops_at_its_kwh_budget_before_its_trial_count(day0_split: BatchSplit, schema: FeatureSchema) -> None:
    tight = TuningSettings(max_trials=5, budget_kwh=1e-12)

    model, study = tune(day0_split, schema, SETTINGS, tight, ENERGY)

    assert len(study.trials) == 1 and study.trials[0].origin == Origin.DEFAULT
    assert "policy.tuning_budget_kwh" in study.stopped
    assert model.valid_auc == study.best.valid_auc


def test_a_cold_study_tries_the_defaults_first_and_keeps_its_best_trial(
    cold: TuningStudy, day0_split: BatchSplit, schema: FeatureSchema
) -> None:
    model, again = tune(day0_split, schema, SETTINGS, TUNING, ENERGY)

    assert cold.trials[0].origin == Origin.DEFAULT and cold.trials[0].params == TunedParams.of(SETTINGS)
    assert len(cold.trials) == TUNING.max_trials and "tuning_max_trials" in cold.stopped
    assert {t.origin for t in cold.trials[1:]} == {Origin.SAMPLED}
    assert model.valid_auc == max(t.valid_auc for t in again.trials if not t.pruned) == again.best.valid_auc
    assert [t.params for t in again.trials] == [t.params for t in cold.trials]  # seeded, deterministic trials


def test_the_metadata_counts_trials_and_energy_and_the_gain_over_the_defaults(cold: TuningStudy) -> None:
    metadata = cold.metadata()
    energies = [t.energy_kwh for t in cold.trials]

    assert metadata["tuning_trials"] == len(cold.trials)
    assert metadata["tuning_trials_pruned"] == sum(t.pruned for t in cold.trials)
    assert all(kwh is not None and kwh > 0 for kwh in energies)
    assert metadata["tuning_energy_kwh"] == pytest.approx(sum(energies))
    assert metadata["tuning_energy_per_trial_kwh"] == pytest.approx(sum(energies) / len(energies))
    assert metadata["tuning_auc_gain_vs_default"] == pytest.approx(cold.best.valid_auc - cold.trials[0].valid_auc)
    assert metadata["tuning_auc_gain_vs_default"] >= 0 and metadata["tuning_warm_started"] is False
    table = cold.trials_table()
    assert len(re.findall(r"^\| \d+ \|", table, re.M)) == len(cold.trials) and "| best |" in table
    unmeasured = TuningStudy(tuple(dataclasses.replace(t, energy_kwh=None) for t in cold.trials), "", False)
    assert unmeasured.metadata()["tuning_energy"] == "unmeasured" and "tuning_energy_kwh" not in unmeasured.metadata()


def test_the_history_survives_the_store_as_json_and_warm_starts_the_next_study(
    tuned_champion: DeployedModel, cold: TuningStudy, day0_split: BatchSplit, schema: FeatureSchema
) -> None:
    history = TuningHistory.from_metadata(tuned_champion.metadata)
    assert history == cold.history()

    _, warm = tune(day0_split, schema, SETTINGS, TUNING, ENERGY, history=history)

    assert warm.trials[0].origin == Origin.CHAMPION and warm.trials[0].params == history.best_params
    assert warm.trials[0].valid_auc == pytest.approx(cold.best.valid_auc)  # same rows, same parameters
    assert warm.trials[1].origin == Origin.DEFAULT and warm.metadata()["tuning_warm_started"] is True
    narrowed = search_space(TUNING, around=history.best_params)
    for trial in warm.trials[2:]:
        for name, distribution in narrowed.items():
            assert distribution.low <= getattr(trial.params, name) <= distribution.high  # type: ignore[attr-defined]
    wide = search_space(TUNING)
    assert all(
        narrowed[n].high - narrowed[n].low < wide[n].high - wide[n].low  # type: ignore[attr-defined]
        for n in ("learning_rate", "feature_fraction")
    )


def test_a_full_retrain_without_tuning_keeps_the_champions_tuned_parameters(
    tuned_champion: DeployedModel, day0_split: BatchSplit, schema: FeatureSchema
) -> None:
    best = TuningHistory.from_metadata(tuned_champion.metadata)
    assert best is not None

    outcome = retrain(day0_split, schema, tuned_champion, FULL_ONLY, StrategyRules(), SETTINGS, ENERGY, tuning=TUNING)

    assert outcome.study is None and "tuning_trials" not in outcome.metadata()
    assert f"[num_leaves: {best.best_params.num_leaves}]" in outcome.result.booster.model_to_string()
    assert outcome.history == best.next_training()


def test_an_escalated_full_retrain_is_tuned_and_its_study_travels_with_the_model(
    tuned_champion: DeployedModel, day0_split: BatchSplit, schema: FeatureSchema
) -> None:
    unreachable = StrategyRules(min_gain_auc=1.0)
    plan = RetrainPlan((Strategy.WARM_START, Strategy.FULL), 0.0, "escalating from warm start")

    outcome = retrain(day0_split, schema, tuned_champion, plan, unreachable, SETTINGS, ENERGY, tuning=TUNING)

    assert outcome.strategies_tried == (Strategy.WARM_START, Strategy.FULL)
    assert outcome.study is not None and outcome.attempts[1].study is outcome.study
    assert outcome.study.trials[0].origin == Origin.CHAMPION
    assert "reached by escalation is tuned" in outcome.reason
    metadata = outcome.metadata()
    assert metadata["tuning_trials"] == len(outcome.study.trials)
    assert metadata["attempt_full_retrain_energy_kwh"] >= metadata["tuning_energy_kwh"]
    if outcome.result.strategy is Strategy.FULL:
        assert outcome.history == outcome.study.history()


def test_tuning_bounds_are_checked_naming_the_setting() -> None:
    with pytest.raises(InvalidConfigError, match=r"policy\.tuning_num_leaves_min"):
        TuningSettings(num_leaves_min=200)
    with pytest.raises(InvalidConfigError, match=r"policy\.tuning_budget_kwh"):
        TuningSettings(budget_kwh=0.0)
