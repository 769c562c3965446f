"""The candidates of a compression as a Markdown table: what each was, cost, saved or would have, and its fate."""

from __future__ import annotations

from green_pipeline.compression.measure import ENERGY_BASIS, Candidate
from green_pipeline.compression.payback import Payback
from green_pipeline.compression.search import FEATURE_SELECTION, CompressionOutcome


def candidates_table(outcome: CompressionOutcome) -> str:
    """Markdown table of every candidate, tried or skipped, with its figures and its estimated search cost against
    its best lifetime saving, for the asset's metadata and the benchmark."""
    unit = "kWh" if outcome.cost_basis == ENERGY_BASIS else "s"
    rows = [
        f"| candidate | technique | engine | trees | leaves | size (bytes) | size ratio | holdout AUC | AUC delta "
        f"| rows/s | speedup | {unit} / 1k predictions | build s | est. search cost | best lifetime saving | status |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    rows += [_table_row(outcome, candidate) for candidate in outcome.candidates]
    rows += [
        "| " + " | ".join([s.name, s.technique, *["-"] * 11, *_payback_cells(s.payback), s.payback.reason()]) + " |"
        for s in outcome.skipped
    ]
    return "\n".join(rows)


def _table_row(outcome: CompressionOutcome, c: Candidate) -> str:
    base = outcome.baseline
    assert base.inference is not None and base.holdout_auc is not None
    figures = ["-"] * 6
    if c.inference is not None and c.holdout_auc is not None:
        cost = outcome.cost_per_1k(c)
        figures = [
            f"{c.holdout_auc:.4f}",
            f"{c.holdout_auc - base.holdout_auc:+.4f}",
            f"{c.inference.rows_per_s:,.0f}",
            f"{c.inference.rows_per_s / base.inference.rows_per_s:.2f}x",
            "-" if cost is None else f"{cost:.3g}",
            f"{c.build_s:.2f}",
        ]
    cells = [c.name, c.technique, c.engine, str(c.trees), str(c.leaves), f"{c.size_bytes:,}"]
    cells += [f"{c.size_bytes / base.size_bytes:.3f}", *figures]
    cells += [*_payback_cells(outcome.paybacks.get(c.name)), _status(outcome, c)]
    return "| " + " | ".join(cells) + " |"


def _payback_cells(payback: Payback | None) -> list[str]:
    if payback is None:
        return ["-", "-"]
    return [f"{payback.cost:.3g} {payback.unit}", f"{payback.saving:.3g} {payback.unit}"]


def _status(outcome: CompressionOutcome, c: Candidate) -> str:
    if not c.available:
        return f"unavailable: {c.unavailable_reason}".replace("|", "/")
    status = "**chosen**" if c is outcome.chosen else ("within budget" if outcome.within_budget(c) else "over budget")
    if c is not outcome.chosen and outcome.selection.kept and not c.name.startswith(FEATURE_SELECTION):
        status += "; on every feature, so not competing with the kept selection"
    if c.build_source is not None:
        status += f"; {c.build_source}"
    return status
