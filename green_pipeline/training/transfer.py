"""Transfer to a new segment: a new model name's first model may start from another model's serving version.

A segment with few labels of its own (a new market, a new product line) often shares most of its structure with one
the store already serves. Its first training then fine-tunes that model (``trainer.transfer``) and trains one from
scratch on the same rows, both measured, and keeps the better validation AUC (``retraining.transfer_or_scratch``);
the published version's lineage names the source model and version either way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from green_pipeline.data.schema import FeatureSchema
from green_pipeline.errors import IncompatibleSourceError, InvalidConfigError, StoreError
from green_pipeline.store.model_store import DeployedModel, ModelStore
from green_pipeline.training.policy import AUC_EPSILON

SETTING = "model_store.transfer_from"


@dataclass(frozen=True)
class SourceVersion:
    """The model version a first training compared a transfer from: what the published version's lineage records."""

    model: str
    version: str

    def as_lineage(self) -> dict[str, str]:
        return {"model": self.model, "version": self.version}

    def __str__(self) -> str:
        return f"{self.model} {self.version}"


@dataclass(frozen=True)
class TransferSource:
    """The source model's serving version, loaded through the store (checksums verified). It does not serve the new
    segment: it is neither judged nor warm-started as a champion, only boosted from once."""

    model_name: str
    model: DeployedModel

    @property
    def ref(self) -> SourceVersion:
        return SourceVersion(self.model_name, self.model.version)

    def schema_for(self, frames: Mapping[str, pd.DataFrame], label: str) -> FeatureSchema:
        """The source's features and category codes with the new segment's ``label``: the transferred trees split on
        them, so each must be in every batch ``frames`` names (the new segment's, by batch)."""
        features = self.model.schema.features
        if label in features:
            raise IncompatibleSourceError(
                f"{SETTING} {self.ref}: learned from column {label!r}, the new segment's label; a model that scores "
                "from its own label cannot start this one. Name another source, or train without --transfer-from."
            )
        for batch, frame in frames.items():
            missing = [column for column in features if column not in frame.columns]
            if missing:
                raise IncompatibleSourceError(
                    f"{batch}: lacks column(s) {missing} that {SETTING} {self.ref} learned from; its trees split on "
                    "every one of its features. Add them to the new segment's batches, or train without "
                    "--transfer-from (model_store.transfer_from)."
                )
        return dataclasses.replace(self.model.schema, label=label)


def load_source(source: ModelStore, target: str) -> TransferSource:
    """``source``'s serving version, verified, to start model ``target``'s first training from."""
    if source.name == target:
        raise InvalidConfigError(
            f"{SETTING} {target!r} names the model being trained (model_store.model_name); name another model of "
            f"{source.url}."
        )
    model = source.load_current()
    if model is None:
        raise StoreError(
            f"{SETTING} {source.name!r}: no version of it serves in {source.root}. Train it first "
            f"(green-pipeline run --model-name {source.name}), or name a model that serves."
        )
    return TransferSource(source.name, model)


def keep_transfer(transfer_auc: float, scratch_auc: float, source: SourceVersion) -> tuple[bool, str]:
    """Whether the transfer beats a model trained from scratch with the same settings on the same rows (validation
    AUCs), and why; a tie keeps scratch, whose model carries none of the source's trees into every prediction."""
    if transfer_auc > scratch_auc + AUC_EPSILON:
        return True, (
            f"transfer from {source} (valid AUC {transfer_auc:.4f} > {scratch_auc:.4f} from scratch, same settings)"
        )
    return False, (
        f"full_retrain from scratch (valid AUC {scratch_auc:.4f} with the transfer's settings >= {transfer_auc:.4f} "
        f"of the transfer from {source})"
    )
