"""The energy ledger: energy and CO2 per asset, run and batch, read back from a Dagster instance's event log.

Also what the energy budgets need: the measured spend of a run or of a calendar month so far.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dagster import AssetKey, AssetRecordsFilter, DagsterEventType, DagsterInstance, EventLogEntry

from green_pipeline.energy.budget import (
    Budget,
    BudgetSettings,
    BudgetSeverity,
    BudgetStatus,
    month_of,
    retraining_block,
    spend_status,
)
from green_pipeline.energy.measurement import MeasuredSum, complete_sum
from green_pipeline.orchestration.metadata import (
    DEPLOYED_MODEL,
    DRIFT_REPORT,
    PREDICTIONS,
    PRODUCING_STEPS,
    PROJECT_ASSETS,
    RETRAINING_STEPS,
    DeploymentRecord,
    DriftDecision,
    ScoringRecord,
    StepEnergy,
    TrainingRecord,
)
from green_pipeline.reporting.cost_review import BatchCost
from green_pipeline.serving.release import step_energy_key

PAGE = 1000


@dataclass(frozen=True)
class EnergyEntry:
    """One materialization's energy; ``energy_kwh`` is None when the step was unmeasured."""

    run_id: str
    asset_key: AssetKey
    partition: str | None
    energy_kwh: float | None
    emissions_kg_co2eq: float | None
    duration_s: float | None
    timestamp: float

    @property
    def asset(self) -> str:
        return self.asset_key.to_user_string()


@dataclass(frozen=True)
class EnergyTotal:
    key: str
    materializations: int
    unmeasured: int
    energy_kwh: float
    emissions_kg_co2eq: float
    duration_s: float


def metadata_of(event: EventLogEntry) -> Mapping[str, Any]:
    """The metadata a materialization event was written with, for a record's ``from_metadata``."""
    materialization = event.asset_materialization
    assert materialization is not None, "only materializations carry the contract's metadata"
    return materialization.metadata


def entry_of(event: EventLogEntry) -> EnergyEntry | None:
    materialization = event.asset_materialization
    if materialization is None:
        return None
    energy = StepEnergy.from_metadata(materialization.metadata)
    return EnergyEntry(
        run_id=event.run_id,
        asset_key=materialization.asset_key,
        partition=materialization.partition,
        energy_kwh=energy.energy_kwh,
        emissions_kg_co2eq=energy.emissions_kg_co2eq,
        duration_s=energy.duration_s,
        timestamp=event.timestamp,
    )


def entries_of(events: Iterable[EventLogEntry]) -> list[EnergyEntry]:
    """Energy of each materialization among ``events``."""
    return [entry for entry in map(entry_of, events) if entry is not None]


def run_materializations(instance: DagsterInstance, run_id: str) -> Sequence[EventLogEntry]:
    return instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)


def run_entries(instance: DagsterInstance, run_id: str) -> list[EnergyEntry]:
    """Energy of every materialization of one run."""
    return entries_of(run_materializations(instance, run_id))


def latest_metadata(events: Iterable[EventLogEntry]) -> dict[AssetKey, Mapping[str, Any]]:
    """The metadata of each asset's latest materialization among ``events`` (e.g. one run's)."""
    return {
        event.asset_materialization.asset_key: event.asset_materialization.metadata
        for event in events
        if event.asset_materialization is not None
    }


def production_energy(instance: DagsterInstance, run_id: str, partition: str) -> dict[str, float | None]:
    """The energy of the steps of a run that produced the version of ``partition``, keyed as its metadata.json."""
    return {
        step_energy_key(entry.asset): entry.energy_kwh
        for entry in run_entries(instance, run_id)
        if entry.asset_key in PRODUCING_STEPS and entry.partition == partition
    }


def materializations(instance: DagsterInstance, after_timestamp: float | None = None) -> Iterator[EventLogEntry]:
    """Every materialization of this code location's assets (after ``after_timestamp``), oldest first, by asset."""
    for key in PROJECT_ASSETS:
        records_filter = AssetRecordsFilter(key, after_timestamp=after_timestamp)
        cursor = None
        while True:
            page = instance.fetch_materializations(records_filter, limit=PAGE, cursor=cursor, ascending=True)
            for record in page.records:
                yield record.event_log_entry
            if not page.has_more:
                break
            cursor = page.cursor


def all_entries(instance: DagsterInstance) -> list[EnergyEntry]:
    """Energy of every materialization of this code location's assets, oldest first, asset by asset."""
    return entries_of(materializations(instance))


def is_wasted_retrain(retrained: bool, promoted: bool | None) -> bool:
    """A retrain is wasted when it was trained but its version was not promoted (rejected, or never deployed): its
    energy bought nothing that serves. The one definition, for the ledger, ``green-pipeline ledger`` and benchmarks."""
    return retrained and promoted is not True


