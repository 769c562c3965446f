"""Each setting has one default, written in the core's settings dataclass.

A Dagster resource or run config cannot nest a dataclass, so it mirrors its fields: every mirrored field must
default to the dataclass's value, the default resource must build the default dataclass, and a value set in run
config must reach it. The fields are read with ``dataclasses.fields``, so a new one is covered without a new test.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import Config, ConfigurableResource

from green_pipeline.assets.compression import CompressionConfig
from green_pipeline.carbon.deferral import DeferralSettings
from green_pipeline.compression.search import CompressionSettings
from green_pipeline.data.schema import DatasetSpec
from green_pipeline.demo.stream import LABEL
from green_pipeline.distributed.cluster import ClusterSettings
from green_pipeline.drift.assessment import MonitoringThresholds
from green_pipeline.drift.sampling import DriftSettings
from green_pipeline.energy.budget import BudgetSettings
from green_pipeline.energy.measurement import EnergySettings
from green_pipeline.orchestration.resources import (
    ArtifactStorage,
    CarbonAwareScheduling,
    CheckThresholds,
    DaskResource,
    DatasetResource,
    EnergyResource,
    MlflowTracking,
    ModelStoreResource,
    ObjectStorage,
    RetrainPolicy,
)
from green_pipeline.reporting.mlflow_logging import MlflowSettings
from green_pipeline.training.policy import StrategyRules
from green_pipeline.training.trainer import TrainingSettings
from green_pipeline.training.tuning import TuningSettings

TRACKING_URI = "file:///tmp/mlruns"
CONFIGURATION = Path(__file__).resolve().parents[2] / "docs" / "CONFIGURATION.md"
DOCUMENTED = {
    "dataset": DatasetResource,
    "model_store": ModelStoreResource,
    "artifacts": ArtifactStorage,
    "policy": RetrainPolicy,
    "energy": EnergyResource,
    "object_storage": ObjectStorage,
    "check_thresholds": CheckThresholds,
    "mlflow_tracking": MlflowTracking,
    "dask": DaskResource,
}


@dataclass(frozen=True)
class Mirror:
    """Dagster classes whose fields mirror one core dataclass, and how they build it."""

    sources: tuple[type[ConfigurableResource] | type[Config], ...]
    #: Builds the dataclass from one instance of each source, in order.
    build: Callable[..., object]
    default: Any
    #: Core field -> Dagster field, where the names differ.
    renamed: Mapping[str, str] = field(default_factory=dict)
    #: Fields the sources need that no default gives (a dependency, what turns the feature on).
    required: Mapping[str, object] = field(default_factory=dict)

    def instances(self, **fields: object) -> list[Any]:
        """One instance of each source, with ``fields`` (Dagster names) set where the source has them."""
        given = {**self.required, **fields}
        return [source(**{k: v for k, v in given.items() if k in source.model_fields}) for source in self.sources]

    def shared(self) -> Iterator[tuple[str, str]]:
        """(core field, Dagster field) of every dataclass field a source sets under its own or its renamed name."""
        for core in dataclasses.fields(self.default):
            name = self.renamed.get(core.name, core.name)
            if any(name in source.model_fields for source in self.sources):
                yield core.name, name


MIRRORS = {
    "policy.thresholds": Mirror(
        (RetrainPolicy,),
        RetrainPolicy.thresholds,
        MonitoringThresholds(),
        {"drift_share": "drift_share_threshold", "quality_drop_auc": "quality_drop_threshold_auc"},
    ),
    "policy.strategy_rules": Mirror((RetrainPolicy,), RetrainPolicy.strategy_rules, StrategyRules()),
    "policy.training_settings": Mirror((RetrainPolicy,), RetrainPolicy.training_settings, TrainingSettings()),
    "policy.tuning_settings": Mirror(
        (RetrainPolicy,),
        RetrainPolicy.tuning_settings,
        TuningSettings(),
        {f.name: f"tuning_{f.name}" for f in dataclasses.fields(TuningSettings) if f.name != "retune_every_trainings"},
    ),
    "policy.drift_settings": Mirror(
        (RetrainPolicy,),
        RetrainPolicy.drift_settings,
        DriftSettings(),
        {
            "sample_rows": "drift_sample_rows",
            "seed": "drift_sample_seed",
            "confidence": "drift_confidence",
            "report_columns": "drift_report_columns",
        },
    ),
    "compressed_model config + policy": Mirror(
        (CompressionConfig, RetrainPolicy),
        CompressionConfig.to_settings,
        CompressionSettings(),
        {"auc_budget": "compression_auc_tolerance"},
    ),
    "energy": Mirror((EnergyResource,), EnergyResource.to_settings, EnergySettings()),
    "carbon_aware": Mirror((CarbonAwareScheduling,), CarbonAwareScheduling.to_settings, DeferralSettings()),
    "check_thresholds": Mirror((CheckThresholds,), CheckThresholds.to_settings, BudgetSettings()),
    "dask": Mirror((DaskResource,), DaskResource.to_settings, ClusterSettings()),
    "dataset": Mirror(
        (DatasetResource,), DatasetResource.to_settings, DatasetSpec(label=LABEL), required={"storage": ObjectStorage()}
    ),
    "mlflow_tracking": Mirror(
        (MlflowTracking,),
        MlflowTracking.to_settings,
        MlflowSettings(TRACKING_URI),
        required={"tracking_uri": TRACKING_URI},
    ),
}
mirrors = pytest.mark.parametrize("mirror", list(MIRRORS.values()), ids=list(MIRRORS))
#: check_thresholds nests its fields in two Budgets: only what it builds can be compared.
flat_mirrors = pytest.mark.parametrize(
    "mirror", [m for m in MIRRORS.values() if any(m.shared())], ids=[k for k, m in MIRRORS.items() if any(m.shared())]
)


@flat_mirrors
def test_every_mirrored_field_defaults_to_the_core_default(mirror: Mirror) -> None:
    renamed_to_nothing = [n for n in mirror.renamed.values() if not any(n in s.model_fields for s in mirror.sources)]
    assert not renamed_to_nothing, "the test's renamed fields must name real Dagster fields"
    differing = [
        f"{source.__name__}.{name} = {source.model_fields[name].default!r}, "
        f"{type(mirror.default).__name__}.{core} = {getattr(mirror.default, core)!r}"
        for core, name in mirror.shared()
        if name not in mirror.required
        for source in mirror.sources
        if name in source.model_fields and source.model_fields[name].default != getattr(mirror.default, core)
    ]
    assert not differing, "take these defaults from the core dataclass: " + "; ".join(differing)


@mirrors
def test_the_default_sources_build_the_default_settings(mirror: Mirror) -> None:
    assert mirror.build(*mirror.instances()) == mirror.default


def _another(value: object) -> object | None:
    """A valid value other than ``value`` for the settings here (every bound leaves room for 90 %), or None."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float) and value:
        return value * 0.9
    if isinstance(value, str):
        return f"{value}-2"
    return None


