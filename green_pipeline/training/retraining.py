"""Retraining with escalation: try the plan's strategies cheapest first, each one's energy measured, until one
meets the quality bar on held-out rows, and keep the record of every attempt and of why the final one won.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from green_pipeline.data.schema import DatasetSpec, FeatureSchema, infer_schema
from green_pipeline.drift.assessment import MonitoringThresholds
from green_pipeline.energy.measurement import EnergyReport, EnergySettings, EnergyStatus, complete_sum, measure_energy
from green_pipeline.errors import TrainingError
from green_pipeline.records import CandidateModel, DriftAssessment
from green_pipeline.serving.scoring import ChampionScores
from green_pipeline.store.model_store import DeployedModel
from green_pipeline.training.evaluation import scores_auc
from green_pipeline.training.growth import BoundedPlan, TreeBudget, bound_ladder
from green_pipeline.training.policy import (
    QualityBar,
    QualityDrop,
    RetrainPlan,
    Strategy,
    StrategyRules,
    Trigger,
    choose_final,
    meets_bar,
    plan_retraining,
    provisional_plan,
    quality_bar,
)
from green_pipeline.training.trainer import (
    BatchSplit,
    InitScores,
    TrainingSettings,
    TrainResult,
    reference_sample,
    split_batch,
    train_model,
)


@dataclass(frozen=True)
class Attempt:
    """One strategy tried: its model, its validation AUC against the bar, and what training it cost."""

    result: TrainResult
    met_bar: bool
    energy: EnergyReport
    cpu_s: float

    @property
    def strategy(self) -> Strategy:
        return self.result.strategy


@dataclass(frozen=True)
class RetrainingOutcome:
    """The model handed on, every attempt in the order tried, and why the final one was chosen."""

    result: TrainResult
    attempts: tuple[Attempt, ...]
    plan: RetrainPlan
    bar: QualityBar | None
    champion_valid_auc: float | None
    reason: str
    #: The warm-start chain's tree budget as applied (``training.growth``); None without a champion or a budget.
    budget: TreeBudget | None = None
    bounded: BoundedPlan | None = None

    @property
    def strategies_tried(self) -> tuple[Strategy, ...]:
        return tuple(attempt.strategy for attempt in self.attempts)

    @property
    def energy_kwh(self) -> float | None:
        """What the retraining spent, measured or estimated; None as soon as one attempt has no figure."""
        return complete_sum(attempt.energy.energy_kwh for attempt in self.attempts)

    def metadata(self) -> dict[str, float | int | str]:
        """Flat figures for the materialization: numbers as numbers, one ``attempt_<strategy>_*`` set per attempt.

        The chosen strategy is not among them: the metadata contract (``TrainingRecord``) writes it.
        """
        values: dict[str, float | int | str | None] = {
            "strategies_tried": ", ".join(s.value for s in self.strategies_tried),
            "attempts": len(self.attempts),
            "reason": self.reason,
            "quality_bar_auc": self.bar.auc if self.bar else None,
            "champion_valid_auc": self.champion_valid_auc,
            "reference_rows": self.result.extra_rows,
        }
        if self.budget is not None and self.bounded is not None:
            values |= {
                "tree_budget": self.budget.limit,
                "chain_first_version": self.budget.root_version,
                "chain_first_trees": self.budget.root_trees,
                "compacted": self.bounded.compacted,
            }
        for attempt in self.attempts:
            prefix = f"attempt_{attempt.strategy.value}"
            if attempt.energy.energy_kwh is None:  # said, never left out or zeroed
                values[f"{prefix}_energy"] = EnergyStatus.UNMEASURED.value
            values[f"{prefix}_energy_kwh"] = attempt.energy.energy_kwh
            values[f"{prefix}_valid_auc"] = attempt.result.valid_auc
            values[f"{prefix}_duration_s"] = attempt.energy.duration_s
        return {key: value for key, value in values.items() if value is not None}

    def attempts_table(self) -> str:
        """The attempts as a Markdown table, for reading in the UI next to the numbers."""
        lines = [
            "| strategy | valid AUC | met bar | new trees | train rows | energy kWh | seconds |",
            "|---|---|---|---|---|---|---|",
        ]
        for a in self.attempts:
            kwh = EnergyStatus.UNMEASURED.value if a.energy.energy_kwh is None else f"{a.energy.energy_kwh:.3g}"
            lines.append(
                f"| {a.strategy.value} | {a.result.valid_auc:.4f} | {'yes' if a.met_bar else 'no'} | "
                f"{a.result.new_trees} | {a.result.train_rows} | {kwh} | {a.energy.duration_s:.2f} |"
            )
        bar = "none (no champion to beat)" if self.bar is None else f"{self.bar.auc:.4f} ({self.bar.reason})"
        return "\n".join([*lines, "", f"Quality bar: {bar}.", "", f"Chosen: {self.reason}."])


@dataclass(frozen=True)
class Retrained:
    """The challenger handed to the next step, and how it was chosen."""

    candidate: CandidateModel
    outcome: RetrainingOutcome


def retrain_batch(
    frame: pd.DataFrame,
    assessment: DriftAssessment,
    champion: DeployedModel | None,
    spec: DatasetSpec,
    thresholds: MonitoringThresholds,
    settings: TrainingSettings,
    energy: EnergySettings,
    pooled: Mapping[str, pd.DataFrame] | None = None,
    budget: TreeBudget | None = None,
    champion_cache: pd.DataFrame | None = None,
) -> Retrained:
    """A challenger trained on the rows ``assessment`` judged (``pooled`` batches and this one), with the plan its
    drift and quality drop call for.

    The first model's schema is the one validation inferred: the validated batch holds exactly its columns.
    ``budget`` bounds the champion's warm-start chain (``training.growth.tree_budget``). ``champion_cache`` is the
    champion version's prediction cache, holding the scores the drift step computed for these rows.
    """
    batch = assessment.batch
    schema = champion.schema if champion else infer_schema(frame, spec, batch)
    split = split_batches({**(pooled or {}), batch: frame}, schema.label, batch)
    rules = thresholds.rules or StrategyRules()
    rows = len(split.train) + len(split.valid) + len(split.test)
    plan = plan_for(assessment, rows, thresholds.quality_drop_auc, thresholds.always_retrain, rules)
    outcome = retrain(split, schema, champion, plan, rules, settings, energy, budget, champion_cache)
    result = outcome.result
    candidate = CandidateModel(
        batch=batch,
        model_text=result.booster.model_to_string(),
        schema=schema,
        strategy=result.strategy,
        parent_version=champion.version if champion else None,
        trees=result.trees,
        new_trees=result.new_trees,
        train_rows=result.train_rows,
        pooled_batches=tuple(pooled or {}),
    )
    return Retrained(candidate, outcome)


def split_batches(frames: Mapping[str, pd.DataFrame], label: str, batch: str) -> BatchSplit:
    """Each batch split by its own name, the parts joined: every step that sees the candidate (compression,
    ``model_evaluation``) splits the same batches the same way, so no model is tested on rows it trained on, and the
    pooled batches' test rows make the paired decision rest on all the judged rows' share. A pooled batch too small
    to split (fewer than 5 rows of a class) only trains."""
    splits = []
    for name, frame in frames.items():
        try:
            splits.append(split_batch(frame, label, name, name))
        except TrainingError:
            if name == batch:
                raise
            splits.append(BatchSplit(frame, frame.iloc[:0], frame.iloc[:0]))
    if len(splits) == 1:
        return splits[0]
    return BatchSplit(
        *(pd.concat([getattr(s, part) for s in splits], ignore_index=True) for part in ("train", "valid", "test"))
    )


def plan_for(
    assessment: DriftAssessment,
    labelled_rows: int,
    quality_drop_threshold: float,
    always_retrain: bool,
    rules: StrategyRules,
) -> RetrainPlan:
    """The plan for a batch judged by the monitoring step, under the policy's current rules."""
    if assessment.decision.trigger is Trigger.PROVISIONAL:
        return provisional_plan(rules)
    quality, interval = None, assessment.champion_auc_interval
    if assessment.champion_auc is not None and assessment.champion_deployed_auc is not None:
        quality = QualityDrop(
            assessment.champion_deployed_auc,
            assessment.champion_auc,
            quality_drop_threshold,
            interval.upper if interval else None,
            interval.confidence if interval else None,
        )
    has_champion = assessment.champion_version is not None
    return plan_retraining(assessment.drift, quality, labelled_rows, has_champion, always_retrain, rules)


