"""The population learner: a fold's members trained in one process, one batched forward per
rollout step and one batched PPO update (docs/population.md)."""
