"""Small generated streams and a temporary Dagster instance for end-to-end runs."""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dagster import DagsterInstance, instance_for_test

from green_pipeline.app.definitions import defs
from green_pipeline.app.runner import BatchOutcome, process_batches, run_config
from green_pipeline.demo.stream import StreamSpec, write_stream

#: Day 0 trains the first model, day 1 is like day 0, day 2 starts a covariate shift.
SMALL_STREAM = StreamSpec(days=3, rows_per_day=3000, covariate_shift_days=(2,), concept_drift_days=())


@dataclass(frozen=True)
class Workspace:
    root: Path
    batches: list[str]

    @property
    def data_url(self) -> str:
        return str(self.root / "data")

    @property
    def store_url(self) -> str:
        return str(self.root / "store")

    def config(self, **policy: object) -> dict:
        settings: dict[str, dict] = {
            "dataset": {"data_url": self.data_url},
            "model_store": {"store_url": self.store_url},
            "artifacts": {"base_url": str(self.root / "artifacts")},
        }
        if policy:
            settings["policy"] = dict(policy)
        return run_config(settings)


def new_workspace(root: Path) -> Workspace:
    return Workspace(root, write_stream(SMALL_STREAM, str(root / "data")))


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return new_workspace(tmp_path)


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture(scope="module")
def processed(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Workspace, DagsterInstance, list[BatchOutcome]]]:
    """The small stream run once through the pipeline, shared by the read-only tests of a module."""
    workspace = new_workspace(tmp_path_factory.mktemp("processed"))
    with instance_for_test() as test_instance:
        yield (
            workspace,
            test_instance,
            list(process_batches(defs, test_instance, workspace.batches, workspace.config())),
        )
