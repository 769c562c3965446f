"""The pod a heavy step needs on Kubernetes, declared on its op (the ``dagster-k8s/config`` tag).

On the op rather than in deploy/k8s/run_config.yaml's ``per_step_k8s_config``: the size follows the code that sets
LightGBM's thread count, and every run carries it however it is launched (launchpad, sensor, schedule) and whatever
run config it has. A deployment still overrides it there: ``per_step_k8s_config`` is merged over the tag. Other
executors ignore the tag. Plain data, no dagster-k8s import: the assets load without the ``k8s`` extra.
"""

from __future__ import annotations

import json

from green_pipeline.training.trainer import NUM_THREADS

#: The op tag dagster-k8s reads a step's Kubernetes config from (dagster_k8s.job.USER_DEFINED_K8S_CONFIG_KEY).
K8S_CONFIG_TAG = "dagster-k8s/config"

#: Training and compression run LightGBM on NUM_THREADS threads: as many whole cores, requested and capped alike (the
#: threads neither queue for a core nor spread over more); memory for the batch, the boosters and the candidates.
HEAVY_STEP_RESOURCES: dict[str, dict[str, str]] = {
    "requests": {"cpu": str(NUM_THREADS), "memory": "2Gi"},
    "limits": {"cpu": str(NUM_THREADS), "memory": "4Gi"},
}

#: ``op_tags`` of the heavy steps (retrained_model, compressed_model); Dagster stores the value as this JSON.
HEAVY_STEP_TAGS: dict[str, str] = {
    K8S_CONFIG_TAG: json.dumps({"container_config": {"resources": HEAVY_STEP_RESOURCES}}),
}
