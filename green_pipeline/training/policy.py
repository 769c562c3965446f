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
    """How much evidence drift alone needs to retrain, how the cheapest strategy expected to recover quality is
    picked, and the bar that stops escalation (the reasons for each default are in docs/RETRAINING.md)."""

    #: Importance-weighted drifted share from which drift is severe: refit is skipped, and when labels are present
    #: (the champion's measured quality decides) drift alone opens the gate only from here.
    severe_drift_share: float = 0.5
    severe_column_drift: float = 5.0
    min_rows_new_trees: int = 1000
    reference_fraction: float = 0.5
    min_gain_auc: float = 0.005
    #: Consecutive drifted batches (since the last retrain) before drift alone retrains; doubled per wasted retrain.
    drift_patience: int = 1
    #: Batches after a retrain during which drift alone does not retrain (a clear quality drop still does).
    cooldown_batches: int = 0
    #: Trees a warm-start chain may grow to, as a factor of its first version's (``training.growth``).
    max_model_growth: float = 2.0

    def __post_init__(self) -> None:
        for name in ("severe_drift_share", "min_gain_auc"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InvalidConfigError(f"policy.{name} = {getattr(self, name)} must be between 0 and 1.")
        if self.reference_fraction < 0.0:
            raise InvalidConfigError(f"policy.reference_fraction = {self.reference_fraction} must be >= 0.")
        if self.severe_column_drift <= 0.0 or self.min_rows_new_trees < 0:
            raise InvalidConfigError("policy.severe_column_drift must be > 0 and policy.min_rows_new_trees >= 0.")
        if self.max_model_growth < 1.0:
            raise InvalidConfigError(
                f"policy.max_model_growth = {self.max_model_growth} must be >= 1 (a factor of the chain's first "
                "version's trees)."
            )
        if self.drift_patience < 1 or self.cooldown_batches < 0:
            raise InvalidConfigError(
                f"policy.drift_patience = {self.drift_patience} must be >= 1 and "
                f"policy.cooldown_batches = {self.cooldown_batches} >= 0."
            )


class Outcome(StrEnum):
    """What the gate decided for a batch: ``pooled`` waits for the next batches' rows before deciding."""

    RETRAIN = "retrain"
    KEEP_SERVING = "keep_serving"
    POOLED = "pooled"


class Trigger(StrEnum):
    """What opened the gate; a wasted retrain makes the same trigger need stronger evidence."""

    NO_CHAMPION = "no_champion"
    ALWAYS_RETRAIN = "always_retrain"
    QUALITY_DROP = "quality_drop"
    DRIFT = "drift"
    #: The champion learned from fewer labelled rows than a decision needs (``provisional_decision``).
    PROVISIONAL = "provisional_champion"


@dataclass(frozen=True)
class GateHistory:
    """What the earlier batches of the stream (oldest first, this one excluded) tell the gate.

    Streaks count consecutive batches, since the last retrain, whose signal held; a wasted retrain is one whose
    model was trained but not promoted, counted per trigger since the last promotion.
    """

    drift_streak: int = 0
    quality_streak: int = 0
    #: Batches judged since the last retrain; None before any retrain.
    batches_since_retrain: int | None = None
    wasted_drift_retrains: int = 0
    wasted_quality_retrains: int = 0
    #: Wasted retrains of any trigger since the last promotion.
    wasted_retrains: int = 0
    #: The latest batches that were pooled and wait to be judged with this one, oldest first.
    pooled_batches: tuple[str, ...] = ()


@dataclass(frozen=True)
class PastBatch:
    """One earlier batch as the gate needs it, read back from its drift report and deployment."""

    batch: str
    outcome: Outcome
    trigger: Trigger | None = None
    drift_signal: bool = False
    quality_signal: bool = False
    #: Whether the model trained on it was promoted; None when no model was deployed from it.
    promoted: bool | None = None


def gate_history(past: Sequence[PastBatch]) -> GateHistory:
    """Streaks, batches since the last retrain, wasted retrains and the pending pool, from the batches before."""
    pooled: list[str] = []
    for earlier in reversed(past):
        if earlier.outcome is not Outcome.POOLED:
            break
        pooled.insert(0, earlier.batch)
    judged = [b for b in past if b.outcome is not Outcome.POOLED]
    retrains = [i for i, b in enumerate(judged) if b.outcome is Outcome.RETRAIN]
    since = judged[retrains[-1] + 1 :] if retrains else judged
    promotions = [i for i, b in enumerate(judged) if b.promoted]
    unpromoted = judged[promotions[-1] + 1 :] if promotions else judged
    wasted = [b.trigger for b in unpromoted if b.outcome is Outcome.RETRAIN and b.promoted is False]
    return GateHistory(
        drift_streak=_streak(since, "drift_signal"),
        quality_streak=_streak(since, "quality_signal"),
        batches_since_retrain=len(since) if retrains else None,
        wasted_drift_retrains=wasted.count(Trigger.DRIFT),
        wasted_quality_retrains=wasted.count(Trigger.QUALITY_DROP),
        wasted_retrains=len(wasted),
        pooled_batches=tuple(pooled),
    )


def _streak(batches: Sequence[PastBatch], signal: str) -> int:
    count = 0
    for batch in reversed(batches):
        if not getattr(batch, signal):
            break
        count += 1
    return count


@dataclass(frozen=True)
class GateEvidence:
    """What a decision compared, each figure beside the threshold it met or missed: the drift step's metadata."""

    #: The weighted drifted share's threshold: policy.severe_drift_share with labels, else drift_share_threshold.
    drift_threshold: float | None
    drift_signal: bool
    quality_signal: bool
    #: Consecutive batches (this one included) whose signal held, and how many the trigger needs now.
    drift_streak: int
    drift_patience: int
    quality_streak: int
    quality_patience: int
    cooldown_batches: int
    batches_since_retrain: int | None
    wasted_drift_retrains: int
    wasted_quality_retrains: int


@dataclass(frozen=True)
class RetrainDecision:
    retrain: bool
    strategy: Strategy | None
    reason: str
    outcome: Outcome = Outcome.KEEP_SERVING
    trigger: Trigger | None = None
    evidence: GateEvidence | None = None


@dataclass(frozen=True)
class RetrainPlan:
    """Strategies to try in order until one meets the quality bar, and the share of reference rows to mix in."""

    ladder: tuple[Strategy, ...]
    reference_fraction: float
    reason: str


@dataclass(frozen=True)
class QualityDrop:
    """The serving model's AUC on a labelled batch, with its interval, against the AUC it had when deployed."""

    deployed_auc: float
    batch_auc: float
    threshold: float
    #: Upper bound of the batch AUC's interval at ``confidence`` (DeLong); None judges the estimate alone.
    batch_upper: float | None = None
    confidence: float | None = None

    @property
    def drop(self) -> float:
        return self.deployed_auc - self.batch_auc

    @property
    def passes_threshold(self) -> bool:
        """Even the best AUC the batch allows is below the deployed AUC minus the threshold: not noise."""
        upper = self.batch_auc if self.batch_upper is None else self.batch_upper
        return upper + AUC_EPSILON < self.deployed_auc - self.threshold

    def describe(self) -> str:
        interval = "" if self.batch_upper is None else f" (upper bound {self.batch_upper:.4f} at {self.confidence:.0%})"
        return (
            f"champion AUC {self.batch_auc:.4f}{interval} vs {self.deployed_auc:.4f} at deployment minus "
            f"policy.quality_drop_threshold_auc {self.threshold:.3f} = {self.deployed_auc - self.threshold:.4f}"
        )


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
    history: GateHistory | None = None,
) -> RetrainDecision:
    """Retrain when the champion's quality clearly fell, when drift that matters to it persists, or nothing serves.

    With labels, the champion's measured AUC (its interval's upper bound) is the primary trigger and drift alone
    opens the gate only past ``severe_drift_share``; without, the weighted drifted share is compared with its
    threshold. Drift needs ``drift_patience`` consecutive drifted batches and waits out ``cooldown_batches``; each
    wasted retrain of a trigger since the last promotion doubles that trigger's patience. The strategy named is
    the first one ``plan_retraining`` would try.
    """
    rules = rules or StrategyRules()
    rows = drift.current_rows if labelled_rows is None else labelled_rows
    plan = plan_retraining(drift, quality, rows, has_champion, always_retrain, rules)
    if always_retrain or not has_champion:
        trigger = Trigger.ALWAYS_RETRAIN if always_retrain else Trigger.NO_CHAMPION
        return RetrainDecision(True, plan.ladder[0], plan.reason, Outcome.RETRAIN, trigger)
    evidence = weigh_evidence(drift, quality, rules, history or GateHistory())
    drift_why, quality_why = _drift_reason(drift, evidence, rules), _quality_reason(quality, evidence)
    if evidence.quality_signal and evidence.quality_streak >= evidence.quality_patience:
        why = f"{quality_why}; {drift_why}: {plan.reason}"
        return RetrainDecision(True, plan.ladder[0], why, Outcome.RETRAIN, Trigger.QUALITY_DROP, evidence)
    cooling = evidence.batches_since_retrain is not None and evidence.batches_since_retrain < rules.cooldown_batches
    if evidence.drift_signal and evidence.drift_streak >= evidence.drift_patience and not cooling:
        why = f"{drift_why}; {quality_why}: {plan.reason}"
        return RetrainDecision(True, plan.ladder[0], why, Outcome.RETRAIN, Trigger.DRIFT, evidence)
    held = (
        f" (cooldown: {evidence.batches_since_retrain} of policy.cooldown_batches {rules.cooldown_batches} "
        "batches since the last retrain)"
        if cooling and evidence.drift_signal
        else ""
    )
    return RetrainDecision(False, None, f"{drift_why}{held}; {quality_why}: keep serving", evidence=evidence)


