"""Measuring generated beatmaps against human ones: metrics, baselines, scoring and the report (evaluate.py)."""
