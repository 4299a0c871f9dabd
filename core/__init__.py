"""Ploutos core library: configuration, hardware planning, data, features, envs, policies and
evaluation, one folder a layer (imports only go down; tests/test_layers.py keeps it so).

Nothing in this package parses command lines or launches jobs; that is `training/`'s work.
"""

__version__ = "0.1.0"
