"""One LightGBM model from a champion and the trees boosted on its scores: a warm start that reuses the scores.

LightGBM's ``init_model`` re-scores every training and validation row with the champion before boosting; the
drift step has already scored most of them (``serving.scoring.ChampionScores``). Boosting from those scores as
``init_score`` grows the same trees, and LightGBM's own continued training keeps exactly this: the champion's
trees, then the new ones, under the new booster's header (``LGBM_BoosterMerge``, which only the private C API
exposes). The model file format is LightGBM's documented text format; the result is loaded back by LightGBM, which
rewrites it canonically (tree sizes, importances), and checked against the sum of the two models' raw scores.
"""

from __future__ import annotations

import re

import lightgbm as lgb
import numpy as np
import pandas as pd

from green_pipeline.errors import TrainingError

FIRST_TREE = "\nTree=0\n"
END_OF_TREES = "end of trees"
TREE_HEADER = re.compile(r"(?m)^(?=Tree=\d+\n)")
TREE_NUMBER = re.compile(r"^Tree=\d+")
TREE_SIZES = re.compile(r"(?m)^tree_sizes=.*\n")
#: Raw scores of the stacked model may differ from the sum of its parts by float rounding only.
TOLERANCE = 1e-9


def stack_models(base: lgb.Booster, boosted: lgb.Booster, check_rows: pd.DataFrame) -> lgb.Booster:
    """``base``'s trees followed by ``boosted``'s (trained with ``base``'s raw scores as init_score), as one model.

    ``check_rows`` (encoded features, a few hundred rows suffice) confirm that the stacked model scores what the
    two score together; a mismatch is a ``TrainingError`` rather than a wrong model published.
    """
    base_text, boosted_text = base.model_to_string(), boosted.model_to_string()
    header = TREE_SIZES.sub("", boosted_text[: boosted_text.index(FIRST_TREE) + 1])
    footer = boosted_text[boosted_text.index(END_OF_TREES) :]
    trees = [*_trees(base_text), *_trees(boosted_text)]
    body = "".join(TREE_NUMBER.sub(f"Tree={number}", tree, count=1) for number, tree in enumerate(trees))
    stacked = lgb.Booster(model_str=lgb.Booster(model_str=header + body + footer).model_to_string())
    expected = _raw(base, check_rows) + _raw(boosted, check_rows)
    gap = float(np.max(np.abs(_raw(stacked, check_rows) - expected), initial=0.0))
    if stacked.num_trees() != base.num_trees() + boosted.num_trees() or gap > TOLERANCE:
        raise TrainingError(
            f"stacking {boosted.num_trees()} new trees on {base.num_trees()} gave a model of {stacked.num_trees()} "
            f"trees whose raw scores differ by {gap:.3g}: this LightGBM's model text is not the format expected."
        )
    return stacked


def _raw(booster: lgb.Booster, rows: pd.DataFrame) -> np.ndarray:
    return np.asarray(booster.predict(rows, raw_score=True), dtype="float64")


def _trees(model_text: str) -> list[str]:
    """The ``Tree=N`` blocks of a model text, in order."""
    start = model_text.find(FIRST_TREE)
    if start < 0:
        return []
    body = model_text[start + 1 : model_text.index(END_OF_TREES)]
    return [block for block in TREE_HEADER.split(body) if block.strip()]
