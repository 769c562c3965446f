"""The bad-input matrix through real Dagster runs: each bad batch fails naming the file and column (or is
recovered as documented) and the deployed model and the store are left exactly as they were."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from dagster import DagsterInstance, DagsterInvalidConfigError, instance_for_test

from green_pipeline.app.definitions import defs
from green_pipeline.app.runner import BatchOutcome, load_config_file, process_batches, run_config
from green_pipeline.demo.stream import LABEL, StreamSpec, generate_day, write_stream
from green_pipeline.errors import InvalidConfigError
from green_pipeline.store.model_store import ModelStore

pytestmark = pytest.mark.integration

#: Day 0 of tests/integration/conftest.py's SMALL_STREAM, and day 1 (no drift) as the base of every bad batch.
STREAM = StreamSpec(days=1, rows_per_day=3000, covariate_shift_days=(2,), concept_drift_days=())


@dataclass(frozen=True)
class Trained:
    root: Path
    instance: DagsterInstance

    @property
    def data_url(self) -> str:
        return str(self.root / "data")

    @property
    def store_url(self) -> str:
        return str(self.root / "store")

    def config(self, **policy: object) -> dict:
        settings = {
            "dataset": {"data_url": self.data_url},
            "model_store": {"store_url": self.store_url},
            "artifacts": {"base_url": str(self.root / "artifacts")},
            "policy": policy,
        }
        return run_config(settings)

    def store_state(self) -> tuple[str | None, list[str]]:
        store = ModelStore(self.store_url)
        return store.current_version(), store.versions()

    def run(self, name: str, config: dict | None = None) -> BatchOutcome:
        """Process one batch and assert that, whatever happened, the store is untouched."""
        before = self.store_state()
        outcome = next(process_batches(defs, self.instance, [name], config or self.config()))
        assert self.store_state() == before == ("v0001", ["v0001"])
        return outcome

    def write(self, case: str, frame: pd.DataFrame | None = None, payload: bytes | None = None, suffix="csv") -> str:
        name = f"batch-2026-01-05-{case}.{suffix}"
        path = self.root / "data" / name
        if payload is not None:
            path.write_bytes(payload)
        elif suffix == "csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
        return name


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    """Only the first batch, processed once: v0001 serves and every bad batch is judged against it."""
    root = tmp_path_factory.mktemp("bad-inputs")
    first = write_stream(STREAM, str(root / "data"))
    with instance_for_test() as instance:
        trained = Trained(root, instance)
        outcome = next(process_batches(defs, instance, first, trained.config()))
        assert outcome.success and outcome.deployed_version == "v0001"
        yield trained


def _day1() -> pd.DataFrame:
    return generate_day(STREAM, 1)


def _with(column: str, values: Callable[[pd.DataFrame], object]) -> Callable[[], pd.DataFrame]:
    return lambda: (lambda frame: frame.assign(**{column: values(frame)}))(_day1())


def _strings_in_age(frame: pd.DataFrame) -> pd.Series:
    return frame["age"].astype(object).where(frame.index % 100 != 7, "forty")


FAILING_FRAMES = {
    "header-only": (lambda: _day1().iloc[:0], "csv", r"the file has a header \(12 columns\) but no rows"),
    "zero-rows": (lambda: _day1().iloc[:0], "parquet", r"the file has a header \(12 columns\) but no rows"),
    "no-label": (lambda: _day1().drop(columns=[LABEL]), "csv", r"label column 'churned' is missing"),
    "no-feature": (lambda: _day1().drop(columns=["region"]), "parquet", r"feature columns \['region'\] are missing"),
    "text-in-number": (_with("age", _strings_in_age), "csv", r"numeric column 'age' .*\['forty'\] in 30 rows"),
    "all-nan": (_with("discount_pct", lambda f: np.nan), "parquet", r"column 'discount_pct' has no values"),
    "nan-labels": (_with(LABEL, lambda f: f[LABEL].where(f.index > 2)), "csv", r"'churned' has 3 missing values"),
    "label-2": (_with(LABEL, lambda f: f[LABEL].where(f.index != 5, 2)), "csv", r"must hold 0 or 1; found \['2'\]"),
    "label-yes": (_with(LABEL, lambda f: f[LABEL].astype(object).where(f.index != 5, "yes")), "csv", r"\['yes'\]"),
    "one-class": (_with(LABEL, lambda f: 0), "parquet", r"label column 'churned' holds only 0 in all 3000 rows"),
}


@pytest.mark.parametrize("case", sorted(FAILING_FRAMES))
def test_bad_batch_fails_naming_file_and_column_and_keeps_the_store(trained: Trained, case: str) -> None:
    make, suffix, pattern = FAILING_FRAMES[case]
    name = trained.write(case, make(), suffix=suffix)
    outcome = trained.run(name)
    assert not outcome.success and outcome.quarantined and outcome.deployed_version is None
    assert outcome.error is not None and name in outcome.error
    assert outcome.error.split(":")[0] in ("ingested_batch", "validated_batch")
    assert re.search(pattern, outcome.error), outcome.error


FAILING_BYTES = {
    "empty": (b"", "csv", r"the file is empty \(0 bytes\)"),
    "duplicate-header": (b"age,age,churned\n1,2,0\n3,4,1\n", "csv", r"duplicate column names \['age'\]"),
    "corrupted": (b"PAR1" + bytes(range(256)) * 4 + b"PAR1", "parquet", r"cannot be read as parquet"),
    "latin1": ("age,region,churned\n30,Zürich,0\n".encode("latin-1"), "csv", r"not UTF-8 text \(byte 0xfc"),
}


@pytest.mark.parametrize("case", sorted(FAILING_BYTES))
def test_unreadable_file_fails_at_ingestion_naming_it(trained: Trained, case: str) -> None:
    payload, suffix, pattern = FAILING_BYTES[case]
    name = trained.write(case, payload=payload, suffix=suffix)
    outcome = trained.run(name)
    assert not outcome.success and outcome.quarantined and outcome.error is not None
    assert outcome.error.startswith("ingested_batch: ") and name in outcome.error
    assert re.search(pattern, outcome.error), outcome.error


RECOVERED = {
    "extra-column": (lambda: _day1().assign(coupon_code="X1"), "columns ['coupon_code'] are not features"),
    "unseen-category": (
        _with("plan", lambda f: f["plan"].where(f.index % 10 != 0, "enterprise")),
        "column 'plan' has categories the model never saw, ['enterprise'] in 300 rows",
    ),
}


@pytest.mark.parametrize("case", sorted(RECOVERED))
def test_recoverable_batch_succeeds_with_a_warning_and_keeps_the_store(trained: Trained, case: str) -> None:
    make, warning = RECOVERED[case]
    name = trained.write(case, make(), suffix="parquet")
    outcome = trained.run(name)
    assert outcome.success and not outcome.quarantined and not outcome.retrained and outcome.serving_version == "v0001"
    logged = [e.user_message for e in trained.instance.all_logs(outcome.run_id) if e.level >= 30]
    assert any(warning in message for message in logged), logged


def test_semicolon_csv_is_read_correctly(trained: Trained) -> None:
    name = trained.write("semicolon", payload=_day1().to_csv(index=False, sep=";").encode())
    outcome = trained.run(name)
    assert outcome.success and outcome.drifted_share is not None and outcome.drifted_share < 0.3


@pytest.mark.parametrize("name", ["../x.csv", "a/b.csv", "%2E%2E/x.csv", "/etc/x.csv"])
def test_path_traversal_partition_is_refused_before_reading(trained: Trained, name: str) -> None:
    (trained.root / "x.csv").write_bytes(_day1().to_csv(index=False).encode())
    outcome = trained.run(name)
    assert not outcome.success and outcome.quarantined and outcome.error is not None
    assert outcome.error.startswith("ingested_batch: ") and f"batch name {name!r} is not a plain file name" in (
        outcome.error
    )


def test_unknown_config_section_and_key_are_named(trained: Trained, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"datasets": {"label": "churned"}}))
    with pytest.raises(InvalidConfigError, match=r"unknown section\(s\) \['datasets'\]"):
        load_config_file(str(path))
    settings = {"dataset": {"data_url": trained.data_url, "lable": "churned"}}
    path.write_text(yaml.safe_dump(settings))
    config = run_config(load_config_file(str(path)))
    with pytest.raises(
        DagsterInvalidConfigError, match=r'unexpected config entry "lable" at path root:resources:dataset'
    ):
        trained.run(STREAM.batch_name(0), config)


def test_out_of_range_threshold_fails_naming_the_field(trained: Trained) -> None:
    outcome = trained.run(trained.write("threshold", _day1()), trained.config(drift_share_threshold=1.5))
    assert not outcome.success and not outcome.quarantined and outcome.retrained is False
    assert outcome.error is not None
    assert "drift_share_threshold" in outcome.error and "input_value=1.5" in outcome.error


def test_batch_over_the_row_limit_is_refused_naming_the_limit(trained: Trained) -> None:
    config = trained.config()
    config["resources"]["dataset"]["config"]["max_rows"] = 1000
    outcome = trained.run(trained.write("huge", _day1()), config)
    assert not outcome.success and outcome.quarantined and outcome.error is not None
    assert "batch-2026-01-05-huge.csv" in outcome.error and "1000" in outcome.error
