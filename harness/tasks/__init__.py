"""Benchmarks: LUME (``lume/``) and the multiple-choice sets scored through lm-eval (``mcq/``)."""
