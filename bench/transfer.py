"""Transfer to a new segment against training from scratch, at 1%, 5% and 10% of the target segment's labels.

A model of the source segment (``generate_domain_pair``: 40,000 rows, the pipeline's early-stopped full retrain) is
published to a model store and loaded back as ``model_store.transfer_from`` loads it. For each share, ``--samples``
draws of the target segment's 20,000 rows go through the pipeline's own first training with a source
(``retraining.transfer_or_scratch``): the transfer, and the model from scratch the new name would get without a source
(tuned as the pipeline's first model is, ``TuningSettings`` defaults), each attempt's energy measured; the pipeline
keeps the transfer if its validation AUC beats the untuned scratch model's (the study's default trial). Every model,
the untuned one too, is judged on 20,000 held-out target rows (an independent draw). The transfer's gain is over the
tuned model: the one the new name gets without a source.
``--pairs`` adds domain pairs of other data seeds, to show how much the figures owe to one draw of the data.

    python bench/transfer.py [--json] [--samples 10] [--pairs 3]

With ``--json`` the last line printed is one JSON object holding every figure; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

#: LightGBM's OpenMP threads otherwise spin while they wait, which counts as CPU time, i.e. energy (see bench/arms.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pandas as pd

from green_pipeline.data.schema import DatasetSpec, infer_schema
from green_pipeline.demo.stream import DOMAIN_LABEL, DomainPairSpec, generate_domain_batch
from green_pipeline.energy.measurement import EnergySettings, measure_energy
from green_pipeline.store.model_store import ModelStore
from green_pipeline.training.evaluation import auc
from green_pipeline.training.policy import Strategy
from green_pipeline.training.retraining import scratch_valid_auc, transfer_or_scratch
from green_pipeline.training.trainer import TrainingSettings, full_retrain, split_batch
from green_pipeline.training.transfer import TransferSource, load_source
from green_pipeline.training.tuning import TuningSettings

ENERGY = EnergySettings()
#: The pipeline's defaults (``RetrainPolicy`` takes them from these), so the bench measures what the pipeline runs.
SETTINGS, TUNING = TrainingSettings(), TuningSettings()
SHARES = (0.01, 0.05, 0.10)
HEADLINE_SHARE = 0.05
TARGET_GAIN = 0.01
TEST_ROWS = 20000
SOURCE_NAME, TARGET_NAME = "source-segment", "new-segment"


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def publish_source(spec: DomainPairSpec, root: str) -> TransferSource:
    """The source segment's model, published, promoted and loaded back through the store as the pipeline does."""
    rows = generate_domain_batch(spec, "source", spec.source_rows)
    schema = infer_schema(rows, DatasetSpec(label=DOMAIN_LABEL), "source")
    trained = full_retrain(split_batch(rows, DOMAIN_LABEL, "source", "source"), schema, SETTINGS)
    store = ModelStore(root, SOURCE_NAME)
    store.promote(store.publish(trained.booster.model_to_string(), schema, rows, {}))
    return load_source(store, TARGET_NAME)


def first_training(source: TransferSource, labelled: pd.DataFrame, name: str, test: pd.DataFrame) -> dict[str, Any]:
    """One draw of the target's labelled rows through ``transfer_or_scratch``; both models judged on ``test``."""
    schema = infer_schema(labelled, DatasetSpec(label=DOMAIN_LABEL), name)
    split = split_batch(labelled, DOMAIN_LABEL, name, name)
    source_schema = source.schema_for({name: labelled}, DOMAIN_LABEL)
    outcome, kept_schema = transfer_or_scratch(split, schema, source, source_schema, SETTINGS, ENERGY, TUNING)
    transfer, scratch = outcome.attempts
    # The study's default trial, which the transfer was compared with: the same early-stopped model, trained again.
    default = full_retrain(split, schema, SETTINGS)
    assert default.valid_auc == scratch_valid_auc(scratch), "the default trial is not the untuned model"
    return {
        "transfer_auc": auc(transfer.result.booster, test, source_schema),
        "scratch_auc": auc(scratch.result.booster, test, schema),
        "untuned_scratch_auc": auc(default.booster, test, schema),
        "chosen": outcome.result.strategy.value,
        "chosen_auc": auc(outcome.result.booster, test, kept_schema),
        "transfer_valid_auc": transfer.result.valid_auc,
        "scratch_valid_auc": scratch.result.valid_auc,
        "transfer_energy_kwh": transfer.energy.energy_kwh,
        "scratch_energy_kwh": scratch.energy.energy_kwh,
        "transfer_new_trees": transfer.result.new_trees,
        "transfer_trees": transfer.result.trees,
        "scratch_trees": scratch.result.trees,
        "scratch_tuning_trials": len(scratch.study.trials) if scratch.study else 0,
    }


def share_figures(share: float, runs: list[dict[str, Any]], labelled_rows: int) -> dict[str, Any]:
    """The draws of one share: mean AUCs, the transfer's gain over scratch and that of the pipeline's choice."""
    mean = lambda key: statistics.mean(run[key] for run in runs)  # noqa: E731
    gains = [run["transfer_auc"] - run["scratch_auc"] for run in runs]
    untuned_gains = [run["transfer_auc"] - run["untuned_scratch_auc"] for run in runs]
    ratios = [
        run["transfer_energy_kwh"] / run["scratch_energy_kwh"]
        for run in runs
        if run["transfer_energy_kwh"] is not None and run["scratch_energy_kwh"]
    ]
    return {
        "share": share,
        "labelled_rows": labelled_rows,
        "transfer_auc": mean("transfer_auc"),
        "scratch_auc": mean("scratch_auc"),
        "transfer_auc_gain": statistics.mean(gains),
        "transfer_auc_gains": gains,
        "transfer_beats_scratch": sum(gain > 0 for gain in gains),
        "untuned_scratch_auc": mean("untuned_scratch_auc"),
        "transfer_auc_gain_vs_untuned_scratch": statistics.mean(untuned_gains),
        "chosen_auc_gain": mean("chosen_auc") - mean("scratch_auc"),
        "transfer_kept": sum(run["chosen"] == Strategy.TRANSFER.value for run in runs),
        # Unmeasured on any draw: no ratio, never one from the measured draws alone.
        "energy_ratio_transfer_to_scratch": statistics.median(ratios) if len(ratios) == len(runs) else None,
        "transfer_new_trees": mean("transfer_new_trees"),
        "transfer_trees": mean("transfer_trees"),
        "scratch_trees": mean("scratch_trees"),
        "runs": runs,
    }