@dataclass(frozen=True)
class BatchSteps:
    """A batch as last processed: the latest materialization of each of its steps, read through the contract."""

    batch: str
    #: The run of the batch's latest drift report.
    run_id: str
    drift: DriftDecision
    entries: list[EnergyEntry]
    training: TrainingRecord | None
    deployment: DeploymentRecord | None

    @property
    def retrained(self) -> bool:
        return self.training is not None and self.drift.retrain_required

    @property
    def wasted(self) -> bool:
        return is_wasted_retrain(self.retrained, self.deployment.promoted if self.deployment else None)

    def retraining_energies(self) -> list[float | None]:
        """The energy of each retraining step (retrained_model to deployed_model); none if the batch did not retrain."""
        return [e.energy_kwh for e in self.entries if e.asset_key in RETRAINING_STEPS] if self.retrained else []


def _latest_steps(events: Iterable[EventLogEntry]) -> list[BatchSteps]:
    """Per batch with a drift report, in name order: the latest materialization of each step."""
    latest: dict[str, dict[AssetKey, EventLogEntry]] = defaultdict(dict)
    for event in events:
        materialization = event.asset_materialization
        if materialization is not None and materialization.partition is not None:
            latest[materialization.partition][materialization.asset_key] = event
    return [_batch_steps(batch, steps) for batch, steps in sorted(latest.items()) if DRIFT_REPORT in steps]


def _batch_steps(batch: str, steps: Mapping[AssetKey, EventLogEntry]) -> BatchSteps:
    metadata = {key: metadata_of(event) for key, event in steps.items()}
    return BatchSteps(
        batch=batch,
        run_id=steps[DRIFT_REPORT].run_id,
        drift=DriftDecision.from_metadata(metadata[DRIFT_REPORT]),
        entries=entries_of(steps.values()),
        training=TrainingRecord.from_steps(metadata),
        deployment=DeploymentRecord.from_steps(metadata),
    )


def batch_costs(events: Iterable[EventLogEntry]) -> list[BatchCost]:
    """Per batch (in name order), the latest materialization of each step: energy, retrain, and quality."""
    return [_batch_cost(steps) for steps in _latest_steps(events)]


def _batch_cost(steps: BatchSteps) -> BatchCost:
    deployment = steps.deployment if steps.retrained else None
    energy = MeasuredSum.of(e.energy_kwh for e in steps.entries)
    return BatchCost(
        batch=steps.batch,
        energy_kwh=energy.total,
        unmeasured_steps=energy.unmeasured,
        retrained=steps.retrained,
        retrain_energy_kwh=complete_sum(steps.retraining_energies()),
        served_auc=steps.drift.champion_auc,
        deployed_auc=deployment.test_auc if deployment and deployment.promoted else None,
    )


@dataclass(frozen=True)
class WastedRetrains:
    """Retrains trained but not promoted (``is_wasted_retrain``), and what their retraining steps spent.

    ``energy_kwh`` adds up the measured steps; ``unmeasured_steps`` counts the others, never guessed.
    """

    retrains: int
    batches: tuple[str, ...]
    energy_kwh: float
    unmeasured_steps: int

    @property
    def count(self) -> int:
        return len(self.batches)

    @property
    def share(self) -> float | None:
        """Wasted retrains per retrain; None without any retrain."""
        return self.count / self.retrains if self.retrains else None


def wasted_retrains(events: Iterable[EventLogEntry]) -> WastedRetrains:
    """The wasted retrains among every batch as last processed."""
    batches = _latest_steps(events)
    wasted = [steps for steps in batches if steps.wasted]
    energy = MeasuredSum.of(kwh for steps in wasted for kwh in steps.retraining_energies())
    return WastedRetrains(
        retrains=sum(steps.retrained for steps in batches),
        batches=tuple(steps.batch for steps in wasted),
        energy_kwh=energy.total,
        unmeasured_steps=energy.unmeasured,
    )


@dataclass(frozen=True)
class BatchKpi:
    """A batch as last processed: its energy next to the AUC of the model serving it and of a new version.

    ``quality_per_kwh`` is the new version's AUC gain per kWh of retraining and compression (see
    green_pipeline.serving.release); None with status ``unmeasured`` when that energy was not measured.
    ``decision`` is "promoted" or "rejected" (``reason`` says why); ``wasted`` marks a retrain not promoted.
    """

    batch: str
    run_id: str
    energy_kwh: float
    unmeasured_steps: int
    action: str
    served_version: str | None
    served_auc: float | None
    deployed_version: str | None
    promoted: bool | None
    deployed_auc: float | None
    quality_per_kwh: float | None
    quality_per_kwh_status: str | None
    decision: str | None
    reason: str | None
    wasted: bool


