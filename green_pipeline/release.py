"""What a published model version records: metrics, energy, lineage, the promotion decision, engine files."""

from __future__ import annotations

import base64
from typing import Any

from green_pipeline.policy import PromotionDecision
from green_pipeline.records import ChampionComparison, CompressedModel


def release_metadata(
    compressed: CompressedModel,
    comparison: ChampionComparison,
    decision: PromotionDecision,
    energy_kwh: dict[str, float | None],
    data_url: str,
    run_id: str,
) -> dict[str, Any]:
    """The metadata.json body of a version (the store adds version, name, schema and time)."""
    candidate = compressed.model
    return {
        "metrics": {
            "test_auc": compressed.test_auc,
            "champion_auc": comparison.champion_auc,
            "uncompressed_test_auc": comparison.challenger_auc,
            "trees": candidate.trees,
            "size_bytes": compressed.size_bytes_after,
            "energy_per_1k_predictions_kwh": compressed.energy_per_1k_predictions_kwh,
        },
        "energy": energy_kwh,
        "lineage": {
            "batch": candidate.batch,
            "data_url": data_url,
            "parent_version": candidate.parent_version,
            "strategy": candidate.strategy.value,
            "compression": compressed.technique,
            "dagster_run_id": run_id,
        },
        "engine": {"name": compressed.engine, "file": compressed.engine_file, "target": compressed.engine_target},
        "promotion": {"promoted": decision.promote, "reason": decision.reason},
    }


def engine_files(compressed: CompressedModel) -> dict[str, bytes]:
    """The compiled engine, if one was chosen, as a file to store next to model.txt."""
    if compressed.engine_file is None or compressed.engine_artifact_b64 is None:
        return {}
    return {compressed.engine_file: base64.b64decode(compressed.engine_artifact_b64)}
