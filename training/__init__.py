"""Orchestration over core/: the command line and its pipeline, run folders, one member's
training, the launcher, fedavg, sweeps, and the post-run chain (ensemble, results, report)."""
