"""Batch scoring through the prediction cache, with LightGBM and with a stored compiled engine."""

import base64

import numpy as np
import pandas as pd
import pytest

from green_pipeline.compression_engines import LIGHTGBM, LLEAVES, CompiledModel, compile_model, lightgbm_predictor
from green_pipeline.energy import EnergySettings
from green_pipeline.records import CandidateModel, CompressedModel
from green_pipeline.release import engine_files
from green_pipeline.scoring import score_batch, serving_predictor
from green_pipeline.store import ModelStore


def test_first_scoring_computes_every_row_and_matches_lightgbm(day0_model, schema, make_clean_batch) -> None:
    batch = make_clean_batch(1)
    booster = day0_model.result.booster
    result = score_batch(lightgbm_predictor(booster.model_to_string(), 2), schema, batch, None)
    assert result.rows == len(batch) and result.cache_hits == 0 and result.rows_computed == len(batch)
    np.testing.assert_allclose(result.predictions["score"], booster.predict(schema.encode(batch)), rtol=1e-12)
    assert len(result.cache) == len(batch)


def test_repeated_rows_come_from_the_cache_and_duplicates_are_computed_once(day0_model, schema, make_clean_batch):
    predict = lightgbm_predictor(day0_model.result.booster.model_to_string(), 2)
    batch = make_clean_batch(1)
    first = score_batch(predict, schema, batch, None)
    repeated = pd.concat([batch.head(50), batch.head(50), make_clean_batch(2).head(10)], ignore_index=True)
    second = score_batch(predict, schema, repeated, first.cache)
    assert second.cache_hits == 100 and second.rows_computed == 10 and second.hit_rate == pytest.approx(100 / 110)
    np.testing.assert_allclose(second.predictions["score"][:50], first.predictions["score"][:50])
    within = score_batch(predict, schema, pd.concat([batch.head(5)] * 3, ignore_index=True), None)
    assert within.rows_computed == 5 and within.cache_hits == 0 and within.predictions["score"].notna().all()


def test_the_label_and_other_columns_do_not_change_a_rows_cache_key(day0_model, schema, make_clean_batch) -> None:
    predict = lightgbm_predictor(day0_model.result.booster.model_to_string(), 2)
    batch = make_clean_batch(1).head(20)
    relabelled = batch.assign(**{schema.label: 1 - batch[schema.label], "note": "x"})
    assert score_batch(predict, schema, relabelled, score_batch(predict, schema, batch, None).cache).hit_rate == 1.0


def test_a_stored_compiled_engine_scores_like_lightgbm(tmp_path, day0_model, schema, make_clean_batch) -> None:
    model_text = day0_model.result.booster.model_to_string()
    compiled = compile_model(model_text, LLEAVES, EnergySettings(enabled=False), 1)
    assert isinstance(compiled, CompiledModel), compiled
    artifact = compiled.artifact
    record = CompressedModel(
        model=CandidateModel("b", model_text, schema, "full_retrain", None, 1, 1, 1),  # type: ignore[arg-type]
        technique="lleaves",
        trees_before=1,
        auc_before=0.8,
        auc_after=0.8,
        test_auc=0.8,
        size_bytes_before=1,
        size_bytes_after=1,
        engine=LLEAVES,
        engine_file=artifact.file_name,
        engine_artifact_b64=base64.b64encode(artifact.payload).decode(),
        engine_target=artifact.target,
    )
    store = ModelStore(str(tmp_path))
    metadata = {"engine": {"name": LLEAVES, "file": artifact.file_name, "target": artifact.target}}
    store.promote(store.publish(model_text, schema, make_clean_batch(0), metadata, engine_files(record)))
    deployed = store.load()
    assert deployed.extra_files[artifact.file_name] == artifact.payload
    predict, engine = serving_predictor(deployed)
    assert engine == LLEAVES
    batch = make_clean_batch(1)
    reference = score_batch(lightgbm_predictor(model_text, 2), schema, batch, None).predictions["score"]
    np.testing.assert_allclose(score_batch(predict, schema, batch, None).predictions["score"], reference, atol=1e-6)


def test_a_version_without_engine_scores_with_lightgbm(tmp_path, day0_model, schema, make_clean_batch) -> None:
    store = ModelStore(str(tmp_path))
    store.promote(store.publish(day0_model.result.booster.model_to_string(), schema, make_clean_batch(0), {}))
    assert serving_predictor(store.load())[1] == LIGHTGBM
