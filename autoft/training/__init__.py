"""Paddle fine-tuning without Ray: the epoch loop, fit, strategies, checkpoints, the feature cache, the plan."""
