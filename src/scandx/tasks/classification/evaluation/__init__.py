"""Metrics (pure functions), bootstrap confidence intervals, evaluation of a run."""