@flat_mirrors
def test_a_value_set_in_run_config_reaches_the_core(mirror: Mirror) -> None:
    checked = 0
    for core, name in mirror.shared():
        value = _another(getattr(mirror.default, core))
        if value is None:
            continue
        built = mirror.build(*mirror.instances(**{name: value}))
        assert getattr(built, core) == value, f"{name}={value!r} in run config does not reach {core}"
        checked += 1
    assert checked, "no mirrored field has a value this test can vary"


def test_the_defaults_documented_in_configuration_md_are_the_resources_defaults() -> None:
    block = re.search(r"^```yaml\n(.*?)^```", CONFIGURATION.read_text(encoding="utf-8"), re.S | re.M)
    assert block, f"{CONFIGURATION}: no yaml block of defaults"
    documented = yaml.safe_load(block.group(1))
    assert documented.keys() == DOCUMENTED.keys()
    differing = [
        f"{section}.{key}: documented {value!r}, default {DOCUMENTED[section].model_fields[key].default!r}"
        if key in DOCUMENTED[section].model_fields
        else f"{section}.{key}: no such field"
        for section, fields in documented.items()
        for key, value in fields.items()
        if key not in DOCUMENTED[section].model_fields or DOCUMENTED[section].model_fields[key].default != value
    ]
    assert not differing, "; ".join(differing)
    undocumented = set(RetrainPolicy.model_fields) - set(documented["policy"])
    assert not undocumented, f"document these policy settings in {CONFIGURATION.name}: {sorted(undocumented)}"
