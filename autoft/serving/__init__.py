"""Serving a bundle: predict, export and evaluate through Paddle's inference engine."""
