"""Reporting group: the energy ledger of everything this instance ran, with a chart the UI shows inline."""

import base64
import dataclasses

import pandas as pd
from dagster import AssetExecutionContext, MetadataValue, Output

from green_pipeline.assets.metering import metered_asset
from green_pipeline.carbon.regions import PROVIDERS, advice_table, measured_energy_kwh, region_advice
from green_pipeline.orchestration.ledger import (
    EnergyEntry,
    EnergyTotal,
    batch_costs,
    entries_of,
    materializations,
    prediction_energy_per_1k_kwh,
    total_of,
    totals,
    wasted_retrains,
)
from green_pipeline.orchestration.metadata import ENERGY_LEDGER, LedgerRecord, energy_figure
from green_pipeline.orchestration.resources import ArtifactStorage
from green_pipeline.reporting.cost_review import chart_png, summarize

RECENT_RUNS = 20
#: Cleanest regions shown per cloud provider (`green-pipeline regions` lists them all).
REGIONS_PER_PROVIDER = 3


@metered_asset(key=ENERGY_LEDGER, group_name="reporting", io_manager_key="artifact_io_manager")
def energy_ledger(context: AssetExecutionContext, artifacts: ArtifactStorage) -> Output[pd.DataFrame]:
    """Energy and CO2 per asset, per run and in total; energy avoided by skipped retrains and wasted by retrains
    not promoted; a chart per batch."""
    events = list(materializations(context.instance))  # one read of the event log serves every figure below
    costs = batch_costs(events)
    summary = summarize(costs)
    entries = entries_of(events)
    total = total_of("all", entries)
    chart_url = artifacts.url("reports", "energy_ledger", "energy_and_quality.png")
    png = chart_png(costs)
    artifacts.write(chart_url, png)
    runs = sorted(totals(entries, by="run_id"), key=lambda t: t.key)
    wasted = wasted_retrains(events)
    record = LedgerRecord(
        total_energy_kwh=total.energy_kwh,
        total_emissions_kg_co2eq=total.emissions_kg_co2eq,
        unmeasured_steps=total.unmeasured,
        batches=summary.batches,
        retrains=summary.retrains,
        skipped_retrains=summary.skipped_retrains,
        avoided_energy_kwh=summary.avoided_energy_kwh,
        skipped_retrains_without_estimate=summary.skipped_without_estimate,
        max_run_energy_kwh=max((r.energy_kwh for r in runs), default=0.0),
        wasted_retrains=wasted.count,
        wasted_retrain_energy_kwh=wasted.energy_kwh,
    )
    metadata: dict[str, object] = {
        **record.as_metadata(),
        "per_asset": MetadataValue.md(_table(totals(entries, by="asset"), "asset")),
        "recent_runs": MetadataValue.md(_table(runs[-RECENT_RUNS:], "run")),
        "chart": MetadataValue.md(
            f"![energy and quality per batch](data:image/png;base64,{base64.b64encode(png).decode()})"
        ),
        "chart_path": MetadataValue.path(chart_url),
        **_region_metadata(entries),
        **energy_figure("energy_per_1k_predictions_kwh", prediction_energy_per_1k_kwh(events)),
    }
    return Output(pd.DataFrame([dataclasses.asdict(c) for c in costs]), metadata=metadata)


def _region_metadata(entries: list[EnergyEntry]) -> dict[str, object]:
    """The cleanest regions of each provider, and what the ledger's measured energy would have emitted there."""
    measured_kwh = measured_energy_kwh(e.energy_kwh for e in entries)
    advice = [a for provider in PROVIDERS for a in region_advice(measured_kwh, provider, REGIONS_PER_PROVIDER)]
    cleanest = min(advice, key=lambda a: a.g_co2_per_kwh)
    return {
        "region_advice": MetadataValue.md(
            f"The {REGIONS_PER_PROVIDER} cleanest regions of each provider, and what this ledger's measured energy "
            f"would have emitted there:\n\n{advice_table(advice)}"
        ),
        "cleanest_region": f"{cleanest.provider} {cleanest.region} ({cleanest.location})",
        **energy_figure("cleanest_region_emissions_kg_co2eq", cleanest.emissions_kg_co2eq),
    }


def _table(rows: list[EnergyTotal], label: str) -> str:
    lines = [f"| {label} | steps | unmeasured | Wh | g CO2eq | seconds |", "|---|---|---|---|---|---|"]
    lines += [
        f"| {r.key} | {r.materializations} | {r.unmeasured} | {r.energy_kwh * 1e3:.5f} | "
        f"{r.emissions_kg_co2eq * 1e3:.6f} | {r.duration_s:.2f} |"
        for r in rows
    ]
    return "\n".join(lines)
