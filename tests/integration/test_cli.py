"""The green-pipeline command as a user runs it, against a persistent instance in $DAGSTER_HOME.

The first test runs the installed command in its own processes; the others call its ``main`` in this process (the
same argument parsing, instance and exit codes), which spares each command the ~5 s of importing the project.
"""

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from dagster import DagsterInstance

from green_pipeline.app.cli import main
from green_pipeline.data.schema import DatasetSpec, infer_schema
from green_pipeline.demo.stream import DOMAIN_LABEL, DomainPairSpec, generate_domain_batch
from green_pipeline.orchestration.metadata import RETRAINED_MODEL
from green_pipeline.store.model_store import ModelStore
from green_pipeline.training.trainer import TrainingSettings, full_retrain, split_batch

pytestmark = pytest.mark.integration
CLI = str(Path(sys.executable).with_name("green-pipeline"))
Cli = Callable[[list[str]], subprocess.CompletedProcess[str]]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DAGSTER_HOME": str(cwd / ".dagster")}
    return subprocess.run([CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    """``green-pipeline ARGS`` in this process, from ``tmp_path`` with its own $DAGSTER_HOME."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / ".dagster"))

    def run(args: list[str]) -> subprocess.CompletedProcess[str]:
        capsys.readouterr()
        code = main(args)
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    return run


def test_run_processes_new_batches_once_and_the_ledger_reads_them_back(tmp_path: Path) -> None:
    data = tmp_path / "incoming"
    generated = _run(["generate", "--out", str(data), "--days", "2", "--rows-per-day", "1500"], tmp_path)
    assert generated.returncode == 0, generated.stderr
    args = [
        "run",
        "--data",
        str(data),
        "--store",
        str(tmp_path / "store"),
        "--label",
        "churned",
        "--artifacts",
        str(tmp_path / "artifacts"),
    ]
    first = _run(args, tmp_path)
    assert first.returncode == 0, first.stderr
    assert "batch-2026-01-01.parquet" in first.stdout and "full_retrain" in first.stdout
    assert "skipped" in first.stdout and "total: 2 batches, 1 retrains" in first.stdout

    second = _run(args, tmp_path)
    assert second.returncode == 0 and "already processed" in second.stdout

    ledger = _run(["ledger", "--json"], tmp_path)
    report = json.loads(ledger.stdout)
    per_asset = {row["key"]: row for row in report["by_asset"]}
    assert per_asset["drift_report"]["materializations"] == 2
    assert per_asset["deployed_model"]["materializations"] == 1
    assert all(row["energy_kwh"] > 0 and row["unmeasured"] == 0 for row in per_asset.values())
    assert per_asset["energy_ledger"]["materializations"] == 1  # `run` refreshes the ledger at the end
    assert len(report["by_run"]) == 3


def test_run_quarantines_an_invalid_batch_runs_the_later_ones_and_exits_3(tmp_path: Path, cli: Cli) -> None:
    data = tmp_path / "incoming"
    assert cli(["generate", "--out", str(data), "--days", "3", "--rows-per-day", "1500"]).returncode == 0
    bad = data / "batch-2026-01-02.parquet"
    pd.read_parquet(bad).drop(columns=["region"]).to_parquet(bad, index=False)
    args = ["run", "--data", str(data), "--store", str(tmp_path / "store"), "--label", "churned"]
    args += ["--artifacts", str(tmp_path / "artifacts")]

    first = cli(args)
    assert first.returncode == 3, first.stderr
    table, listing = first.stdout.split("Quarantined 1 batch(es) as invalid input")
    [bad_row] = [line for line in table.splitlines() if line.startswith("batch-2026-01-02.parquet")]
    assert "QUARANTINED: validated_batch" in bad_row
    [later] = [line for line in table.splitlines() if line.startswith("batch-2026-01-03.parquet")]
    assert "FAILED" not in later and "skipped" in later and "v0001" in later  # judged against the unchanged model
    assert "total: 3 batches, 1 retrains" in table
    [listed] = [line.strip() for line in listing.splitlines() if "batch-2026-01-02.parquet (run " in line]
    assert listed.startswith("batch-2026-01-02.parquet (run ") and "validated_batch: " in listed
    assert "InvalidBatchError" in listed and f"{bad}: feature columns ['region'] are missing" in listed
    assert "times so far" not in listed

    again = cli(args)  # only the quarantined batch is pending: tried again, and said to be refused again
    assert again.returncode == 3, again.stderr
    assert "batch-2026-01-03.parquet" not in again.stdout
    assert "batch-2026-01-02.parquet (run " in again.stdout and "quarantined 2 times so far" in again.stdout


def test_run_rejects_an_unknown_config_section_by_name(tmp_path: Path, cli: Cli) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("polcy:\n  drift_share_threshold: 0.2\n")
    result = cli(
        [
            "run",
            "--data",
            str(tmp_path),
            "--store",
            str(tmp_path / "s"),
            "--label",
            "y",
            "--config",
            str(config),
        ],
    )
    assert result.returncode == 2
    assert "polcy" in result.stderr and str(config) in result.stderr


def test_models_lists_versions_and_rollback_refuses_a_tampered_version(tmp_path: Path, cli: Cli) -> None:
    data, store = tmp_path / "incoming", tmp_path / "store"
    assert (
        cli(
            ["generate", "--out", str(data), "--days", "3", "--rows-per-day", "3000", "--covariate-shift-day", "2"],
        ).returncode
        == 0
    )
    ran = cli(
        [
            "run",
            "--data",
            str(data),
            "--store",
            str(store),
            "--label",
            "churned",
            "--artifacts",
            str(tmp_path / "artifacts"),
        ],
    )
    assert ran.returncode == 0, ran.stderr

    # Day 2's warm start is surely better than v0001 on its 600 test rows (paired interval): promoted.
    listed = json.loads(cli(["models", "--json", "--store", str(store)]).stdout)
    assert [(v["version"], v["serving"], v["strategy"], v["decision"]) for v in listed] == [
        ("v0001", False, "full_retrain", "promoted"),
        ("v0002", True, "warm_start", "promoted"),
    ]
    assert all(v["energy_kwh"] > 0 and v["test_auc"] > 0.7 for v in listed)

    rolled = cli(["rollback", "v0001", "--store", str(store)])
    assert rolled.returncode == 0 and "v0002 -> v0001" in rolled.stdout
    assert json.loads((store / "models/churn/current.json").read_text())["version"] == "v0001"

    model_file = store / "models/churn/v0002/model.txt"
    model_file.write_text(model_file.read_text().replace("tree", "TREE", 1))
    refused = cli(["rollback", "v0002", "--store", str(store)])
    assert refused.returncode == 2 and "sha256" in refused.stderr and "v0002/model.txt" in refused.stderr
    assert json.loads((store / "models/churn/current.json").read_text())["version"] == "v0001"
    assert not list(store.rglob("*.pkl")) and not list(store.rglob("*.pickle"))


def test_report_renders_the_html_a_skipped_batch_did_not_need(tmp_path: Path, cli: Cli) -> None:
    data, artifacts = tmp_path / "incoming", tmp_path / "artifacts"
    assert cli(["generate", "--out", str(data), "--days", "2", "--rows-per-day", "1500"]).returncode == 0
    locations = ["--store", str(tmp_path / "store"), "--artifacts", str(artifacts)]
    ran = cli(["run", "--data", str(data), "--label", "churned", *locations])
    assert ran.returncode == 0 and "skipped" in ran.stdout, ran.stderr
    skipped = "batch-2026-01-02.parquet"
    html = artifacts / "reports" / "drift_report" / f"{skipped}.html"
    assert not html.exists()  # a certain decision to keep serving: nobody reads its report

    report = cli(["report", skipped, *locations])

    assert report.returncode == 0, report.stderr
    assert report.stdout.strip() == str(html)
    assert "<html" in html.read_text(encoding="utf-8")[:2000].lower()
    unknown = cli(["report", "batch-2027-01-01.parquet", *locations])
    assert unknown.returncode == 2 and "batch-2027-01-01.parquet" in unknown.stderr


TRANSFER_PAIR = DomainPairSpec(source_rows=6000, target_rows=1500, relationship_shift=0.3)


def _segments(root: Path, drop: str | None = None) -> list[str]:
    """A store serving model ``segment-a`` (the source segment's) and a first batch of the new segment, ``drop``
    left out of it; the `run` arguments that train ``segment-b`` on that batch from ``segment-a``."""
    rows = generate_domain_batch(TRANSFER_PAIR, "source", TRANSFER_PAIR.source_rows)
    schema = infer_schema(rows, DatasetSpec(label=DOMAIN_LABEL), "source")
    trained = full_retrain(split_batch(rows, DOMAIN_LABEL, "source", "source"), schema, TrainingSettings())
    source = ModelStore(str(root / "store"), "segment-a")
    source.promote(source.publish(trained.booster.model_to_string(), schema, rows, {}))
    target = generate_domain_batch(TRANSFER_PAIR, "target", TRANSFER_PAIR.target_rows)
    (root / "segment-b").mkdir()
    target.drop(columns=[drop] if drop else []).to_parquet(root / "segment-b" / "batch-2026-03-01.parquet")
    return [
        *("run", "--data", str(root / "segment-b"), "--store", str(root / "store"), "--label", DOMAIN_LABEL),
        *("--artifacts", str(root / "artifacts"), "--model-name", "segment-b", "--transfer-from", "segment-a"),
    ]


def test_run_transfers_a_new_model_name_from_another_and_models_shows_the_source(tmp_path: Path, cli: Cli) -> None:
    result = cli(_segments(tmp_path))

    assert result.returncode == 0, result.stdout + result.stderr
    [row] = [line for line in result.stdout.splitlines() if line.startswith("batch-2026-03-01.parquet")]
    training = DagsterInstance.get().get_latest_materialization_event(RETRAINED_MODEL)
    assert training is not None and training.asset_materialization is not None
    metadata = {key: value.value for key, value in training.asset_materialization.metadata.items()}
    # The transfer is compared with the scratch study's default trial (its settings), not with its best of several.
    scratch = metadata["tuning_best_valid_auc"] - metadata["tuning_auc_gain_vs_default"]
    chosen = "transfer" if metadata["attempt_transfer_valid_auc"] > scratch else "full_retrain"  # a tie keeps scratch
    assert metadata["strategy"] == chosen and chosen in row and "segment-a v0001" in str(metadata["reason"])

    listed = cli(["models", "--json", "--store", str(tmp_path / "store"), "--model-name", "segment-b"])
    [version] = json.loads(listed.stdout)
    assert version["strategy"] == chosen and version["parent_version"] is None
    assert version["transfer_source"] == {"model": "segment-a", "version": "v0001"}
    shown = cli(["models", "--store", str(tmp_path / "store"), "--model-name", "segment-b"]).stdout
    assert "from segment-a v0001" in shown
    source = ModelStore(str(tmp_path / "store"), "segment-a")
    assert source.versions() == ["v0001"] and source.current_version() == "v0001"


def test_a_new_segment_missing_a_source_feature_fails_naming_it_and_leaves_the_stores_unchanged(
    tmp_path: Path, cli: Cli
) -> None:
    args = _segments(tmp_path, drop="signal_03")
    before = {path: path.read_bytes() for path in (tmp_path / "store").rglob("*") if path.is_file()}

    result = cli(args)

    assert result.returncode == 1
    [row] = [line for line in result.stdout.splitlines() if line.startswith("batch-2026-03-01.parquet")]
    assert "FAILED" in row and "['signal_03']" in row and "model_store.transfer_from segment-a v0001" in row
    after = {path: path.read_bytes() for path in (tmp_path / "store").rglob("*") if path.is_file()}
    assert after == before and ModelStore(str(tmp_path / "store"), "segment-b").versions() == []
