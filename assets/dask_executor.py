"""dagster-dask's executor, orchestrated like Dagster's own executors so that this project's jobs run right on Dask.

dagster-dask 0.29 submits every step at once, chained by Dask futures. Three things then go wrong here: a step
downstream of an asset that yielded nothing (``retrained_model`` on a quiet batch) runs and fails instead of being
skipped; tasks are keyed ``job.step``, so a run (or a retry) can be handed the result an earlier attempt left on
the scheduler (dagster issue 21418); and Dask walks tuple arguments, which fails on the concurrency-pool record a
run of our jobs carries. Here Dagster's ``ActiveExecution`` decides which steps are ready, skipped, abandoned or
retried and claims pool slots, as in the multiprocess and Kubernetes executors; each ready step is one Dask task
keyed by run and attempt, whose arguments travel as one object.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import dask.distributed
from dagster import (
    DagsterEvent,
    DagsterInstance,
    DagsterInvariantViolationError,
    Field,
    Permissive,
    Selector,
    StringSource,
    executor,
    multiple_process_executor_requirements,
)
from dagster._core.definitions.reconstruct import ReconstructableJob
from dagster._core.errors import raise_execution_interrupts
from dagster._core.execution.api import create_execution_plan, execute_plan
from dagster._core.execution.context.system import PlanOrchestrationContext
from dagster._core.execution.plan.active import ActiveExecution
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.execution.plan.state import KnownExecutionState
from dagster._core.execution.retries import RetryMode
from dagster._core.executor.init import InitExecutorContext
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.dagster_run import DagsterRun
from dagster_dask.executor import DaskExecutor, get_dask_resource_requirements

#: Dask's own variable for the scheduler address: the cluster of runs whose config names none.
DASK_ADDRESS_ENV = "DASK_SCHEDULER_ADDRESS"
#: How long to wait before asking again when no step is running (a pool slot or a retry delay is awaited).
IDLE_POLL_S = 0.25


@dataclass(frozen=True)
class StepEvents:
    """A step's events as one opaque result (Dask's size estimate would walk them and warn on Dagster records)."""

    step_key: str
    events: Sequence[DagsterEvent]


@dataclass(frozen=True)
class StepTask:
    """One step, executed on a worker: it rebuilds the job, opens the instance and runs a one-step plan."""

    recon_job: ReconstructableJob
    dagster_run: DagsterRun
    run_config: Mapping[str, Any]
    step_key: str
    instance_ref: InstanceRef
    known_state: KnownExecutionState

    def __call__(self) -> StepEvents:
        with DagsterInstance.from_ref(self.instance_ref) as instance:
            job = self.recon_job.get_subset(op_selection=self.dagster_run.resolved_op_selection)
            plan = create_execution_plan(
                job, run_config=self.run_config, step_keys_to_execute=[self.step_key], known_state=self.known_state
            )
            # DEFERRED: a retry a step asks for goes back to the orchestrating ActiveExecution, which reschedules it.
            events = execute_plan(
                plan, job, instance, self.dagster_run, run_config=self.run_config, retry_mode=RetryMode.DEFERRED
            )
        return StepEvents(self.step_key, events)


@contextmanager
def local_cluster(**settings: Any) -> Iterator[dask.distributed.LocalCluster]:
    """A ``LocalCluster`` whose workers start with SIGTERM's default action.

    Dagster maps SIGTERM to SIGINT's handler, so once it has run in a process where SIGINT is ignored (a background
    job of a shell script), SIGTERM is ignored too and workers spawned afterwards inherit that: Dagster's log capture
    then waits 30 s for each step's ``tail`` process to exit, twice.
    """
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL) if on_main_thread else None
    try:
        cluster = dask.distributed.LocalCluster(**settings)
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, previous)
    with cluster:
        yield cluster


class RunScopedDaskExecutor(DaskExecutor):
    """Steps go to the cluster as they become ready; their events come back to this run's orchestration."""

    @property
    def retries(self) -> RetryMode:
        return RetryMode.ENABLED

    def execute(self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan) -> Iterator[DagsterEvent]:
        if not plan_context.instance.is_persistent:
            raise DagsterInvariantViolationError(
                "The dask engine needs a persistent Dagster instance that its workers can open (DAGSTER_HOME)."
            )
        with ExitStack() as stack:
            cluster: Any = self.cluster_configuration.get("address")
            if self.cluster_type == "local":
                cluster = stack.enter_context(local_cluster(**self.build_dict(plan_context.job_name)))
            client = stack.enter_context(dask.distributed.Client(cluster))
            slots = stack.enter_context(InstanceConcurrencyContext(plan_context.instance, plan_context.dagster_run))
            active = stack.enter_context(
                ActiveExecution(execution_plan, retry_mode=self.retries, instance_concurrency_context=slots)
            )
            stack.enter_context(raise_execution_interrupts())
            running = dask.distributed.as_completed(with_results=True)
            while True:
                yield from active.plan_events_iterator(plan_context)  # skipped and abandoned steps
                yield from active.concurrency_event_iterator(plan_context)
                for step in active.get_steps_to_execute():
                    known = active.get_known_state()
                    task = self._task(plan_context, step.key, known)
                    # A retry is a new task: the same key would be answered with the failed attempt's result.
                    attempt = known.previous_retry_attempts.get(step.key, 0)
                    key = f"{plan_context.job_name}.{step.key}.{plan_context.run_id}.{attempt}"
                    running.add(client.submit(task, key=key, resources=get_dask_resource_requirements(step.tags)))
                if active.is_complete:
                    return
                if running.is_empty():
                    time.sleep(IDLE_POLL_S)
                    continue
                _, result = next(running)
                yield from self._handled(active, plan_context, result)

    def _task(self, plan_context: PlanOrchestrationContext, step_key: str, known: KnownExecutionState) -> StepTask:
        return StepTask(
            recon_job=plan_context.reconstructable_job,
            dagster_run=plan_context.dagster_run,
            run_config=plan_context.run_config,
            step_key=step_key,
            instance_ref=plan_context.instance.get_ref(),
            known_state=known,
        )

    @staticmethod
    def _handled(
        active: ActiveExecution, plan_context: PlanOrchestrationContext, result: StepEvents
    ) -> Iterator[DagsterEvent]:
        retried = False
        for event in result.events:
            yield event
            if event.step_key is not None and not event.is_step_skipped:
                active.handle_event(event)
            retried = retried or event.is_step_up_for_retry
        if not retried:
            active.verify_complete(plan_context, result.step_key)


@executor(
    name="dask",
    requirements=multiple_process_executor_requirements(),
    config_schema={
        "cluster": Field(
            Selector(
                {
                    "existing": Field({"address": StringSource}, description="The scheduler of a running cluster."),
                    "local": Field(Permissive(), description="distributed.LocalCluster arguments, e.g. n_workers."),
                }
            ),
            default_value={"existing": {"address": {"env": DASK_ADDRESS_ENV}}},
            description=f"Default: the running scheduler at ${DASK_ADDRESS_ENV}, so runs that sensors and schedules "
            "launch without run config find it.",
        )
    },
)
def dask_executor(init_context: InitExecutorContext) -> RunScopedDaskExecutor:
    """Each step is a task on a Dask cluster: a running one (its workers keep imports and codecarbon warm between
    runs) or a local one started for the run. For SLURM, YARN or Kubernetes, start the cluster with their Dask
    tooling and name its scheduler under ``existing``."""
    ((kind, settings),) = init_context.executor_config["cluster"].items()
    return RunScopedDaskExecutor(kind, settings)
