"""moto's S3 app on loopback for the tests of this folder, which stop it mid-run and race writers against it."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import s3fs
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

from green_pipeline.app.runner import run_config

REGION = "eu-west-1"
#: moto accepts any credentials unless its authentication is switched on (tests/integration/s3/test_secrets.py).
KEY, SECRET = "testing-key", "testing-secret"


class S3Server:
    """moto's S3 server app bound to 127.0.0.1, answering one request at a time, that can be stopped and restarted.

    Real S3 applies a conditional PUT's check and write atomically; moto checks and then writes without a lock,
    so on its threaded server (``ThreadedMotoServer``) two racing requests could both pass. One request at a time
    restores the guarantee the store relies on. moto keeps its data in this process, so a restart on the same
    port finds every bucket and object again, like a real server coming back.
    """

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port: int = probe.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        app = DomainDispatcherApplication(create_backend_app)
        self._server = make_server("127.0.0.1", self.port, app, threaded=False, request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto-s3", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close the port, so clients get "connection refused" as from a crashed server."""
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        self._server = None

    def options(self, key: str = KEY, secret: str = SECRET) -> dict[str, Any]:
        """s3fs storage options, as ``ObjectStorage.options_for`` builds them."""
        return {"key": key, "secret": secret, "client_kwargs": {"endpoint_url": self.endpoint, "region_name": REGION}}

    def fs(self, key: str = KEY, secret: str = SECRET) -> s3fs.S3FileSystem:
        return s3fs.S3FileSystem(**self.options(key, secret), skip_instance_cache=True)

    def new_bucket(self, key: str = KEY, secret: str = SECRET) -> str:
        """A bucket of its own: moto's data is shared by every server in the process."""
        name = f"gp-{uuid.uuid4().hex[:12]}"
        self.fs(key, secret).mkdir(name)
        return name

    def pipeline_config(
        self, bucket: str, storage: dict[str, Any] | None = None, policy: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Run config reading batches from ``s3://bucket/incoming`` and keeping models and artefacts there."""
        settings: dict[str, dict[str, Any]] = {
            "object_storage": storage
            or {
                "endpoint_url": self.endpoint,
                "region_name": REGION,
                "access_key_id": KEY,
                "secret_access_key": SECRET,
            },
            "dataset": {"data_url": f"s3://{bucket}/incoming"},
            "model_store": {"store_url": f"s3://{bucket}/models"},
            "artifacts": {"base_url": f"s3://{bucket}/artifacts"},
            "policy": policy or {},
        }
        return run_config(settings)


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    server = S3Server()
    server.start()
    try:
        yield server
    finally:
        if server.running:
            server.stop()
