"""Model compression: candidates built by several techniques, measured, and the cheapest kept within an AUC budget.

Boosting front-loads what it learns, so the last trees often add little (tree-prefix pruning); a smaller
model retrained or distilled from the teacher's margins keeps most of the AUC for a fraction of the
leaves; quantized text shrinks the file; a compiled engine speeds up every prediction. Each candidate's
energy per 1,000 predictions is measured, a compile's energy spread over the predictions expected
before the next retrain, and the cheapest within the budget is kept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np
import pandas as pd

from green_pipeline.compression.engines import LOCAL_CACHE
from green_pipeline.compression.measure import DURATION_BASIS, ENERGY_BASIS, Candidate, HoldoutBench
from green_pipeline.compression.techniques import StudentSettings, distil, quantize_model_text, retrain_smaller
from green_pipeline.data.schema import FeatureSchema
from green_pipeline.energy.measurement import EnergySettings
from green_pipeline.errors import InvalidConfigError
from green_pipeline.training.evaluation import auc
from green_pipeline.training.trainer import NUM_THREADS

PREFIX_CANDIDATES = 20
#: AUCs differ by float rounding (0.79 - 0.80 != -0.01): a candidate exactly at the budget is within it.
AUC_SLACK = 1e-12
UNCOMPRESSED, TREE_PREFIX, SMALLER_RETRAIN, DISTILLED = "uncompressed", "tree_prefix", "smaller_retrain", "distilled"
#: Candidates trained here from scratch: every tree of theirs is new, unlike a prefix of the teacher's trees.
RETRAINED_CANDIDATES = (SMALLER_RETRAIN, DISTILLED)


@dataclass(frozen=True)
class CompressionResult:
    booster: lgb.Booster
    technique: str
    trees_before: int
    trees_after: int
    auc_before: float
    auc_after: float
    size_bytes_before: int
    size_bytes_after: int

    @property
    def size_ratio(self) -> float:
        return self.size_bytes_after / self.size_bytes_before


def prune_tree_prefix(
    booster: lgb.Booster, holdout: pd.DataFrame, schema: FeatureSchema, auc_tolerance: float
) -> CompressionResult:
    """Keep the fewest leading trees whose AUC on ``holdout`` is within ``auc_tolerance`` of all trees."""
    total = booster.num_trees()
    full_auc = auc(booster, holdout, schema)
    candidates = sorted({max(1, math.ceil(total * f)) for f in np.linspace(0.05, 1.0, PREFIX_CANDIDATES)})
    kept, kept_auc = total, full_auc
    for trees in candidates:
        candidate_auc = auc(booster, holdout, schema, num_iteration=trees)
        if candidate_auc >= full_auc - auc_tolerance:
            kept, kept_auc = trees, candidate_auc
            break
    pruned = lgb.Booster(model_str=booster.model_to_string(num_iteration=kept))
    return CompressionResult(
        booster=pruned,
        technique="tree_prefix_pruning",
        trees_before=total,
        trees_after=kept,
        auc_before=full_auc,
        auc_after=kept_auc,
        size_bytes_before=len(booster.model_to_string().encode()),
        size_bytes_after=len(pruned.model_to_string().encode()),
    )


@dataclass(frozen=True)
class CompressionSettings:
    """What a compressed model may lose and how its cost is judged; the defaults suit the built-in batches.

    The ``compressed_model`` run config and ``RetrainPolicy`` (``compression_auc_tolerance``, ``num_threads``)
    take their defaults from here.
    """

    auc_budget: float = 0.005
    #: Predictions expected before the next retrain: a compile's energy is spread over them.
    expected_predictions: int = 1_000_000
    #: Engine that compiles the best text model (``lleaves``); None skips compilation.
    compile_engine: str | None = None
    #: Larger models are not compiled: lleaves' compile time grows with the trees (about 14 s for 100, 170 s for 500).
    max_compile_trees: int = 200
    timing_rows: int = 5_000
    min_timing_s: float = 0.1
    #: Threads of the timed predictions and of the smaller retrain and the distilled student.
    num_threads: int = NUM_THREADS
    student: StudentSettings = field(default_factory=StudentSettings)
    leaf_digits: int = 6
    threshold_digits: int = 10
    #: Costs within this fraction of the cheapest are equal within the meter's noise: the smaller file wins.
    tie_tolerance: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 <= self.auc_budget <= 1.0:
            raise InvalidConfigError(f"compression auc_budget={self.auc_budget} must be between 0 and 1.")
        for name in (
            "expected_predictions",
            "timing_rows",
            "num_threads",
            "leaf_digits",
            "threshold_digits",
            "max_compile_trees",
        ):
            if getattr(self, name) < 1:
                raise InvalidConfigError(f"compression {name}={getattr(self, name)} must be at least 1.")
        if self.min_timing_s < 0 or self.tie_tolerance < 0:
            raise InvalidConfigError("compression min_timing_s and tie_tolerance must not be negative.")


@dataclass(frozen=True)
class CompressionOutcome:
    """The chosen candidate, the uncompressed baseline and every candidate tried, with how they were judged."""

    chosen: Candidate
    baseline: Candidate
    candidates: tuple[Candidate, ...]
    settings: CompressionSettings
    cost_basis: str
    compile_status: str

    def cost_per_1k(self, candidate: Candidate) -> float | None:
        return candidate.cost_per_1k(self.cost_basis, self.settings.expected_predictions)

    def within_budget(self, candidate: Candidate) -> bool:
        assert self.baseline.holdout_auc is not None
        return _within_budget(candidate, self.baseline.holdout_auc, self.settings.auc_budget)

    @property
    def size_ratio(self) -> float:
        return self.chosen.size_bytes / self.baseline.size_bytes

    @property
    def speedup(self) -> float:
        assert self.chosen.inference is not None and self.baseline.inference is not None
        return self.chosen.inference.rows_per_s / self.baseline.inference.rows_per_s

    @property
    def cost_ratio(self) -> float:
        """Amortized cost per 1,000 predictions of the chosen model over the uncompressed one's."""
        chosen, baseline = self.cost_per_1k(self.chosen), self.cost_per_1k(self.baseline)
        assert chosen is not None and baseline
        return chosen / baseline

    @property
    def auc_delta(self) -> float:
        """Held-out AUC of the chosen model minus the uncompressed one's (negative: quality lost)."""
        assert self.chosen.holdout_auc is not None and self.baseline.holdout_auc is not None
        return self.chosen.holdout_auc - self.baseline.holdout_auc


