"""The scheduled-retraining baseline on a tiny stream: it retrains every batch on its window and serves stale models."""

from __future__ import annotations

import pandas as pd
import pytest

from green_pipeline.demo.stream import LABEL, StreamSpec, generate_day
from green_pipeline.errors import InvalidConfigError
from green_pipeline.training.scheduled import ScheduledSettings, scheduled_retraining

SPEC = StreamSpec(days=5, rows_per_day=2000, covariate_shift_days=(), concept_drift_days=(3,))


def _stream() -> list[tuple[str, pd.DataFrame]]:
    return [(SPEC.batch_name(day), generate_day(SPEC, day)) for day in range(SPEC.days)]


def test_it_retrains_on_the_previous_batch_and_serves_it_on_the_next() -> None:
    outcomes = list(scheduled_retraining(_stream(), LABEL, ScheduledSettings(trees=20)))

    assert [o.batch for o in outcomes] == [SPEC.batch_name(day) for day in range(SPEC.days)]
    assert outcomes[0].served_auc is None
    assert all(o.training_rows == SPEC.rows_per_day for o in outcomes)
    assert all(o.scoring_energy_kwh and o.training_energy_kwh for o in outcomes)
    assert all(o.energy_kwh == (o.scoring_energy_kwh or 0) + (o.training_energy_kwh or 0) for o in outcomes)
    served = [o.served_auc or 0.0 for o in outcomes]
    # The model of day 2 meets the new concept on day 3 and loses; the model of day 3 has learned it by day 4.
    assert served[2] - served[3] > 0.05
    assert served[4] - served[3] > 0.05


def test_an_accumulated_window_trains_on_the_last_k_batches() -> None:
    settings = ScheduledSettings(trees=5, window_batches=3)

    outcomes = list(scheduled_retraining(_stream(), LABEL, settings))

    assert [o.training_rows // SPEC.rows_per_day for o in outcomes] == [1, 2, 3, 3, 3]


@pytest.mark.parametrize(
    ("changes", "named"),
    [({"trees": 0}, "trees"), ({"window_batches": 0}, "window_batches"), ({"learning_rate": 0.0}, "learning_rate")],
)
def test_bad_settings_are_refused_by_name(changes: dict[str, int | float], named: str) -> None:
    with pytest.raises(InvalidConfigError, match=named):
        ScheduledSettings(**changes)
