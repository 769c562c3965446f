"""Whether a trained challenger replaces the champion, decided on intervals rather than on noisy point estimates.

A held-out test set of a few hundred rows measures an AUC to within a few hundredths: more than any tolerance of
the policy. So the floor and the comparison rest on DeLong intervals (``training.confidence``) at the policy's
``decision_confidence``, each in the direction that keeps a wrong decision cheap:

- the floor rejects only a challenger that is below it even at the upper bound of its AUC: a noisy but adequate
  challenger is not thrown away for a bad draw of test rows;
- the comparison promotes only a challenger that is, at the lower bound of its paired difference from the champion,
  at most ``promotion_tolerance_auc`` worse: replacing a model that works needs evidence, keeping it does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import pandas as pd

from green_pipeline.data.schema import FeatureSchema
from green_pipeline.records import ChampionComparison
from green_pipeline.serving.scoring import ChampionScores
from green_pipeline.store.model_store import DeployedModel
from green_pipeline.training.confidence import Interval, auc_interval, paired_auc
from green_pipeline.training.policy import AUC_EPSILON


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str

    @property
    def outcome(self) -> str:
        """What the UI and the version's metadata show: a rejection is a normal outcome, not a failure."""
        return "promoted" if self.promote else "rejected"


def compare_with_champion(
    test: pd.DataFrame,
    challenger: lgb.Booster,
    schema: FeatureSchema,
    champion: DeployedModel | None,
    confidence: float,
    champion_cache: pd.DataFrame | None = None,
) -> ChampionComparison:
    """Both models scored on the same labelled ``test`` rows, with intervals at ``confidence``; the champion's
    scores come from its prediction cache (``champion_cache``) where the drift step left them.

    The pairing is what makes a decision possible on few rows: both models stumble on the same hard rows, so the
    difference is known far better than either AUC.
    """
    labels = schema.labels(test).to_numpy()
    scores = challenger.predict(schema.encode(test))
    if champion is None:
        return ChampionComparison(auc_interval(labels, scores, confidence), None, None, None, len(test))
    champion_scores = ChampionScores(champion, champion_cache).probabilities(test)
    paired = paired_auc(labels, scores, champion_scores, confidence)
    return ChampionComparison(paired.challenger, paired.champion, paired.difference, champion.version, paired.rows)


def reaches_floor(challenger: Interval, quality_floor: float) -> bool:
    """Whether a model may serve at all (check_thresholds.quality_floor_auc): unless even its upper bound is below.

    The one floor rule: the promotion gate and the ``quality_floor`` asset check both apply it.
    """
    return challenger.upper + AUC_EPSILON >= quality_floor


def decide_promotion(comparison: ChampionComparison, tolerance: float, quality_floor: float) -> PromotionDecision:
    """Reject a challenger surely under the quality floor, then promote it only if it is surely not worse than the
    champion by more than ``tolerance`` (``policy.promotion_tolerance_auc``).

    The floor holds with or without a champion: a first model under it is published but nothing serves.
    """
    challenger, difference = comparison.challenger, comparison.difference
    if not reaches_floor(challenger, quality_floor):
        after = "champion keeps serving" if comparison.champion is not None else "no model serves until one reaches it"
        return PromotionDecision(
            False,
            f"rejected: challenger AUC {challenger.describe()} is below the quality floor {quality_floor:.4f} "
            f"(check_thresholds.quality_floor_auc) even at its upper bound: {after}",
        )
    if comparison.champion is None or difference is None:
        return PromotionDecision(
            True,
            f"no champion deployed: the first model is promoted (AUC {challenger.describe()} "
            f"on {comparison.test_rows} test rows)",
        )
    paired = (
        f"challenger - champion AUC {difference.describe()} on {comparison.test_rows} paired test rows "
        f"(challenger {challenger.describe()}, champion {comparison.champion.describe()})"
    )
    if difference.lower + AUC_EPSILON >= -tolerance:
        return PromotionDecision(
            True,
            f"promoted: {paired}; even at the lower bound the challenger loses at most the tolerance "
            f"{tolerance:.4f} (policy.promotion_tolerance_auc)",
        )
    return PromotionDecision(
        False,
        f"rejected: {paired}; at the lower bound the challenger may be {-difference.lower:.4f} worse, more than the "
        f"tolerance {tolerance:.4f} (policy.promotion_tolerance_auc): champion keeps serving",
    )
