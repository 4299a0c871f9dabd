"""Optuna sweeps over config keys, scored on the walk-forward folds' validation windows."""
