"""DeLong's AUC intervals: the estimate is scikit-learn's AUC, the interval covers as stated, pairing narrows it."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from green_pipeline.errors import InvalidConfigError, TrainingError
from green_pipeline.training.confidence import auc_interval, paired_auc


def scored_rows(rng: np.random.Generator, rows: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, 2, rows)
    return labels, labels + rng.normal(0.0, noise, rows)


def test_the_estimate_is_the_auc_of_the_same_rows_ties_included() -> None:
    labels, scores = scored_rows(np.random.default_rng(1), 300, 1.0)
    scores = np.round(scores, 1)  # many ties
    interval = auc_interval(labels, scores)
    assert interval.estimate == pytest.approx(roc_auc_score(labels, scores))
    assert interval.lower < interval.estimate < interval.upper


def test_the_95_percent_interval_holds_the_true_auc_about_95_times_in_100() -> None:
    rng, noise = np.random.default_rng(2), 1.5
    true_auc = norm.cdf(1 / np.sqrt(2 * noise**2))  # two unit-spaced normal classes
    covered = [auc_interval(*scored_rows(rng, 200, noise)).lower <= true_auc for _ in range(400)]
    upper = [auc_interval(*scored_rows(rng, 200, noise)).upper >= true_auc for _ in range(400)]
    assert 0.93 <= np.mean(covered) <= 1.0 and 0.93 <= np.mean(upper) <= 1.0


def test_small_samples_get_wide_intervals() -> None:
    rng = np.random.default_rng(3)
    small, large = auc_interval(*scored_rows(rng, 73, 1.2)), auc_interval(*scored_rows(rng, 7300, 1.2))
    # The width shrinks as one over the square root of the rows: 100 times the rows, a tenth of the width.
    assert small.upper - small.lower > 0.1
    assert small.upper - small.lower > 5 * (large.upper - large.lower)


def test_pairing_narrows_the_difference_of_two_models_that_share_their_errors() -> None:
    rng = np.random.default_rng(4)
    labels, champion = scored_rows(rng, 400, 1.0)
    challenger = champion + rng.normal(0.0, 0.2, 400)
    paired = paired_auc(labels, challenger, champion)
    unpaired_half_width = np.hypot(
        *(i.upper - i.estimate for i in (paired.challenger, paired.champion))
    )  # as if the rows were independent
    assert paired.difference.estimate == pytest.approx(
        roc_auc_score(labels, challenger) - roc_auc_score(labels, champion)
    )
    assert paired.difference.upper - paired.difference.estimate < unpaired_half_width / 3
    assert paired.rows == 400


def test_one_class_and_bad_confidence_are_refused_by_name() -> None:
    with pytest.raises(TrainingError, match="both classes"):
        auc_interval([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(InvalidConfigError, match="decision_confidence"):
        auc_interval([0, 1], [0.1, 0.2], confidence=1.0)
