"""Tasks as ``datasets.DatasetDict`` (train / validation / test). Each module registers its tasks."""
