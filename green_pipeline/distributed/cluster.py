"""Where the Dask work runs: a scheduler's address, or a local cluster of worker processes started for a run."""

from __future__ import annotations

from dataclasses import dataclass

import dask
from distributed import Client, LocalCluster

from green_pipeline.errors import InvalidConfigError

#: The local cluster's workers:
#: - keep their data in memory up to the limit, then pause, then restart: no spilling to disk. The training rows must
#:   be in memory for LightGBM anyway, and lightgbm.dask keeps its sockets among a worker's data, which cannot be
#:   pickled to disk (spilling them logs errors);
#: - import the modules their tasks run when they start, not in a step's first task (about 3 s of CPU per worker:
#:   LightGBM brings scikit-learn);
#: - read Parquet through the system allocator, which gives a part's memory back once it is processed (Arrow's own
#:   pool kept about 0.1 GiB per worker after the 125,000-row parts of bench/scale.py: a tenth of its limit).
#: A scheduler's cluster keeps its own settings.
LOCAL_WORKERS = {
    "distributed.worker.memory.target": False,
    "distributed.worker.memory.spill": False,
    "distributed.nanny.pre-spawn-environ.ARROW_DEFAULT_MEMORY_POOL": "system",
    "distributed.worker.preload": ["green_pipeline.distributed.partitions", "green_pipeline.distributed.metering"],
}


@dataclass(frozen=True)
class ClusterSettings:
    """A scheduler to connect to, or the local cluster to start (``DaskResource`` takes its defaults from here).

    The local default fits the project's 2-core machine: two single-threaded workers, each LightGBM worker then
    using one core, and a memory limit per worker past which Dask spills, pauses, then restarts it.
    """

    scheduler_address: str | None = None
    n_workers: int = 2
    threads_per_worker: int = 1
    memory_limit: str = "4GiB"

    def __post_init__(self) -> None:
        if self.n_workers < 1 or self.threads_per_worker < 1:
            raise InvalidConfigError(
                f"dask.n_workers={self.n_workers} and dask.threads_per_worker={self.threads_per_worker} must be >= 1."
            )


@dataclass
class Cluster:
    """A connected client, and the local cluster it owns (None when connected to a scheduler's address)."""

    client: Client
    local: LocalCluster | None

    def close(self) -> None:
        self.client.close()
        if self.local is not None:
            self.local.close()


def connect(settings: ClusterSettings) -> Cluster:
    """Connect to ``settings.scheduler_address``, or start a local cluster of worker processes (no dashboard)."""
    if settings.scheduler_address is not None:
        try:
            return Cluster(Client(settings.scheduler_address, set_as_default=False), None)
        except OSError as exc:
            raise InvalidConfigError(
                f"dask.scheduler_address={settings.scheduler_address!r}: no Dask scheduler answered ({exc}); "
                "start one, or leave the address unset for a local cluster."
            ) from exc
    with dask.config.set(LOCAL_WORKERS):
        local = LocalCluster(
            n_workers=settings.n_workers,
            threads_per_worker=settings.threads_per_worker,
            memory_limit=settings.memory_limit,
            processes=True,
            # Loopback only, every port chosen by the system: no clash with another cluster on this machine (a
            # taken dashboard port 8787 would be retried, leaking the socket of the failed attempt).
            host="127.0.0.1",
            dashboard_address=":0",
        )
    client = Client(local, set_as_default=False)
    # Every worker is up before any step meters them: one that joined later would go unmeasured.
    client.wait_for_workers(settings.n_workers)
    return Cluster(client, local)
