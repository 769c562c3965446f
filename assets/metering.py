"""``metered_asset``: the only way this project declares an asset, so none can skip energy measurement.

It meters the body (``energy.measurement``: the step's share of the RAPL counters where they can be read, else
codecarbon's power model applied to its own CPU time and memory; ``energy_status`` says which) and merges the
figures into the metadata of every output, ``energy_kwh`` for machines next to ``energy_mwh`` for people.
A body may return a value or an ``Output``, or yield nothing to skip its materialization. Its ``key=`` and ``ins=``
come from the metadata contract (``orchestration.metadata``), like every reader of its materializations.
A ``GreenPipelineError`` (bad input, integrity, config) would fail the same way again, so it becomes a
``Failure`` that the jobs' ``RetryPolicy`` does not retry; anything else (e.g. S3 unreachable) is retried.
"""

import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any

from dagster import AssetsDefinition, Output, asset

from green_pipeline.energy.measurement import measure_energy
from green_pipeline.orchestration.io_manager import refusals_not_retried
from green_pipeline.orchestration.resources import EnergyResource

ENERGY_RESOURCE_PARAM = "energy"


def metered_asset(**asset_kwargs: Any) -> Callable[[Callable[..., Any]], AssetsDefinition]:
    def decorator(body: Callable[..., Any]) -> AssetsDefinition:
        signature = inspect.signature(body)
        body_wants_energy = ENERGY_RESOURCE_PARAM in signature.parameters

        @functools.wraps(body)
        def measured(*args: Any, **kwargs: Any) -> Iterator[Output[Any]]:
            energy: EnergyResource = (
                kwargs[ENERGY_RESOURCE_PARAM] if body_wants_energy else kwargs.pop(ENERGY_RESOURCE_PARAM)
            )
            with refusals_not_retried(), measure_energy(energy.to_settings()) as measurement:
                outputs = list(_outputs_of(body(*args, **kwargs)))
            assert measurement.report is not None
            energy_metadata = measurement.report.as_metadata()
            for output in outputs:
                yield output.with_metadata({**output.metadata, **energy_metadata})

        energy_param = inspect.Parameter(
            ENERGY_RESOURCE_PARAM, inspect.Parameter.KEYWORD_ONLY, annotation=EnergyResource
        )
        extra = [] if body_wants_energy else [energy_param]
        measured.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[*signature.parameters.values(), *extra],
            return_annotation=inspect.Signature.empty,
        )
        measured.__annotations__ = {}
        return asset(**asset_kwargs)(measured)

    return decorator


def _outputs_of(result: Any) -> Iterator[Output[Any]]:
    if inspect.isgenerator(result):
        for item in result:
            yield item if isinstance(item, Output) else Output(item)
    elif isinstance(result, Output):
        yield result
    else:
        yield Output(result)
