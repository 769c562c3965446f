"""The green-pipeline command as a user runs it, against a persistent instance in $DAGSTER_HOME."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
CLI = str(Path(sys.executable).with_name("green-pipeline"))


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DAGSTER_HOME": str(cwd / ".dagster")}
    return subprocess.run([CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


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
    assert len(report["by_run"]) == 2


def test_run_rejects_an_unknown_config_section_by_name(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("polcy:\n  drift_share_threshold: 0.2\n")
    result = _run(
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
        tmp_path,
    )
    assert result.returncode == 2
    assert "polcy" in result.stderr and str(config) in result.stderr
