"""What a command runs: flags checked, the pipeline (store, folds, plan once), sweeps, data."""
