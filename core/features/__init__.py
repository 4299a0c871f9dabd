"""Features layer: causal indicators, built once into a store that every process attaches by memmap.

`core.features.store` needs numpy only, so env workers attach without loading the build pipeline.
"""
