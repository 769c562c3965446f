"""Results handed from one pipeline step to the next; plain JSON-able dataclasses (no pickle anywhere)."""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb

from green_pipeline.data.datasets import DatasetBatch
from green_pipeline.data.schema import FeatureSchema
from green_pipeline.drift.detection import DriftResult
from green_pipeline.serving.scoring import ScoringCost
from green_pipeline.training.confidence import Interval
from green_pipeline.training.policy import RetrainDecision, Strategy
from green_pipeline.training.transfer import SourceVersion
from green_pipeline.training.tuning import TuningHistory


@dataclass(frozen=True)
class DriftAssessment:
    """A batch judged against the serving model: drift, the model's quality on it, and the decision.

    When earlier batches were pooled (too few labelled rows each), their rows were judged with this batch's, and a
    retrain trains on them too: ``retrained_model`` loads ``pooled_batches`` the way the drift step did.
    """

    batch: str
    drift: DriftResult
    decision: RetrainDecision
    champion_version: str | None
    champion_auc: float | None
    champion_deployed_auc: float | None
    report_url: str | None
    #: The champion's AUC on the judged rows with its DeLong interval at policy.decision_confidence.
    champion_auc_interval: Interval | None = None
    #: Labelled rows the decision rested on, this batch's and the pooled ones'.
    labelled_rows: int | None = None
    pooled_batches: tuple[str, ...] = ()
    pooled_rows: int = 0
    #: The champion's one scoring of the judged rows, cached for ``predictions`` (which reads it, and reports its
    #: cost as its own); None without a champion.
    champion_scoring: ScoringCost | None = None


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
    #: Batches judged with this one (``DriftAssessment.pooled_batches``): their rows are split, trained, validated
    #: and tested on like ``batch``'s, and published with them as the version's reference.
    pooled_batches: tuple[str, ...] = ()
    #: The other model's version a first training compared a transfer from (``model_store.transfer_from``); the
    #: strategy says which was kept: ``transfer`` or the ``full_retrain`` from scratch that beat it.
    transfer_source: SourceVersion | None = None
    #: The parameters the model was trained with and the study that tuned them, published in its metadata.json
    #: (``training.tuning.TuningHistory``); None for a model never tuned, nor trained from a tuned one.
    tuning: TuningHistory | None = None

    def booster(self) -> lgb.Booster:
        return lgb.Booster(model_str=self.model_text)


@dataclass(frozen=True)
class ChampionComparison:
    """The challenger that would be deployed and the champion on the same held-out rows of the new batch.

    Each AUC comes with its DeLong interval at the policy's ``decision_confidence``, and ``difference`` (challenger
    minus champion) with the paired one, far narrower than the two intervals side by side. Without a champion only
    the challenger's interval exists.
    """

    challenger: Interval
    champion: Interval | None
    difference: Interval | None
    champion_version: str | None
    test_rows: int

    @property
    def challenger_auc(self) -> float:
        return self.challenger.estimate

    @property
    def champion_auc(self) -> float | None:
        return None if self.champion is None else self.champion.estimate

    @property
    def confidence(self) -> float:
        return self.challenger.confidence


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
    #: Columns a feature selection left out of ``model.schema`` (this step's or a parent version's): later batches
    #: need not hold them, and nothing reads them.
    dropped_features: tuple[str, ...] = ()


@dataclass(frozen=True)
class Deployment:
    version: str
    promoted: bool
    reason: str
    serving_version: str | None


RECORD_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (DriftAssessment, CandidateModel, ChampionComparison, CompressedModel, Deployment, DatasetBatch)
}
