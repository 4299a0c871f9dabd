"""Human views for --dry-run and the data checks: tables and JSON of data, plan and folds."""
