"""Cost review of a stream of batches: energy per batch, what skipping retrains avoided, and a chart.

Pure functions over plain rows (built from the event log by ``green_pipeline.orchestration.ledger``), so the
arithmetic is tested without Dagster.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # no display: render to PNG in memory
import matplotlib.pyplot as plt


@dataclass(frozen=True)
class BatchCost:
    """One batch as processed: its energy, whether it retrained, and the serving model's AUC on it."""

    batch: str
    energy_kwh: float
    unmeasured_steps: int
    retrained: bool
    retrain_energy_kwh: float | None
    served_auc: float | None
    deployed_auc: float | None


@dataclass(frozen=True)
class CostSummary:
    batches: int
    retrains: int
    skipped_retrains: int
    energy_kwh: float
    unmeasured_steps: int
    avoided_energy_kwh: float
    skipped_without_estimate: int


def summarize(costs: Sequence[BatchCost]) -> CostSummary:
    """Totals, and the energy avoided: each skipped retrain counted at the cost of the last measured retrain.

    Skips before any measured retrain have no honest estimate and are counted apart, not guessed.
    """
    avoided, unestimated, last_retrain = 0.0, 0, None
    for cost in costs:
        if cost.retrained:
            last_retrain = cost.retrain_energy_kwh if cost.retrain_energy_kwh is not None else last_retrain
        elif last_retrain is None:
            unestimated += 1
        else:
            avoided += last_retrain
    retrains = sum(c.retrained for c in costs)
    return CostSummary(
        batches=len(costs),
        retrains=retrains,
        skipped_retrains=len(costs) - retrains,
        energy_kwh=sum(c.energy_kwh for c in costs),
        unmeasured_steps=sum(c.unmeasured_steps for c in costs),
        avoided_energy_kwh=avoided,
        skipped_without_estimate=unestimated,
    )


def chart_png(costs: Sequence[BatchCost]) -> bytes:
    """Energy per batch (bars, retrains highlighted) and model quality (lines) over the batches, as PNG."""
    positions = range(len(costs))
    figure, energy_axis = plt.subplots(figsize=(9, 4), dpi=90)
    try:
        colors = ["#d95f02" if c.retrained else "#1b9e77" for c in costs]
        energy_axis.bar(positions, [c.energy_kwh * 1000 for c in costs], color=colors)
        energy_axis.set_ylabel("energy per batch (Wh)")
        energy_axis.set_xticks(
            list(positions), [c.batch.rsplit(".", 1)[0][-5:] for c in costs], rotation=60, fontsize=7
        )
        quality_axis = energy_axis.twinx()
        quality_axis.plot(
            positions, [_gap(c.served_auc) for c in costs], "k.-", label="AUC of the serving model on the batch"
        )
        quality_axis.plot(positions, [_gap(c.deployed_auc) for c in costs], "bs", label="AUC of a newly deployed model")
        quality_axis.set_ylabel("AUC")
        quality_axis.legend(loc="lower left", fontsize=7)
        energy_axis.set_title("Energy per batch (orange: retrained, green: retrain skipped) and model quality")
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        return buffer.getvalue()
    finally:
        plt.close(figure)


def _gap(value: float | None) -> float:
    """A missing value as NaN, which matplotlib leaves out of the line."""
    return float("nan") if value is None else value
