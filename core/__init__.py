"""Ploutos core library: configuration, hardware planning and (later) data, envs and metrics.

Nothing in this package parses command lines or launches jobs; that is `training/`'s work.
"""

__version__ = "0.1.0"
