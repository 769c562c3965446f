"""The demo's comparison with scheduled retraining, as it prints it: energy ratio and served-AUC delta."""

from __future__ import annotations

from green_pipeline.app.report import scheduled_comparison, scheduled_row, scheduled_totals_row
from green_pipeline.app.runner import BatchOutcome
from green_pipeline.training.scheduled import ScheduledBatch


def _gated(batch: str, kwh: float, served: float | None, unmeasured: int = 0) -> BatchOutcome:
    return BatchOutcome(
        batch=batch,
        run_id="run",
        success=True,
        error=None,
        quarantined=False,
        drifted_share=0.0,
        retrained=False,
        strategy=None,
        deployed_version=None,
        promoted=None,
        serving_version="v0001",
        served_auc=served,
        energy_kwh=kwh,
        emissions_kg_co2eq=kwh * 50,
        unmeasured_steps=unmeasured,
    )


def _scheduled(batch: str, served: float | None, training_kwh: float | None = 1e-6) -> ScheduledBatch:
    return ScheduledBatch(batch, served, 1e-6, training_kwh, 1e-7, training_rows=1000)


GATED = [_gated("a.csv", 1e-6, None), _gated("b.csv", 2e-6, 0.80), _gated("c.csv", 1e-6, 0.70)]


def test_the_demo_compares_energy_and_auc_with_scheduled_retraining_on_batches_both_served() -> None:
    scheduled = [_scheduled("a.csv", None), _scheduled("b.csv", 0.82), _scheduled("c.csv", None)]

    line = scheduled_comparison(GATED, scheduled)

    assert line.startswith("Energy drift-gated / scheduled retraining = 0.667;")
    assert "minus scheduled retraining = -0.0200 (on 1 batches both served)" in line
    assert "always" not in line


def test_an_unmeasured_side_gives_no_ratio() -> None:
    scheduled = [_scheduled("a.csv", None), _scheduled("b.csv", 0.82, training_kwh=None), _scheduled("c.csv", 0.7)]

    assert "scheduled retraining = unmeasured;" in scheduled_comparison(GATED, scheduled)
    assert "scheduled retraining = unmeasured;" in scheduled_comparison(
        [*GATED[:2], _gated("c.csv", 1e-6, 0.7, unmeasured=1)], [_scheduled(b.batch, None) for b in GATED]
    )
    assert scheduled_row(scheduled[1]).split()[-2:] == ["unmeasured", "0.00010"]
    assert scheduled_totals_row("scheduled retraining", scheduled).endswith("1 batches unmeasured (not counted)")
