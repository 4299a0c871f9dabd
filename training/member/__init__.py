"""One member's training: the trainer, its model and callbacks, the rollout buffer, fedavg rounds
from the member's side, autotune's probe, and the member as the launcher's workload."""
