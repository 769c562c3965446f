"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client

from green_pipeline.distributed.cluster import ClusterSettings, connect


@pytest.fixture(scope="module")
def engine_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The module's own engine cache folder: compiled engines never land in the user's ``~/.cache``."""
    with pytest.MonkeyPatch.context() as patch:
        cache_home = tmp_path_factory.mktemp("xdg-cache")
        patch.setenv("XDG_CACHE_HOME", str(cache_home))
        yield cache_home / "green-pipeline" / "engines"


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Client]:
    """A local cluster of two single-threaded worker processes, as the ``dask`` resource starts one, per module."""
    cluster = connect(ClusterSettings(n_workers=2, threads_per_worker=1, memory_limit="2GiB"))
    try:
        yield cluster.client
    finally:
        cluster.close()
