"""Whether a trained challenger replaces the champion: the quality floor, then the comparison with the champion."""

from __future__ import annotations

from dataclasses import dataclass

from green_pipeline.training.policy import AUC_EPSILON


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str

    @property
    def outcome(self) -> str:
        """What the UI and the version's metadata show: a rejection is a normal outcome, not a failure."""
        return "promoted" if self.promote else "rejected"


def reaches_floor(auc: float, quality_floor: float) -> bool:
    """Whether a model may serve at all (check_thresholds.quality_floor_auc), whatever the champion does."""
    return auc + AUC_EPSILON >= quality_floor


def decide_promotion(
    champion_auc: float | None, challenger_auc: float, tolerance: float, quality_floor: float
) -> PromotionDecision:
    """Promote unless the challenger is under the quality floor or worse than the champion by more than ``tolerance``.

    The floor holds with or without a champion: a first model under it is published but nothing serves.
    """
    if not reaches_floor(challenger_auc, quality_floor):
        after = "champion keeps serving" if champion_auc is not None else "no model serves until one reaches it"
        return PromotionDecision(
            False,
            f"rejected: challenger AUC {challenger_auc:.4f} is below the quality floor {quality_floor:.4f} "
            f"(check_thresholds.quality_floor_auc): {after}",
        )
    if champion_auc is None:
        return PromotionDecision(True, "no champion deployed: the first model is promoted")
    delta = challenger_auc - champion_auc
    if delta + AUC_EPSILON >= -tolerance:
        return PromotionDecision(
            True, f"challenger AUC {challenger_auc:.4f} vs champion {champion_auc:.4f} (delta {delta:+.4f})"
        )
    return PromotionDecision(
        False,
        f"rejected: challenger AUC {challenger_auc:.4f} is {-delta:.4f} below champion {champion_auc:.4f} "
        f"(tolerance {tolerance:.4f}): champion keeps serving",
    )
