"""Batch scoring through the prediction cache, with LightGBM and with an engine compiled where it serves."""

import hashlib

import numpy as np
import pandas as pd
import pytest

from green_pipeline.compression.engines import (
    CACHE_HOME_ENV,
    COMPILED_HERE,
    LIGHTGBM,
    LLEAVES,
    LOCAL_CACHE,
    engine_cache_dir,
    lightgbm_predictor,
)
from green_pipeline.energy.measurement import EnergySettings
from green_pipeline.serving.scoring import row_hashes, score_batch, score_through_cache, serving_predictor
from green_pipeline.store.model_store import ModelStore


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


def test_a_version_compressed_to_lleaves_is_compiled_here_from_its_text_and_scores_like_lightgbm(
    tmp_path, engine_cache, day0_model, schema, make_clean_batch
) -> None:
    model_text = day0_model.result.booster.model_to_string()
    store = ModelStore(str(tmp_path))
    store.promote(store.publish(model_text, schema, make_clean_batch(0), {"engine": {"name": LLEAVES}}))

    built, reloaded = (serving_predictor(store.load(), EnergySettings(), 2) for _ in range(2))

    assert built.engine == reloaded.engine == LLEAVES
    compiled = built.as_metadata()
    assert compiled["engine_source"] == COMPILED_HERE and compiled["engine_build_energy_kwh"] > 0
    assert reloaded.as_metadata()["engine_source"] == LOCAL_CACHE
    assert [path.name.split("-")[0] for path in engine_cache.iterdir()] == [
        hashlib.sha256(model_text.encode()).hexdigest()
    ]
    batch = make_clean_batch(1)
    reference = score_batch(lightgbm_predictor(model_text, 2), schema, batch, None).predictions["score"]
    for serving in (built, reloaded):
        scores = score_batch(serving.predict, schema, batch, None).predictions["score"]
        np.testing.assert_allclose(scores, reference, atol=1e-6)


def test_an_engine_that_cannot_be_built_here_falls_back_to_lightgbm_and_says_why(
    monkeypatch, tmp_path, day0_model, schema, make_clean_batch
) -> None:
    monkeypatch.setenv(CACHE_HOME_ENV, str(tmp_path / "cache-home"))
    engine_cache_dir().mkdir(parents=True)
    engine_cache_dir().chmod(0o777)
    model_text = day0_model.result.booster.model_to_string()
    store = ModelStore(str(tmp_path / "store"))
    store.promote(store.publish(model_text, schema, make_clean_batch(0), {"engine": {"name": LLEAVES}}))

    serving = serving_predictor(store.load(), EnergySettings(enabled=False), 2)

    assert serving.engine == LIGHTGBM and serving.compiled is None
    reason = serving.as_metadata()["engine_fallback_reason"]
    assert str(engine_cache_dir()) in reason and "writable by group or others" in reason
    batch = make_clean_batch(1)
    np.testing.assert_allclose(
        serving.predict(schema.encode(batch)), day0_model.result.booster.predict(schema.encode(batch))
    )


def test_a_version_without_engine_scores_with_lightgbm(tmp_path, day0_model, schema, make_clean_batch) -> None:
    store = ModelStore(str(tmp_path))
    store.promote(store.publish(day0_model.result.booster.model_to_string(), schema, make_clean_batch(0), {}))
    serving = serving_predictor(store.load(), EnergySettings(enabled=False), 2)
    assert serving.as_metadata() == {"engine": LIGHTGBM}


def test_a_batch_the_cache_holds_is_scored_without_building_an_engine_or_computing_a_row(
    tmp_path, day0_model, schema, make_clean_batch
) -> None:
    store = ModelStore(str(tmp_path))
    store.promote(store.publish(day0_model.result.booster.model_to_string(), schema, make_clean_batch(0), {}))
    model, batch = store.load(), make_clean_batch(1)
    first = score_through_cache(model, batch, None, EnergySettings(), 2)
    again = score_through_cache(model, batch, first.result.cache, EnergySettings(), 2)

    assert first.engine is not None and first.cost.rows_computed == len(batch) and first.cost.energy_kwh > 0
    assert again.engine is None and again.cost.rows_computed == 0 and again.result.hit_rate == 1.0
    np.testing.assert_array_equal(again.result.predictions["score"], first.result.predictions["score"])
    with pytest.raises(ValueError, match="not in the cache"):
        score_batch(None, schema, make_clean_batch(2), first.result.cache)


def test_the_cache_keeps_the_rows_just_scored_and_the_newest_others_up_to_its_bound(
    day0_model, schema, make_clean_batch
) -> None:
    predict = lightgbm_predictor(day0_model.result.booster.model_to_string(), 2)
    older, old, new = make_clean_batch(1).head(300), make_clean_batch(2).head(300), make_clean_batch(3).head(500)
    cache = score_batch(predict, schema, pd.concat([older, old]), None).cache

    bounded = score_batch(predict, schema, new, cache, max_cache_rows=700).cache
    big = score_batch(predict, schema, new, cache, max_cache_rows=400).cache

    kept, fresh = set(bounded["row_hash"]), set(row_hashes(new, schema))
    assert len(bounded) == 700 and fresh <= kept and bounded["row_hash"].tail(500).isin(fresh).all()
    assert len(kept & set(row_hashes(old, schema))) == 200 and not kept & set(row_hashes(older, schema))
    assert set(big["row_hash"]) == set(row_hashes(new, schema)), "a batch larger than the bound stays whole"
