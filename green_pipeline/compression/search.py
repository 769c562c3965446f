"""Model compression judged on lifetime energy: candidates built by several techniques, the cheapest kept within an
AUC budget.

Boosting front-loads what it learns, so the last trees often add little (tree-prefix pruning); a smaller
model retrained or distilled from the teacher's margins keeps most of the AUC for fewer leaves; quantized text
shrinks the file; a compiled engine speeds up every prediction. Finding a smaller model costs energy once, and it
saves energy on each prediction until the next retrain: a candidate whose estimated search cost exceeds the most it
could save over those predictions is not built (``payback``). Each candidate built is measured (energy per 1,000
predictions, a compile's energy spread over the expected predictions), and the cheapest within the budget is kept.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import lightgbm as lgb
import pandas as pd

from green_pipeline.compression.engines import LOCAL_CACHE
from green_pipeline.compression.measure import DURATION_BASIS, ENERGY_BASIS, Candidate, HoldoutBench
from green_pipeline.compression.payback import CostRates, Payback
from green_pipeline.compression.techniques import (
    StudentSettings,
    distil,
    quantize_model_text,
    retrain_smaller,
    shortest_prefix,
)
from green_pipeline.data.schema import FeatureSchema
from green_pipeline.energy.measurement import EnergySettings
from green_pipeline.errors import InvalidConfigError
from green_pipeline.training.trainer import NUM_THREADS

#: AUCs differ by float rounding (0.79 - 0.80 != -0.01): a candidate exactly at the budget is within it.
AUC_SLACK = 1e-12
UNCOMPRESSED, TREE_PREFIX, SMALLER_RETRAIN, DISTILLED = "uncompressed", "tree_prefix", "smaller_retrain", "distilled"
#: Candidates trained here from scratch: every tree of theirs is new, unlike a prefix of the teacher's trees.
RETRAINED_CANDIDATES = (SMALLER_RETRAIN, DISTILLED)


@dataclass(frozen=True)
class CompressionSettings:
    """What a compressed model may lose and how its cost is judged; the defaults suit the built-in batches.

    The ``compressed_model`` run config and ``RetrainPolicy`` (``compression_auc_tolerance``, ``num_threads``)
    take their defaults from here.
    """

    auc_budget: float = 0.005
    #: Predictions expected before the next retrain, over which a candidate must pay back its search (and a compile):
    #: the built-in stream scores 20,000 rows a batch and retrains about every 5 batches.
    expected_predictions: int = 100_000
    #: Engine that compiles the best text model (``lleaves``); None skips compilation.
    compile_engine: str | None = None
    #: Larger models are not compiled: lleaves' compile time grows with the trees (about 14 s for 100, 170 s for 500).
    max_compile_trees: int = 200
    #: Held-out rows (repeated) each candidate predicts, again until ``min_timing_s`` have passed: a small sample
    #: keeps the timing cheap, the repetitions keep it above the meter's resolution.
    timing_rows: int = 2_000
    min_timing_s: float = 0.05
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
class Skipped:
    """A candidate not built: its estimated search cost exceeds the most it could save before the next retrain."""

    name: str
    technique: str
    payback: Payback


@dataclass(frozen=True)
class CompressionOutcome:
    """The chosen candidate, the uncompressed baseline, every candidate tried or skipped, and how they were judged."""

    chosen: Candidate
    baseline: Candidate
    candidates: tuple[Candidate, ...]
    settings: CompressionSettings
    cost_basis: str
    compile_status: str
    skipped: tuple[Skipped, ...] = ()
    #: Each candidate's estimated search cost against its best lifetime saving, by name (tried or skipped).
    paybacks: Mapping[str, Payback] = field(default_factory=dict)

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
    def lifetime_saving(self) -> float | None:
        """What the chosen model saves over the uncompressed one across the expected predictions, in the basis's unit;
        the search that found it is not subtracted (the step's own energy figure holds it)."""
        chosen, baseline = self.cost_per_1k(self.chosen), self.cost_per_1k(self.baseline)
        if chosen is None or baseline is None:
            return None
        return (baseline - chosen) * self.settings.expected_predictions / 1000.0

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
    """Candidates from ``teacher`` that can pay back their search, measured on ``holdout``; the cheapest within budget.

    The uncompressed model is measured first: its timing prices every estimate (``payback.CostRates``). Each
    candidate is then built only if its estimated cost is at most what it could save over the best so far across
    ``expected_predictions``; ``train`` rows teach the smaller retrain and the distilled student. The best text
    model is quantized (kept if within the budget and smaller) and, if that pays too, compiled.
    """
    bench = HoldoutBench.of(holdout, schema, settings.timing_rows, settings.min_timing_s, settings.num_threads, energy)
    baseline = bench.measure(UNCOMPRESSED, "none", teacher.model_to_string())
    assert baseline.holdout_auc is not None
    rates = CostRates.of(baseline, cost_basis([baseline]), len(bench.labels), settings.expected_predictions)
    search = _Search(bench, settings, rates, [baseline])
    search.consider(
        TREE_PREFIX,
        "tree_prefix_pruning",
        lambda best: rates.prefix(teacher.num_trees(), len(bench.labels), best),
        lambda: _pruned(teacher, bench, settings.auc_budget),
    )
    student = settings.student
    trees, leaves = student.rounds(teacher), student.leaves(teacher)
    for name, technique, build in (
        (SMALLER_RETRAIN, "fewer_leaves_retrain", retrain_smaller),
        (DISTILLED, "distillation", distil),
    ):
        search.consider(
            name,
            technique,
            functools.partial(rates.student, len(train), trees, leaves, teacher.num_trees(), name == DISTILLED),
            functools.partial(build, teacher, train, schema, student, settings.num_threads),
        )
    best = search.best()
    quantized = bench.measure_rewrite(
        best,
        f"{best.name}+quantized",
        "quantization",
        quantize_model_text(best.model_text, settings.leaf_digits, settings.threshold_digits),
    )
    search.tried.append(quantized)
    # Same trees on the same engine: quantization changes only the file and, at most, the AUC.
    if _within_budget(quantized, baseline.holdout_auc, settings.auc_budget) and quantized.size_bytes < best.size_bytes:
        best = quantized
    compiled, compile_status = _compile(search, best)
    finalists = [best] if compiled is None else [best, compiled]
    basis = cost_basis(search.tried)
    return CompressionOutcome(
        chosen=select_candidate(finalists, baseline.holdout_auc, settings, basis),
        baseline=baseline,
        candidates=tuple(search.tried),
        settings=settings,
        cost_basis=basis,
        compile_status=compile_status,
        skipped=tuple(search.skipped),
        paybacks=search.paybacks,
    )


@dataclass
class _Search:
    """The candidates tried so far, those skipped, and each one's estimated payback."""

    bench: HoldoutBench
    settings: CompressionSettings
    rates: CostRates
    tried: list[Candidate]
    skipped: list[Skipped] = field(default_factory=list)
    paybacks: dict[str, Payback] = field(default_factory=dict)

    def best(self) -> Candidate:
        baseline_auc = self.tried[0].holdout_auc
        assert baseline_auc is not None
        return select_candidate(self.tried, baseline_auc, self.settings, self.rates.basis)

    def consider(
        self, name: str, technique: str, estimate: Callable[[Candidate], Payback], build: Callable[[], str]
    ) -> None:
        """Build and measure the candidate if it can pay back its search against the best so far, else say why not."""
        payback = self.paybacks[name] = estimate(self.best())
        if not payback.pays:
            self.skipped.append(Skipped(name, technique, payback))
            return
        self.tried.append(self.bench.measure(name, technique, build()))


def _pruned(teacher: lgb.Booster, bench: HoldoutBench, auc_budget: float) -> str:
    kept, _, _ = shortest_prefix(teacher, bench.features, bench.labels, auc_budget)
    return teacher.model_to_string(num_iteration=kept)


def _compile(search: _Search, source: Candidate) -> tuple[Candidate | None, str]:
    """The compiled candidate (None when compilation is off, the model too large or the compile cannot pay back)
    and a status line."""
    settings, engine = search.settings, search.settings.compile_engine
    if not engine:
        return None, "skipped: compile_engine is off"
    if source.trees > settings.max_compile_trees:
        return None, f"skipped: {source.trees} trees > max_compile_trees={settings.max_compile_trees}"
    name = f"{source.name}+{engine}"
    payback = search.paybacks[name] = search.rates.compile(source)
    if not payback.pays:
        search.skipped.append(Skipped(name, "compilation", payback))
        return None, payback.reason()
    compiled = search.bench.measure_compiled(source, engine)
    search.tried.append(compiled)
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
    if c.build_source is not None:
        status += f"; {c.build_source}"
    return status


def _within_budget(candidate: Candidate, baseline_auc: float, auc_budget: float) -> bool:
    return (
        candidate.available
        and candidate.holdout_auc is not None
        and candidate.holdout_auc >= baseline_auc - auc_budget - AUC_SLACK
    )