def retrain(
    split: BatchSplit,
    schema: FeatureSchema,
    champion: DeployedModel | None,
    plan: RetrainPlan,
    rules: StrategyRules,
    settings: TrainingSettings,
    energy: EnergySettings,
    budget: TreeBudget | None = None,
    champion_cache: pd.DataFrame | None = None,
) -> RetrainingOutcome:
    """Run the plan's strategies in order, each measured, stopping at the first that meets the quality bar.

    The champion is judged, and warm-started from, on the scores its prediction cache (``champion_cache``) holds,
    computed only where it holds none. A champion whose warm-start chain is at or past ``budget`` is retrained
    compactly rather than warm-started.
    """
    champion_scores = ChampionScores(champion, champion_cache) if champion else None
    champion_auc = (
        scores_auc(split.valid, champion_scores.probabilities(split.valid), schema) if champion_scores else None
    )
    bar = quality_bar(champion_auc, rules)
    extra = None
    if champion is not None:
        rows = round(plan.reference_fraction * len(split.train))
        extra = reference_sample(champion.reference, rows, f"reference:{champion.version}")
    bounded = bound_ladder(plan.ladder, champion.booster.num_trees() if champion else 0, budget)
    attempts: list[Attempt] = []
    for strategy in bounded.ladder:
        attempt = run_attempt(split, schema, strategy, settings, energy, champion_scores, extra, bar)
        attempts.append(attempt)
        if attempt.met_bar:
            break
    index, why = choose_final([(a.strategy, a.result.valid_auc) for a in attempts], bar)
    return RetrainingOutcome(
        result=attempts[index].result,
        attempts=tuple(attempts),
        plan=plan,
        bar=bar,
        champion_valid_auc=champion_auc,
        reason="; ".join(filter(None, (plan.reason, bounded.reason, f"chosen: {why}"))),
        budget=budget if champion else None,
        bounded=bounded,
    )


