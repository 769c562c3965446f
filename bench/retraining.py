"""Retraining strategies side by side, in one process, against a full retrain on the same rows.

For each drift event of the built-in stream (covariate shift, concept drift) and of a second, differently
shaped dataset (a source/target domain pair), refit, warm start and a full retrain on the same window (new
rows plus the policy's sample of reference rows) run ``--repeats`` times, interleaved; the least-disturbed
run's codecarbon energy, CPU and wall seconds (the minimum over repeats, as ``timeit`` advises: other
processes on a shared machine only ever add time) are reported as ratios to the full retrain, with the AUC
on the next batch. Transfer learning is compared with training from scratch on the same 10% of a target batch.
Then the demo stream goes through the real Dagster job twice: drift-gated, and always-retrain.

    python bench/retraining.py [--json] [--repeats 5] [--rows-per-day 20000]

With ``--json`` the last line printed is one JSON object holding every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: LightGBM's OpenMP threads otherwise spin while they wait, which counts as CPU time, i.e. energy (see bench/arms.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pandas as pd
from dagster import DagsterInstance

from green_pipeline.app.definitions import defs
from green_pipeline.app.report import mean_served_auc
from green_pipeline.app.runner import process_batches, run_config
from green_pipeline.data.schema import DatasetSpec, infer_schema
from green_pipeline.demo.stream import (
    DOMAIN_LABEL,
    LABEL,
    DomainPairSpec,
    StreamSpec,
    generate_day,
    generate_domain_batch,
    write_stream,
)
from green_pipeline.drift.assessment import MonitoringThresholds
from green_pipeline.drift.detection import detect_drift
from green_pipeline.energy.measurement import EnergySettings, complete_sum, measure_energy
from green_pipeline.orchestration.ledger import run_entries
from green_pipeline.serving.scoring import ChampionScores, score_through_cache
from green_pipeline.store.model_store import DeployedModel
from green_pipeline.training.evaluation import auc
from green_pipeline.training.policy import (
    QualityDrop,
    RetrainPlan,
    Strategy,
    choose_final,
    meets_bar,
    plan_retraining,
    quality_bar,
)
from green_pipeline.training.retraining import Attempt, run_attempt
from green_pipeline.training.trainer import BatchSplit, TrainingSettings, full_retrain, reference_sample, split_batch

ENERGY = EnergySettings()
#: The pipeline's defaults (``RetrainPolicy`` takes them from these), so the bench measures what the pipeline runs.
SETTINGS = TrainingSettings()
THRESHOLDS = MonitoringThresholds()
RULES = THRESHOLDS.rules
COMPARED = (Strategy.REFIT, Strategy.WARM_START, Strategy.FULL)
TRANSFER_SHARE, TRANSFER_SAMPLES = 0.1, 3
TRAINING_STEPS = ("retrained_model",)
RETRAIN_TO_DEPLOY_STEPS = ("retrained_model", "model_evaluation", "compressed_model", "deployed_model")


@dataclass(frozen=True)
class Event:
    """A drift event: the model serving before it, the new batch, the next batch, and the policy's plan."""

    dataset: str
    name: str
    champion: DeployedModel
    new_batch: pd.DataFrame
    split: BatchSplit
    next_batch: pd.DataFrame
    extra_rows: pd.DataFrame
    plan: RetrainPlan
    #: The champion's prediction cache after the drift step scored ``new_batch``, as the pipeline leaves it.
    champion_cache: pd.DataFrame


@dataclass(frozen=True)
class Measured:
    """The minimum over the repeats of one strategy on one event; the models and AUCs are deterministic."""

    strategy: Strategy
    #: None when a repeat could not be measured: unmeasured, never 0.
    energy_kwh: float | None
    cpu_s: float
    wall_s: float
    valid_auc: float
    next_auc: float
    new_trees: int
    train_rows: int


def least(values: list[float | None]) -> float | None:
    """The least-disturbed repeat's figure, or None if any repeat went unmeasured."""
    return None if None in values else min(v for v in values if v is not None)


def complete_mean(values: list[float | None]) -> float | None:
    """The mean, or None if any value went unmeasured."""
    return None if None in values else statistics.mean(v for v in values if v is not None)