def batch_kpis(events: Iterable[EventLogEntry]) -> list[BatchKpi]:
    """Quality next to energy for every batch, from the latest materialization of each of its steps."""
    rows = []
    for steps in _latest_steps(events):
        cost = _batch_cost(steps)
        deployment = steps.deployment if steps.retrained else None
        rows.append(
            BatchKpi(
                batch=steps.batch,
                run_id=steps.run_id,
                energy_kwh=cost.energy_kwh,
                unmeasured_steps=cost.unmeasured_steps,
                action=steps.training.strategy if steps.retrained and steps.training else "skipped",
                served_version=steps.drift.champion_version,
                served_auc=cost.served_auc,
                deployed_version=deployment.version if deployment else None,
                promoted=deployment.promoted if deployment else None,
                deployed_auc=deployment.test_auc if deployment else None,
                quality_per_kwh=deployment.quality_per_kwh if deployment else None,
                quality_per_kwh_status=deployment.quality_per_kwh_status if deployment else None,
                decision=deployment.decision if deployment else None,
                reason=deployment.reason if deployment else None,
                wasted=steps.wasted,
            )
        )
    return rows


def month_budget_status(instance: DagsterInstance, budget: Budget, now: datetime) -> BudgetStatus:
    """Measured energy of every step materialized since the start of ``now``'s UTC month."""
    start = month_of(now)
    entries = entries_of(materializations(instance, after_timestamp=start.timestamp()))
    return spend_status(f"month {start:%Y-%m} (UTC)", (e.energy_kwh for e in entries), budget)


def run_budget_status(instance: DagsterInstance, run_id: str, budget: Budget, expected_kwh: float) -> BudgetStatus:
    """Measured energy of a run so far, plus ``expected_kwh`` still to come."""
    energies = (e.energy_kwh for e in run_entries(instance, run_id))
    return spend_status(f"run {run_id[:8]}", energies, budget, expected_kwh)


def last_production_energy_kwh(instance: DagsterInstance) -> float | None:
    """Retraining and compression energy of the latest version deployed: what the next retraining may cost."""
    event = instance.get_latest_materialization_event(DEPLOYED_MODEL)
    return DeploymentRecord.from_metadata(metadata_of(event)).production_energy_kwh if event else None


def retraining_budget_block(
    instance: DagsterInstance, run_id: str, budgets: BudgetSettings, now: datetime
) -> str | None:
    """Why a blocking budget forbids starting a retraining in this run now, or None; warn-only budgets never do."""
    statuses = []
    if budgets.per_month.severity is BudgetSeverity.BLOCK:
        statuses.append(month_budget_status(instance, budgets.per_month, now))
    if budgets.per_run.severity is BudgetSeverity.BLOCK:
        expected = last_production_energy_kwh(instance) or 0.0
        statuses.append(run_budget_status(instance, run_id, budgets.per_run, expected))
    return retraining_block(statuses)


def prediction_energy_per_1k_kwh(events: Iterable[EventLogEntry]) -> float | None:
    """Energy per 1,000 predictions over every measured scoring step (weighted by rows scored)."""
    rows, energy = 0, 0.0
    for event in events:
        materialization = event.asset_materialization
        if materialization is None or materialization.asset_key != PREDICTIONS:
            continue
        scoring = ScoringRecord.from_metadata(materialization.metadata)
        if scoring.energy_per_1k_predictions_kwh is not None:
            rows += scoring.rows_scored
            energy += scoring.energy_per_1k_predictions_kwh * scoring.rows_scored / 1000
    return energy / rows * 1000 if rows else None


def total_of(key: str, entries: Iterable[EnergyEntry]) -> EnergyTotal:
    """The entries summed; unmeasured materializations are counted, not guessed."""
    group = list(entries)
    energy = MeasuredSum.of(e.energy_kwh for e in group)
    return EnergyTotal(
        key=key,
        materializations=len(group),
        unmeasured=energy.unmeasured,
        energy_kwh=energy.total,
        emissions_kg_co2eq=MeasuredSum.of(e.emissions_kg_co2eq for e in group).total,
        duration_s=MeasuredSum.of(e.duration_s for e in group).total,
    )


def totals(entries: Iterable[EnergyEntry], by: str) -> list[EnergyTotal]:
    """``total_of`` the entries grouped by ``asset`` or ``run_id``."""
    groups: dict[str, list[EnergyEntry]] = defaultdict(list)
    for entry in entries:
        groups[getattr(entry, by)].append(entry)
    return [total_of(key, group) for key, group in sorted(groups.items())]