def weigh_evidence(
    drift: DriftResult, quality: QualityDrop | None, rules: StrategyRules, history: GateHistory
) -> GateEvidence:
    """Each trigger's signal on this batch, its streak and the patience it needs after the wasted retrains."""
    threshold = None if drift.weighted_share is None else rules.severe_drift_share if quality else drift.threshold
    drift_signal = threshold is not None and drift.weighted_share is not None and drift.weighted_share >= threshold
    quality_signal = quality is not None and quality.passes_threshold
    return GateEvidence(
        drift_threshold=threshold,
        drift_signal=drift_signal,
        quality_signal=quality_signal,
        drift_streak=history.drift_streak + 1 if drift_signal else 0,
        drift_patience=rules.drift_patience * 2**history.wasted_drift_retrains,
        quality_streak=history.quality_streak + 1 if quality_signal else 0,
        quality_patience=2**history.wasted_quality_retrains,
        cooldown_batches=rules.cooldown_batches,
        batches_since_retrain=history.batches_since_retrain,
        wasted_drift_retrains=history.wasted_drift_retrains,
        wasted_quality_retrains=history.wasted_quality_retrains,
    )


def _drift_reason(drift: DriftResult, evidence: GateEvidence, rules: StrategyRules) -> str:
    if drift.weighted_share is None or evidence.drift_threshold is None:
        return "drift not compared"
    share = f"weighted drifted share {drift.weighted_share:.2f} (plain {drift.drifted_share:.2f})"
    name = (
        "policy.severe_drift_share (labels present: drift alone must be severe)"
        if evidence.drift_threshold == rules.severe_drift_share and evidence.drift_threshold != drift.threshold
        else "threshold"
    )
    verdict = ">=" if evidence.drift_signal else "<"
    patience = (
        f", {evidence.drift_streak} of {evidence.drift_patience} consecutive drifted batches"
        if evidence.drift_signal and evidence.drift_patience > 1
        else ""
    )
    return f"{share} {verdict} {name} {evidence.drift_threshold:.2f}{patience}"


