"""Engines compiled here from the model text into a private local cache, and what that cache refuses to load."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from green_pipeline.compression.engines import (
    CACHE_HOME_ENV,
    COMPILED_HERE,
    LLEAVES,
    LOCAL_CACHE,
    CompiledModel,
    EngineUnavailable,
    compile_model,
    engine_cache_dir,
    lightgbm_predictor,
)
from green_pipeline.compression.techniques import quantize_model_text
from green_pipeline.data.schema import FeatureSchema
from green_pipeline.energy.measurement import EnergySettings

if TYPE_CHECKING:
    from conftest import TrainedModel

NO_METER = EnergySettings(enabled=False)


@pytest.fixture
def cache_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A fresh, not yet created engine cache for each test."""
    monkeypatch.setenv(CACHE_HOME_ENV, str(tmp_path / "cache-home"))
    return engine_cache_dir()


@pytest.fixture(scope="module")
def small_text(day0_model: TrainedModel) -> str:
    """A few quantized trees: compile time grows with the model, and these tests are about the engine."""
    return quantize_model_text(day0_model.result.booster.model_to_string(num_iteration=8))


@pytest.fixture(scope="module")
def features(day0_model: TrainedModel, schema: FeatureSchema) -> pd.DataFrame:
    return schema.encode(day0_model.split.test)


def _compiled(model_text: str) -> CompiledModel:
    result = compile_model(model_text, LLEAVES, NO_METER, num_threads=2)
    assert isinstance(result, CompiledModel), result
    return result


def _refusal(model_text: str) -> str:
    result = compile_model(model_text, LLEAVES, NO_METER, num_threads=2)
    assert isinstance(result, EngineUnavailable), result
    return result.reason


def _key(model_text: str) -> str:
    return hashlib.sha256(model_text.encode()).hexdigest()


def _cached_file(folder: Path, model_text: str) -> Path:
    [path] = folder.glob(f"{_key(model_text)}-*.o")
    return path


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_an_engine_is_compiled_into_a_private_cache_keyed_by_the_text_and_loaded_from_it_next_time(
    cache_folder: Path, small_text: str, features: pd.DataFrame
) -> None:
    expected = lightgbm_predictor(small_text, num_threads=2)(features)

    first, second = _compiled(small_text), _compiled(small_text)

    assert (first.source, second.source) == (COMPILED_HERE, LOCAL_CACHE)
    np.testing.assert_allclose(first.predict(features), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(second.predict(features), expected, rtol=0, atol=1e-6)
    cached = _cached_file(cache_folder, small_text)
    assert _mode(cache_folder) == 0o700 and _mode(cached) == 0o600
    assert [p.name for p in cache_folder.iterdir()] == [cached.name], "a temporary file was left behind"


def test_whatever_object_sits_under_the_texts_key_is_what_runs(
    cache_folder: Path, day0_model: TrainedModel, small_text: str, features: pd.DataFrame
) -> None:
    """Why only this user may write the cache: the object is run as found, so planted code would run."""
    other_text = quantize_model_text(day0_model.result.booster.model_to_string(num_iteration=2))
    _compiled(other_text)
    planted = _cached_file(cache_folder, other_text)
    planted.rename(cache_folder / planted.name.replace(_key(other_text), _key(small_text)))

    loaded = _compiled(small_text)

    assert loaded.source == LOCAL_CACHE
    other = lightgbm_predictor(other_text, num_threads=2)(features)
    np.testing.assert_allclose(loaded.predict(features), other, rtol=0, atol=1e-6)
    assert not np.allclose(other, lightgbm_predictor(small_text, num_threads=2)(features), atol=1e-3)


def test_a_cache_folder_others_can_write_is_refused_and_the_reason_says_what_to_do(
    cache_folder: Path, small_text: str
) -> None:
    cache_folder.mkdir(parents=True)
    cache_folder.chmod(0o777)

    reason = _refusal(small_text)

    assert str(cache_folder) in reason and "writable by group or others" in reason and "chmod go-w" in reason
    assert list(cache_folder.iterdir()) == []


def test_a_cache_folder_of_another_user_is_refused(
    monkeypatch: pytest.MonkeyPatch, cache_folder: Path, small_text: str
) -> None:
    cache_folder.mkdir(parents=True, mode=0o700)
    this_user = os.geteuid()
    monkeypatch.setattr(os, "geteuid", lambda: this_user + 1)

    reason = _refusal(small_text)

    assert f"{cache_folder} belongs to uid {this_user}, not to this user" in reason


def test_a_cache_folder_that_is_a_symbolic_link_is_refused(tmp_path: Path, cache_folder: Path, small_text: str) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    cache_folder.parent.mkdir(parents=True)
    cache_folder.symlink_to(elsewhere)

    reason = _refusal(small_text)

    assert str(cache_folder) in reason and "symbolic link" in reason
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("tampering", ["writable by others", "symbolic link"])
def test_a_cached_object_that_is_not_a_private_file_of_this_user_is_refused(
    tmp_path: Path, cache_folder: Path, small_text: str, tampering: str
) -> None:
    _compiled(small_text)
    cached = _cached_file(cache_folder, small_text)
    if tampering == "writable by others":
        cached.chmod(0o666)
    else:
        target = tmp_path / "object.o"
        cached.rename(target)
        cached.symlink_to(target)

    reason = _refusal(small_text)

    assert str(cached) in reason


def test_the_cache_follows_xdg_and_ignores_a_relative_cache_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_HOME_ENV, "/srv/cache")
    assert engine_cache_dir() == Path("/srv/cache/green-pipeline/engines")
    monkeypatch.setenv(CACHE_HOME_ENV, "relative/cache")
    assert engine_cache_dir() == Path.home() / ".cache" / "green-pipeline" / "engines"


def test_an_engine_that_is_not_installed_is_reported_unavailable_with_the_reason(small_text: str) -> None:
    result = compile_model(small_text, "tl2cgen", NO_METER, num_threads=2)

    assert isinstance(result, EngineUnavailable)
    assert "tl2cgen" in result.reason and "lleaves" in result.reason