def measure_pair(spec: DomainPairSpec, samples: int) -> dict[str, Any]:
    """Every share of one domain pair, ``samples`` draws each."""
    with tempfile.TemporaryDirectory() as root:
        source = publish_source(spec, root)
    target = generate_domain_batch(spec, "target", spec.target_rows)
    test = generate_domain_batch(spec, "target", TEST_ROWS, part=1)
    shares = []
    for share in SHARES:
        runs = []
        for sample in range(samples):
            labelled = target.sample(frac=share, random_state=sample).reset_index(drop=True)
            name = f"target-{share:.0%}-{sample}"
            runs.append(first_training(source, labelled, name, test))
            progress(f"seed {spec.seed}, {share:.0%} ({len(labelled)} rows), draw {sample}: {runs[-1]['chosen']}")
        shares.append(share_figures(share, runs, round(share * spec.target_rows)))
    return {
        "seed": spec.seed,
        "source_rows": spec.source_rows,
        "target_rows": spec.target_rows,
        "relationship_shift": spec.relationship_shift,
        "covariate_shift": spec.covariate_shift,
        "source_trees": source.model.booster.num_trees(),
        "source_auc_on_target": auc(source.model.booster, test, source.model.schema),
        "shares": shares,
    }


def key(share: float) -> str:
    return f"{share * 100:.0f}pct_labels"


def summary(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """The headline pair's (the generator's defaults) figures per share, and the target, met or not."""
    headline = {row["share"]: row for row in pairs[0]["shares"]}
    figures: dict[str, Any] = {}
    for share, row in headline.items():
        figures[f"transfer_auc_gain_at_{key(share)}"] = row["transfer_auc_gain"]
        figures[f"chosen_auc_gain_at_{key(share)}"] = row["chosen_auc_gain"]
        figures[f"transfer_auc_gain_vs_untuned_scratch_at_{key(share)}"] = row["transfer_auc_gain_vs_untuned_scratch"]
        figures[f"energy_ratio_transfer_to_scratch_at_{key(share)}"] = row["energy_ratio_transfer_to_scratch"]
    figures["transfer_auc_gain_at_5pct_labels_other_pairs"] = [
        next(row["transfer_auc_gain"] for row in pair["shares"] if row["share"] == HEADLINE_SHARE) for pair in pairs[1:]
    ]
    gain = figures[f"transfer_auc_gain_at_{key(HEADLINE_SHARE)}"]
    figures["targets_met"] = {f"transfer_auc_gain_at_5pct_labels_ge_{TARGET_GAIN}": gain >= TARGET_GAIN}
    return figures


def print_report(pairs: list[dict[str, Any]]) -> None:
    for pair in pairs:
        print(
            f"domain pair seed {pair['seed']} (relationship shift {pair['relationship_shift']}, covariate shift "
            f"{pair['covariate_shift']}): source model {pair['source_trees']} trees, AUC "
            f"{pair['source_auc_on_target']:.4f} on the target as it is"
        )
        print(
            f"  {'labels':>7} {'rows':>5} {'transfer':>8} {'scratch':>8} {'untuned':>8} {'gain':>8} {'wins':>5} "
            f"{'chosen':>8} {'kept':>5} {'energy x':>8} {'trees t/s':>11}"
        )
        for row in pair["shares"]:
            draws = len(row["runs"])
            ratio = row["energy_ratio_transfer_to_scratch"]
            print(
                f"  {row['share']:>7.0%} {row['labelled_rows']:>5} {row['transfer_auc']:>8.4f} "
                f"{row['scratch_auc']:>8.4f} {row['untuned_scratch_auc']:>8.4f} {row['transfer_auc_gain']:>+8.4f} "
                f"{row['transfer_beats_scratch']:>2}/{draws:<2} {row['chosen_auc_gain']:>+8.4f} "
                f"{row['transfer_kept']:>2}/{draws:<2} {'unmeasured' if ratio is None else f'{ratio:.2f}':>8} "
                f"{row['transfer_trees']:>5.0f}/{row['scratch_trees']:<5.0f}"
            )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print every figure as one JSON object, last")
    parser.add_argument("--samples", type=int, default=10, help="draws of the target's labelled rows per share")
    parser.add_argument("--pairs", type=int, default=3, help="domain pairs: the default seed, then the next ones")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with measure_energy(ENERGY):
        pass  # the first measurement in a process loads the machine's power model: keep it out of the figures
    default = DomainPairSpec()
    specs = [DomainPairSpec(seed=default.seed + offset) for offset in range(args.pairs)]
    pairs = [measure_pair(spec, args.samples) for spec in specs]
    print_report(pairs)
    figures = summary(pairs)
    seconds = time.perf_counter() - started
    print(f"total {seconds:.0f} s")
    if args.json:
        print(json.dumps(figures | {"pairs": pairs, "samples": args.samples, "seconds": seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
