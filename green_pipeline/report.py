"""Plain-text tables for the CLI: batch outcomes, totals, the baseline comparison and the energy ledger."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from green_pipeline.ledger import EnergyTotal
from green_pipeline.runner import BatchOutcome

OUTCOME_HEADER = (
    f"{'batch':<28} {'drift share':>11} {'action':<13} {'serving':>8} {'AUC served':>10} {'Wh':>9} {'g CO2eq':>9}"
)


def _optional(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _energy(kwh: float, unmeasured: int, scale: float, spec: str) -> str:
    figure = format(kwh * scale, spec)
    return f"{figure}+{unmeasured}?" if unmeasured else figure


def outcome_row(outcome: BatchOutcome) -> str:
    if not outcome.success:
        return f"{outcome.batch:<28} FAILED: {outcome.error}"
    action = outcome.strategy if outcome.retrained else "skipped"
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


def ledger_table(title: str, rows: Iterable[EnergyTotal]) -> str:
    lines = [title, f"{'':<40} {'steps':>6} {'unmeasured':>10} {'Wh':>10} {'g CO2eq':>10} {'seconds':>9}"]
    for row in rows:
        lines.append(
            f"{row.key:<40} {row.materializations:>6} {row.unmeasured:>10} {row.energy_kwh * 1e3:>10.5f} "
            f"{row.emissions_kg_co2eq * 1e3:>10.6f} {row.duration_s:>9.2f}"
        )
    return "\n".join(lines)
