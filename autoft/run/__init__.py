"""A run folder and what it holds: its layout, trial records, bundles, the leaderboard and the winner."""
