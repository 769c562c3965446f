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
from green_pipeline.training.study import TuningStudy, tune
from green_pipeline.training.trainer import (
    BatchSplit,
    InitScores,
    TrainingSettings,
    TrainResult,
    reference_sample,
    split_batch,
    train_model,
)
from green_pipeline.training.transfer import SourceVersion, TransferSource, keep_transfer
from green_pipeline.training.tuning import TuningHistory, TuningSettings, plan_tuning


@dataclass(frozen=True)
class Attempt:
    """One strategy tried: its model, its validation AUC against the bar, and what training it cost."""

    result: TrainResult
    met_bar: bool
    energy: EnergyReport
    cpu_s: float
    #: The tuning study of a tuned full retrain (``training.study``): its best trial is ``result``.
    study: TuningStudy | None = None

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
    #: The chosen model's tuned parameters and study, published with it (``training.tuning.TuningHistory``).
    history: TuningHistory | None = None

    @property
    def study(self) -> TuningStudy | None:
        """The tuning study of this retraining, if an attempt was tuned (at most one is)."""
        return next((attempt.study for attempt in self.attempts if attempt.study is not None), None)

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
        if self.study is not None:
            values |= self.study.metadata()
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
    source: TransferSource | None = None,
    tuning: TuningSettings | None = None,
) -> Retrained:
    """A challenger trained on the rows ``assessment`` judged (``pooled`` batches and this one), with the plan its
    drift and quality drop call for.

    The first model's schema is the one validation inferred: the validated batch holds exactly its columns.
    ``budget`` bounds the champion's warm-start chain (``training.growth.tree_budget``). ``champion_cache`` is the
    champion version's prediction cache, holding the scores the drift step computed for these rows. Without a
    champion, a ``source`` (another model's serving version) makes it ``transfer_or_scratch``. ``tuning`` (None: never
    tune) budgets the tuned full retrains ``training.tuning.plan_tuning`` calls for.
    """
    batch = assessment.batch
    frames = {**(pooled or {}), batch: frame}
    schema = champion.schema if champion else infer_schema(frame, spec, batch)
    split = split_batches(frames, schema.label, batch)
    rules = thresholds.rules or StrategyRules()
    rows = len(split.train) + len(split.valid) + len(split.test)
    plan = plan_for(assessment, rows, thresholds.quality_drop_auc, thresholds.always_retrain, rules)
    transferring = source if champion is None else None
    if transferring is not None:
        source_schema = transferring.schema_for(frames, schema.label)
        outcome, schema = transfer_or_scratch(split, schema, transferring, source_schema, settings, energy, tuning)
    else:
        outcome = retrain(split, schema, champion, plan, rules, settings, energy, budget, champion_cache, tuning)
    return retrained(batch, outcome, schema, champion, pooled, transferring.ref if transferring else None)