def shown(value: float | None, spec: str) -> str:
    """``value`` formatted with ``spec``, or "unmeasured"."""
    return "unmeasured" if value is None else format(value, spec)


def wh(kwh: float | None) -> float | None:
    return None if kwh is None else kwh * 1e3


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, None when either is unmeasured (or the denominator is 0)."""
    return numerator / denominator if numerator is not None and denominator else None


def make_event(
    dataset: str, name: str, label: str, previous: pd.DataFrame, new: pd.DataFrame, following: pd.DataFrame
) -> Event:
    """Train the champion on ``previous`` as the pipeline would, and plan the retrain on ``new`` with the policy."""
    schema = infer_schema(previous, DatasetSpec(label=label), name)
    old = split_batch(previous, schema.label, f"{name}:old", name)
    trained = full_retrain(old, schema, SETTINGS)
    deployed_auc = auc(trained.booster, old.test, schema)
    champion = DeployedModel(
        version=f"{name}:champion",
        model_text=trained.booster.model_to_string(),
        booster=trained.booster,
        schema=schema,
        reference=previous,
        metadata={"metrics": {"test_auc": deployed_auc}},
    )
    drift = detect_drift(new, previous, schema, THRESHOLDS.drift_share)
    quality = QualityDrop(deployed_auc, auc(champion.booster, new, schema), THRESHOLDS.quality_drop_auc)
    plan = plan_retraining(drift, quality, len(new), True, False, RULES)
    split = split_batch(new, schema.label, f"{name}:new", name)
    extra = reference_sample(previous, round(plan.reference_fraction * len(split.train)), name)
    cache = score_through_cache(champion, new, None, ENERGY, SETTINGS.num_threads).result.cache
    return Event(dataset, name, champion, new, split, following, extra, plan, cache)


def attempt(event: Event, strategy: Strategy) -> Attempt:
    """One strategy through the pipeline's own code path (``retraining.run_attempt``), energy measured; a warm start
    boosts from the champion's scores the drift step cached, as in the pipeline."""
    schema, scores = event.champion.schema, ChampionScores(event.champion, event.champion_cache)
    return run_attempt(event.split, schema, strategy, SETTINGS, ENERGY, scores, event.extra_rows, None)


def measure(event: Event, repeats: int) -> dict[Strategy, Measured]:
    """Every strategy ``repeats`` times, interleaved so that load from other processes hits them alike."""
    rounds = [{strategy: attempt(event, strategy) for strategy in COMPARED} for _ in range(repeats)]
    measured = {}
    for strategy in COMPARED:
        runs = [r[strategy] for r in rounds]
        result = runs[0].result
        measured[strategy] = Measured(
            strategy=strategy,
            energy_kwh=least([a.energy.energy_kwh for a in runs]),
            cpu_s=min(a.cpu_s for a in runs),
            wall_s=min(a.energy.duration_s for a in runs),
            valid_auc=result.valid_auc,
            next_auc=auc(result.booster, event.next_batch, event.champion.schema),
            new_trees=result.new_trees,
            train_rows=result.train_rows,
        )
    return measured


def compare(event: Event, repeats: int) -> dict[str, Any]:
    """Refit and warm start as ratios to the full retrain on the same window, and what the policy would pick."""
    runs = measure(event, repeats)
    full = runs[Strategy.FULL]
    row: dict[str, Any] = {
        "dataset": event.dataset,
        "event": event.name,
        "plan": event.plan.reason,
        "reference_rows": len(event.extra_rows),
        "champion_next_auc": auc(event.champion.booster, event.next_batch, event.champion.schema),
        "full_next_auc": full.next_auc,
        "full_energy_kwh": full.energy_kwh,
        "full_cpu_s": full.cpu_s,
        "full_wall_s": full.wall_s,
        "full_trees": full.new_trees,
        "full_train_rows": full.train_rows,
    }
    for strategy in (Strategy.REFIT, Strategy.WARM_START):
        run, key = runs[strategy], strategy.value
        row |= {
            f"{key}_energy_ratio": ratio(run.energy_kwh, full.energy_kwh),
            f"{key}_cpu_ratio": run.cpu_s / full.cpu_s,
            f"{key}_wall_ratio": run.wall_s / full.wall_s,
            f"{key}_auc_delta": run.next_auc - full.next_auc,
            f"{key}_new_trees": run.new_trees,
        }
    return row | policy_choice(event, runs)


