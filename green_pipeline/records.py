"""Results handed from one pipeline step to the next; plain JSON-able dataclasses (no pickle anywhere)."""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb

from green_pipeline.data.schema import FeatureSchema
from green_pipeline.drift.detection import DriftResult
from green_pipeline.training.policy import RetrainDecision, Strategy


@dataclass(frozen=True)
class DriftAssessment:
    """A batch judged against the serving model: drift, the model's quality on it, and the decision."""

    batch: str
    drift: DriftResult
    decision: RetrainDecision
    champion_version: str | None
    champion_auc: float | None
    champion_deployed_auc: float | None
    report_url: str | None


@dataclass(frozen=True)
class CandidateModel:
    """A trained (or compressed) model not yet deployed, with where it came from."""

    batch: str
    model_text: str
    schema: FeatureSchema
    strategy: Strategy
    parent_version: str | None
    trees: int
    new_trees: int
    train_rows: int

    def booster(self) -> lgb.Booster:
        return lgb.Booster(model_str=self.model_text)


@dataclass(frozen=True)
class ChampionComparison:
    """Challenger and champion on the same held-out rows of the new batch."""

    challenger_auc: float
    champion_auc: float | None
    champion_version: str | None
    test_rows: int


@dataclass(frozen=True)
class CompressedModel:
    model: CandidateModel
    technique: str
    trees_before: int
    auc_before: float
    auc_after: float
    test_auc: float
    size_bytes_before: int
    size_bytes_after: int
    #: Engine the chosen candidate runs on; "lightgbm" unless a compiled engine won (compiled where it serves).
    engine: str = "lightgbm"
    #: Measured energy per 1,000 predictions (compile amortized) of the chosen and the uncompressed model.
    energy_per_1k_predictions_kwh: float | None = None
    energy_per_1k_predictions_kwh_before: float | None = None


@dataclass(frozen=True)
class Deployment:
    version: str
    promoted: bool
    reason: str
    serving_version: str | None


RECORD_TYPES: dict[str, type] = {
    cls.__name__: cls for cls in (DriftAssessment, CandidateModel, ChampionComparison, CompressedModel, Deployment)
}
