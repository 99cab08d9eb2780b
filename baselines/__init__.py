"""Baseline models, the training loop and the reference benchmark (planned)."""
