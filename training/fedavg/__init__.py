"""Federated averaging across the members of a fold: file barriers, weight averages, the fused model."""