def policy_choice(event: Event, runs: dict[Strategy, Measured]) -> dict[str, Any]:
    """What the escalation would try and spend on this event, replayed from the measured runs."""
    champion_valid = auc(event.champion.booster, event.split.valid, event.champion.schema)
    bar = quality_bar(champion_valid, RULES)
    tried: list[Measured] = []
    for strategy in event.plan.ladder:
        tried.append(runs[strategy])
        if meets_bar(runs[strategy].valid_auc, bar):
            break
    index, _ = choose_final([(r.strategy, r.valid_auc) for r in tried], bar)
    full = runs[Strategy.FULL]
    return {
        "policy_tried": [r.strategy.value for r in tried],
        "policy_energy_ratio": ratio(complete_sum(r.energy_kwh for r in tried), full.energy_kwh),
        "policy_auc_delta": tried[index].next_auc - full.next_auc,
    }


def transfer_vs_scratch(event: Event) -> dict[str, Any]:
    """Fine-tune the champion (a model of the source domain) vs train from scratch, on the same 10% of the batch."""
    deltas, ratios, transfer_aucs, scratch_aucs = [], [], [], []
    schema = event.champion.schema
    for sample in range(TRANSFER_SAMPLES):
        small = event.new_batch.sample(frac=TRANSFER_SHARE, random_state=sample)
        split = split_batch(small, schema.label, f"{event.name}:10%:{sample}", event.name)
        source = ChampionScores(event.champion, None)
        tuned = run_attempt(split, schema, Strategy.TRANSFER, SETTINGS, ENERGY, source, None, None)
        scratch = run_attempt(split, schema, Strategy.FULL, SETTINGS, ENERGY, None, None, None)
        transfer_aucs.append(auc(tuned.result.booster, event.next_batch, schema))
        scratch_aucs.append(auc(scratch.result.booster, event.next_batch, schema))
        deltas.append(transfer_aucs[-1] - scratch_aucs[-1])
        ratios.append(ratio(tuned.energy.energy_kwh, scratch.energy.energy_kwh))
    return {
        "dataset": event.dataset,
        "event": event.name,
        "target_rows": len(event.new_batch) // round(1 / TRANSFER_SHARE),
        "transfer_next_auc": statistics.mean(transfer_aucs),
        "scratch_next_auc": statistics.mean(scratch_aucs),
        "auc_delta_vs_scratch_same_data": statistics.mean(deltas),
        "auc_deltas": deltas,
        "energy_ratio_vs_scratch": None if None in ratios else statistics.median(r for r in ratios if r is not None),
    }


def stream_events(spec: StreamSpec) -> list[Event]:
    """The built-in stream's events, covariate shifts first; the champion is the model of the regime before each."""
    events = [
        *(("covariate shift", day) for day in spec.covariate_shift_days),
        *(("concept drift", day) for day in spec.concept_drift_days),
    ]
    return [
        make_event(
            "stream",
            f"{kind} (day {day})",
            LABEL,
            generate_day(spec, day - 1),
            generate_day(spec, day),
            generate_day(spec, day + 1),
        )
        for kind, day in events
    ]


def domain_event(spec: DomainPairSpec) -> Event:
    """The domain pair's event: a source-domain model meets the target domain's batches."""
    source = generate_domain_batch(spec, "source", spec.source_rows)
    target = generate_domain_batch(spec, "target", spec.target_rows, part=0)
    following = generate_domain_batch(spec, "target", spec.target_rows, part=1)
    return make_event("domain pair", "source -> target", DOMAIN_LABEL, source, target, following)


