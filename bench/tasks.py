"""The harder task of issue 16, shared by bench/tuning.py and bench/features.py: the same rows on both sides."""

#: ``sklearn.datasets.make_classification`` arguments: 40 features, 12 informative and 8 redundant, 5% flipped labels.
HARDER_TASK = {
    "n_samples": 200_000,
    "n_features": 40,
    "n_informative": 12,
    "n_redundant": 8,
    "flip_y": 0.05,
    "class_sep": 0.6,
    "random_state": 0,
}
