"""Bounded models under warm start: a chain of warm starts may not make every prediction dearer without end.

Each warm start adds trees to the model it starts from, and a prediction walks every tree: on the built-in stream a
chain grew 39 -> 60 -> 100 trees and 0.0027 -> 0.0059 mWh per 1,000 predictions. Over a model's life most energy is
inference, so a growing chain undoes what skipping retrains saved. The budget is set by the chain's first version,
the nearest ancestor trained from scratch (or transferred): a warm start may grow the model to at most
``policy.max_model_growth`` times its trees. A chain at or past its budget is retrained compactly instead: from
scratch, early-stopped, a new chain with the trees its rows need.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from green_pipeline.store.model_store import ModelStore
from green_pipeline.training.policy import Strategy

#: Strategies that keep the model they start from: the chain goes on through them.
CHAIN_STRATEGIES = (Strategy.WARM_START.value, Strategy.REFIT.value)


@dataclass(frozen=True)
class TreeBudget:
    """The trees a serving model may reach: ``growth`` times those of its chain's first version."""

    root_version: str
    root_trees: int
    growth: float

    @property
    def limit(self) -> int:
        return max(1, math.floor(self.root_trees * self.growth))

    def room(self, trees: int) -> int:
        """Trees a ``trees``-tree model may still grow by; 0 when the chain is at or past its budget."""
        return max(0, self.limit - trees)

    def describe(self, trees: int) -> str:
        return (
            f"the warm-start chain from {self.root_version} ({self.root_trees} trees) is at {trees} trees; "
            f"policy.max_model_growth {self.growth:g} allows {self.limit}"
        )


def tree_budget(store: ModelStore, version: str, growth: float) -> TreeBudget | None:
    """The budget of ``version``'s chain, read from the published versions' lineage (``metrics.trees``).

    A version whose metadata lacks lineage starts its own chain; None when the first version's trees are not
    recorded (published by an older release): no budget is guessed.
    """
    metadata = store.metadata(version)
    while True:
        lineage = metadata.get("lineage", {})
        parent = lineage.get("parent_version")
        if lineage.get("strategy") not in CHAIN_STRATEGIES or not parent:
            break
        version, metadata = parent, store.metadata(parent)
    trees = metadata.get("metrics", {}).get("trees")
    return TreeBudget(version, int(trees), growth) if trees else None


@dataclass(frozen=True)
class BoundedPlan:
    """The strategies to try once the budget is applied, and why they changed."""

    ladder: tuple[Strategy, ...]
    reason: str = ""

    @property
    def compacted(self) -> bool:
        return bool(self.reason)


def bound_ladder(ladder: tuple[Strategy, ...], champion_trees: int, budget: TreeBudget | None) -> BoundedPlan:
    """A chain at or past its budget is not warm-started again: a compact full retrain takes the warm start's place.

    A warm start within the budget is not capped to the room left: after a concept drift, a warm start held to a
    few new trees still beat the stale champion's bar and served 0.74 where the uncapped one served 0.85 (the
    built-in stream after day 12; the compact retrain serves 0.84). So a chain may pass its budget by one warm
    start, and the next retrain compacts it.
    """
    if budget is None or Strategy.WARM_START not in ladder or budget.room(champion_trees) > 0:
        return BoundedPlan(ladder)
    compact = tuple(dict.fromkeys(Strategy.FULL if s is Strategy.WARM_START else s for s in ladder))
    return BoundedPlan(compact, f"{budget.describe(champion_trees)}: retrain compactly from scratch")
