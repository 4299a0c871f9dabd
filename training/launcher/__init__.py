"""Run workloads through submitit: on this machine behind a concurrency gate, as a SLURM job
array, or in this process (debug); watch them, retry failures, survive preemption. It runs any
workload (training.launcher.workload) and imports none."""
