"""The energy ledger: energy and CO2 per asset and per run, read back from a Dagster instance's event log."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from dagster import AssetKey, DagsterEventType, DagsterInstance, EventLogEntry

PAGE = 1000


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


def run_entries(instance: DagsterInstance, run_id: str) -> list[EnergyEntry]:
    """Energy of every materialization of one run."""
    events = instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION)
    return [entry for entry in map(entry_of, events) if entry is not None]


def all_entries(instance: DagsterInstance) -> Iterator[EnergyEntry]:
    """Energy of every materialization the instance recorded, oldest first, asset by asset."""
    for key in instance.get_asset_keys():
        cursor = None
        while True:
            page = instance.fetch_materializations(AssetKey(key.path), limit=PAGE, cursor=cursor, ascending=True)
            for record in page.records:
                entry = entry_of(record.event_log_entry)
                if entry is not None:
                    yield entry
            if not page.has_more:
                break
            cursor = page.cursor


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
