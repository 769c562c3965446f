"""Two runs of the same batch at once, in two processes sharing one Dagster instance configured by dagster.yaml.

What serializes training is the ``training`` pool (dagster.yaml: ``pools: default_limit: 1``, ``granularity: op``),
which the in-process executor enforces through the instance's concurrency slots, across processes. Two runs in
threads of one process are not an option: Dagster reconfigures Python logging (``logging.config.dictConfig``) at
each run start, which deadlocks against another run's log handler. The test holds the pool's only slot itself
(as a training of another batch would), waits until both runs are blocked on it, then lets them go: they train
one after the other and each publishes its own version, exclusively claimed, that verifies.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance, EventLogEntry

from green_pipeline.app.definitions import defs
from green_pipeline.app.runner import BatchOutcome, process_batches
from green_pipeline.assets.partitions import batch_partitions
from green_pipeline.orchestration.ledger import run_materializations
from green_pipeline.store.model_store import ModelStore

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
POOL = "training"
BLOCKED = f"Step blocked by limit for pool {POOL}"
HOLDER = ("held-by-the-test", "another-training")

#: One run of the pipeline on one batch, started when the parent creates the ``go`` file; prints its outcome.
CHILD = textwrap.dedent(
    """
    import dataclasses, json, pathlib, sys, time
    from dagster import DagsterInstance
    from green_pipeline.app.definitions import defs
    from green_pipeline.app.runner import process_batches

    home, batch, config, ready, go = sys.argv[1:6]
    instance = DagsterInstance.from_config(home)
    pathlib.Path(ready).touch()
    deadline = time.monotonic() + 120
    while not pathlib.Path(go).exists():
        if time.monotonic() > deadline:
            sys.exit("never released")
        time.sleep(0.02)
    outcome = next(process_batches(defs, instance, [batch], json.loads(config)))
    print(json.dumps(dataclasses.asdict(outcome)))
    """
)


def _wait_for(condition: Callable[[], bool], what: str, children: list[subprocess.Popen[str]]) -> None:
    deadline = time.monotonic() + 180
    while not condition():
        for child in children:
            if child.poll() is not None:
                pytest.fail(f"a run process exited while waiting for {what}: {child.communicate()[1][-3000:]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _step_window(instance: DagsterInstance, run_id: str, step: str) -> tuple[float, float]:
    events = [e for e in instance.all_logs(run_id) if e.step_key == step and e.dagster_event is not None]
    start = next(e.timestamp for e in events if e.dagster_event.event_type == DagsterEventType.STEP_START)
    end = next(e.timestamp for e in events if e.dagster_event.event_type == DagsterEventType.STEP_SUCCESS)
    return start, end


def _blocked(instance: DagsterInstance, run_id: str) -> list[EventLogEntry]:
    engine_events = instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT)
    return [e for e in engine_events if e.step_key == "retrained_model" and e.user_message == BLOCKED]


@contextlib.contextmanager
def two_runs(home: Path, batch: str, config: dict, tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    """Two run processes of ``batch``, released together once both are loaded; killed if the test fails first."""
    go = tmp_path / "go"
    ready = [tmp_path / f"ready-{i}" for i in range(2)]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(home), batch, json.dumps(config), str(flag), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for flag in ready
    ]
    try:
        _wait_for(lambda: all(flag.exists() for flag in ready), "both runs to load", children)
        go.touch()
        yield children
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.communicate()


def test_two_runs_of_one_batch_train_one_at_a_time_and_keep_their_own_versions(workspace, tmp_path: Path) -> None:
    home = tmp_path / "dagster-home"
    home.mkdir()
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    config = workspace.config()
    first, _, drifted = workspace.batches
    with DagsterInstance.from_config(str(home)) as instance:
        assert next(process_batches(defs, instance, [first], config)).deployed_version == "v0001"
        instance.add_dynamic_partitions(batch_partitions.name, [drifted])
        storage = instance.event_log_storage
        storage.initialize_concurrency_limit_to_default(POOL)
        assert storage.get_concurrency_info(POOL).slot_count == 1  # dagster.yaml's default_limit
        assert storage.claim_concurrency_slot(POOL, *HOLDER).is_claimed

        with two_runs(home, drifted, config, tmp_path) as children:

            def runs() -> list[str]:
                return [r.run_id for r in instance.get_runs() if r.tags.get("dagster/partition") == drifted]

            _wait_for(
                lambda: len(runs()) == 2 and all(_blocked(instance, r) for r in runs()), "both to block", children
            )
            storage.free_concurrency_slot_for_step(*HOLDER)
            outputs = [child.communicate(timeout=300) for child in children]
        assert [child.returncode for child in children] == [0, 0], [err[-3000:] for _, err in outputs]
        outcomes = [BatchOutcome(**json.loads(out.strip().splitlines()[-1])) for out, _ in outputs]

        # A promotion may lose to the other run's (StoreConflictError, never retried); nothing else may fail.
        lost = [o for o in outcomes if not o.success]
        assert all(o.error.startswith("deployed_model: green_pipeline.errors.StoreConflictError: ") for o in lost), lost
        assert len(lost) < 2
        first_training, second_training = sorted(_step_window(instance, o.run_id, "retrained_model") for o in outcomes)
        assert first_training[1] <= second_training[0]  # one training at a time
        assert storage.get_concurrency_info(POOL).active_slot_count == 0  # every slot given back
        pinned = {o.run_id: _metadata(instance, o.run_id, "drift_report")["champion_version"] for o in outcomes}
        candidates = {o.run_id: _metadata(instance, o.run_id, "retrained_model")["artifact_url"] for o in outcomes}
        promotions = sorted(
            (_step_window(instance, o.run_id, "deployed_model")[1], o.deployed_version)
            for o in outcomes
            if o.success and _metadata(instance, o.run_id, "deployed_model")["promoted"]
        )

    store = ModelStore(workspace.store_url)
    assert store.versions() == ["v0001", "v0002", "v0003"]
    # Each run published its own version (whatever became of its promotion), which verifies.
    publisher = {store.load(v).metadata["lineage"]["dagster_run_id"]: v for v in ("v0002", "v0003")}
    assert set(publisher) == {o.run_id for o in outcomes}
    assert all(o.deployed_version == publisher[o.run_id] for o in outcomes if o.success)
    # Each run pinned the champion its drift report judged against (v0001: both reports were made before either
    # run trained) and read only its own step outputs (one file per run), so both trained the same challenger from
    # the same rows. What each then published may differ: compression keeps the candidate that predicts cheapest as
    # timed on this machine, and a busy machine times differently.
    for outcome in outcomes:
        lineage = store.load(publisher[outcome.run_id]).metadata["lineage"]
        assert lineage["parent_version"] == pinned[outcome.run_id] == "v0001"
    first_candidate, second_candidate = (json.loads(Path(url).read_text()) for url in candidates.values())
    assert len(set(candidates.values())) == 2
    assert first_candidate["value"]["model_text"] == second_candidate["value"]["model_text"]
    # The last promotion serves, complete and verified.
    assert store.load().version == store.current_version() == (promotions[-1][1] if promotions else "v0001")


def _metadata(instance: DagsterInstance, run_id: str, step: str) -> dict[str, object]:
    (event,) = [e for e in run_materializations(instance, run_id) if e.step_key == step]
    return {key: value.value for key, value in event.asset_materialization.metadata.items()}
