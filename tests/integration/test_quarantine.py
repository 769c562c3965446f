"""Only invalid input is quarantined: any other failed run still stops `process_batches`.

The quarantine itself (an invalid middle batch set aside, the later one run, exit code 3 and the listing) is
tested through the CLI, in test_cli.py::test_run_quarantines_an_invalid_batch_runs_the_later_ones_and_exits_3.
"""

from pathlib import Path

import pytest
from dagster import DagsterInstance, Failure

from green_pipeline.app.definitions import defs
from green_pipeline.app.runner import process_batches
from green_pipeline.errors import InvalidBatchError, InvalidConfigError, StoreIntegrityError
from green_pipeline.orchestration.io_manager import ERROR_CLASS, QUARANTINED, refusals_not_retried

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("error", "quarantined"),
    [(InvalidBatchError, True), (InvalidConfigError, False), (StoreIntegrityError, False)],
)
def test_a_refusal_says_its_class_and_whether_it_quarantines_in_the_failure_metadata(
    error: type[Exception], quarantined: bool
) -> None:
    with pytest.raises(Failure) as caught, refusals_not_retried():
        raise error("batch.csv: refused")
    assert caught.value.metadata[ERROR_CLASS].value == error.__name__
    assert caught.value.metadata[QUARANTINED].value is quarantined
    assert caught.value.description == f"{error.__name__}: batch.csv: refused" and not caught.value.allow_retries


def test_a_failure_other_than_invalid_input_stops_the_later_batches(workspace, instance: DagsterInstance) -> None:
    [first] = process_batches(defs, instance, workspace.batches[:1], workspace.config())
    assert first.success and first.deployed_version == "v0001" and first.promoted is True
    later = workspace.batches[1:]

    # A refused setting fails the run before any step: no Failure metadata, so not quarantined.
    [refused] = process_batches(defs, instance, later, workspace.config(drift_share_threshold=1.5))
    assert not refused.success and not refused.quarantined and "drift_share_threshold" in (refused.error or "")

    # A tampered serving model is a GreenPipelineError in a step, but not the batch's fault.
    model_file = Path(workspace.store_url) / "models/churn/v0001/model.txt"
    model_file.write_text(model_file.read_text().replace("tree", "TREE", 1))
    [tampered] = process_batches(defs, instance, later, workspace.config())
    assert not tampered.success and not tampered.quarantined
    assert "StoreIntegrityError" in (tampered.error or "") and "sha256" in (tampered.error or "")
