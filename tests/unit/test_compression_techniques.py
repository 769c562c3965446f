"""Compression techniques on a real LightGBM model, real engines, and the choice among measured candidates."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import lightgbm as lgb
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from green_pipeline.compression.engines import COMPILED_HERE, LLEAVES
from green_pipeline.compression.measure import (
    DURATION_BASIS,
    ENERGY_BASIS,
    Candidate,
    HoldoutBench,
    InferenceFigures,
)
from green_pipeline.compression.search import (
    CompressionSettings,
    compress_model,
    cost_basis,
    select_candidate,
)
from green_pipeline.compression.table import candidates_table
from green_pipeline.compression.techniques import (
    StudentSettings,
    distil,
    leaves_per_tree,
    quantize_model_text,
    retrain_smaller,
)
from green_pipeline.data.schema import FeatureSchema
from green_pipeline.energy.measurement import EnergySettings
from green_pipeline.errors import InvalidConfigError, TrainingError

if TYPE_CHECKING:
    from conftest import TrainedModel

BUDGET = 0.01
#: Short timings keep the suite fast; energy is still measured around every timed prediction.
FAST = CompressionSettings(auc_budget=BUDGET, timing_rows=5_000, min_timing_s=0.05)
ENERGY = EnergySettings()
#: compress_model compiles with lleaves here: into this module's engine cache, not the user's.
pytestmark = pytest.mark.usefixtures("engine_cache")


def _auc(model_text: str, model: TrainedModel, schema: FeatureSchema) -> float:
    booster = lgb.Booster(model_str=model_text)
    return float(roc_auc_score(schema.labels(model.split.valid), booster.predict(schema.encode(model.split.valid))))


@pytest.fixture(scope="module")
def teacher_text(day0_model: TrainedModel) -> str:
    return day0_model.result.booster.model_to_string()


@pytest.fixture(scope="module")
def quantized_text(teacher_text: str) -> str:
    return quantize_model_text(teacher_text)


def test_a_smaller_retrain_has_fewer_leaves_and_stays_within_the_budget(
    day0_model: TrainedModel, schema: FeatureSchema, teacher_text: str
) -> None:
    smaller = retrain_smaller(day0_model.result.booster, day0_model.split.train, schema, StudentSettings(), 1)

    assert "[num_threads: 1]" in smaller  # the threads it is given (the policy's), not its own
    assert sum(leaves_per_tree(smaller)) < sum(leaves_per_tree(teacher_text))
    assert max(leaves_per_tree(smaller)) <= StudentSettings().num_leaves
    assert len(smaller) < len(teacher_text)
    assert _auc(smaller, day0_model, schema) >= _auc(teacher_text, day0_model, schema) - BUDGET


def test_a_distilled_student_is_smaller_predicts_probabilities_and_stays_within_the_budget(
    day0_model: TrainedModel, schema: FeatureSchema, teacher_text: str
) -> None:
    student = distil(day0_model.result.booster, day0_model.split.train, schema, StudentSettings(num_leaves=7), 1)
    predictions = lgb.Booster(model_str=student).predict(schema.encode(day0_model.split.valid))

    assert "objective=binary sigmoid:1" in student and "[num_threads: 1]" in student
    assert ((predictions > 0) & (predictions < 1)).all()
    assert len(student) < len(teacher_text) / 2
    assert len(leaves_per_tree(student)) <= len(leaves_per_tree(teacher_text))
    assert _auc(student, day0_model, schema) >= _auc(teacher_text, day0_model, schema) - BUDGET


def test_quantized_text_is_smaller_and_predicts_like_the_original(
    day0_model: TrainedModel, schema: FeatureSchema, teacher_text: str, quantized_text: str
) -> None:
    features = schema.encode(day0_model.split.valid)

    original = day0_model.result.booster.predict(features)
    quantized = lgb.Booster(model_str=quantized_text).predict(features)

    assert len(quantized_text) < 0.5 * len(teacher_text)
    assert "internal_value=" not in quantized_text and "split_gain=" not in quantized_text
    np.testing.assert_allclose(quantized, original, rtol=0, atol=1e-5)
    assert _auc(quantized_text, day0_model, schema) >= _auc(teacher_text, day0_model, schema) - BUDGET


def test_quantizing_text_without_trees_is_refused() -> None:
    with pytest.raises(TrainingError, match="with trees"):
        quantize_model_text("tree\nversion=v4\nnum_class=1\n")


def test_a_quantized_model_can_still_be_warm_started(
    day0_model: TrainedModel, schema: FeatureSchema, quantized_text: str
) -> None:
    train = day0_model.split.train
    data = lgb.Dataset(schema.encode(train), schema.labels(train))
    init_model = lgb.Booster(model_str=quantized_text)

    warm = lgb.train({"objective": "binary", "verbosity": -1}, data, num_boost_round=3, init_model=init_model)

    assert warm.num_trees() == init_model.num_trees() + 3


def test_missing_lleaves_is_reported_unavailable_and_never_chosen(
    monkeypatch: pytest.MonkeyPatch, day0_model: TrainedModel, schema: FeatureSchema
) -> None:
    monkeypatch.setitem(sys.modules, "lleaves", None)  # what `import lleaves` sees when it is not installed
    bench = HoldoutBench.of(day0_model.split.valid, schema, 2_000, 0.0, 2, ENERGY)
    source = bench.measure("uncompressed", "none", day0_model.result.booster.model_to_string())

    compiled = bench.measure_compiled(source, LLEAVES)

    assert not compiled.available and compiled.inference is None
    assert compiled.unavailable_reason is not None and "lleaves is not installed" in compiled.unavailable_reason
    settings = CompressionSettings(expected_predictions=10**12)
    assert select_candidate([source, compiled], source.holdout_auc or 0.0, settings, ENERGY_BASIS) is source


def _candidate(name: str, auc: float, kwh_per_1k: float | None, size: int, build_kwh: float = 0.0) -> Candidate:
    rows = 1_000_000
    energy = None if kwh_per_1k is None else kwh_per_1k * rows / 1000
    inference = InferenceFigures(rows=rows, duration_s=rows / 1e5, energy_kwh=energy)
    return Candidate(name, name, "lightgbm", "x" * size, auc, inference, build_s=1.0, build_energy_kwh=build_kwh)


def test_selection_keeps_the_cheapest_within_the_budget_and_refuses_cheaper_ones_outside_it() -> None:
    baseline = _candidate("uncompressed", 0.80, 10e-9, 1000)
    within = _candidate("distilled", 0.791, 3e-9, 300)
    outside = _candidate("tree_prefix", 0.789, 1e-9, 100)

    chosen = select_candidate([baseline, within, outside], 0.80, CompressionSettings(auc_budget=0.01), ENERGY_BASIS)

    assert chosen is within
    strict = CompressionSettings(auc_budget=0.0)
    assert select_candidate([baseline, within, outside], 0.80, strict, ENERGY_BASIS) is baseline


def test_near_ties_in_cost_go_to_the_smaller_file() -> None:
    text = _candidate("distilled", 0.80, 3.0e-9, 300)
    quantized = _candidate("distilled+quantized", 0.80, 3.1e-9, 120)

    assert select_candidate([text, quantized], 0.80, CompressionSettings(), ENERGY_BASIS) is quantized
    no_ties = CompressionSettings(tie_tolerance=0.0)
    assert select_candidate([text, quantized], 0.80, no_ties, ENERGY_BASIS) is text


def test_a_compile_is_chosen_only_when_enough_predictions_amortize_its_energy() -> None:
    text = _candidate("distilled", 0.80, 3e-9, 300)
    compiled = _candidate("distilled+lleaves", 0.80, 0.3e-9, 300, build_kwh=1e-3)
    few, many = CompressionSettings(expected_predictions=100_000), CompressionSettings(expected_predictions=10**10)

    assert select_candidate([text, compiled], 0.80, few, ENERGY_BASIS) is text
    assert select_candidate([text, compiled], 0.80, many, ENERGY_BASIS) is compiled


def test_without_energy_figures_the_choice_falls_back_to_wall_time() -> None:
    measured = _candidate("uncompressed", 0.80, 10e-9, 1000)
    unmeasured = _candidate("distilled", 0.80, None, 300)

    assert cost_basis([measured, unmeasured]) == DURATION_BASIS
    assert cost_basis([measured]) == ENERGY_BASIS
    assert unmeasured.cost_per_1k(DURATION_BASIS, 1_000_000) == pytest.approx(0.01 + 1.0 * 1000 / 1_000_000)


def test_no_candidate_within_the_budget_is_refused_by_name() -> None:
    with pytest.raises(InvalidConfigError, match=r"auc_budget=0\.01"):
        select_candidate(
            [_candidate("distilled", 0.70, 1e-9, 10)], 0.80, CompressionSettings(auc_budget=BUDGET), ENERGY_BASIS
        )


@pytest.mark.parametrize("field", ["auc_budget", "expected_predictions", "timing_rows", "min_timing_s"])
def test_out_of_range_settings_are_refused_by_name(field: str) -> None:
    with pytest.raises(InvalidConfigError, match=field):
        CompressionSettings(**{field: -1})


def test_with_many_expected_predictions_every_candidate_pays_back_and_the_cheapest_within_the_budget_is_kept(
    day0_model: TrainedModel, schema: FeatureSchema
) -> None:
    # 10-tree, 4-leaf students walk fewer nodes per prediction than any prefix of the teacher kept within budget.
    settings = CompressionSettings(
        auc_budget=BUDGET,
        timing_rows=2_000,
        min_timing_s=0.05,
        compile_engine=LLEAVES,
        expected_predictions=10**12,
        student=StudentSettings(trees=10, num_leaves=4),
    )
    booster, split = day0_model.result.booster, day0_model.split

    outcome = compress_model(booster, split.train, split.valid, schema, settings, ENERGY)

    names = [c.name for c in outcome.candidates]
    assert names[:4] == ["uncompressed", "tree_prefix", "smaller_retrain", "distilled"]
    assert names[4].endswith("+quantized") and names[5] == f"{names[4]}+lleaves"
    assert outcome.skipped == () and all(outcome.paybacks[name].pays for name in names[1:4])
    assert outcome.cost_basis == ENERGY_BASIS
    assert outcome.within_budget(outcome.chosen) and outcome.auc_delta >= -BUDGET
    cheapest = min(outcome.cost_per_1k(c) or np.inf for c in outcome.candidates if outcome.within_budget(c))
    assert outcome.cost_per_1k(outcome.chosen) <= cheapest * (1 + settings.tie_tolerance)
    assert outcome.size_ratio < 1.0
    assert outcome.compile_status.startswith("compiled ")
    assert outcome.candidates[5].build_source == COMPILED_HERE
    table = candidates_table(outcome)
    assert table.count("\n") == len(outcome.candidates) + 1 and "**chosen**" in table


def test_a_candidate_that_cannot_pay_back_its_search_is_not_built_and_the_table_says_why(
    day0_model: TrainedModel, schema: FeatureSchema
) -> None:
    settings = CompressionSettings(
        auc_budget=BUDGET, timing_rows=2_000, min_timing_s=0.05, compile_engine=LLEAVES, expected_predictions=1
    )
    split = day0_model.split

    outcome = compress_model(day0_model.result.booster, split.train, split.valid, schema, settings, ENERGY)

    assert [c.name for c in outcome.candidates] == ["uncompressed", "uncompressed+quantized"]
    skipped = {s.name: s.payback for s in outcome.skipped}
    assert list(skipped) == ["tree_prefix", "smaller_retrain", "distilled", f"{outcome.chosen.name}+lleaves"]
    assert all(payback.cost > payback.saving for payback in skipped.values())
    assert outcome.compile_status.startswith("skipped: estimated search cost")
    assert outcome.chosen.engine == "lightgbm" and outcome.chosen.trees == day0_model.result.booster.num_trees()
    table = candidates_table(outcome)
    assert table.count("skipped: estimated search cost") == len(skipped)


def test_compress_model_with_compile_off_says_it_skipped(day0_model: TrainedModel, schema: FeatureSchema) -> None:
    split = day0_model.split

    outcome = compress_model(day0_model.result.booster, split.train, split.valid, schema, FAST, ENERGY)

    assert outcome.compile_status == "skipped: compile_engine is off"
    assert all(c.engine == "lightgbm" for c in outcome.candidates)
    assert outcome.chosen.build_source is None
