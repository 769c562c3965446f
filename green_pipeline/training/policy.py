"""The pipeline's decisions, as plain functions: whether to retrain, how, when to escalate, whether to promote."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from green_pipeline.drift.detection import DriftResult
from green_pipeline.errors import InvalidConfigError


class Strategy(StrEnum):
    REFIT = "refit"
    WARM_START = "warm_start"
    TRANSFER = "transfer"
    FULL = "full_retrain"


#: AUC differences below this are float rounding, not quality (0.79 - 0.80 is -0.010000000000000009).
AUC_EPSILON = 1e-9

#: The pipeline's escalation order, cheapest first. Transfer is not on it: it needs a model of another domain.
ESCALATION = (Strategy.REFIT, Strategy.WARM_START, Strategy.FULL)


@dataclass(frozen=True)
class StrategyRules:
    """How the cheapest strategy expected to recover quality is picked, and the bar that stops escalation."""

    severe_drift_share: float = 0.5
    severe_column_drift: float = 5.0
    min_rows_new_trees: int = 1000
    reference_fraction: float = 0.5
    min_gain_auc: float = 0.005

    def __post_init__(self) -> None:
        for name in ("severe_drift_share", "min_gain_auc"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InvalidConfigError(f"policy.{name} = {getattr(self, name)} must be between 0 and 1.")
        if self.reference_fraction < 0.0:
            raise InvalidConfigError(f"policy.reference_fraction = {self.reference_fraction} must be >= 0.")
        if self.severe_column_drift <= 0.0 or self.min_rows_new_trees < 0:
            raise InvalidConfigError("policy.severe_column_drift must be > 0 and policy.min_rows_new_trees >= 0.")


@dataclass(frozen=True)
class RetrainDecision:
    retrain: bool
    strategy: Strategy | None
    reason: str


@dataclass(frozen=True)
class RetrainPlan:
    """Strategies to try in order until one meets the quality bar, and the share of reference rows to mix in."""

    ladder: tuple[Strategy, ...]
    reference_fraction: float
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


@dataclass(frozen=True)
class QualityBar:
    """The validation AUC a candidate must reach for escalation to stop."""

    auc: float
    reason: str


def decide_retraining(
    drift: DriftResult,
    has_champion: bool,
    quality: QualityDrop | None = None,
    always_retrain: bool = False,
    rules: StrategyRules | None = None,
    labelled_rows: int | None = None,
) -> RetrainDecision:
    """Retrain only when feature drift or the model's quality drop passes its threshold, or nothing is deployed.

    Concept drift leaves the features unchanged and shows only as a quality drop on labelled rows, hence
    the second trigger. The strategy named is the first one ``plan_retraining`` would try.
    """
    rows = drift.current_rows if labelled_rows is None else labelled_rows
    plan = plan_retraining(drift, quality, rows, has_champion, always_retrain, rules or StrategyRules())
    if always_retrain or not has_champion:
        return RetrainDecision(True, plan.ladder[0], plan.reason)
    share = "n/a" if drift.drifted_share is None else f"{drift.drifted_share:.2f}"
    if drift.passes_threshold:
        trigger = f"drifted share {share} >= threshold {drift.threshold:.2f}"
        return RetrainDecision(True, plan.ladder[0], f"{trigger}: {plan.reason}")
    if quality is not None and quality.passes_threshold:
        trigger = (
            f"AUC fell {quality.drop:.3f} (from {quality.deployed_auc:.4f} at deployment to {quality.batch_auc:.4f}) "
            f">= threshold {quality.threshold:.3f}"
        )
        return RetrainDecision(True, plan.ladder[0], f"{trigger}: {plan.reason}")
    drop = "" if quality is None else f", AUC drop {quality.drop:.3f} < {quality.threshold:.3f}"
    return RetrainDecision(False, None, f"drifted share {share} < threshold {drift.threshold:.2f}{drop}: keep serving")


def plan_retraining(
    drift: DriftResult,
    quality: QualityDrop | None,
    labelled_rows: int,
    has_champion: bool,
    always_retrain: bool,
    rules: StrategyRules,
) -> RetrainPlan:
    """The cheapest strategy expected to recover quality first, then the dearer ones it escalates to.

    Refit keeps the split points, so it only helps when rows move between existing leaves: a concept drift
    (the champion's AUC fell) or a severe feature shift needs new trees. Old reference rows carry the old
    concept, so none are mixed in after a quality drop.
    """
    concept = quality is not None and quality.passes_threshold
    fraction = 0.0 if concept or not has_champion else rules.reference_fraction
    if always_retrain:
        return RetrainPlan((Strategy.FULL,), fraction, "always-retrain baseline: full retrain on every batch")
    if not has_champion:
        return RetrainPlan((Strategy.FULL,), 0.0, "no model is deployed yet: train the first one from scratch")
    if labelled_rows < rules.min_rows_new_trees:
        return RetrainPlan(
            (Strategy.REFIT,),
            fraction,
            f"only {labelled_rows} labelled rows (< policy.min_rows_new_trees {rules.min_rows_new_trees}): "
            "refit the leaf values; growing trees on so few rows would overfit",
        )
    if concept:
        return RetrainPlan(
            ESCALATION[1:],
            fraction,
            "the champion's AUC fell past the threshold, so the relationships changed: refit cannot add splits; "
            "start at warm start, on the new rows only (old rows carry the old concept)",
        )
    severe = _severe_drift(drift, rules)
    if severe:
        return RetrainPlan(ESCALATION[1:], fraction, f"{severe}: split points are misplaced, start at warm start")
    return RetrainPlan(ESCALATION, fraction, "moderate drift: refit first, escalating if it misses the quality bar")


def _severe_drift(drift: DriftResult, rules: StrategyRules) -> str:
    """Why the drift is too severe for refit, or an empty string when it is not."""
    if drift.drifted_share is not None and drift.drifted_share >= rules.severe_drift_share:
        return f"drifted share {drift.drifted_share:.2f} >= policy.severe_drift_share {rules.severe_drift_share:.2f}"
    worst = max((c for c in drift.columns if c.drifted), key=lambda c: c.severity, default=None)
    if worst is not None and worst.severity >= rules.severe_column_drift:
        return (
            f"column {worst.column!r} drifted {worst.severity:.1f}x its {worst.method} threshold "
            f"(>= policy.severe_column_drift {rules.severe_column_drift:.1f})"
        )
    return ""


def quality_bar(champion_auc: float | None, rules: StrategyRules) -> QualityBar | None:
    """What a cheaper candidate must reach on held-out rows: the champion's AUC on them plus ``min_gain_auc``.

    A retrain that does not beat the model it would replace has not recovered anything, so the next
    strategy is tried. Without a champion there is nothing to beat and no bar.
    """
    if champion_auc is None:
        return None
    return QualityBar(
        champion_auc + rules.min_gain_auc, f"champion {champion_auc:.4f} + policy.min_gain_auc {rules.min_gain_auc:.3f}"
    )


def meets_bar(valid_auc: float, bar: QualityBar | None) -> bool:
    return bar is None or valid_auc + AUC_EPSILON >= bar.auc


def choose_final(attempts: Sequence[tuple[Strategy, float]], bar: QualityBar | None) -> tuple[int, str]:
    """The first attempt (strategy, valid AUC) that met the bar; if none did, the best one, since all are paid for."""
    failed = [strategy.value for strategy, _ in attempts]
    for index, (strategy, valid_auc) in enumerate(attempts):
        if meets_bar(valid_auc, bar):
            if bar is None:
                return index, f"{strategy.value} (valid AUC {valid_auc:.4f})"
            after = f" after {', '.join(failed[:index])} fell short" if index else ""
            return (
                index,
                f"{strategy.value} reached valid AUC {valid_auc:.4f} >= bar {bar.auc:.4f} ({bar.reason}){after}",
            )
    best = max(range(len(attempts)), key=lambda i: attempts[i][1])
    assert bar is not None
    return best, (
        f"no strategy reached the bar {bar.auc:.4f} ({bar.reason}); {attempts[best][0].value} had the best "
        f"valid AUC {attempts[best][1]:.4f}"
    )
