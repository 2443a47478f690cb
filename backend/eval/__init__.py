"""Evaluation measures used by the benchmark scripts (no runtime part of the pipeline)."""
