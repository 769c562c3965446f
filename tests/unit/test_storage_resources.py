"""The CLI's commands get the object storage and model store a run gets from the same config sections."""

from __future__ import annotations

import pytest

from green_pipeline.app.runner import storage_resources
from green_pipeline.errors import InvalidConfigError


def test_env_values_and_the_model_store_section_are_read_as_in_a_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREEN_PIPELINE_TEST_SECRET", "from-the-environment")
    settings = {
        "object_storage": {
            "endpoint_url": "http://127.0.0.1:9000",
            "access_key_id": "key-id",
            "secret_access_key": {"env": "GREEN_PIPELINE_TEST_SECRET"},
        },
        "model_store": {"store_url": "s3://bucket/models", "model_name": "fraud"},
        "policy": {"always_retrain": True},  # other sections are the runs' business
    }
    storage, model_store = storage_resources(settings, "cfg.yaml")
    store = model_store.store()
    assert store.root == "s3://bucket/models/models/fraud"
    assert store.storage_options == {
        "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"},
        "key": "key-id",
        "secret": "from-the-environment",
    }
    assert storage.options_for("s3://bucket/incoming") == store.storage_options
    assert storage.options_for("/local/folder") == {}


def test_no_settings_leave_s3fs_its_credential_chain() -> None:
    storage, model_store = storage_resources({}, "the command line")
    assert storage.options_for("s3://bucket/x") == {"client_kwargs": {}}
    assert model_store.store().root == ".green_pipeline/store/models/churn"


@pytest.mark.parametrize(
    ("section", "complaint"),
    [
        ({"object_storage": {"endpoint": "http://x"}}, r'cfg\.yaml: .*unexpected config entry "endpoint"'),
        ({"object_storage": {"secret_access_key": {"env": "GREEN_PIPELINE_UNSET_X"}}}, "GREEN_PIPELINE_UNSET_X"),
        ({"model_store": {"store_url": 3}}, r"cfg\.yaml: .*model_store:config:store_url"),
    ],
)
def test_bad_settings_are_one_line_naming_the_file_and_field(section: dict, complaint: str) -> None:
    with pytest.raises(InvalidConfigError, match=complaint) as caught:
        storage_resources(section, "cfg.yaml")
    assert "\n" not in str(caught.value) and "Stack Trace" not in str(caught.value)
