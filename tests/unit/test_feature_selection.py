"""Feature selection as a compression step: the rule, the confirming retrain, and its place in the candidate search."""

from __future__ import annotations

import lightgbm as lgb
import pandas as pd
import pytest
from sklearn.datasets import make_classification

from green_pipeline.compression.search import FEATURE_SELECTION, CompressionSettings, compress_model
from green_pipeline.compression.selection import gain_prefix, teacher_settings
from green_pipeline.compression.table import candidates_table
from green_pipeline.data.schema import DatasetSpec, FeatureSchema, infer_schema
from green_pipeline.energy.measurement import EnergySettings
from green_pipeline.errors import InvalidConfigError
from green_pipeline.training.trainer import BatchSplit, TrainingSettings, full_retrain, split_batch

INFORMATIVE = tuple(f"signal_{i}" for i in range(6))
NOISE = tuple(f"noise_{i}" for i in range(6))
#: Short timings keep the tests fast; selection is what is under test. The 6 noise columns hold about a tenth of the
#: gain here: at the default share (0.85) the rule would drop a weak signal column too, still within the budget.
ON = CompressionSettings(feature_selection=True, feature_gain_share=0.9, timing_rows=1_000, min_timing_s=0.01)
ENERGY = EnergySettings()


@pytest.fixture(scope="module")
def split() -> BatchSplit:
    """6 informative columns then 6 of pure noise (``shuffle=False`` keeps that order)."""
    features, labels = make_classification(
        n_samples=3000, n_features=12, n_informative=6, n_redundant=0, shuffle=False, class_sep=1.0, random_state=0
    )
    frame = pd.DataFrame(features, columns=[*INFORMATIVE, *NOISE]).assign(label=labels)
    return split_batch(frame, "label", "day-0", "day-0")


@pytest.fixture(scope="module")
def wide_schema(split: BatchSplit) -> FeatureSchema:
    return infer_schema(split.train, DatasetSpec(label="label"), "day-0")


@pytest.fixture(scope="module")
def teacher(split: BatchSplit, wide_schema: FeatureSchema) -> lgb.Booster:
    return full_retrain(split, wide_schema, TrainingSettings()).booster


def _compress(teacher: lgb.Booster, split: BatchSplit, schema: FeatureSchema, settings=ON, dropped_before=()):
    return compress_model(teacher, split.train, split.valid, schema, settings, ENERGY, dropped_before)


def test_the_rule_keeps_the_fewest_features_by_gain_that_reach_the_share() -> None:
    importance = {"a": 0.05, "b": 0.5, "c": 0.3, "d": 0.1, "e": 0.05}

    assert gain_prefix(importance, 0.8) == ("b", "c")
    assert gain_prefix(importance, 0.85) == ("b", "c", "d")
    assert gain_prefix(importance, 0.95) == ("b", "c", "d", "a")  # equal shares: the model's column order
    assert gain_prefix(importance, 1.0) == ("b", "c", "d", "a", "e")


def test_a_feature_without_gain_is_dropped_even_at_the_full_share() -> None:
    assert gain_prefix({"a": 0.7, "idle": 0.0, "b": 0.3}, 1.0) == ("a", "b")


def test_a_restricted_schema_keeps_its_column_order_and_frozen_categories() -> None:
    schema = FeatureSchema("y", ("n1", "n2", "n3"), {"c1": ("a", "b"), "c2": ("x",)})

    narrowed = schema.restricted_to(["c1", "n3", "n1"])

    assert narrowed.features == ("n1", "n3", "c1")
    assert narrowed.categories == {"c1": ("a", "b")}
    assert narrowed.label == "y"


