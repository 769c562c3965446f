"""Whether a compression candidate can pay back its search, judged before it is built.

A candidate's lifetime cost is what finding it costs once (building, checking and timing it, a compile) plus its
energy per prediction times the predictions expected before the next retrain. So a candidate is worth trying only
if its estimated one-off cost is at most the most it could save: the best model so far's per-prediction cost
minus the least the candidate's could be, times the expected predictions. Costs are estimated from rates measured
on the uncompressed model's own timing (per row and tree, per second), so they come in the cost basis's unit
(kWh, or seconds when energy is unmeasured) and follow this machine. A feature selection saves on monitoring rather
than on predictions: the dropped columns are never read, validated or drift-tested again (``selection``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from green_pipeline.compression.measure import DURATION_BASIS, ENERGY_BASIS, Candidate
from green_pipeline.compression.techniques import SMALLEST_PREFIX

#: Training one tree on one row costs about as much as 4 predictions of one row through one tree: measured here on
#: the built-in stream (a 15-leaf student 3x, the early-stopped 31-leaf retrain with its validation 4.4x).
TRAIN_TO_PREDICT = 4.0
#: Reading, validating and drift-testing one value (a row of one column) costs about as much as this many predictions
#: of one row through one tree: measured here, 24-30 over five runs of bench/features.py (10,000 rows x 40 columns).
MONITOR_TO_PREDICT = 25.0
#: lleaves compile seconds per tree (measured here: 1.1 s for 50 trees, 14 s for 100 on a loaded machine).
COMPILE_S_PER_TREE = 0.1
UNITS = {ENERGY_BASIS: "kWh", DURATION_BASIS: "s"}


@dataclass(frozen=True)
class Payback:
    """A candidate's estimated one-off cost and the most it could save over the expected predictions."""

    cost: float
    saving: float
    unit: str

    @property
    def pays(self) -> bool:
        return self.cost <= self.saving

    def reason(self) -> str:
        return (
            f"skipped: estimated search cost {self.cost:.3g} {self.unit} > best lifetime saving "
            f"{self.saving:.3g} {self.unit}"
        )


@dataclass(frozen=True)
class CostRates:
    """Costs measured on the uncompressed model, in the basis's unit: what the estimates are built from."""

    basis: str
    #: One row predicted through one tree.
    per_row_tree: float
    #: One second of a busy predicting process (1.0 on the duration basis).
    per_second: float
    #: Checking and timing one candidate: at most what the uncompressed model's check and timing cost.
    measuring: float
    expected_predictions: int

    @classmethod
    def of(cls, baseline: Candidate, basis: str, holdout_rows: int, expected_predictions: int) -> CostRates:
        timing = baseline.inference
        assert timing is not None
        timed = timing.duration_s if basis == DURATION_BASIS else timing.energy_kwh
        assert timed is not None
        per_row_tree = timed / (timing.rows * baseline.trees)
        return cls(
            basis=basis,
            per_row_tree=per_row_tree,
            per_second=timed / timing.duration_s,
            measuring=timed + holdout_rows * baseline.trees * per_row_tree,
            expected_predictions=expected_predictions,
        )

    def payback(self, cost: float, best: Candidate, lowest_share: float) -> Payback:
        """``cost`` against ``best``'s per-prediction cost x expected predictions x the share the candidate may save."""
        per_prediction = best.cost_per_1k(self.basis, self.expected_predictions)
        assert per_prediction is not None
        saving = per_prediction / 1000.0 * self.expected_predictions * max(0.0, 1.0 - lowest_share)
        return Payback(cost=cost, saving=saving, unit=UNITS[self.basis])

    def prefix(self, teacher_trees: int, holdout_rows: int, best: Candidate) -> Payback:
        """Every prefix is scored in one pass over the trees; the shortest prefix keeps 5% of them."""
        cost = self.measuring + holdout_rows * teacher_trees * self.per_row_tree
        return self.payback(cost, best, max(1, math.ceil(teacher_trees * SMALLEST_PREFIX)) / teacher_trees)

    def student(
        self, train_rows: int, trees: int, leaves: int, teacher_trees: int, distilled: bool, best: Candidate
    ) -> Payback:
        """About a training (``TRAIN_TO_PREDICT``), plus the teacher's margins on every row for a distilled one.

        A prediction walks about log2(leaves) nodes of each tree, so ``trees`` x log2(``leaves``) relative to the
        best model's is the least share of its cost the student could have.
        """
        cost = self.measuring + TRAIN_TO_PREDICT * train_rows * trees * self.per_row_tree
        if distilled:
            cost += train_rows * teacher_trees * self.per_row_tree
        return self.payback(cost, best, _walk(trees, leaves) / _walk(best.trees, best.leaves / best.trees))

    def selection(self, train_rows: int, trees: int, dropped_columns: int) -> Payback:
        """About a training of ``trees`` trees against the monitoring of the dropped columns: every row predicted
        before the next retrain was first read, validated and drift-tested, so ``expected_predictions`` rows of each
        dropped column are never monitored. What a prediction on fewer columns saves is not counted (it is measured)."""
        cost = self.measuring + TRAIN_TO_PREDICT * train_rows * trees * self.per_row_tree
        saving = MONITOR_TO_PREDICT * dropped_columns * self.expected_predictions * self.per_row_tree
        return Payback(cost=cost, saving=saving, unit=UNITS[self.basis])

    def compile(self, source: Candidate) -> Payback:
        """A compile's seconds at the power of a predicting process; a compiled engine could save all of it."""
        cost = self.measuring + COMPILE_S_PER_TREE * source.trees * self.per_second
        return self.payback(cost, source, 0.0)


def _walk(trees: int, leaves_per_tree: float) -> float:
    return trees * math.log2(max(2.0, leaves_per_tree))
