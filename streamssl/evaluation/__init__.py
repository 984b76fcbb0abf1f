"""Judging the product: labelled sets, the linear probe against its baselines, and benchmarks.

Nothing here is on a window's live path; it reads checkpoints and calls the learning
core the same way the daemons do.
"""
