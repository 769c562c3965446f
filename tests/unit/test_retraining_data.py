"""The source/target domain pair that transfer learning and the second benchmark dataset are built on."""

from __future__ import annotations

import pandas as pd
import pytest

from green_pipeline.data.schema import DatasetSpec, infer_schema
from green_pipeline.demo.stream import (
    DOMAIN_LABEL,
    DOMAIN_NUMERIC,
    DomainPairSpec,
    generate_domain_batch,
    generate_domain_pair,
)
from green_pipeline.errors import InvalidConfigError
from green_pipeline.training.evaluation import auc
from green_pipeline.training.trainer import TrainingSettings, full_retrain, split_batch

SMALL = DomainPairSpec(source_rows=4000, target_rows=3000)


def test_the_pair_is_deterministic_and_shaped_by_its_spec() -> None:
    source, target = generate_domain_pair(SMALL)

    again_source, again_target = generate_domain_pair(SMALL)
    pd.testing.assert_frame_equal(source, again_source)
    pd.testing.assert_frame_equal(target, again_target)
    assert (len(source), len(target)) == (4000, 3000)
    assert list(source.columns) == list(target.columns) == [*DOMAIN_NUMERIC, "segment", DOMAIN_LABEL]
    assert set(source[DOMAIN_LABEL]) == set(target[DOMAIN_LABEL]) == {0, 1}


def test_each_part_is_an_independent_draw_of_the_same_domain() -> None:
    first = generate_domain_batch(SMALL, "target", 2000, part=0)
    second = generate_domain_batch(SMALL, "target", 2000, part=1)

    assert not first[list(DOMAIN_NUMERIC)].equals(second[list(DOMAIN_NUMERIC)])
    assert (first[list(DOMAIN_NUMERIC)].mean() - second[list(DOMAIN_NUMERIC)].mean()).abs().max() < 0.1


def test_some_target_features_are_shifted_and_others_are_not() -> None:
    source, target = generate_domain_pair(SMALL)

    shift = (target[list(DOMAIN_NUMERIC)].mean() - source[list(DOMAIN_NUMERIC)].mean()).abs()

    assert (shift > 0.4).any() and (shift < 0.1).any()
    assert (
        source["segment"].value_counts(normalize=True)["retail"]
        > target["segment"].value_counts(normalize=True)["retail"]
    )


def test_shifted_relationships_make_a_source_model_worse_on_the_target() -> None:
    """With relationship_shift 0 only the covariates move; at 0.8 the effects themselves differ."""
    settings = TrainingSettings(num_threads=1)

    def source_model_auc_on_target(shift: float) -> tuple[float, float]:
        spec = DomainPairSpec(source_rows=6000, target_rows=4000, relationship_shift=shift)
        source, target = generate_domain_pair(spec)
        schema = infer_schema(source, DatasetSpec(label=DOMAIN_LABEL), "source")
        split = split_batch(source, DOMAIN_LABEL, "source", "source")
        model = full_retrain(split, schema, settings).booster
        return auc(model, split.test, schema), auc(model, target, schema)

    same_source, same_target = source_model_auc_on_target(0.0)
    shifted_source, shifted_target = source_model_auc_on_target(0.8)

    assert same_source == pytest.approx(shifted_source)
    assert shifted_target < same_target - 0.05


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"source_rows": 10}, "source_rows and target_rows must be >= 50"),
        ({"relationship_shift": 1.5}, r"relationship_shift 1\.5 is not in \[0, 1\]"),
    ],
)
def test_an_impossible_spec_is_refused_naming_the_setting(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(InvalidConfigError, match=message):
        DomainPairSpec(**kwargs)


def test_an_unknown_domain_is_refused_by_name() -> None:
    with pytest.raises(InvalidConfigError, match="domain 'south' is not one of source, target"):
        generate_domain_batch(SMALL, "south", 100)
