"""Plain-text tables for the CLI: batch outcomes, totals, the scheduled-retraining comparison and the energy ledger."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from green_pipeline.app.runner import BatchOutcome
from green_pipeline.energy.measurement import EnergyStatus, MeasuredSum, complete_sum
from green_pipeline.orchestration.ledger import BatchKpi, EnergyTotal, WastedRetrains
from green_pipeline.training.scheduled import ScheduledBatch

OUTCOME_HEADER = (
    f"{'batch':<28} {'drift share':>11} {'action':<13} {'serving':>8} {'AUC served':>10} {'Wh':>9} {'g CO2eq':>9}"
)


def _optional(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _kpi(value: float | str | None, spec: str) -> str:
    """A KPI that may be a number, "unmeasured", or absent (a version written before the KPI existed)."""
    return value if isinstance(value, str) else _optional(value, spec)


def _energy(kwh: float, unmeasured: int, scale: float, spec: str) -> str:
    figure = format(kwh * scale, spec)
    return f"{figure}+{unmeasured}?" if unmeasured else figure


def outcome_row(outcome: BatchOutcome) -> str:
    if not outcome.success:
        return f"{outcome.batch:<28} {'QUARANTINED' if outcome.quarantined else 'FAILED'}: {outcome.error}"
    action = (outcome.strategy or "retrained") if outcome.retrained else "skipped"
    if outcome.retrained and outcome.deployed_version and outcome.serving_version != outcome.deployed_version:
        action += "*"
    return (
        f"{outcome.batch:<28} {_optional(outcome.drifted_share, '.2f'):>11} {action:<13} "
        f"{outcome.serving_version or '-':>8} {_optional(outcome.served_auc, '.4f'):>10} "
        f"{_energy(outcome.energy_kwh, outcome.unmeasured_steps, 1e3, '.4f'):>9} "
        f"{_energy(outcome.emissions_kg_co2eq, outcome.unmeasured_steps, 1e3, '.5f'):>9}"
    )


def mean_served_auc(outcomes: Sequence[BatchOutcome]) -> float | None:
    """Mean AUC of the serving model on each batch before it could learn from it (prequential)."""
    values = [o.served_auc for o in outcomes if o.served_auc is not None]
    return sum(values) / len(values) if values else None


def totals_row(label: str, outcomes: Sequence[BatchOutcome]) -> str:
    retrains = sum(o.retrained for o in outcomes)
    unmeasured = sum(o.unmeasured_steps for o in outcomes)
    note = f", {unmeasured} steps unmeasured (not counted)" if unmeasured else ""
    return (
        f"{label}: {len(outcomes)} batches, {retrains} retrains, "
        f"{sum(o.energy_kwh for o in outcomes) * 1e3:.4f} Wh, "
        f"{sum(o.emissions_kg_co2eq for o in outcomes) * 1e3:.5f} g CO2eq, "
        f"mean served AUC {_optional(mean_served_auc(outcomes), '.4f')}{note}"
    )


def scheduled_row(batch: ScheduledBatch) -> str:
    """A batch of scheduled retraining, in the outcome table's columns: no drift step, a retrain every batch."""
    energy, emissions = batch.energy_kwh, batch.emissions_kg_co2eq
    unmeasured = EnergyStatus.UNMEASURED.value
    return (
        f"{batch.batch:<28} {'-':>11} {'scheduled':<13} {'-':>8} {_optional(batch.served_auc, '.4f'):>10} "
        f"{unmeasured if energy is None else format(energy * 1e3, '.4f'):>9} "
        f"{unmeasured if emissions is None else format(emissions * 1e3, '.5f'):>9}"
    )


