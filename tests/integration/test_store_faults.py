"""A process SIGKILLed while writing a model version or switching `current`: the store still serves the old one."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from green_pipeline.data.schema import DatasetSpec, infer_schema
from green_pipeline.data.validation import validate_batch
from green_pipeline.demo.stream import StreamSpec, generate_day
from green_pipeline.store.model_store import ModelStore
from green_pipeline.training.trainer import TrainingSettings, full_retrain, split_batch

pytestmark = pytest.mark.integration

#: Runs in a child process: publish (and promote) a second version, SIGKILLing itself at the chosen write.
CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import lightgbm as lgb
    import pandas as pd
    from green_pipeline.store import files
    from green_pipeline.store.model_store import ModelStore

    store_url, kill_at, model_file, reference_file = sys.argv[1:5]
    real_replace = os.replace

    def replace_then_maybe_die(src, dst):
        if dst.endswith(kill_at):
            os.kill(os.getpid(), signal.SIGKILL)  # the temporary file is written, the rename never happens
        real_replace(src, dst)

    os.replace = replace_then_maybe_die
    store = ModelStore(store_url)
    first = store.load()
    version = store.publish(open(model_file).read(), first.schema, pd.read_parquet(reference_file), {})
    store.promote(version)
    """
)


@pytest.fixture
def serving_store(tmp_path: Path) -> ModelStore:
    frame = generate_day(StreamSpec(rows_per_day=2000), 0)
    schema = infer_schema(frame, DatasetSpec("churned"), "day0")
    clean, _ = validate_batch(frame, schema, "day0")
    model = full_retrain(split_batch(clean, "churned", "day0", "day0"), schema, TrainingSettings(num_threads=1))
    store = ModelStore(str(tmp_path / "store"))
    store.promote(store.publish(model.booster.model_to_string(), schema, clean, {"metrics": {"test_auc": 0.8}}))
    (tmp_path / "model.txt").write_text(model.booster.model_to_string(num_iteration=5))
    clean.to_parquet(tmp_path / "reference.parquet")
    return store


@pytest.mark.parametrize("kill_at", ["v0002/model.txt", "v0002/manifest.json", "current.json"])
def test_sigkill_mid_write_leaves_the_previous_version_serving(serving_store: ModelStore, kill_at: str) -> None:
    root = Path(serving_store.url)
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            str(root),
            kill_at,
            str(root.parent / "model.txt"),
            str(root.parent / "reference.parquet"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -9, child.stderr  # really killed by SIGKILL, not a Python exception
    assert serving_store.current_version() == "v0001"
    assert serving_store.load().version == "v0001"  # checksums verified on load
    incomplete = kill_at != "current.json"
    assert serving_store.versions() == (["v0001"] if incomplete else ["v0001", "v0002"])
    if incomplete:  # the half-written version is never listed, loaded or promoted, and its number is not reused
        assert (
            serving_store.publish("tree\n", serving_store.load().schema, serving_store.load().reference, {}) == "v0003"
        )
