"""Env layer: the one market model, rewards, the batched simulator and the envs built on it."""
