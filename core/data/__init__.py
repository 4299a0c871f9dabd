"""Data layer: find, load, validate and align market bars; timestamps, exogenous series, samples."""
