"""The ``green-pipeline`` command: generate data, run the pipeline, compare with scheduled retraining, read the ledger.

Runs go to the Dagster instance in ``$DAGSTER_HOME`` (default ``.dagster/`` here), so ``dagster dev``
shows the same runs and energy metadata.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError
from dagster import DagsterInstance

from green_pipeline.app.report import (
    BATCH_KPI_HEADER,
    MODELS_HEADER,
    OUTCOME_HEADER,
    batch_kpi_row,
    ledger_table,
    models_row,
    outcome_row,
    rejection_lines,
    scheduled_comparison,
    scheduled_row,
    scheduled_totals_row,
    totals_row,
    version_summary,
    wasted_line,
)
from green_pipeline.app.runner import (
    BatchOutcome,
    load_config_file,
    process_batches,
    processed_batches,
    run_config,
    storage_resources,
    times_quarantined,
)
from green_pipeline.assets.jobs import drift_report_html_job, energy_ledger_job
from green_pipeline.assets.monitoring import drift_report_html
from green_pipeline.assets.partitions import batch_partitions
from green_pipeline.carbon.regions import PROVIDERS, advice_table, measured_energy_kwh, region_advice
from green_pipeline.data.batches import list_batches
from green_pipeline.demo.stream import LABEL, StreamSpec, write_stream
from green_pipeline.energy.measurement import EnergySettings, MeasuredSum
from green_pipeline.errors import EventLogError, GreenPipelineError, StorageAccessError
from green_pipeline.orchestration.ledger import (
    all_entries,
    batch_kpis,
    entries_of,
    materializations,
    totals,
    wasted_retrains,
)
from green_pipeline.orchestration.metadata import LedgerRecord
from green_pipeline.orchestration.resources import DEFAULT_ROOT, ObjectStorage
from green_pipeline.store.model_store import ModelStore
from green_pipeline.training.scheduled import scheduled_retraining

INSTANCE_CONFIG = "dagster.yaml"
#: The full event log stays in the instance (and the UI); the terminal shows the tables and warnings only.
QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
#: `run`'s exit code when every batch ran or was quarantined as invalid input, and at least one was quarantined.
QUARANTINED_EXIT = 3


def dagster_home() -> Path:
    """``$DAGSTER_HOME`` (default ``./.dagster``), created with this repository's dagster.yaml if it has none."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path.cwd() / ".dagster"))).resolve()
    home.mkdir(parents=True, exist_ok=True)
    if Path(INSTANCE_CONFIG).is_file() and not (home / INSTANCE_CONFIG).exists():
        shutil.copyfile(INSTANCE_CONFIG, home / INSTANCE_CONFIG)
    return home


def persistent_instance() -> DagsterInstance:
    dagster_home()
    return DagsterInstance.get()


def _print_outcomes(instance: DagsterInstance, batches: list[str], config: dict) -> list[BatchOutcome]:
    from green_pipeline.app.definitions import defs

    print(OUTCOME_HEADER)
    done = []
    for outcome in process_batches(defs, instance, batches, {**config, **QUIET_CONSOLE}):
        print(outcome_row(outcome), flush=True)
        done.append(outcome)
    return done


