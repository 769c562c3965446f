"""Writers racing on one model store, locally and on S3: versions are claimed exclusively and of two promotions
only one wins, so nobody's files are overwritten and ``current`` always names one complete, verified version."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pandas as pd
import pytest

from green_pipeline.data.schema import DatasetSpec, FeatureSchema, infer_schema
from green_pipeline.data.validation import validate_batch
from green_pipeline.demo.stream import LABEL, StreamSpec, generate_day
from green_pipeline.errors import StoreConflictError
from green_pipeline.store import files
from green_pipeline.store.model_store import ModelStore
from green_pipeline.training.trainer import TrainingSettings, full_retrain, split_batch

if TYPE_CHECKING:
    from conftest import S3Server

pytestmark = pytest.mark.integration
RACERS = 4
T = TypeVar("T")


@dataclass(frozen=True)
class Models:
    """Distinct model texts (the first k trees of one small booster) with their schema and reference rows."""

    texts: list[str]
    schema: FeatureSchema
    reference: pd.DataFrame


@pytest.fixture(scope="module")
def models() -> Models:
    frame = generate_day(StreamSpec(rows_per_day=600), 0)
    schema = infer_schema(frame, DatasetSpec(LABEL), "day0")
    clean, _ = validate_batch(frame, schema, "day0")
    result = full_retrain(split_batch(clean, LABEL, "day0", "day0"), schema, TrainingSettings(num_threads=1))
    texts = [result.booster.model_to_string(num_iteration=k) for k in range(1, RACERS + 2)]
    return Models(texts, schema, clean.head(100))


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ModelStore:
    if request.param == "local":
        return ModelStore(str(tmp_path / "store"))
    server: S3Server = request.getfixturevalue("s3_server")
    return ModelStore(f"s3://{server.new_bucket()}/store", storage_options=server.options())


def race(work: Callable[[int], T], racers: int = RACERS) -> list[T]:
    """Run ``work(i)`` in ``racers`` threads released together, so each starts before any has written."""
    barrier = threading.Barrier(racers)

    def released(i: int) -> T:
        barrier.wait()
        return work(i)

    with ThreadPoolExecutor(racers) as pool:
        return list(pool.map(released, range(racers)))


def test_concurrent_publishes_never_share_a_version(store: ModelStore, models: Models) -> None:
    published = race(lambda i: store.publish(models.texts[i], models.schema, models.reference, {"publisher": i}))

    assert sorted(published) == [f"v{n:04d}" for n in range(1, RACERS + 1)]
    assert store.versions() == sorted(published)
    for publisher, version in enumerate(published):  # each version holds its own publisher's files, verified
        loaded = store.load(version)
        assert loaded.model_text == models.texts[publisher] and loaded.metadata["publisher"] == publisher


def test_two_promotions_judged_against_one_champion_cannot_both_win(store: ModelStore, models: Models) -> None:
    champion = store.publish(models.texts[0], models.schema, models.reference, {})
    store.promote(champion)
    challengers = [store.publish(text, models.schema, models.reference, {}) for text in models.texts[1:3]]

    def promote(i: int) -> str | StoreConflictError:
        try:
            store.promote(challengers[i], replacing=champion)
        except StoreConflictError as lost:
            return lost
        return challengers[i]

    results = race(promote, racers=2)

    winners = [r for r in results if isinstance(r, str)]
    losers = [r for r in results if isinstance(r, StoreConflictError)]
    assert len(winners) == 1 and len(losers) == 1, results
    assert store.current_version() == winners[0] and store.load().version == winners[0]
    # Whichever check caught it (the champion moved, or the pointer changed under the write), the loser says who won.
    assert f"{winners[0]} serves" in str(losers[0]) and "another" in str(losers[0])


def test_writers_racing_from_one_read_replace_the_file_once(store: ModelStore) -> None:
    """The primitive under ``promote``: with no expectation of a version, the pointer itself is compared."""
    pointer = files.join(store.root, "current.json")
    files.write_bytes_atomic(pointer, b'{"version": "v0001"}', store.storage_options)
    read = files.read_snapshot(pointer, store.storage_options)

    won = race(
        lambda i: files.replace_bytes_if(pointer, f'{{"version": "v000{i + 2}"}}'.encode(), read, store.storage_options)
    )

    assert won.count(True) == 1
    assert files.read_bytes(pointer, store.storage_options) == f'{{"version": "v000{won.index(True) + 2}"}}'.encode()


def test_writers_racing_to_create_a_file_create_it_once(store: ModelStore) -> None:
    claim = files.join(store.root, "v0001", "metadata.json")

    won = race(lambda i: files.write_bytes_exclusive(claim, f"publisher {i}".encode(), store.storage_options))

    assert won.count(True) == 1
    assert files.read_bytes(claim, store.storage_options) == f"publisher {won.index(True)}".encode()


def test_a_reader_that_listed_the_store_sees_what_another_process_wrote_since(
    s3_server: S3Server, models: Models
) -> None:
    """s3fs caches listings for the life of a process: a serving process must still see a later promotion."""
    url = f"s3://{s3_server.new_bucket()}/store"
    reader = ModelStore(url, storage_options=s3_server.options())
    # Another process: its own s3fs instance, with its own caches.
    writer = ModelStore(url, storage_options={**s3_server.options(), "skip_instance_cache": True})
    first = writer.publish(models.texts[0], models.schema, models.reference, {})
    assert reader.versions() == [first] and reader.current_version() is None  # the reader lists and caches

    writer.promote(first)
    second = writer.publish(models.texts[1], models.schema, models.reference, {})

    assert reader.current_version() == first
    assert reader.versions() == [first, second]
    writer.promote(second)
    assert reader.load().version == second
