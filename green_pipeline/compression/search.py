"""Model compression judged on lifetime energy: candidates built by several techniques, the cheapest kept within an
AUC budget.

Boosting front-loads what it learns, so the last trees often add little (tree-prefix pruning); a smaller
model retrained or distilled from the teacher's margins keeps most of the AUC for fewer leaves; quantized text
shrinks the file; a compiled engine speeds up every prediction; a model retrained on fewer features (``selection``,
opt-in) spares every later batch the monitoring of the others. Finding a smaller model costs energy once, and it
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
from green_pipeline.compression.selection import (
    FeatureSelection,
    gain_prefix,
    retrain_on_features,
    teacher_settings,
)
from green_pipeline.compression.techniques import (
    StudentSettings,
    distil,
    quantize_model_text,
    retrain_smaller,
    shortest_prefix,
)
from green_pipeline.data.schema import FeatureSchema
from green_pipeline.drift.assessment import feature_importance
from green_pipeline.energy.measurement import EnergySettings
from green_pipeline.errors import InvalidConfigError
from green_pipeline.training.trainer import NUM_THREADS, TrainingSettings

#: AUCs differ by float rounding (0.79 - 0.80 != -0.01): a candidate exactly at the budget is within it.
AUC_SLACK = 1e-12
UNCOMPRESSED, TREE_PREFIX, SMALLER_RETRAIN, DISTILLED = "uncompressed", "tree_prefix", "smaller_retrain", "distilled"
FEATURE_SELECTION = "feature_selection"
#: Candidates trained here from scratch: every tree of theirs is new, unlike a prefix of the teacher's trees. The
#: candidates built from a kept selection are named ``feature_selection+...``: theirs are new too.
RETRAINED_CANDIDATES = (SMALLER_RETRAIN, DISTILLED, FEATURE_SELECTION)


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
    #: Retrain on the fewest features holding ``feature_gain_share`` of the teacher's gain (``selection``). Off by
    #: default: a kept selection narrows the deployed schema for every later batch, and no later step can bring a
    #: dropped column back (on the built-in stream, the day-11 concept drift moves onto columns it would drop).
    feature_selection: bool = False
    #: The 20 noise columns of bench/features.py's 40 hold about a tenth of the gain between them, so 0.9 lands on
    #: their tail and keeps one; 0.85 keeps 18 signal columns (the redundant ones repeat the informative ones).
    feature_gain_share: float = 0.85
    #: Rounds, patience and seed of the selection's confirming retrain (its other settings are the teacher's).
    training: TrainingSettings = field(default_factory=TrainingSettings)

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
        if not 0.0 < self.feature_gain_share <= 1.0:
            raise InvalidConfigError(
                f"compression feature_gain_share={self.feature_gain_share} must be above 0 and at most 1."
            )
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
    #: The chosen model's features, those dropped (by this step or a parent version's), and what selection did.
    selection: FeatureSelection
    skipped: tuple[Skipped, ...] = ()
    #: Each candidate's estimated search cost against its best lifetime saving, by name (tried or skipped).
    paybacks: Mapping[str, Payback] = field(default_factory=dict)

    @property
    def schema(self) -> FeatureSchema:
        """The chosen model's columns: the teacher's, narrowed when a feature selection was kept."""
        return self.selection.schema

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
    dropped_before: tuple[str, ...] = (),
) -> CompressionOutcome:
    """Candidates from ``teacher`` that can pay back their search, measured on ``holdout``; the cheapest within budget.

    The uncompressed model is measured first: its timing prices every estimate (``payback.CostRates``). Each
    candidate is then built only if its estimated cost is at most what it could save over the best so far across
    ``expected_predictions``; ``train`` rows teach the smaller retrain and the distilled student. A feature selection
    kept within the budget becomes the teacher of the others, which then compete among themselves only. The best
    text model is quantized (kept if within the budget and smaller) and, if that pays too, compiled.
    ``dropped_before`` are the features a parent version's selection dropped (``teacher`` is trained without them).
    """
    bench = HoldoutBench.of(holdout, schema, settings.timing_rows, settings.min_timing_s, settings.num_threads, energy)
    baseline = bench.measure(UNCOMPRESSED, "none", teacher.model_to_string())
    assert baseline.holdout_auc is not None
    rates = CostRates.of(baseline, cost_basis([baseline]), len(bench.labels), settings.expected_predictions)
    search = _Search(bench, settings, rates, [baseline])
    selection = _select_features(search, teacher, train, holdout, schema, dropped_before)
    if selection.model_text is not None:
        teacher, schema = lgb.Booster(model_str=selection.model_text), selection.schema
    named = f"{FEATURE_SELECTION}+{{}}" if selection.kept else "{}"
    search.consider(
        named.format(TREE_PREFIX),
        "tree_prefix_pruning",
        lambda best: rates.prefix(teacher.num_trees(), len(bench.labels), best),
        lambda: _pruned(teacher, search, settings.auc_budget),
    )
    student = settings.student
    trees, leaves = student.rounds(teacher), student.leaves(teacher)
    for name, technique, build in (
        (SMALLER_RETRAIN, "fewer_leaves_retrain", retrain_smaller),
        (DISTILLED, "distillation", distil),
    ):
        search.consider(
            named.format(name),
            technique,
            functools.partial(rates.student, len(train), trees, leaves, teacher.num_trees(), name == DISTILLED),
            functools.partial(build, teacher, train, schema, student, settings.num_threads),
        )
    best = search.best()
    quantized = search.bench.measure_rewrite(
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
        selection=selection,
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
    #: The candidates from here on compete (a kept feature selection and those built from it); the others are shown.
    first_eligible: int = 0

    @property
    def baseline_auc(self) -> float:
        auc = self.tried[0].holdout_auc
        assert auc is not None
        return auc

    def best(self) -> Candidate:
        return select_candidate(self.tried[self.first_eligible :], self.baseline_auc, self.settings, self.rates.basis)

    def consider(
        self, name: str, technique: str, estimate: Callable[[Candidate], Payback], build: Callable[[], str]
    ) -> Candidate | None:
        """Build and measure the candidate if it can pay back its search against the best so far, else say why not."""
        payback = self.paybacks[name] = estimate(self.best())
        if not payback.pays:
            self.skipped.append(Skipped(name, technique, payback))
            return None
        self.tried.append(self.bench.measure(name, technique, build()))
        return self.tried[-1]


def _select_features(
    search: _Search,
    teacher: lgb.Booster,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    schema: FeatureSchema,
    dropped_before: tuple[str, ...],
) -> FeatureSelection:
    """The teacher retrained on its leading features by gain, if that pays back and stays within the budget; it then
    serves on its own bench (its columns only) and only it and the candidates built from it compete.

    Once per lineage: a teacher whose parent dropped features already keeps them, or each retrain would shave another
    tail off the features, each step within the budget and the sum of them past it."""
    settings, unchanged = search.settings, functools.partial(FeatureSelection, schema, dropped_before)
    if not settings.feature_selection:
        return unchanged("off")
    if dropped_before:
        return unchanged(f"skipped: a parent version's selection dropped {len(dropped_before)} features already")
    kept = gain_prefix(feature_importance(teacher), settings.feature_gain_share)
    narrowed = schema.restricted_to(kept)
    dropped = tuple(c for c in schema.features if c not in kept)
    if not dropped:
        return unchanged(f"skipped: all {len(kept)} features are needed for {settings.feature_gain_share:.0%} of gain")
    training = teacher_settings(teacher, settings.training, settings.num_threads)
    trees = teacher.num_trees() + training.early_stopping_rounds
    wide = search.bench
    search.bench = HoldoutBench.of(
        holdout, narrowed, settings.timing_rows, settings.min_timing_s, settings.num_threads, wide.energy
    )
    selected = search.consider(
        FEATURE_SELECTION,
        "feature_selection",
        lambda _: search.rates.selection(len(train), trees, len(dropped)),
        lambda: retrain_on_features(train, holdout, narrowed, training),
    )
    status = f"{len(kept)} of {len(schema.features)} features ({settings.feature_gain_share:.0%} of gain)"
    if selected is not None and _within_budget(selected, search.baseline_auc, settings.auc_budget):
        search.first_eligible = len(search.tried) - 1
        return FeatureSelection(narrowed, dropped, f"kept {status}", selected.model_text)
    search.bench = wide
    return unchanged(search.paybacks[FEATURE_SELECTION].reason() if selected is None else f"over budget: {status}")


def _pruned(teacher: lgb.Booster, search: _Search, auc_budget: float) -> str:
    """The shortest prefix within the budget of the uncompressed model: a kept feature selection may lose what it
    gained over it (a retrain on fewer, less noisy columns often gains) or only what it left of the budget."""
    teacher_auc = search.tried[search.first_eligible].holdout_auc
    assert teacher_auc is not None
    tolerance = max(0.0, auc_budget + teacher_auc - search.baseline_auc)
    kept, _, _ = shortest_prefix(teacher, search.bench.features, search.bench.labels, tolerance)
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


def _within_budget(candidate: Candidate, baseline_auc: float, auc_budget: float) -> bool:
    return (
        candidate.available
        and candidate.holdout_auc is not None
        and candidate.holdout_auc >= baseline_auc - auc_budget - AUC_SLACK
    )
