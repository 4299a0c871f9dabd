"""After the jobs: the ensemble's walk, the fused model's test, results, the report and plots."""