def cmd_generate(args: argparse.Namespace) -> int:
    spec = _stream_spec(args)
    names = write_stream(spec, args.out)
    print(f"wrote {len(names)} batches of {spec.rows_per_day} rows to {args.out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    spec = _stream_spec(args)
    root = Path(DEFAULT_ROOT)
    for part in ("data", "store", "artifacts"):
        shutil.rmtree(root / part, ignore_errors=True)
    names = write_stream(spec, str(root / "data"))
    grid = EnergySettings(country_iso_code="FRA")  # the demo's grid, said below; unset: the world average
    energy = {"energy": {"country_iso_code": grid.country_iso_code}}
    print(
        f"Generated {len(names)} daily batches of {spec.rows_per_day} rows in {root / 'data'} "
        f"(covariate shift from {_event_days(spec.covariate_shift_days)}, "
        f"concept drift from {_event_days(spec.concept_drift_days)}).\n"
        "CO2 is priced at France's grid (energy.country_iso_code: FRA).\n"
    )
    instance = persistent_instance()
    print("Drift-gated pipeline (Dagster instance in $DAGSTER_HOME):")
    gated = _print_outcomes(instance, names, run_config(energy))
    print(totals_row("drift-gated", gated), "\n")
    if len(gated) != len(names):
        return 1

    print(
        "Scheduled retraining, as a scheduled job runs it (plain LightGBM, 100 trees, retrained on the previous "
        "batch every batch, no drift step; the same files and energy meter):"
    )
    print(OUTCOME_HEADER)
    frames = ((name, pd.read_parquet(root / "data" / name)) for name in names)
    scheduled = []
    for batch in scheduled_retraining(frames, LABEL, energy=grid):
        print(scheduled_row(batch), flush=True)
        scheduled.append(batch)
    print(scheduled_totals_row("scheduled retraining", scheduled), "\n")
    print(scheduled_comparison(gated, scheduled), "\n")
    _refresh_ledger(instance, run_config(energy))
    print(ledger_table("Energy ledger of this instance, per asset:", totals(all_entries(instance), by="asset")))
    return 0


def _event_days(days: Sequence[int]) -> str:
    return "no day" if not days else f"day{'s' if len(days) > 1 else ''} {', '.join(map(str, days))}"


def _refresh_ledger(instance: DagsterInstance, config: dict | None = None) -> None:
    """Materialize the energy_ledger asset so the UI shows the chart and totals of what just ran."""
    from green_pipeline.app.definitions import defs

    result = defs.resolve_job_def(energy_ledger_job.name).execute_in_process(
        instance=instance, run_config={**(config or {}), **QUIET_CONSOLE}
    )
    ledger = LedgerRecord.from_metadata(result.asset_materializations_for_node("energy_ledger")[0].metadata)
    print(
        f"Skipped {ledger.skipped_retrains} retrains, avoiding about {ledger.avoided_energy_kwh * 1e3:.4f} Wh "
        f"(each counted at the cost of the last measured retrain); {ledger.wasted_retrains} retrains trained but "
        f"not promoted (wasted), {ledger.wasted_retrain_energy_kwh * 1e3:.4f} Wh; ledger asset refreshed.\n"
    )


def cmd_run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    settings.setdefault("dataset", {}).update({"data_url": args.data, "label": args.label})
    flags = {"store_url": args.store, "model_name": args.model_name, "transfer_from": args.transfer_from}
    settings.setdefault("model_store", {}).update({k: v for k, v in flags.items() if v is not None})
    if args.artifacts:
        settings.setdefault("artifacts", {})["base_url"] = args.artifacts
    storage, _ = storage_resources(settings, args.config or "the command line")
    with _reaching(args.data, storage, args.config):
        batches = list_batches(args.data, storage.options_for(args.data))
    instance = persistent_instance()
    done = processed_batches(instance)
    pending = [name for name in batches if name not in done]
    if not pending:
        print(f"every batch under {args.data} is already processed")
        return 0
    config = run_config(settings)
    outcomes = _print_outcomes(instance, pending, config)
    print(totals_row("total", outcomes))
    _refresh_ledger(instance, config)
    quarantined = [o for o in outcomes if o.quarantined]
    if quarantined:
        print(_quarantine_listing(instance, quarantined))
    if any(not o.success and not o.quarantined for o in outcomes):
        return 1
    return QUARANTINED_EXIT if quarantined else 0


def _quarantine_listing(instance: DagsterInstance, quarantined: Sequence[BatchOutcome]) -> str:
    """Every quarantined batch with its error, and how often it was refused: the next `run` tries it again."""
    lines = [
        f"Quarantined {len(quarantined)} batch(es) as invalid input; the later batches ran against the serving model. "
        "Fix or remove each file: the next `green-pipeline run` tries it again."
    ]
    for outcome in quarantined:
        times = times_quarantined(instance, outcome.batch)
        again = f", quarantined {times} times so far" if times > 1 else ""
        lines.append(f"  {outcome.batch} (run {outcome.run_id[:8]}{again}): {outcome.error}")
    return "\n".join(lines)


def cmd_ledger(args: argparse.Namespace) -> int:
    events = list(materializations(persistent_instance()))  # one read of the event log for every table
    entries = entries_of(events)
    by_asset, by_run, by_batch = totals(entries, by="asset"), totals(entries, by="run_id"), batch_kpis(events)
    wasted = wasted_retrains(events)
    if args.json:
        print(
            json.dumps(
                {
                    "by_asset": [dataclasses.asdict(t) for t in by_asset],
                    "by_run": [dataclasses.asdict(t) for t in by_run],
                    "by_batch": [dataclasses.asdict(b) for b in by_batch],
                    "wasted_retrains": {**dataclasses.asdict(wasted), "count": wasted.count, "share": wasted.share},
                },
                indent=2,
            )
        )
        return 0
    print(ledger_table("Per asset:", by_asset))
    print()
    print(ledger_table("Per run:", by_run))
    print()
    print("Per batch (its latest run): quality next to energy")
    print(BATCH_KPI_HEADER)
    for row in by_batch:
        print(batch_kpi_row(row))
    print()
    print(wasted_line(wasted))
    rejected = rejection_lines(by_batch)
    if rejected:
        print("Rejected, and why:", *rejected, sep="\n")
    return 0


def _settings(args: argparse.Namespace) -> dict[str, dict]:
    return load_config_file(args.config) if args.config else {}


def _store(args: argparse.Namespace) -> tuple[ModelStore, ObjectStorage]:
    """The model store the runs of ``--config`` use, ``--store`` and ``--model-name`` overriding its section."""
    settings = _settings(args)
    flags = {"store_url": args.store, "model_name": args.model_name}
    settings.setdefault("model_store", {}).update({k: v for k, v in flags.items() if v is not None})
    storage, model_store = storage_resources(settings, args.config or "the command line")
    return model_store.store(), storage


@contextlib.contextmanager
def _reaching(url: str, storage: ObjectStorage, config: str | None) -> Iterator[None]:
    """A failure to reach ``url`` as one line naming it, the endpoint and the settings that decide both."""
    try:
        yield
    except (BotoCoreError, ClientError, OSError) as exc:
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        if not url.startswith(("s3://", "s3a://")):
            raise StorageAccessError(f"{url}: {reason}") from exc
        endpoint = storage.endpoint_url or "the AWS_ENDPOINT_URL variable, else AWS"
        section = f"the object_storage section of {config}" if config else "a --config file's object_storage section"
        raise StorageAccessError(
            f"{url}: cannot be accessed through {endpoint} ({reason}). Set endpoint_url, access_key_id and "
            f"secret_access_key in {section}, or AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY."
        ) from exc


def cmd_models(args: argparse.Namespace) -> int:
    store, storage = _store(args)
    with _reaching(store.url, storage, args.config):
        serving = store.current_version()
        rows = [version_summary(store.metadata(v), serving) for v in store.versions()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no versions in {store.root}")
        return 0
    print(MODELS_HEADER)
    for row in rows:
        print(models_row(row))
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    store, storage = _store(args)
    with _reaching(store.url, storage, args.config):
        previous = store.current_version()
        store.promote(args.version)
    print(f"{store.root}: current {previous or 'none'} -> {args.version} (checksums verified)")
    return 0


def cmd_regions(args: argparse.Namespace) -> int:
    entries = all_entries(persistent_instance())
    energy = measured_energy_kwh(e.energy_kwh for e in entries)
    emitted = measured_energy_kwh(e.emissions_kg_co2eq for e in entries)
    unmeasured = MeasuredSum.of(e.energy_kwh for e in entries).unmeasured
    advice = region_advice(energy, args.provider, args.top)
    if args.json:
        document = {
            "provider": args.provider or "all",
            "measured_energy_kwh": energy,
            "measured_emissions_kg_co2eq": emitted,
            "unmeasured_steps": unmeasured,
            "regions": [dataclasses.asdict(a) for a in advice],
        }
        print(json.dumps(document, indent=2))
        return 0
    if energy is None:
        print(f"No measured energy in this instance's ledger ({unmeasured} unmeasured steps): intensities only.")
    else:
        print(
            f"This instance's ledger: {energy * 1e3:.4g} Wh measured ({unmeasured} unmeasured steps left out), "
            f"{(emitted or 0.0) * 1e3:.4g} g CO2eq where it ran. In each region it would have emitted:"
        )
    print(advice_table(advice))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Render BATCH's HTML drift report through drift_report_html_job, so its energy is metered and logged."""
    from green_pipeline.app.definitions import defs

    settings = _settings(args)
    if args.store:
        settings.setdefault("model_store", {})["store_url"] = args.store
    if args.artifacts:
        settings.setdefault("artifacts", {})["base_url"] = args.artifacts
    instance = persistent_instance()
    if not instance.has_dynamic_partition(batch_partitions.name, args.batch):
        raise EventLogError(f"batch {args.batch!r} was never run on the instance in {dagster_home()}: run it first.")
    result = defs.resolve_job_def(drift_report_html_job.name).execute_in_process(
        run_config={**run_config(settings), **QUIET_CONSOLE},
        instance=instance,
        partition_key=args.batch,
        raise_on_error=False,
    )
    if not result.success:
        failures = [e.step_failure_data.error for e in result.get_step_failure_events() if e.step_failure_data.error]
        reason = (failures[0].cause or failures[0]).message.strip() if failures else "see the run in the Dagster UI"
        print(f"error: {args.batch}: {reason}", file=sys.stderr)
        return 1
    [rendered] = result.asset_materializations_for_node(drift_report_html.op.name)
    print(rendered.metadata["report_path"].value)
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    dagster_home()
    dagster = shutil.which("dagster") or str(Path(sys.executable).with_name("dagster"))
    os.execv(dagster, [dagster, "dev", "--host", args.host, "--port", str(args.port)])
    return 0  # unreachable: execv replaces the process


def _stream_spec(args: argparse.Namespace) -> StreamSpec:
    return StreamSpec(
        days=args.days,
        rows_per_day=args.rows_per_day,
        seed=args.seed,
        covariate_shift_days=tuple(args.covariate_shift_day),
        concept_drift_days=tuple(args.concept_drift_day),
        file_format=getattr(args, "format", "parquet"),
    )


def _add_stream_options(parser: argparse.ArgumentParser) -> None:
    defaults = StreamSpec()
    parser.add_argument("--days", type=int, default=defaults.days)
    parser.add_argument("--rows-per-day", type=int, default=defaults.rows_per_day)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    for option, days in (
        ("--covariate-shift-day", defaults.covariate_shift_days),
        ("--concept-drift-day", defaults.concept_drift_days),
    ):
        parser.add_argument(option, type=int, nargs="*", default=list(days), metavar="DAY", help="days; none: no event")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="green-pipeline", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    generate = commands.add_parser("generate", help="write the built-in stream of daily batch files")
    generate.add_argument("--out", default=f"{DEFAULT_ROOT}/data", help="folder or s3:// prefix")
    generate.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    _add_stream_options(generate)
    generate.set_defaults(handler=cmd_generate)
    demo = commands.add_parser("demo", help="generate, run every batch, compare with scheduled retraining")
    _add_stream_options(demo)
    demo.set_defaults(handler=cmd_demo)
    run = commands.add_parser("run", help="process every batch under --data not processed yet, in order")
    run.add_argument("--data", required=True, help="folder, file:// or s3:// URL holding batch files")
    run.add_argument("--store", required=True, help="model store URL")
    run.add_argument("--label", required=True, help="label column of the batches")
    run.add_argument("--artifacts", help="where step outputs and reports go (default .green_pipeline/artifacts)")
    run.add_argument("--model-name", help="model name in the store (default: model_store.model_name of --config)")
    run.add_argument(
        "--transfer-from",
        metavar="NAME",
        help="another model in the store that the first model starts from, if that beats training from scratch "
        "(model_store.transfer_from)",
    )
    run.add_argument("--config", help="YAML/JSON file: sections dataset, model_store, artifacts, policy, energy")
    run.set_defaults(handler=cmd_run)
    ledger = commands.add_parser(
        "ledger", help="energy and CO2 per asset and per run, and per batch next to the AUC served and deployed"
    )
    ledger.add_argument("--json", action="store_true")
    ledger.set_defaults(handler=cmd_ledger)
    for name, help_text, handler in (
        ("models", "list the versions in the model store with metrics and energy", cmd_models),
        ("rollback", "make VERSION the serving version again (after verifying its checksums)", cmd_rollback),
    ):
        command = commands.add_parser(name, help=help_text)
        if name == "rollback":
            command.add_argument("version", help="a version name such as v0003")
        else:
            command.add_argument("--json", action="store_true")
        command.add_argument("--store", help="model store URL (default: model_store.store_url of --config)")
        command.add_argument("--model-name", help="model name (default: model_store.model_name of --config)")
        command.add_argument("--config", help="the runs' YAML/JSON file: its object_storage and model_store are used")
        command.set_defaults(handler=handler)
    regions = commands.add_parser("regions", help="cloud regions by carbon intensity, with the ledger's emissions")
    regions.add_argument("--provider", choices=PROVIDERS, help="one provider (default: all)")
    regions.add_argument("--top", type=int, help="show only the N cleanest regions")
    regions.add_argument("--json", action="store_true")
    regions.set_defaults(handler=cmd_regions)
    report = commands.add_parser("report", help="render the HTML drift report of BATCH, which its run skipped")
    report.add_argument("batch", help="a batch file name, as in the run's table")
    report.add_argument("--store", help="model store URL (default: model_store.store_url of --config)")
    report.add_argument("--artifacts", help="where reports go (default: artifacts.base_url of --config)")
    report.add_argument("--config", help="the runs' YAML/JSON file: its model_store, artifacts and policy are used")
    report.set_defaults(handler=cmd_report)
    ui = commands.add_parser("ui", help="start the Dagster UI on this instance")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(handler=cmd_ui)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except GreenPipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
