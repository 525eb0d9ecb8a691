"""Training: optimiser and schedules, train state and steps, sharding, checkpoints."""
