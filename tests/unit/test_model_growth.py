"""Warm-start chains are bounded: a chain at or past its tree budget is retrained compactly instead of warm-started
again, the budget read from the lineage of versions in a real store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from green_pipeline.data.schema import FeatureSchema
from green_pipeline.demo.stream import StreamSpec
from green_pipeline.energy.measurement import EnergySettings
from green_pipeline.store.model_store import DeployedModel, ModelStore
from green_pipeline.training.growth import TreeBudget, bound_ladder, tree_budget
from green_pipeline.training.policy import RetrainPlan, Strategy, StrategyRules
from green_pipeline.training.retraining import retrain
from green_pipeline.training.trainer import TrainingSettings, split_batch

#: A day after the concept drift: the champion (trained on day 6) is beaten, so warm start has trees to add.
CONCEPT_DRIFT_DAY = 12
WARM_FIRST = RetrainPlan((Strategy.WARM_START, Strategy.FULL), 0.0, "test plan")


def _publish(
    store: ModelStore, model_text: str, schema: FeatureSchema, strategy: str, trees: int, parent: str | None
) -> str:
    lineage = {"strategy": strategy, "parent_version": parent}
    return store.publish(
        model_text, schema, pd.DataFrame({schema.label: [0, 1]}), {"lineage": lineage, "metrics": {"trees": trees}}
    )


def test_the_budget_is_set_by_the_chains_first_version(tmp_path: Path, deployed_shifted_model: DeployedModel) -> None:
    store, text, schema = ModelStore(str(tmp_path)), deployed_shifted_model.model_text, deployed_shifted_model.schema
    first = _publish(store, text, schema, "full_retrain", 40, None)
    warm = _publish(store, text, schema, "warm_start", 46, first)
    refit = _publish(store, text, schema, "refit", 46, warm)
    fresh = _publish(store, text, schema, "full_retrain", 70, refit)
    legacy = store.publish(text, schema, pd.DataFrame({schema.label: [0, 1]}), {"metrics": {}})

    budget = tree_budget(store, refit, 1.2)

    assert budget == TreeBudget(first, 40, 1.2) and budget.limit == 48 and budget.room(46) == 2
    assert tree_budget(store, fresh, 1.2) == TreeBudget(fresh, 70, 1.2)
    assert tree_budget(store, legacy, 1.2) is None  # no tree count recorded: no budget is guessed


def test_a_chain_at_or_past_its_budget_is_not_warm_started_again() -> None:
    ladder = (Strategy.REFIT, Strategy.WARM_START, Strategy.FULL)
    budget = TreeBudget("v0001", 40, 1.5)

    within = bound_ladder(ladder, 59, budget)
    at_budget = bound_ladder(ladder, 60, budget)
    past = bound_ladder((Strategy.WARM_START, Strategy.FULL), 95, budget)
    unbounded = bound_ladder(ladder, 500, None)

    assert within.ladder == ladder and not within.compacted
    assert at_budget.ladder == (Strategy.REFIT, Strategy.FULL) and at_budget.compacted
    assert "policy.max_model_growth 1.5 allows 60" in at_budget.reason
    assert "retrain compactly from scratch" in at_budget.reason
    assert past.ladder == (Strategy.FULL,) and past.compacted
    assert unbounded.ladder == ladder and not unbounded.compacted


def test_retraining_a_chain_at_its_budget_trains_from_scratch_and_says_so(
    stream_spec: StreamSpec,
    make_clean_batch: Callable[[int], pd.DataFrame],
    deployed_shifted_model: DeployedModel,
) -> None:
    name = stream_spec.batch_name(CONCEPT_DRIFT_DAY)
    split = split_batch(make_clean_batch(CONCEPT_DRIFT_DAY), deployed_shifted_model.schema.label, name, name)
    trees = deployed_shifted_model.booster.num_trees()
    settings, energy, rules = TrainingSettings(), EnergySettings(), StrategyRules()
    schema = deployed_shifted_model.schema

    at_budget = retrain(
        split, schema, deployed_shifted_model, WARM_FIRST, rules, settings, energy, TreeBudget("v1", trees, 1.0)
    )
    roomy = retrain(
        split, schema, deployed_shifted_model, WARM_FIRST, rules, settings, energy, TreeBudget("v1", trees, 2.0)
    )

    assert at_budget.strategies_tried == (Strategy.FULL,)
    assert "retrain compactly from scratch" in at_budget.reason
    assert at_budget.metadata()["compacted"] is True and at_budget.metadata()["tree_budget"] == trees
    assert roomy.attempts[0].strategy is Strategy.WARM_START and roomy.attempts[0].result.new_trees > 0
    assert roomy.metadata()["compacted"] is False and roomy.metadata()["tree_budget"] == 2 * trees