def scheduled_totals_row(label: str, batches: Sequence[ScheduledBatch]) -> str:
    energy = MeasuredSum.of(b.energy_kwh for b in batches)
    emissions = MeasuredSum.of(b.emissions_kg_co2eq for b in batches)
    served = [b.served_auc for b in batches if b.served_auc is not None]
    note = f", {energy.unmeasured} batches unmeasured (not counted)" if energy.unmeasured else ""
    return (
        f"{label}: {len(batches)} batches, {len(batches)} retrains, {energy.total * 1e3:.4f} Wh, "
        f"{emissions.total * 1e3:.5f} g CO2eq, "
        f"mean served AUC {_optional(sum(served) / len(served) if served else None, '.4f')}{note}"
    )


def scheduled_comparison(gated: Sequence[BatchOutcome], scheduled: Sequence[ScheduledBatch]) -> str:
    """Energy of the gated pipeline over scheduled retraining's, and the served AUC delta on the batches where both
    had a serving model; a ratio with an unmeasured side is said to be unmeasured, never computed from a partial sum."""
    gated_kwh = None if any(o.unmeasured_steps for o in gated) else sum(o.energy_kwh for o in gated)
    scheduled_kwh = complete_sum(b.energy_kwh for b in scheduled)
    ratio = (
        f"{gated_kwh / scheduled_kwh:.3f}" if gated_kwh is not None and scheduled_kwh else EnergyStatus.UNMEASURED.value
    )
    served = {b.batch: b.served_auc for b in scheduled}
    pairs = [(o.served_auc, served.get(o.batch)) for o in gated]
    deltas = [g - s for g, s in pairs if g is not None and s is not None]
    delta = f"{sum(deltas) / len(deltas):+.4f}" if deltas else "n/a"
    return (
        f"Energy drift-gated / scheduled retraining = {ratio}; mean served AUC drift-gated minus scheduled "
        f"retraining = {delta} (on {len(deltas)} batches both served)"
    )


def ledger_table(title: str, rows: Iterable[EnergyTotal]) -> str:
    lines = [
        title,
        f"{'':<40} {'steps':>6} {EnergyStatus.UNMEASURED.value:>10} {'Wh':>10} {'g CO2eq':>10} {'seconds':>9}",
    ]
    for row in rows:
        lines.append(
            f"{row.key:<40} {row.materializations:>6} {row.unmeasured:>10} {row.energy_kwh * 1e3:>10.5f} "
            f"{row.emissions_kg_co2eq * 1e3:>10.6f} {row.duration_s:>9.2f}"
        )
    return "\n".join(lines)


MODELS_HEADER = (
    f"{'':1} {'version':<8} {'parent':<8} {'strategy':<13} {'batch':<28} {'trees':>5} {'test AUC':>8} "
    f"{'size KB':>8} {'train Wh':>9} {'AUC gain/kWh':>12} {'mWh/1k pred':>11} {'decision':>8}"
)


def version_summary(metadata: dict[str, Any], serving: str | None) -> dict[str, Any]:
    """The fields of a version's metadata.json that the `models` listing shows."""
    metrics, lineage, energy = metadata.get("metrics", {}), metadata.get("lineage", {}), metadata.get("energy", {})
    promotion = metadata.get("promotion", {})
    promoted = promotion.get("promoted")
    return {
        "version": metadata["version"],
        "serving": metadata["version"] == serving,
        "created_at": metadata.get("created_at"),
        "parent_version": lineage.get("parent_version"),
        "strategy": lineage.get("strategy"),
        "transfer_source": lineage.get("transfer_source"),
        "batch": lineage.get("batch"),
        "trees": metrics.get("trees"),
        "test_auc": metrics.get("test_auc"),
        "size_bytes": metrics.get("size_bytes"),
        "energy_kwh": complete_sum(energy.values()),
        "auc_gain": metrics.get("auc_gain"),
        "auc_gain_baseline": metrics.get("auc_gain_baseline"),
        "quality_per_kwh": metrics.get("quality_per_kwh"),
        "energy_per_1k_predictions_kwh": metrics.get("energy_per_1k_predictions_kwh"),
        "promoted": promoted,
        # Versions published before the decision was named carry only ``promoted``.
        "decision": promotion.get("decision", {True: "promoted", False: "rejected"}.get(promoted)),
        "reason": promotion.get("reason"),
    }


