"""green-pipeline: drift-gated, energy-measured retraining of a LightGBM model as a Dagster code location."""
