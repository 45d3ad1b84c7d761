"""Metric families: pure scoring functions over per-sample records, and the SemEval-2025 aggregation."""
