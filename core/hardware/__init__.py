"""Hardware layer: what the machine offers (CPUs, memory, GPUs, SLURM) and the plan that fills it.

Nothing here imports numpy or torch: the entry point plans and sets thread limits first.
"""
