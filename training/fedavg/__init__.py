"""Federated averaging across the members of a fold: weight averages and the file barrier where
they meet (a member's side of the rounds is training.member.rounds; the fused model's test is
training.post.fuse)."""
