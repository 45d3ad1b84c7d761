"""LUME (SemEval-2025 Task 4): loading and validating its forget/retain/MIA files."""
