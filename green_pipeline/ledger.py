"""The energy ledger: energy and CO2 per asset and per run, read back from a Dagster instance's event log."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from dagster import AssetKey, DagsterEventType, DagsterInstance, EventLogEntry

from green_pipeline.cost_review import BatchCost

PAGE = 1000
RETRAINING_STEPS = ("retrained_model", "model_evaluation", "compressed_model", "deployed_model")
PREDICTIONS = AssetKey("predictions")


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


def materializations(instance: DagsterInstance) -> Iterator[EventLogEntry]:
    """Every materialization event the instance recorded, oldest first, asset by asset."""
    for key in instance.get_asset_keys():
        cursor = None
        while True:
            page = instance.fetch_materializations(AssetKey(key.path), limit=PAGE, cursor=cursor, ascending=True)
            for record in page.records:
                yield record.event_log_entry
            if not page.has_more:
                break
            cursor = page.cursor


def all_entries(instance: DagsterInstance) -> list[EnergyEntry]:
    """Energy of every materialization the instance recorded, oldest first, asset by asset."""
    return entries_of(materializations(instance))


def batch_costs(events: Iterable[EventLogEntry]) -> list[BatchCost]:
    """Per batch (in name order), the latest materialization of each step: energy, retrain, and quality."""
    latest: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for event in events:
        materialization = event.asset_materialization
        if materialization is not None and materialization.partition is not None:
            values = {k: v.value for k, v in materialization.metadata.items()}
            latest[materialization.partition][materialization.asset_key.to_user_string()] = values
    return [_batch_cost(batch, steps) for batch, steps in sorted(latest.items()) if "drift_report" in steps]


def _batch_cost(batch: str, steps: dict[str, dict[str, Any]]) -> BatchCost:
    retrained = "retrained_model" in steps and steps["drift_report"].get("retrain_required") is True
    retrain_energy = [steps[s].get("energy_kwh") for s in RETRAINING_STEPS if s in steps] if retrained else []
    deployment = steps.get("deployed_model", {}) if retrained else {}
    return BatchCost(
        batch=batch,
        energy_kwh=sum(m.get("energy_kwh") or 0.0 for m in steps.values()),
        unmeasured_steps=sum(m.get("energy_kwh") is None for m in steps.values()),
        retrained=retrained,
        retrain_energy_kwh=sum(retrain_energy) if retrain_energy and None not in retrain_energy else None,
        served_auc=steps["drift_report"].get("champion_auc"),
        deployed_auc=deployment.get("test_auc") if deployment.get("promoted") else None,
    )


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