def models_row(row: dict[str, Any]) -> str:
    """A version's line; the model it was transferred from (or compared a transfer from) and a rejected version's
    reason follow on the next lines, indented."""
    size = None if row["size_bytes"] is None else row["size_bytes"] / 1024
    energy = EnergyStatus.UNMEASURED.value if row["energy_kwh"] is None else format(row["energy_kwh"] * 1e3, ".5f")
    per_1k = row["energy_per_1k_predictions_kwh"]
    per_1k_mwh = per_1k * 1e6 if isinstance(per_1k, float) else per_1k
    line = (
        f"{'*' if row['serving'] else ' '} {row['version']:<8} {row['parent_version'] or '-':<8} "
        f"{row['strategy'] or '-':<13} {row['batch'] or '-':<28} {row['trees'] or '-':>5} "
        f"{_optional(row['test_auc'], '.4f'):>8} {_optional(size, '.1f'):>8} {energy:>9} "
        f"{_kpi(row['quality_per_kwh'], '.1f'):>12} {_kpi(per_1k_mwh, '.4f'):>11} {row['decision'] or '-':>8}"
    )
    notes = [transfer_note(row["strategy"], row["transfer_source"])] if row["transfer_source"] else []
    if row["decision"] == "rejected" and row["reason"]:
        notes.append(row["reason"])
    return "\n    ".join([line, *notes])


def transfer_note(strategy: str | None, source: dict[str, str]) -> str:
    """Where a first model compared with a transfer came from: the source model, or scratch kept over it."""
    origin = f"{source['model']} {source['version']}"
    if strategy == "transfer":
        return f"transferred from {origin}"
    return f"trained from scratch, kept over a transfer from {origin} (validation AUC)"


BATCH_KPI_HEADER = (
    f"{'batch':<28} {'run':<8} {'action':<13} {'serving':>8} {'AUC served':>10} {'new':>6} {'AUC new':>8} "
    f"{'decision':>8} {'Wh':>9} {'AUC gain/kWh':>12}"
)


def batch_kpi_row(row: BatchKpi) -> str:
    """One batch: the energy its latest run spent next to the AUC served on it and of any version it produced."""
    if row.deployed_version is None:
        gain = "-"
    elif row.quality_per_kwh_status == EnergyStatus.UNMEASURED:
        gain = EnergyStatus.UNMEASURED.value
    else:
        gain = _optional(row.quality_per_kwh, ".1f")
    return (
        f"{row.batch:<28} {row.run_id[:8]:<8} {row.action:<13} {row.served_version or '-':>8} "
        f"{_optional(row.served_auc, '.4f'):>10} {row.deployed_version or '-':>6} "
        f"{_optional(row.deployed_auc, '.4f'):>8} {row.decision or '-':>8} "
        f"{_energy(row.energy_kwh, row.unmeasured_steps, 1e3, '.4f'):>9} {gain:>12}"
    )


def rejection_lines(rows: Iterable[BatchKpi]) -> list[str]:
    """Why each rejected version of the ledger's batches was not promoted."""
    return [f"  {row.batch} ({row.deployed_version}): {row.reason}" for row in rows if row.decision == "rejected"]


def wasted_line(wasted: WastedRetrains) -> str:
    """Retrains trained but not promoted, and the energy their retraining steps spent for nothing."""
    share = "" if wasted.share is None else f" of {wasted.retrains} ({wasted.share:.0%})"
    energy = _energy(wasted.energy_kwh, wasted.unmeasured_steps, 1e3, ".4f")
    return f"Wasted retrains (trained, not promoted): {wasted.count}{share}, {energy} Wh spent retraining them"