def compress_model(
    teacher: lgb.Booster,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    schema: FeatureSchema,
    settings: CompressionSettings,
    energy: EnergySettings,
) -> CompressionOutcome:
    """Build candidates from ``teacher``, measure each on ``holdout``, and keep the cheapest within the AUC budget.

    ``train`` rows teach the smaller retrain and the distilled student. The cheapest text model is
    quantized (kept if within the budget: its inference cost is unchanged) and then compiled, and the
    compiled engine is kept only if it is cheaper once its compile is amortized.
    """
    bench = HoldoutBench.of(holdout, schema, settings.timing_rows, settings.min_timing_s, settings.num_threads, energy)
    baseline = bench.measure(UNCOMPRESSED, "none", teacher.model_to_string())
    pruned = prune_tree_prefix(teacher, holdout, schema, settings.auc_budget).booster.model_to_string()
    smaller = retrain_smaller(teacher, train, schema, settings.student, settings.num_threads)
    student = distil(teacher, train, schema, settings.student, settings.num_threads)
    candidates = [
        baseline,
        bench.measure(TREE_PREFIX, "tree_prefix_pruning", pruned),
        bench.measure(SMALLER_RETRAIN, "fewer_leaves_retrain", smaller),
        bench.measure(DISTILLED, "distillation", student),
    ]
    assert baseline.holdout_auc is not None
    best = select_candidate(candidates, baseline.holdout_auc, settings, cost_basis(candidates))
    quantized = bench.measure(
        f"{best.name}+quantized",
        "quantization",
        quantize_model_text(best.model_text, settings.leaf_digits, settings.threshold_digits),
    )
    candidates.append(quantized)
    # Same trees on the same engine: quantization changes only the file and, at most, the AUC.
    if _within_budget(quantized, baseline.holdout_auc, settings.auc_budget) and quantized.size_bytes < best.size_bytes:
        best = quantized
    compiled, compile_status = _compile(bench, best, settings)
    finalists = [best] if compiled is None else [best, compiled]
    candidates += finalists[1:]
    basis = cost_basis(candidates)
    return CompressionOutcome(
        chosen=select_candidate(finalists, baseline.holdout_auc, settings, basis),
        baseline=baseline,
        candidates=tuple(candidates),
        settings=settings,
        cost_basis=basis,
        compile_status=compile_status,
    )