def pipeline_variant(names: list[str], root: str, always_retrain: bool) -> dict[str, Any]:
    """The stream through the real Dagster job, as ``green-pipeline demo`` runs it, on an ephemeral instance."""
    variant = "always" if always_retrain else "gated"
    config = run_config(
        {
            "dataset": {"data_url": f"{root}/data"},
            "model_store": {"store_url": f"{root}/{variant}/store"},
            "artifacts": {"base_url": f"{root}/{variant}/artifacts"},
            "policy": {"always_retrain": always_retrain},
        }
    )
    started = time.perf_counter()
    with DagsterInstance.ephemeral() as instance:
        outcomes = list(process_batches(defs, instance, names, config))
        entries = [entry for outcome in outcomes for entry in run_entries(instance, outcome.run_id)]
    if not all(outcome.success for outcome in outcomes) or len(outcomes) != len(names):
        failed = next(o for o in outcomes if not o.success)
        raise SystemExit(f"{variant}: the pipeline failed on {failed.batch}: {failed.error}")
    return {
        "energy_kwh": sum(outcome.energy_kwh for outcome in outcomes),
        "training_energy_kwh": complete_sum(e.energy_kwh for e in entries if e.asset in TRAINING_STEPS),
        "retrain_to_deploy_energy_kwh": complete_sum(
            e.energy_kwh for e in entries if e.asset in RETRAIN_TO_DEPLOY_STEPS
        ),
        "drift_report_energy_kwh": complete_sum(e.energy_kwh for e in entries if e.asset == "drift_report"),
        "unmeasured_steps": sum(outcome.unmeasured_steps for outcome in outcomes),
        "mean_served_auc": mean_served_auc(outcomes),
        "actions": [outcome.strategy if outcome.retrained else "skipped" for outcome in outcomes],
        "wall_s": time.perf_counter() - started,
    }


def gated_vs_always(spec: StreamSpec) -> dict[str, Any]:
    """Both variants over the demo stream; ratios for the whole pipeline and for the training steps only."""
    previous = os.getcwd()
    with tempfile.TemporaryDirectory() as root:
        # The artifact IO manager keeps its default relative URL whatever run config says: keep it in here.
        os.chdir(root)
        try:
            names = write_stream(spec, f"{root}/data")
            gated = pipeline_variant(names, root, always_retrain=False)
            always = pipeline_variant(names, root, always_retrain=True)
        finally:
            os.chdir(previous)
    between = lambda key: ratio(gated[key], always[key])  # noqa: E731
    return {
        "gated": gated,
        "always": always,
        "energy_ratio": between("energy_kwh"),
        "training_energy_ratio": between("training_energy_kwh"),
        "retrain_to_deploy_energy_ratio": between("retrain_to_deploy_energy_kwh"),
        "drift_report_share_of_gated_energy": ratio(gated["drift_report_energy_kwh"], gated["energy_kwh"]),
        "auc_delta": gated["mean_served_auc"] - always["mean_served_auc"],
    }


def summary(rows: list[dict[str, Any]], transfers: list[dict[str, Any]], pipeline: dict[str, Any]) -> dict[str, Any]:
    """The headline figures (means over events) and each target, met or not."""
    mean = lambda key: complete_mean([row[key] for row in rows])  # noqa: E731
    figures = {
        f"{s}_{m}": mean(f"{s}_{m}")
        for s in ("warm_start", "refit")
        for m in ("energy_ratio", "cpu_ratio", "wall_ratio", "auc_delta")
    }
    figures |= {
        "policy_energy_ratio": mean("policy_energy_ratio"),
        "policy_auc_delta": mean("policy_auc_delta"),
        "transfer_auc_delta_vs_scratch_same_data": transfers[0]["auc_delta_vs_scratch_same_data"],
        "transfer_stream_auc_delta_vs_scratch_same_data": transfers[1]["auc_delta_vs_scratch_same_data"],
        "gated_vs_always_energy_ratio": pipeline["energy_ratio"],
        "gated_vs_always_training_energy_ratio": pipeline["training_energy_ratio"],
        "gated_vs_always_retrain_to_deploy_energy_ratio": pipeline["retrain_to_deploy_energy_ratio"],
        "gated_vs_always_auc_delta": pipeline["auc_delta"],
    }
    # None where a figure went unmeasured: a target is neither met nor missed on no figure.
    met = lambda key, test: None if figures[key] is None else test(figures[key])  # noqa: E731
    figures["targets_met"] = {
        "warm_start_energy_le_0.25": met("warm_start_energy_ratio", lambda v: v <= 0.25),
        "warm_start_auc_within_0.005": met("warm_start_auc_delta", lambda v: v >= -0.005),
        "refit_energy_le_0.10": met("refit_energy_ratio", lambda v: v <= 0.10),
        "transfer_beats_scratch": met("transfer_auc_delta_vs_scratch_same_data", lambda v: v > 0),
        "gated_energy_le_0.20": met("gated_vs_always_energy_ratio", lambda v: v <= 0.20),
        "gated_training_energy_le_0.20": met("gated_vs_always_training_energy_ratio", lambda v: v <= 0.20),
        "gated_auc_within_0.005": met("gated_vs_always_auc_delta", lambda v: abs(v) <= 0.005),
    }
    return figures


