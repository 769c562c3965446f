"""Reporting group: the energy ledger of everything this instance ran, with a chart the UI shows inline."""

import base64
import dataclasses

import pandas as pd
from dagster import AssetExecutionContext, MetadataValue, Output

from green_pipeline.assets.metering import metered_asset
from green_pipeline.cost_review import chart_png, summarize
from green_pipeline.ledger import (
    EnergyTotal,
    batch_costs,
    entries_of,
    materializations,
    prediction_energy_per_1k_kwh,
    totals,
)
from green_pipeline.regions import PROVIDERS, advice_table, measured_energy_kwh, region_advice
from green_pipeline.resources import ArtifactStorage

RECENT_RUNS = 20
#: Cleanest regions shown per cloud provider (`green-pipeline regions` lists them all).
REGIONS_PER_PROVIDER = 3


@metered_asset(group_name="reporting", io_manager_key="artifact_io_manager")
def energy_ledger(context: AssetExecutionContext, artifacts: ArtifactStorage) -> Output[pd.DataFrame]:
    """Energy and CO2 per asset, per run and in total; energy avoided by skipped retrains; a chart per batch."""
    events = list(materializations(context.instance))  # one read of the event log serves every figure below
    costs = batch_costs(events)
    summary = summarize(costs)
    entries = entries_of(events)
    chart_url = artifacts.url("reports", "energy_ledger", "energy_and_quality.png")
    png = chart_png(costs)
    artifacts.write(chart_url, png)
    runs = sorted(totals(entries, by="run_id"), key=lambda t: t.key)
    metadata: dict[str, object] = {
        "total_energy_kwh": sum(e.energy_kwh or 0.0 for e in entries),
        "total_emissions_kg_co2eq": sum(e.emissions_kg_co2eq or 0.0 for e in entries),
        "unmeasured_steps": sum(e.energy_kwh is None for e in entries),
        "batches": summary.batches,
        "retrains": summary.retrains,
        "skipped_retrains": summary.skipped_retrains,
        "avoided_energy_kwh": summary.avoided_energy_kwh,
        "skipped_retrains_without_estimate": summary.skipped_without_estimate,
        "max_run_energy_kwh": max((r.energy_kwh for r in runs), default=0.0),
        "per_asset": MetadataValue.md(_table(totals(entries, by="asset"), "asset")),
        "recent_runs": MetadataValue.md(_table(runs[-RECENT_RUNS:], "run")),
        "chart": MetadataValue.md(
            f"![energy and quality per batch](data:image/png;base64,{base64.b64encode(png).decode()})"
        ),
        "chart_path": MetadataValue.path(chart_url),
    }
    measured_kwh = measured_energy_kwh(e.energy_kwh for e in entries)
    advice = [a for provider in PROVIDERS for a in region_advice(measured_kwh, provider, REGIONS_PER_PROVIDER)]
    metadata["region_advice"] = MetadataValue.md(
        f"The {REGIONS_PER_PROVIDER} cleanest regions of each provider, and what this ledger's measured energy "
        f"would have emitted there:\n\n{advice_table(advice)}"
    )
    cleanest = min(advice, key=lambda a: a.g_co2_per_kwh)
    metadata["cleanest_region"] = f"{cleanest.provider} {cleanest.region} ({cleanest.location})"
    metadata["cleanest_region_emissions_kg_co2eq"] = (
        cleanest.emissions_kg_co2eq if cleanest.emissions_kg_co2eq is not None else "unmeasured"
    )
    per_1k = prediction_energy_per_1k_kwh(events)
    metadata["energy_per_1k_predictions_kwh" if per_1k is not None else "energy_per_1k_predictions"] = (
        per_1k if per_1k is not None else "unmeasured"
    )
    return Output(pd.DataFrame([dataclasses.asdict(c) for c in costs]), metadata=metadata)


def _table(rows: list[EnergyTotal], label: str) -> str:
    lines = [f"| {label} | steps | unmeasured | Wh | g CO2eq | seconds |", "|---|---|---|---|---|---|"]
    lines += [
        f"| {r.key} | {r.materializations} | {r.unmeasured} | {r.energy_kwh * 1e3:.5f} | "
        f"{r.emissions_kg_co2eq * 1e3:.6f} | {r.duration_s:.2f} |"
        for r in rows
    ]
    return "\n".join(lines)
