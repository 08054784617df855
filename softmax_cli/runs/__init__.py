"""Runs on disk: checkpoints and their format, run folders and their summaries, and the histories `plot` reads."""
