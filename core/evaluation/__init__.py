"""Evaluation layer: deterministic rollouts, baselines, metrics (PSR, DSR), judging a window."""