def run_attempt(
    split: BatchSplit,
    schema: FeatureSchema,
    strategy: Strategy,
    settings: TrainingSettings,
    energy: EnergySettings,
    champion_scores: ChampionScores | None,
    extra_rows: pd.DataFrame | None,
    bar: QualityBar | None,
) -> Attempt:
    """One strategy, with its energy (``measure_energy``) and CPU seconds metered around the training alone (and,
    for a warm start, the champion's scores it boosts from: looked up where cached, computed where not)."""
    booster = champion_scores.model.booster if champion_scores else None
    cpu_started = time.process_time()
    with measure_energy(energy) as measurement:
        init_scores = None
        if strategy is Strategy.WARM_START and champion_scores is not None:
            init_scores = warm_start_scores(champion_scores, split, extra_rows)
        result = train_model(split, schema, strategy, settings, booster, extra_rows, init_scores)
    assert measurement.report is not None
    return Attempt(result, meets_bar(result.valid_auc, bar), measurement.report, time.process_time() - cpu_started)


def warm_start_scores(champion: ChampionScores, split: BatchSplit, extra_rows: pd.DataFrame | None) -> InitScores:
    """The champion's raw scores of a warm start's training rows (``split.train`` then ``extra_rows``, as the
    trainer stacks them) and validation rows."""
    train = split.train if extra_rows is None or extra_rows.empty else pd.concat([split.train, extra_rows])
    return InitScores(train=champion.raw(train), valid=champion.raw(split.valid))