def _compile(bench: HoldoutBench, source: Candidate, settings: CompressionSettings) -> tuple[Candidate | None, str]:
    """The compiled candidate (None when compilation is off or the model too large) and a status line."""
    engine = settings.compile_engine
    if not engine:
        return None, "skipped: compile_engine is off"
    if source.trees > settings.max_compile_trees:
        return None, f"skipped: {source.trees} trees > max_compile_trees={settings.max_compile_trees}"
    compiled = bench.measure_compiled(source, engine)
    if not compiled.available:
        return compiled, f"unavailable: {compiled.unavailable_reason}"
    if compiled.build_source == LOCAL_CACHE:
        return compiled, f"{source.name} compiled with {engine} before: loaded from the local engine cache"
    return compiled, f"compiled {source.name} with {engine} in {compiled.build_s:.1f} s"


def cost_basis(candidates: Sequence[Candidate]) -> str:
    """Energy when codecarbon measured every available candidate; otherwise wall time, never a mix of both."""
    measured = all(
        c.inference.energy_kwh is not None and c.build_energy_kwh is not None
        for c in candidates
        if c.available and c.inference is not None
    )
    return ENERGY_BASIS if measured else DURATION_BASIS


def select_candidate(
    candidates: Sequence[Candidate], baseline_auc: float, settings: CompressionSettings, basis: str
) -> Candidate:
    """The cheapest available candidate within ``auc_budget`` of ``baseline_auc``; near-ties go to the smaller file."""
    costs = {
        id(c): cost
        for c in candidates
        if _within_budget(c, baseline_auc, settings.auc_budget)
        and (cost := c.cost_per_1k(basis, settings.expected_predictions)) is not None
    }
    if not costs:
        raise InvalidConfigError(
            f"no measured candidate is within auc_budget={settings.auc_budget} of AUC {baseline_auc:.4f}; "
            "include the uncompressed model among the candidates."
        )
    cheapest = min(costs.values())
    near = [c for c in candidates if id(c) in costs and costs[id(c)] <= cheapest * (1.0 + settings.tie_tolerance)]
    return min(near, key=lambda c: (c.size_bytes, costs[id(c)]))


def candidates_table(outcome: CompressionOutcome) -> str:
    """Markdown table of every candidate with its measured figures, for the asset's metadata and the benchmark."""
    unit = "kWh" if outcome.cost_basis == ENERGY_BASIS else "s"
    rows = [
        f"| candidate | technique | engine | trees | leaves | size (bytes) | size ratio | holdout AUC | AUC delta "
        f"| rows/s | speedup | {unit} / 1k predictions | build s | status |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    rows += [_table_row(outcome, candidate) for candidate in outcome.candidates]
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
    cells += [f"{c.size_bytes / base.size_bytes:.3f}", *figures, _status(outcome, c)]
    return "| " + " | ".join(cells) + " |"


def _status(outcome: CompressionOutcome, c: Candidate) -> str:
    if not c.available:
        return f"unavailable: {c.unavailable_reason}".replace("|", "/")
    status = "**chosen**" if c is outcome.chosen else ("within budget" if outcome.within_budget(c) else "over budget")
    if c.build_source is not None:
        status += f"; {c.build_source}"
    return status


def _within_budget(candidate: Candidate, baseline_auc: float, auc_budget: float) -> bool:
    return (
        candidate.available
        and candidate.holdout_auc is not None
        and candidate.holdout_auc >= baseline_auc - auc_budget - AUC_SLACK
    )