def _quality_reason(quality: QualityDrop | None, evidence: GateEvidence) -> str:
    if quality is None:
        return "no quality check (no labels or no AUC at deployment)"
    verdict = "AUC fell" if evidence.quality_signal else "no clear AUC drop"
    patience = (
        f", {evidence.quality_streak} of {evidence.quality_patience} consecutive batches after "
        f"{evidence.wasted_quality_retrains} wasted retrain(s)"
        if evidence.quality_signal and evidence.quality_patience > 1
        else ""
    )
    return f"{verdict} {quality.drop:.3f}: {quality.describe()}{patience}"


def provisional_decision(
    decision: RetrainDecision, learned_rows: int, labelled_rows: int, min_rows: int, history: GateHistory
) -> RetrainDecision:
    """Retrain a stopgap champion once enough rows are judged, unless ``decision`` retrains anyway.

    A first model trains on the first batch whatever its size, since nothing serves otherwise. One that learned
    from fewer labelled rows than a decision needs (``policy.min_rows_for_decision``) is such a stopgap: on real
    streams of a few hundred rows a batch, it served 0.02-0.03 AUC below a model of the pooled rows for dozens of
    batches without any drift or quality drop to retrain it (docs/RETRAINING.md). So the first decision with enough
    rows retrains it from scratch (``provisional_plan``), unless a retrain since the last promotion was wasted: then
    a model of enough rows was tried and did not beat it.
    """
    if decision.retrain or learned_rows >= min_rows or history.wasted_retrains:
        return decision
    why = (
        f"the champion learned from {learned_rows} labelled rows < policy.min_rows_for_decision {min_rows}, a "
        f"stopgap: retrain it on the {labelled_rows} rows judged now ({decision.reason})"
    )
    return RetrainDecision(True, Strategy.FULL, why, Outcome.RETRAIN, Trigger.PROVISIONAL, decision.evidence)


def provisional_plan(rules: StrategyRules) -> RetrainPlan:
    """A stopgap champion's replacement: from scratch, on the judged rows and a sample of the stopgap's own rows.

    Not refit or warm start: their trees would keep the splits the stopgap drew on too few rows.
    """
    return RetrainPlan(
        (Strategy.FULL,),
        rules.reference_fraction,
        "provisional champion: train from scratch on the judged rows and a sample of the rows it learned from",
    )


def pooled_decision(labelled_rows: int, min_rows: int, pooled_batches: Sequence[str]) -> RetrainDecision:
    """Too few labelled rows to decide on: wait for the next batches, whose drift step judges these rows too."""
    earlier = f" (with {len(pooled_batches)} earlier pooled batch(es))" if pooled_batches else ""
    return RetrainDecision(
        False,
        None,
        f"pooled: {labelled_rows} labelled rows{earlier} < policy.min_rows_for_decision {min_rows}; the next batch "
        f"is judged together with these {labelled_rows} rows",
        Outcome.POOLED,
    )


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
    share = drift.weighted_share
    if share is not None and share >= rules.severe_drift_share:
        return f"weighted drifted share {share:.2f} >= policy.severe_drift_share {rules.severe_drift_share:.2f}"
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