def retrained(
    batch: str,
    outcome: RetrainingOutcome,
    schema: FeatureSchema,
    champion: DeployedModel | None,
    pooled: Mapping[str, pd.DataFrame] | None,
    transfer_source: SourceVersion | None = None,
) -> Retrained:
    """The challenger ``outcome`` chose, as the next steps receive it, with how it was chosen."""
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
        transfer_source=transfer_source,
        tuning=outcome.history,
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
    tuning: TuningSettings | None = None,
) -> RetrainingOutcome:
    """Run the plan's strategies in order, each measured, stopping at the first that meets the quality bar.

    The champion is judged, and warm-started from, on the scores its prediction cache (``champion_cache``) holds,
    computed only where it holds none. A champion whose warm-start chain is at or past ``budget`` is retrained
    compactly rather than warm-started. Every untuned strategy trains with the champion's tuned parameters (a warm
    start continues its model); a full retrain ``plan_tuning`` picks is tuned within ``tuning``'s budget instead.
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
    history = TuningHistory.from_metadata(champion.metadata) if champion else None
    tuned = plan_tuning(bounded.ladder, champion is not None, history, tuning)
    inherited = history.best_params.applied_to(settings) if history else settings
    attempts: list[Attempt] = []
    for strategy in tuned.ladder:
        if tuning is not None and tuned.tunes(strategy):
            attempt = run_attempt(
                split, schema, strategy, settings, energy, champion_scores, extra, bar, tuning=tuning, history=history
            )
        else:
            attempt = run_attempt(split, schema, strategy, inherited, energy, champion_scores, extra, bar)
        attempts.append(attempt)
        if attempt.met_bar:
            break
    index, why = choose_final([(a.strategy, a.result.valid_auc) for a in attempts], bar)
    chosen = attempts[index].study
    tuning_reason = tuned.reason if any(a.study for a in attempts) else ""
    return RetrainingOutcome(
        result=attempts[index].result,
        attempts=tuple(attempts),
        plan=plan,
        bar=bar,
        champion_valid_auc=champion_auc,
        reason="; ".join(filter(None, (plan.reason, bounded.reason, tuning_reason, f"chosen: {why}"))),
        budget=budget if champion else None,
        bounded=bounded,
        history=chosen.history() if chosen else history.next_training() if history else None,
    )


def transfer_or_scratch(
    split: BatchSplit,
    schema: FeatureSchema,
    source: TransferSource,
    source_schema: FeatureSchema,
    settings: TrainingSettings,
    energy: EnergySettings,
    tuning: TuningSettings | None = None,
) -> tuple[RetrainingOutcome, FeatureSchema]:
    """A new model name's first model: the source fine-tuned on the split's rows (on its own columns,
    ``source_schema``) and the model the name would get without a source on the same rows (``schema`` inferred, tuned
    as any first model is), each measured; the better validation AUC is kept, with the schema it scores with. Nothing
    serves, so there is no bar. A study's best validation AUC is the best of its trials on these very rows, so the
    transfer is compared with its default trial, trained with the transfer's settings (``scratch_valid_auc``)."""
    plan = RetrainPlan(
        (Strategy.TRANSFER, Strategy.FULL),
        0.0,
        f"no model is deployed yet: fine-tune {source.ref} (model_store.transfer_from) and train from scratch on "
        "the same rows",
    )
    tuned = plan_tuning(plan.ladder, False, None, tuning)
    # The source is only boosted from, never judged: without a prediction cache none of its scores is looked up.
    start = ChampionScores(source.model, None)
    transfer = run_attempt(split, source_schema, Strategy.TRANSFER, settings, energy, start, None, None)
    scratch = run_attempt(
        split, schema, Strategy.FULL, settings, energy, None, None, None, tuning=tuning if tuned.tune_full else None
    )
    kept, why = keep_transfer(transfer.result.valid_auc, scratch_valid_auc(scratch), source.ref)
    outcome = RetrainingOutcome(
        result=(transfer if kept else scratch).result,
        attempts=(transfer, scratch),
        plan=plan,
        bar=None,
        champion_valid_auc=None,
        reason="; ".join(filter(None, (plan.reason, tuned.reason if scratch.study else "", f"chosen: {why}"))),
        history=scratch.study.history() if scratch.study and not kept else None,
    )
    return outcome, source_schema if kept else schema


def scratch_valid_auc(attempt: Attempt) -> float:
    """A model from scratch's validation AUC at the default settings: its study's default trial when it was tuned."""
    default = attempt.study.default if attempt.study else None
    return default.valid_auc if default else attempt.result.valid_auc


def run_attempt(
    split: BatchSplit,
    schema: FeatureSchema,
    strategy: Strategy,
    settings: TrainingSettings,
    energy: EnergySettings,
    champion_scores: ChampionScores | None,
    extra_rows: pd.DataFrame | None,
    bar: QualityBar | None,
    *,
    tuning: TuningSettings | None = None,
    history: TuningHistory | None = None,
) -> Attempt:
    """One strategy, with its energy (``measure_energy``) and CPU seconds metered around the training alone (and,
    for a warm start, the champion's scores it boosts from: looked up where cached, computed where not).

    With ``tuning``, a full retrain is a tuning study (``training.study.tune``, warm-started from ``history``) and
    the attempt's energy is all its trials'."""
    booster = champion_scores.model.booster if champion_scores else None
    cpu_started = time.process_time()
    study = None
    with measure_energy(energy) as measurement:
        init_scores = None
        if strategy is Strategy.WARM_START and champion_scores is not None:
            init_scores = warm_start_scores(champion_scores, split, extra_rows)
        if tuning is not None and strategy is Strategy.FULL:
            result, study = tune(split, schema, settings, tuning, energy, extra_rows, history)
        else:
            result = train_model(split, schema, strategy, settings, booster, extra_rows, init_scores)
    assert measurement.report is not None
    cpu_s = time.process_time() - cpu_started
    return Attempt(result, meets_bar(result.valid_auc, bar), measurement.report, cpu_s, study)


def warm_start_scores(champion: ChampionScores, split: BatchSplit, extra_rows: pd.DataFrame | None) -> InitScores:
    """The champion's raw scores of a warm start's training rows (``split.train`` then ``extra_rows``, as the
    trainer stacks them) and validation rows."""
    train = split.train if extra_rows is None or extra_rows.empty else pd.concat([split.train, extra_rows])
    return InitScores(train=champion.raw(train), valid=champion.raw(split.valid))
