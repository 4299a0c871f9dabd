"""Policies built for market observations: SB3 feature extractors and their exact sizes.

`layout` and `size` are standard library only (the planner counts parameters before torch may
load); the extractors import torch.
"""
