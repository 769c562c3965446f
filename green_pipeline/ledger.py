"""The energy ledger: energy and CO2 per asset, run and batch, read back from a Dagster instance's event log.

Also what the energy budgets need: the measured spend of a run or of a calendar month so far.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dagster import AssetKey, AssetRecordsFilter, DagsterEventType, DagsterInstance, EventLogEntry

from green_pipeline.budget import (
    Budget,
    BudgetSettings,
    BudgetSeverity,
    BudgetStatus,
    month_of,
    retraining_block,
    spend_status,
)
from green_pipeline.cost_review import BatchCost
from green_pipeline.energy import complete_sum

PAGE = 1000
RETRAINING_STEPS = ("retrained_model", "model_evaluation", "compressed_model", "deployed_model")
PREDICTIONS = AssetKey("predictions")
DEPLOYED_MODEL = AssetKey("deployed_model")
#: This code location's assets, the only ones the ledger reads: on an instance shared with other code locations,
#: their materializations are not steps of this pipeline. tests/integration/test_ledger_scope.py holds the list
#: equal to the Definitions' assets (ledger cannot import them: the assets import the ledger).
PROJECT_ASSETS = tuple(
    AssetKey(name)
    for name in (
        "ingested_batch",
        "validated_batch",
        "drift_report",
        "retrained_model",
        "model_evaluation",
        "compressed_model",
        "deployed_model",
        "predictions",
        "energy_ledger",
    )
)


@dataclass(frozen=True)
class EnergyEntry:
    """One materialization's energy; ``energy_kwh`` is None when the step was unmeasured."""

    run_id: str
    asset: str
    partition: str | None
    energy_kwh: float | None
    emissions_kg_co2eq: float | None
    duration_s: float | None
    timestamp: float


@dataclass(frozen=True)
class EnergyTotal:
    key: str
    materializations: int
    unmeasured: int
    energy_kwh: float
    emissions_kg_co2eq: float
    duration_s: float


def _number(metadata: dict, key: str) -> float | None:
    value = metadata.get(key)
    return None if value is None else float(value.value)


def entry_of(event: EventLogEntry) -> EnergyEntry | None:
    materialization = event.asset_materialization
    if materialization is None:
        return None
    metadata = materialization.metadata
    return EnergyEntry(
        run_id=event.run_id,
        asset=materialization.asset_key.to_user_string(),
        partition=materialization.partition,
        energy_kwh=_number(metadata, "energy_kwh"),
        emissions_kg_co2eq=_number(metadata, "emissions_kg_co2eq"),
        duration_s=_number(metadata, "duration_s"),
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


def _latest_steps(events: Iterable[EventLogEntry]) -> list[tuple[str, dict[str, dict[str, Any]], str]]:
    """Per batch with a drift report, in name order: the latest metadata of each step, and that report's run."""
    latest: dict[str, dict[str, EventLogEntry]] = defaultdict(dict)
    for event in events:
        materialization = event.asset_materialization
        if materialization is not None and materialization.partition is not None:
            latest[materialization.partition][materialization.asset_key.to_user_string()] = event
    return [
        (batch, {asset: _values(event) for asset, event in steps.items()}, steps["drift_report"].run_id)
        for batch, steps in sorted(latest.items())
        if "drift_report" in steps
    ]


def _values(event: EventLogEntry) -> dict[str, Any]:
    materialization = event.asset_materialization
    assert materialization is not None
    return {key: value.value for key, value in materialization.metadata.items()}


def batch_costs(events: Iterable[EventLogEntry]) -> list[BatchCost]:
    """Per batch (in name order), the latest materialization of each step: energy, retrain, and quality."""
    return [_batch_cost(batch, steps) for batch, steps, _ in _latest_steps(events)]


def _batch_cost(batch: str, steps: dict[str, dict[str, Any]]) -> BatchCost:
    retrained = "retrained_model" in steps and steps["drift_report"].get("retrain_required") is True
    retrain_energy = [steps[s].get("energy_kwh") for s in RETRAINING_STEPS if s in steps] if retrained else []
    deployment = steps.get("deployed_model", {}) if retrained else {}
    return BatchCost(
        batch=batch,
        energy_kwh=sum(m.get("energy_kwh") or 0.0 for m in steps.values()),
        unmeasured_steps=sum(m.get("energy_kwh") is None for m in steps.values()),
        retrained=retrained,
        retrain_energy_kwh=complete_sum(retrain_energy),
        served_auc=steps["drift_report"].get("champion_auc"),
        deployed_auc=deployment.get("test_auc") if deployment.get("promoted") else None,
    )


@dataclass(frozen=True)
class BatchKpi:
    """A batch as last processed: its energy next to the AUC of the model serving it and of a new version.

    ``quality_per_kwh`` is the new version's AUC gain per kWh of retraining and compression (see
    green_pipeline.release); None with status ``unmeasured`` when that energy was not measured.
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


def batch_kpis(events: Iterable[EventLogEntry]) -> list[BatchKpi]:
    """Quality next to energy for every batch, from the latest materialization of each of its steps."""
    rows = []
    for batch, steps, run_id in _latest_steps(events):
        cost = _batch_cost(batch, steps)
        deployment = steps.get("deployed_model", {}) if cost.retrained else {}
        served = steps["drift_report"].get("champion_version")
        rows.append(
            BatchKpi(
                batch=batch,
                run_id=run_id,
                energy_kwh=cost.energy_kwh,
                unmeasured_steps=cost.unmeasured_steps,
                action=steps["retrained_model"].get("strategy", "retrained") if cost.retrained else "skipped",
                served_version=None if served in (None, "none") else served,
                served_auc=cost.served_auc,
                deployed_version=deployment.get("version"),
                promoted=deployment.get("promoted"),
                deployed_auc=deployment.get("test_auc"),
                quality_per_kwh=deployment.get("quality_per_kwh"),
                quality_per_kwh_status=deployment.get("quality_per_kwh_status"),
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
    metadata = event.asset_materialization.metadata if event and event.asset_materialization else {}
    return _number(dict(metadata), "production_energy_kwh")


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
        per_1k = materialization.metadata.get("energy_per_1k_predictions_kwh")
        scored = materialization.metadata.get("rows_scored")
        if per_1k is not None and scored is not None:
            rows += int(scored.value)
            energy += float(per_1k.value) * int(scored.value) / 1000
    return energy / rows * 1000 if rows else None


def totals(entries: Iterable[EnergyEntry], by: str) -> list[EnergyTotal]:
    """Sum entries by ``asset`` or ``run_id``; unmeasured materializations are counted, not guessed."""
    groups: dict[str, list[EnergyEntry]] = defaultdict(list)
    for entry in entries:
        groups[getattr(entry, by)].append(entry)
    return [
        EnergyTotal(
            key=key,
            materializations=len(group),
            unmeasured=sum(e.energy_kwh is None for e in group),
            energy_kwh=sum(e.energy_kwh or 0.0 for e in group),
            emissions_kg_co2eq=sum(e.emissions_kg_co2eq or 0.0 for e in group),
            duration_s=sum(e.duration_s or 0.0 for e in group),
        )
        for key, group in sorted(groups.items())
    ]
