"""After the report: a finished run's agents replayed on bars (its own, or newer ones)."""
