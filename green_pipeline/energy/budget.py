"""Energy budgets per run and per calendar month: spend against a limit, and whether it blocks retraining.

A budget in ``warn`` mode only reports; in ``block`` mode an exhausted budget stops the next retraining before
it starts (monitoring and scoring go on), which is where the energy is: a retrain with compression costs
several times a monitoring pass. Every figure is summed, measured or estimated (``energy.EnergyStatus``): only
unmeasured steps, which have none, are counted apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from green_pipeline.energy.measurement import MeasuredSum


class BudgetSeverity(StrEnum):
    """What an exceeded budget does: ``warn`` reports it, ``block`` also skips retraining."""

    WARN = "warn"
    BLOCK = "block"


@dataclass(frozen=True)
class Budget:
    limit_kwh: float
    severity: BudgetSeverity


@dataclass(frozen=True)
class BudgetSettings:
    """The two budgets the checks and the retraining step enforce (from the ``check_thresholds`` resource)."""

    per_run: Budget = Budget(0.001, BudgetSeverity.WARN)
    #: 30 daily runs at the per-run budget.
    per_month: Budget = Budget(0.03, BudgetSeverity.WARN)


@dataclass(frozen=True)
class BudgetStatus:
    """Spend of one scope (a run or a month) against its budget.

    ``expected_kwh`` is a projection (the last retraining's energy) added when deciding whether a retraining
    would push a run over its budget; it is zero for a plain review of what was spent.
    """

    scope: str
    spent_kwh: float
    unmeasured_steps: int
    budget: Budget
    expected_kwh: float = 0.0

    @property
    def exceeded(self) -> bool:
        return self.spent_kwh + self.expected_kwh > self.budget.limit_kwh

    @property
    def blocks_retraining(self) -> bool:
        return self.exceeded and self.budget.severity is BudgetSeverity.BLOCK

    def describe(self) -> str:
        spent = f"{self.spent_kwh * 1e3:.4f} Wh spent"
        if self.unmeasured_steps:
            spent += f" (+{self.unmeasured_steps} unmeasured steps, not counted)"
        if self.expected_kwh:
            spent += f" + {self.expected_kwh * 1e3:.4f} Wh expected for retraining (the last retraining's energy)"
        verdict = "over" if self.exceeded else "within"
        return (
            f"{self.scope}: {spent}, {verdict} the budget of {self.budget.limit_kwh * 1e3:.4f} Wh "
            f"({self.budget.severity.value})"
        )


def month_of(moment: datetime) -> datetime:
    """Start of the UTC calendar month holding ``moment``: budgets follow UTC months on every machine."""
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def spend_status(
    scope: str, energies: Iterable[float | None], budget: Budget, expected_kwh: float = 0.0
) -> BudgetStatus:
    """Sum the energies of a scope, measured or estimated (None: an unmeasured step), and compare with its budget."""
    spent = MeasuredSum.of(energies)
    return BudgetStatus(
        scope=scope,
        spent_kwh=spent.total,
        unmeasured_steps=spent.unmeasured,
        budget=budget,
        expected_kwh=expected_kwh,
    )


def retraining_block(statuses: Iterable[BudgetStatus]) -> str | None:
    """Why retraining must not start (every blocking budget that is exhausted), or None when it may."""
    reasons = [status.describe() for status in statuses if status.blocks_retraining]
    return "; ".join(reasons) if reasons else None
