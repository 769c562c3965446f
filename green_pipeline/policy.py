"""The pipeline's decisions, as plain functions: whether to retrain, how, and whether to promote."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from green_pipeline.drift import DriftResult

#: AUCs differ by float rounding (0.79 - 0.80 != -0.01); a challenger exactly at the tolerance passes.
FLOAT_SLACK = 1e-12


class Strategy(StrEnum):
    FULL = "full_retrain"
    WARM_START = "warm_start"


@dataclass(frozen=True)
class RetrainDecision:
    retrain: bool
    strategy: Strategy | None
    reason: str


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str


@dataclass(frozen=True)
class QualityDrop:
    """The serving model's AUC on a labelled batch against the AUC it had when it was deployed."""

    deployed_auc: float
    batch_auc: float
    threshold: float

    @property
    def drop(self) -> float:
        return self.deployed_auc - self.batch_auc

    @property
    def passes_threshold(self) -> bool:
        return self.drop >= self.threshold


def decide_retraining(
    drift: DriftResult, has_champion: bool, quality: QualityDrop | None = None, always_retrain: bool = False
) -> RetrainDecision:
    """Retrain only when feature drift or the model's quality drop passes its threshold, or nothing is deployed.

    Concept drift leaves the features unchanged and shows only as a quality drop on labelled rows, hence
    the second trigger. ``always_retrain`` is the baseline of today's practice: a full retrain every batch.
    """
    if always_retrain:
        return RetrainDecision(True, Strategy.FULL, "always-retrain baseline: full retrain on every batch")
    if not has_champion:
        return RetrainDecision(True, Strategy.FULL, "no model is deployed yet: train the first one from scratch")
    share = "n/a" if drift.drifted_share is None else f"{drift.drifted_share:.2f}"
    if drift.passes_threshold:
        return RetrainDecision(
            True,
            Strategy.WARM_START,
            f"drifted share {share} >= threshold {drift.threshold:.2f}: warm start from the deployed model",
        )
    if quality is not None and quality.passes_threshold:
        return RetrainDecision(
            True,
            Strategy.WARM_START,
            f"AUC fell {quality.drop:.3f} (from {quality.deployed_auc:.4f} at deployment to {quality.batch_auc:.4f}) "
            f">= threshold {quality.threshold:.3f}: warm start from the deployed model",
        )
    drop = "" if quality is None else f", AUC drop {quality.drop:.3f} < {quality.threshold:.3f}"
    return RetrainDecision(False, None, f"drifted share {share} < threshold {drift.threshold:.2f}{drop}: keep serving")


def decide_promotion(champion_auc: float | None, challenger_auc: float, tolerance: float) -> PromotionDecision:
    """Promote unless the challenger is worse than the champion by more than ``tolerance`` AUC."""
    if champion_auc is None:
        return PromotionDecision(True, "no champion deployed: the first model is promoted")
    delta = challenger_auc - champion_auc
    if delta >= -tolerance - FLOAT_SLACK:
        return PromotionDecision(
            True, f"challenger AUC {challenger_auc:.4f} vs champion {champion_auc:.4f} (delta {delta:+.4f})"
        )
    return PromotionDecision(
        False,
        f"challenger AUC {challenger_auc:.4f} is {-delta:.4f} below champion {champion_auc:.4f} "
        f"(tolerance {tolerance:.4f}): champion keeps serving",
    )
