"""Techniques that turn a LightGBM model into a smaller LightGBM model.

Each result is ordinary LightGBM text (pruning: a Booster of the leading trees), so the model store, a later warm
start and every inference engine read it like any other model: a tree prefix, a smaller retrain, a distilled
student, and quantized text.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from green_pipeline.data.schema import FeatureSchema
from green_pipeline.errors import TrainingError

#: Per-node statistics that only training, refit and SHAP contributions read; predictions never do.
TRAINING_ONLY_KEYS = frozenset(
    {"split_gain", "leaf_weight", "leaf_count", "internal_value", "internal_weight", "internal_count"}
)
TREE_START = re.compile(r"(?m)^(?=Tree=\d+$)")
END_OF_TREES = "end of trees"
PREFIX_CANDIDATES = 20
#: The prefixes pruning may keep go down to this fraction of the trees.
SMALLEST_PREFIX = 0.05


@dataclass(frozen=True)
class StudentSettings:
    """Shape of a small model: a student never gets more trees or leaves per tree than its teacher."""

    trees: int = 100
    num_leaves: int = 15
    learning_rate: float = 0.1
    min_data_in_leaf: int = 20
    seed: int = 0

    def params(self, teacher: lgb.Booster, objective: str, num_threads: int) -> dict[str, object]:
        return {
            "objective": objective,
            "learning_rate": self.learning_rate,
            "num_leaves": self.leaves(teacher),
            "min_data_in_leaf": self.min_data_in_leaf,
            "num_threads": num_threads,
            "seed": self.seed,
            # Reproducible whatever the machine's load: LightGBM otherwise picks row- or column-wise histograms
            # by timing both, so a busy machine can train another model from the same rows.
            "deterministic": True,
            "force_col_wise": True,
            "verbosity": -1,
        }

    def leaves(self, teacher: lgb.Booster) -> int:
        return min(self.num_leaves, max(2, max_leaves_per_tree(teacher.model_to_string())))

    def rounds(self, teacher: lgb.Booster) -> int:
        return max(1, min(self.trees, teacher.num_trees()))


def retrain_smaller(
    teacher: lgb.Booster, train: pd.DataFrame, schema: FeatureSchema, student: StudentSettings, num_threads: int
) -> str:
    """Fewer, smaller trees at a higher learning rate, trained from the labels: most of the AUC for few leaves."""
    _check_single_output(teacher)
    data = lgb.Dataset(schema.encode(train), schema.labels(train))
    params = student.params(teacher, "binary", num_threads)
    booster = lgb.train(params, data, num_boost_round=student.rounds(teacher))
    return booster.model_to_string()


def distil(
    teacher: lgb.Booster, train: pd.DataFrame, schema: FeatureSchema, student: StudentSettings, num_threads: int
) -> str:
    """A student regressed on the teacher's margins (raw scores), then given the teacher's objective.

    Margins carry the teacher's confidence on every row, not just a 0/1 label, so a small student can follow
    it closely; with the teacher's objective line the student predicts probabilities like the teacher.
    """
    _check_single_output(teacher)
    features = schema.encode(train)
    margins = teacher.predict(features, raw_score=True)
    data = lgb.Dataset(features, margins)
    params = student.params(teacher, "regression", num_threads)
    booster = lgb.train(params, data, num_boost_round=student.rounds(teacher))
    return _with_objective(booster.model_to_string(), _objective_line(teacher.model_to_string()))


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
    kept, kept_auc, full_auc = shortest_prefix(
        booster, schema.encode(holdout), schema.labels(holdout).to_numpy(), auc_tolerance
    )
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


def shortest_prefix(
    booster: lgb.Booster, features: pd.DataFrame, labels: np.ndarray, auc_tolerance: float
) -> tuple[int, float, float]:
    """Trees kept, their AUC and all trees' AUC: each prefix's margins add the next trees' to the previous ones,
    so every prefix is scored in one pass over the trees (AUC ranks margins as it ranks probabilities)."""
    total = booster.num_trees()
    sizes = sorted({max(1, math.ceil(total * f)) for f in np.linspace(SMALLEST_PREFIX, 1.0, PREFIX_CANDIDATES)})
    margins, start, aucs = np.zeros(len(features)), 0, {}
    for trees in sizes:
        margins += booster.predict(features, start_iteration=start, num_iteration=trees - start, raw_score=True)
        aucs[trees], start = float(roc_auc_score(labels, margins)), trees
    kept = next(trees for trees in sizes if aucs[trees] >= aucs[total] - auc_tolerance)
    return kept, aucs[kept], aucs[total]


def quantize_model_text(text: str, leaf_digits: int = 6, threshold_digits: int = 10) -> str:
    """Round leaf values and thresholds and drop training-only statistics from the text model.

    LightGBM writes 17 significant digits and per-node statistics that prediction never reads; what stays
    is a valid model (``tree_sizes`` recomputed). SHAP contributions (``pred_contrib``) need those
    statistics, so they are not available from the quantized model.
    """
    header, separator, rest = text.partition("\nTree=")
    trees, end_marker, tail = ("Tree=" + rest).partition(END_OF_TREES)
    if not separator or not end_marker:
        raise TrainingError("quantization needs a LightGBM text model with trees; this text has none.")
    blocks = [_quantize_tree(block, leaf_digits, threshold_digits) for block in TREE_START.split(trees) if block]
    sizes = " ".join(str(len(block.encode())) for block in blocks)
    header = re.sub(r"(?m)^tree_sizes=.*$", f"tree_sizes={sizes}", header)
    return header + "\n" + "".join(blocks) + end_marker + tail


def leaves_per_tree(text: str) -> list[int]:
    """Leaf count of each tree of a text model, read without building a Booster."""
    return [int(count) for count in re.findall(r"(?m)^num_leaves=(\d+)$", text)]


def max_leaves_per_tree(text: str) -> int:
    return max(leaves_per_tree(text), default=1)


def _quantize_tree(block: str, leaf_digits: int, threshold_digits: int) -> str:
    digits = {"leaf_value": leaf_digits, "threshold": threshold_digits}
    lines = []
    for line in block.split("\n"):
        key, _, values = line.partition("=")
        if key in TRAINING_ONLY_KEYS:
            continue
        if key in digits and values:
            line = f"{key}=" + " ".join(f"{float(value):.{digits[key]}g}" for value in values.split(" "))
        lines.append(line)
    return "\n".join(lines)


def _objective_line(text: str) -> str:
    match = re.search(r"(?m)^objective=.*$", text)
    if match is None:
        raise TrainingError("the teacher model names no objective; distillation needs one to predict like it.")
    return match.group(0)


def _with_objective(text: str, objective_line: str) -> str:
    return re.sub(r"(?m)^objective=.*$", objective_line, text, count=1)


def _check_single_output(teacher: lgb.Booster) -> None:
    if teacher.num_model_per_iteration() != 1:
        raise TrainingError(
            f"compression supports single-output models; this one has {teacher.num_model_per_iteration()} "
            "outputs per iteration."
        )
