"""AUC with a confidence interval, alone or paired with another model's on the same rows (DeLong's method).

Decisions on a few hundred labelled rows are noise unless their uncertainty is stated: an AUC measured on 73 rows
is uncertain by about +-0.06, more than any tolerance of the policy. DeLong, DeLong and Clarke-Pearson (1988) give
the variance of an AUC, and the covariance of two AUCs measured on the same rows, from each row's placement among
the other class; the fast form of Sun and Xu (2014) computes them from mid-ranks in O(n log n). The paired variance
is far smaller than the two variances added, because both models stumble on the same hard rows. The interval is the
normal approximation at the stated confidence, clipped to what an AUC (or a difference of two) can be.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.stats import norm, rankdata

from green_pipeline.errors import InvalidConfigError, TrainingError

DEFAULT_CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """An estimate and the two-sided interval holding the true value at ``confidence``."""

    estimate: float
    lower: float
    upper: float
    confidence: float

    def describe(self) -> str:
        return f"{self.estimate:.4f} [{self.lower:.4f}, {self.upper:.4f}] at {self.confidence:.0%}"


@dataclass(frozen=True)
class PairedAuc:
    """Two models scored on the same labelled rows: each one's AUC and the difference (challenger - champion)."""

    challenger: Interval
    champion: Interval
    difference: Interval
    rows: int


def auc_interval(labels: npt.ArrayLike, scores: npt.ArrayLike, confidence: float = DEFAULT_CONFIDENCE) -> Interval:
    """ROC AUC of ``scores`` against binary ``labels``, with DeLong's interval."""
    estimates, covariance = _delong(np.asarray(labels), np.asarray(scores, dtype=float)[np.newaxis, :])
    return _interval(estimates[0], covariance[0, 0], confidence, low=0.0, high=1.0)


def paired_auc(
    labels: npt.ArrayLike,
    challenger_scores: npt.ArrayLike,
    champion_scores: npt.ArrayLike,
    confidence: float = DEFAULT_CONFIDENCE,
) -> PairedAuc:
    """Both AUCs on the same rows and DeLong's paired interval of their difference."""
    scores = np.vstack([np.asarray(challenger_scores, dtype=float), np.asarray(champion_scores, dtype=float)])
    estimates, covariance = _delong(np.asarray(labels), scores)
    difference_variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
    return PairedAuc(
        challenger=_interval(estimates[0], covariance[0, 0], confidence, low=0.0, high=1.0),
        champion=_interval(estimates[1], covariance[1, 1], confidence, low=0.0, high=1.0),
        difference=_interval(estimates[0] - estimates[1], difference_variance, confidence, low=-1.0, high=1.0),
        rows=scores.shape[1],
    )


def _delong(
    labels: npt.NDArray[np.generic], scores: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """AUC of each row of ``scores`` and their covariance matrix (Sun and Xu's mid-rank form of DeLong's)."""
    if labels.ndim != 1 or len(labels) != scores.shape[1]:
        raise TrainingError(f"{len(labels)} labels for {scores.shape[1]} scores: they must be the same rows.")
    if not np.isin(labels, (0, 1)).all():
        raise TrainingError("AUC intervals need binary labels (0/1 or False/True).")
    positive: npt.NDArray[np.bool_] = labels.astype(bool)
    m, n = int(positive.sum()), int((~positive).sum())
    if m == 0 or n == 0:
        raise TrainingError(f"an AUC needs both classes; these {len(labels)} rows have one.")
    pos, neg = scores[:, positive], scores[:, ~positive]
    within_pos = rankdata(pos, axis=1)
    within_neg = rankdata(neg, axis=1)
    overall = rankdata(np.hstack([pos, neg]), axis=1)
    auc = (overall[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    # Placements: the share of the other class each row outranks (ties count half).
    v_pos = (overall[:, :m] - within_pos) / n
    v_neg = 1.0 - (overall[:, m:] - within_neg) / m
    cov_pos = np.atleast_2d(np.cov(v_pos)) if m > 1 else np.zeros((len(scores), len(scores)))
    cov_neg = np.atleast_2d(np.cov(v_neg)) if n > 1 else np.zeros((len(scores), len(scores)))
    return auc, cov_pos / m + cov_neg / n


def _interval(estimate: float, variance: float, confidence: float, low: float, high: float) -> Interval:
    if not 0.0 < confidence < 1.0:
        raise InvalidConfigError(f"policy.decision_confidence = {confidence} must be strictly between 0 and 1.")
    half = float(norm.ppf(0.5 + confidence / 2)) * float(np.sqrt(max(variance, 0.0)))
    estimate = float(estimate)
    return Interval(estimate, max(low, estimate - half), min(high, estimate + half), confidence)
