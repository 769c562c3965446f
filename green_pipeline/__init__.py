"""green-pipeline: drift-gated, energy-measured retraining of a LightGBM model as a Dagster code location.

LightGBM's OpenMP runtime reads ``OMP_WAIT_POLICY`` once, when it loads, and by default its threads spin while they
wait for work. Spinning is CPU time, so energy: on a 2-core machine with other work, one 100-tree fit of 365 rows
took 2-76 s instead of 0.2 s (bench/RESULTS.md, "Real data"). Every module that trains or predicts is imported
through this package, so waiting passively is set here, before LightGBM loads; a value in the environment wins.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