def test_the_confirming_retrain_takes_the_teachers_tuned_settings_and_the_policys_rounds(teacher: lgb.Booster) -> None:
    tuned = lgb.Booster(model_str=teacher.model_to_string().replace("[num_leaves: 31]", "[num_leaves: 15]"))
    policy = TrainingSettings(num_leaves=63, max_trees_full=77, early_stopping_rounds=9)

    settings = teacher_settings(tuned, policy, num_threads=1)

    assert (settings.num_leaves, settings.learning_rate) == (15, 0.05)
    assert (settings.max_trees_full, settings.early_stopping_rounds, settings.num_threads) == (77, 9, 1)


def test_a_kept_selection_drops_the_noise_columns_and_every_candidate_after_it_uses_the_rest(
    teacher: lgb.Booster, split: BatchSplit, wide_schema: FeatureSchema
) -> None:
    outcome = _compress(teacher, split, wide_schema)

    assert outcome.selection.kept
    assert set(outcome.selection.dropped) == set(NOISE)
    assert outcome.schema.features == INFORMATIVE
    assert outcome.chosen.name.startswith(f"{FEATURE_SELECTION}")
    assert tuple(lgb.Booster(model_str=outcome.chosen.model_text).feature_name()) == INFORMATIVE
    assert outcome.within_budget(outcome.chosen)  # against the uncompressed model on all 12 columns
    assert outcome.selection.status == "kept 6 of 12 features (90% of gain)"
    table = candidates_table(outcome)
    assert "on every feature, so not competing with the kept selection" in table


def test_selection_is_off_by_default_and_leaves_the_schema_alone(
    teacher: lgb.Booster, split: BatchSplit, wide_schema: FeatureSchema
) -> None:
    outcome = _compress(teacher, split, wide_schema, CompressionSettings(timing_rows=1_000, min_timing_s=0.01))

    assert outcome.selection.status == "off"
    assert outcome.schema == wide_schema and outcome.selection.dropped == ()
    assert not any(c.name.startswith(FEATURE_SELECTION) for c in outcome.candidates)


def test_a_lineage_selects_once_and_keeps_the_features_its_parent_dropped(
    teacher: lgb.Booster, split: BatchSplit, wide_schema: FeatureSchema
) -> None:
    outcome = _compress(teacher, split, wide_schema, dropped_before=("gone",))

    assert outcome.selection.status == "skipped: a parent version's selection dropped 1 features already"
    assert outcome.selection.dropped == ("gone",)  # still listed in the new version's metadata
    assert outcome.schema == wide_schema


def test_a_selection_over_the_budget_is_shown_and_not_kept(
    teacher: lgb.Booster, split: BatchSplit, wide_schema: FeatureSchema
) -> None:
    one_feature = CompressionSettings(feature_selection=True, feature_gain_share=0.05, timing_rows=1_000)

    outcome = _compress(teacher, split, wide_schema, one_feature)

    assert outcome.selection.status == "over budget: 1 of 12 features (5% of gain)"
    assert outcome.schema == wide_schema and not outcome.selection.kept
    assert not outcome.chosen.name.startswith(FEATURE_SELECTION)
    assert f"| {FEATURE_SELECTION} | feature_selection |" in candidates_table(outcome)


def test_a_selection_that_cannot_pay_back_its_retrain_is_not_trained(
    teacher: lgb.Booster, split: BatchSplit, wide_schema: FeatureSchema
) -> None:
    few_predictions = CompressionSettings(feature_selection=True, expected_predictions=1, timing_rows=1_000)

    outcome = _compress(teacher, split, wide_schema, few_predictions)

    assert outcome.selection.status.startswith("skipped: estimated search cost")
    assert not any(c.name == FEATURE_SELECTION for c in outcome.candidates)
    assert [s.name for s in outcome.skipped][:1] == [FEATURE_SELECTION]


@pytest.mark.parametrize("share", [0.0, 1.5])
def test_a_gain_share_out_of_range_is_refused_by_name(share: float) -> None:
    with pytest.raises(InvalidConfigError, match="feature_gain_share"):
        CompressionSettings(feature_gain_share=share)