def print_report(rows: list[dict[str, Any]], transfers: list[dict[str, Any]], pipeline: dict[str, Any]) -> None:
    print(f"{'event':<34} {'strategy':<11} {'energy':>7} {'cpu':>7} {'wall':>7} {'AUC next':>9} {'new trees':>9}")
    for row in rows:
        label = f"{row['dataset']}: {row['event']}"
        print(
            f"{label:<34} {'full':<11} {'1.00':>7} {'1.00':>7} {'1.00':>7} "
            f"{row['full_next_auc']:>9.4f} {row['full_trees']:>9}"
        )
        for key in ("warm_start", "refit"):
            print(
                f"{'':<34} {key:<11} {shown(row[f'{key}_energy_ratio'], '>7.3f')} {row[f'{key}_cpu_ratio']:>7.3f} "
                f"{row[f'{key}_wall_ratio']:>7.3f} {row[f'{key}_auc_delta']:>+9.4f} {row[f'{key}_new_trees']:>9}"
            )
        print(
            f"{'':<34} policy: {' -> '.join(row['policy_tried'])}, energy {shown(row['policy_energy_ratio'], '.3f')}, "
            f"AUC {row['policy_auc_delta']:+.4f}  ({row['plan']})"
        )
    for t in transfers:
        print(
            f"transfer, {t['dataset']} {t['event']}, {t['target_rows']} target rows: AUC {t['transfer_next_auc']:.4f} "
            f"vs scratch {t['scratch_next_auc']:.4f} ({t['auc_delta_vs_scratch_same_data']:+.4f}), "
            f"energy x{shown(t['energy_ratio_vs_scratch'], '.2f')}"
        )
    for name in ("gated", "always"):
        v = pipeline[name]
        print(
            f"pipeline {name:<6}: {v['energy_kwh'] * 1e3:.3f} Wh "
            f"(training {shown(wh(v['training_energy_kwh']), '.3f')} Wh, "
            f"drift reports {shown(wh(v['drift_report_energy_kwh']), '.3f')} Wh), "
            f"mean served AUC {v['mean_served_auc']:.4f}, "
            f"{v['wall_s']:.0f} s; {', '.join(v['actions'])}"
        )
    print(
        f"gated / always: energy {shown(pipeline['energy_ratio'], '.3f')} "
        f"(training only {shown(pipeline['training_energy_ratio'], '.3f')}, "
        f"retrain-to-deploy {shown(pipeline['retrain_to_deploy_energy_ratio'], '.3f')}), "
        f"AUC delta {pipeline['auc_delta']:+.4f}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print every figure as one JSON object, last")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each strategy per event (minimum kept)")
    parser.add_argument("--rows-per-day", type=int, default=StreamSpec().rows_per_day)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with measure_energy(ENERGY):
        pass  # the first measurement in a process loads the machine's power model: keep it out of the figures
    stream = StreamSpec(rows_per_day=args.rows_per_day)
    events = [*stream_events(stream), domain_event(DomainPairSpec(target_rows=args.rows_per_day))]
    rows = [compare(event, args.repeats) for event in events]
    transfers = [transfer_vs_scratch(events[2]), transfer_vs_scratch(events[1])]
    pipeline = gated_vs_always(stream)
    print_report(rows, transfers, pipeline)
    figures = summary(rows, transfers, pipeline)
    print(f"total {time.perf_counter() - started:.0f} s")
    if args.json:
        extra = {"events": rows, "transfer": transfers, "pipeline": pipeline, "repeats": args.repeats}
        print(json.dumps(figures | extra | {"seconds": time.perf_counter() - started}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
